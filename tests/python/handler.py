"""Python Lambda handlers for lambda-admission's tests, run by AWS's awslambdaric."""
import time


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
