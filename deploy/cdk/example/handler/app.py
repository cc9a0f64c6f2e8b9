import json


def handler(event, context):
    """A proxy-format answer: what API Gateway's Lambda proxy integration expects."""
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"ok": True, "path": event.get("path")}),
    }
