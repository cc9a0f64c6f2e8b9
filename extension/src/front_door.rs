//! Which service sent an event, and the 429 that service expects back.
//!
//! Only HTTP front doors can carry a 429 to a client: API Gateway REST and HTTP API payload 1.0,
//! HTTP API payload 2.0 and Function URLs, and ALB. Every other event (SQS, SNS, EventBridge, S3,
//! direct invokes, WebSocket routes) has no front door ([`FrontDoor::classify`] gives `None`) and
//! is never shed. An event that is not JSON at all is not HTTP either: classification never
//! fails, it only declines to shed.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontDoor {
    /// API Gateway REST, or HTTP API with payload format 1.0.
    ApiGatewayV1,
    /// HTTP API with payload format 2.0, or a Function URL.
    HttpApiV2,
    /// Application Load Balancer; `multi_value` when the target group sends `multiValueHeaders`.
    Alb { multi_value: bool },
}

/// The fields that tell the front doors apart; everything else is skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventProbe {
    version: Option<String>,
    http_method: Option<IgnoredAny>,
    request_context: Option<ContextProbe>,
    // `null` when the ALB target group does not use multi-value headers.
    multi_value_headers: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextProbe {
    elb: Option<IgnoredAny>,
    http: Option<IgnoredAny>,
    connection_id: Option<IgnoredAny>,
}

impl FrontDoor {
    /// The HTTP front door that sent `event`; `None` for everything that is not an HTTP request.
    pub fn classify(event: &[u8]) -> Option<FrontDoor> {
        let probe = serde_json::from_slice::<EventProbe>(event).ok()?;
        let ctx = probe.request_context?;
        if ctx.connection_id.is_some() {
            // WebSocket routes: the 429 would go nowhere a client reads.
            None
        } else if ctx.elb.is_some() {
            Some(FrontDoor::Alb {
                multi_value: probe.multi_value_headers.is_some(),
            })
        } else if probe.version.as_deref() == Some("2.0") && ctx.http.is_some() {
            Some(FrontDoor::HttpApiV2)
        } else if probe.http_method.is_some() {
            Some(FrontDoor::ApiGatewayV1)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FrontDoor::ApiGatewayV1 => "apigateway-v1",
            FrontDoor::HttpApiV2 => "http-api-v2",
            FrontDoor::Alb { .. } => "alb",
        }
    }

    /// The proxy-integration response that tells the client to come back in `retry_after`
    /// seconds.
    pub fn shed_response(self, retry_after: u64) -> Bytes {
        let body = json!({"message": "Too Many Requests", "retryAfterSeconds": retry_after});
        let ra = retry_after.to_string();
        let headers = json!({
            "content-type": "application/json",
            "retry-after": ra,
            "x-amzn-ErrorType": "TooManyRequestsException",
        });
        let multi = json!({
            "content-type": ["application/json"],
            "retry-after": [ra],
            "x-amzn-ErrorType": ["TooManyRequestsException"],
        });
        let body = body.to_string();
        let response = match self {
            FrontDoor::ApiGatewayV1 => json!({
                "statusCode": 429,
                "headers": headers,
                "multiValueHeaders": multi,
                "body": body,
                "isBase64Encoded": false,
            }),
            FrontDoor::HttpApiV2 => json!({
                "statusCode": 429,
                "headers": headers,
                "cookies": [],
                "body": body,
                "isBase64Encoded": false,
            }),
            FrontDoor::Alb { multi_value } => {
                let mut r = json!({
                    "statusCode": 429,
                    "statusDescription": "429 Too Many Requests",
                    "body": body,
                    "isBase64Encoded": false,
                });
                // ALB rejects a response whose header map does not match the target group's mode.
                if multi_value {
                    r["multiValueHeaders"] = multi;
                } else {
                    r["headers"] = headers;
                }
                r
            }
        };
        Bytes::from(response.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn classify(v: Value) -> Option<FrontDoor> {
        FrontDoor::classify(v.to_string().as_bytes())
    }

    #[test]
    fn tells_the_front_doors_apart() {
        let rest = json!({"resource": "/", "path": "/", "httpMethod": "GET", "headers": {},
            "multiValueHeaders": {}, "requestContext": {"stage": "prod", "requestId": "r"}});
        assert_eq!(classify(rest), Some(FrontDoor::ApiGatewayV1));
        let v2 = json!({"version": "2.0", "routeKey": "$default", "rawPath": "/",
            "requestContext": {"http": {"method": "GET"}, "stage": "$default"}});
        assert_eq!(classify(v2), Some(FrontDoor::HttpApiV2));
        let alb = json!({"httpMethod": "GET", "path": "/", "headers": {"a": "b"},
            "requestContext": {"elb": {"targetGroupArn": "arn"}}});
        assert_eq!(classify(alb), Some(FrontDoor::Alb { multi_value: false }));
        let alb_mv = json!({"httpMethod": "GET", "path": "/", "multiValueHeaders": {"a": ["b"]},
            "requestContext": {"elb": {"targetGroupArn": "arn"}}});
        assert_eq!(classify(alb_mv), Some(FrontDoor::Alb { multi_value: true }));
    }

    #[test]
    fn everything_else_is_not_http() {
        let cases = [
            json!({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}),
            json!({"Records": [{"EventSource": "aws:sns"}]}),
            json!({"source": "aws.events", "detail-type": "x", "detail": {}}),
            json!({"requestContext": {"connectionId": "c", "eventType": "MESSAGE", "routeKey": "$default"}, "body": "x"}),
            json!({"requestContext": {"connectionId": "c", "eventType": "CONNECT"}, "headers": {}, "multiValueHeaders": {}}),
            json!({"httpMethod": "GET"}),
            json!("a string"),
            json!([1, 2]),
            json!(null),
        ];
        for c in cases {
            assert_eq!(classify(c.clone()), None, "{c}");
        }
        for raw in [&b""[..], b"{", b"\xff\xfe", b"{\"httpMethod\":"] {
            assert_eq!(FrontDoor::classify(raw), None);
        }
    }

    fn shed(fd: FrontDoor) -> Value {
        serde_json::from_slice(&fd.shed_response(7)).unwrap()
    }

    #[test]
    fn shed_responses_have_each_front_doors_shape() {
        let body = json!({"message": "Too Many Requests", "retryAfterSeconds": 7}).to_string();
        let headers = json!({"content-type": "application/json", "retry-after": "7",
            "x-amzn-ErrorType": "TooManyRequestsException"});
        let multi = json!({"content-type": ["application/json"], "retry-after": ["7"],
            "x-amzn-ErrorType": ["TooManyRequestsException"]});
        assert_eq!(
            shed(FrontDoor::ApiGatewayV1),
            json!({"statusCode": 429, "headers": headers, "multiValueHeaders": multi,
                "body": body, "isBase64Encoded": false})
        );
        assert_eq!(
            shed(FrontDoor::HttpApiV2),
            json!({"statusCode": 429, "headers": headers, "cookies": [], "body": body,
                "isBase64Encoded": false})
        );
        assert_eq!(
            shed(FrontDoor::Alb { multi_value: false }),
            json!({"statusCode": 429, "statusDescription": "429 Too Many Requests",
                "headers": headers, "body": body, "isBase64Encoded": false})
        );
        assert_eq!(
            shed(FrontDoor::Alb { multi_value: true }),
            json!({"statusCode": 429, "statusDescription": "429 Too Many Requests",
                "multiValueHeaders": multi, "body": body, "isBase64Encoded": false})
        );
    }
}
