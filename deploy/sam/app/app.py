"""The example function behind API Gateway: a proxy-format 200 with a small JSON body.

The layer does its work before this handler runs; the handler only has to be an ordinary
Lambda proxy integration. Replace it with your own code.
"""

import json
import os


def handler(event, context):
    body = {
        "ok": True,
        "path": event.get("path"),
        "method": event.get("httpMethod"),
        "requestId": context.aws_request_id,
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
    }
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
