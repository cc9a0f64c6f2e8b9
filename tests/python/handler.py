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
    """An API Gateway handler: 200 with the path, after "sleep_ms" from the query string."""
    query = event.get("queryStringParameters") or {}
    time.sleep(int(query.get("sleep_ms", "0")) / 1000)
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok " + str(event.get("path"))}
