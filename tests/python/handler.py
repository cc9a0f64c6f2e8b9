"""Python Lambda handlers for lambda-admission's tests, run by AWS's awslambdaric."""
import json
import os
import time
import urllib.request


def echo(event, context):
    """Returns the event; with "sleep_ms" waits first, with "raise" fails."""
    if isinstance(event, dict):
        if event.get("sleep_ms"):
            time.sleep(event["sleep_ms"] / 1000)
        if event.get("raise"):
            raise RuntimeError(event["raise"])
    return event


def api(event, context):
    """An API Gateway handler: 200 after `?ms=N` milliseconds; `?op=error` raises."""
    query = event.get("queryStringParameters") or {}
    if query.get("op") == "error":
        raise RuntimeError("the handler failed on purpose")
    time.sleep(int(query.get("ms", "0")) / 1000)
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok " + str(event.get("path"))}


STATUS = f"http://127.0.0.1:{os.environ.get('ADMISSION_PORT', '9009')}/lambda-admission/v1/status"


def under_pressure():
    """The README's snippet: whether sheddable requests are being shed right now."""
    try:
        with urllib.request.urlopen(STATUS, timeout=0.05) as r:
            return json.load(r)["load"]["shedding"]["sheddable"]
    except Exception:
        return False


def degrading(event, context):
    """An API handler that skips optional work while sheddable requests are being shed."""
    pressure = under_pressure()
    body = {"recommendations": [] if pressure else ["a", "b"], "underPressure": pressure}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
