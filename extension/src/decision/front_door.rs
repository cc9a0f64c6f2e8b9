//! Which service sent an event, and the 429 that service expects back.
//!
//! Only HTTP front doors can carry a 429 to a client: API Gateway REST and HTTP API payload 1.0,
//! HTTP API payload 2.0 and Function URLs, and ALB. Every other event (SQS, SNS, EventBridge, S3,
//! direct invokes, WebSocket routes) has no front door ([`FrontDoor::classify`] gives `None`) and
//! is never shed. An event that is not JSON at all is not HTTP either: classification never
//! fails, it only declines to shed.
//!
//! Some events look like front-door requests but are not a client waiting for an HTTP answer, and
//! are never shed either: API Gateway authorizer calls (`methodArn`, `routeArn`: a 429 there is a
//! malformed policy, so a 500 to the client), asynchronous re-invocations marked by Slack Bolt's
//! lazy listeners (`x-slack-bolt-lazy-only`: Lambda would record the 429 as the invocation's
//! success and drop it), and ALB health checks (`ELB-HealthChecker`: a refused check takes the
//! target out of service).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use crate::decision::classes::{Request, Rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontDoor {
    /// API Gateway REST, or HTTP API with payload format 1.0.
    ApiGatewayV1,
    /// HTTP API with payload format 2.0, or a Function URL.
    HttpApiV2,
    /// Application Load Balancer; `multi_value` when the target group sends `multiValueHeaders`.
    Alb { multi_value: bool },
}

/// The fields that tell the front doors apart, and the method and path the class rules read
/// (borrowed from the event where it has no escapes); everything else is skipped unparsed.
#[derive(Default)]
struct EventProbe<'a> {
    version: Option<String>,
    http_method: Option<Loose<'a>>,
    /// REST, HTTP API 1.0 and ALB: the path as the client sent it.
    path: Option<Loose<'a>>,
    /// HTTP API 2.0 and Function URLs.
    raw_path: Option<Loose<'a>>,
    request_context: Option<ContextProbe<'a>>,
    headers: Option<HeadersProbe>,
    // `null` when the ALB target group does not use multi-value headers.
    multi_value_headers: Option<HeadersProbe>,
    /// API Gateway REST `REQUEST` authorizers.
    method_arn: Option<IgnoredAny>,
    /// HTTP API authorizers.
    route_arn: Option<IgnoredAny>,
}

/// The top-level members the probe reads ([`EventProbe::read`]).
const PROBED: [&str; 9] = [
    "version",
    "httpMethod",
    "path",
    "rawPath",
    "requestContext",
    "headers",
    "multiValueHeaders",
    "methodArn",
    "routeArn",
];

impl<'a> EventProbe<'a> {
    /// The probe of a JSON object. Only the members it reads are parsed (by serde_json); every
    /// other value is stepped over: a string (an event's body, up to 6 MB) by finding its closing
    /// quote with `memchr`, without validating its contents; anything else by serde_json. Invalid
    /// JSON around the members, a member read twice, or a read member of the wrong shape: `None`.
    fn of(event: &'a [u8]) -> Option<EventProbe<'a>> {
        let mut probe = EventProbe::default();
        let mut seen = [false; PROBED.len()];
        let mut at = json_space(event, 0);
        if *event.get(at)? != b'{' {
            return None;
        }
        at = json_space(event, at + 1);
        if *event.get(at)? != b'}' {
            loop {
                if *event.get(at)? != b'"' {
                    return None;
                }
                let key_end = string_end(event, at + 1)?;
                let key = member_name(&event[at..key_end])?;
                at = json_space(event, key_end);
                if *event.get(at)? != b':' {
                    return None;
                }
                at = json_space(event, at + 1);
                let read = PROBED.iter().position(|k| *k == key);
                at = match read {
                    Some(i) if std::mem::replace(&mut seen[i], true) => return None,
                    Some(_) => probe.read(&key, event, at)?,
                    None if *event.get(at)? == b'"' => string_end(event, at + 1)?,
                    None => parsed::<IgnoredAny>(event, at)?.1,
                };
                at = json_space(event, at);
                match *event.get(at)? {
                    b',' => at = json_space(event, at + 1),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        (json_space(event, at + 1) == event.len()).then_some(probe)
    }

    /// Reads member `key` (one of [`PROBED`]), whose value starts at `at`; where the value ends.
    fn read(&mut self, key: &str, event: &'a [u8], at: usize) -> Option<usize> {
        fn into<T>(field: &mut T, (value, end): (T, usize)) -> usize {
            *field = value;
            end
        }
        Some(match key {
            "version" => into(&mut self.version, parsed(event, at)?),
            "httpMethod" => into(&mut self.http_method, parsed(event, at)?),
            "path" => into(&mut self.path, parsed(event, at)?),
            "rawPath" => into(&mut self.raw_path, parsed(event, at)?),
            "requestContext" => into(&mut self.request_context, parsed(event, at)?),
            "headers" => into(&mut self.headers, parsed(event, at)?),
            "multiValueHeaders" => into(&mut self.multi_value_headers, parsed(event, at)?),
            "methodArn" => into(&mut self.method_arn, parsed(event, at)?),
            "routeArn" => into(&mut self.route_arn, parsed(event, at)?),
            _ => return None,
        })
    }
}

/// The value at `at`, parsed by serde_json, and where it ends.
fn parsed<'a, T: Deserialize<'a>>(event: &'a [u8], at: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_slice(event.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

/// The first byte from `at` on that is not JSON whitespace.
fn json_space(event: &[u8], at: usize) -> usize {
    let rest = event.get(at..).unwrap_or_default();
    at + rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(rest.len())
}

/// Where the string whose contents start at `from` ends (just past its closing quote).
fn string_end(event: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = from + memchr::memchr2(b'"', b'\\', event.get(from..)?)?;
        if event[i] == b'"' {
            return Some(i + 1);
        }
        from = i + 2; // the escaped byte (a `\uXXXX`'s hex digits hold no quote)
    }
}

/// A member's name, its quotes included: as written, or decoded when it has escapes.
fn member_name(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted)
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }
}

#[derive(Default)]
struct Fields<'a> {
    method: Option<Cow<'a, str>>,
    source_ip: Option<Cow<'a, str>>,
    api_key: Option<Cow<'a, str>>,
}

/// A JSON value as far as the probe reads one: a string, the strings of a list, an object's
/// `method`, or nothing. Any other shape reads as nothing: a malformed field is not a reason to
/// misread the whole event. Strings are borrowed from the event where they have no escapes.
enum Loose<'a> {
    Text(Cow<'a, str>),
    List(Vec<Cow<'a, str>>),
    /// The fields read of an object: `requestContext.http` (HTTP API 2.0) has `method` and
    /// `sourceIp`, `requestContext.identity` (REST) has `sourceIp` and `apiKey`.
    Object(Fields<'a>),
    Other,
}

impl<'a> Loose<'a> {
    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Loose::Text(t) => Some(t),
            _ => None,
        }
    }

    /// A header's values: one string (`headers`) or a list of them (`multiValueHeaders`).
    fn texts(self) -> Vec<Cow<'a, str>> {
        match self {
            Loose::Text(t) => vec![t],
            Loose::List(all) => all,
            _ => Vec::new(),
        }
    }

    fn fields(self) -> Fields<'a> {
        match self {
            Loose::Object(fields) => fields,
            _ => Fields::default(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LooseVisitor;
        impl<'de> Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'de>, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<Loose>()? {
                    all.extend(item.text());
                }
                Ok(Loose::List(all))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Loose>()? {
                    let field = match key.text().as_deref() {
                        Some("method") => &mut fields.method,
                        Some("sourceIp") => &mut fields.source_ip,
                        Some("apiKey") => &mut fields.api_key,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map.next_value::<Loose>()?.text();
                }
                Ok(Loose::Object(fields))
            }
        }
        d.deserialize_any(LooseVisitor)
    }
}

thread_local! {
    /// The header names the class rules read, for the classification under way on this thread:
    /// serde's derived visitors carry no state, and headers no rule names are never kept.
    static WANTED_HEADERS: RefCell<Option<Arc<[String]>>> = const { RefCell::new(None) };
}

/// The headers that mark an event no client waits on, and those the class rules name; every
/// other header is skipped.
#[derive(Default)]
struct HeadersProbe {
    health_check: bool,
    lazy_reinvocation: bool,
    /// Client traffic through a load balancer carries `X-Forwarded-For`; its health checks
    /// do not, so a client cannot pass for one by its user agent.
    forwarded: bool,
    /// (lower-case name, value) of the headers a rule names.
    wanted: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    UserAgent,
    LazyOnly,
    ForwardedFor,
}

enum HeaderName {
    Special(Special),
    /// A header a class rule names (its lower-case name), which may be a special one too.
    Wanted(String, Option<Special>),
    Other,
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = HeaderName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderName, E> {
                let special = if v.eq_ignore_ascii_case("user-agent") {
                    Some(Special::UserAgent)
                } else if v.eq_ignore_ascii_case("x-slack-bolt-lazy-only") {
                    Some(Special::LazyOnly)
                } else if v.eq_ignore_ascii_case("x-forwarded-for") {
                    Some(Special::ForwardedFor)
                } else {
                    None
                };
                let wanted = WANTED_HEADERS.with(|w| {
                    w.borrow()
                        .as_ref()
                        .and_then(|names| names.iter().find(|n| v.eq_ignore_ascii_case(n)).cloned())
                });
                Ok(match (wanted, special) {
                    (Some(name), special) => HeaderName::Wanted(name, special),
                    (None, Some(special)) => HeaderName::Special(special),
                    (None, None) => HeaderName::Other,
                })
            }
        }
        d.deserialize_str(Name)
    }
}

impl HeadersProbe {
    /// What a special header's presence (and, for the user agent, its values) says.
    fn mark(&mut self, special: Special, value: &Loose) {
        match special {
            Special::UserAgent => {
                let checker = |v: &Cow<str>| v.starts_with(HEALTH_CHECKER);
                self.health_check |= match value {
                    Loose::Text(t) => checker(t),
                    Loose::List(all) => all.iter().any(checker),
                    _ => false,
                };
            }
            Special::LazyOnly => self.lazy_reinvocation = true,
            Special::ForwardedFor => self.forwarded = true,
        }
    }
}

/// The user agent of ALB's health checks.
const HEALTH_CHECKER: &str = "ELB-HealthChecker";

impl<'de> Deserialize<'de> for HeadersProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Headers;
        impl<'de> Visitor<'de> for Headers {
            type Value = HeadersProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of headers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeadersProbe, A::Error> {
                let mut probe = HeadersProbe::default();
                while let Some(name) = map.next_key::<HeaderName>()? {
                    match name {
                        HeaderName::Special(Special::UserAgent) => {
                            probe.mark(Special::UserAgent, &map.next_value::<Loose>()?);
                        }
                        HeaderName::Special(special) => {
                            // Only its presence counts: the value is skipped unread.
                            map.next_value::<IgnoredAny>()?;
                            probe.mark(special, &Loose::Other);
                        }
                        HeaderName::Wanted(name, special) => {
                            let value = map.next_value::<Loose>()?;
                            if let Some(special) = special {
                                probe.mark(special, &value);
                            }
                            let values = value.texts();
                            for value in values {
                                probe.wanted.push((name.clone(), value.into_owned()));
                            }
                        }
                        HeaderName::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(Headers)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContextProbe<'a> {
    elb: Option<IgnoredAny>,
    /// HTTP API 2.0: `{"method": ..., "sourceIp": ...}`.
    #[serde(borrow)]
    http: Option<Loose<'a>>,
    /// REST and HTTP API 1.0: `{"sourceIp": ..., "apiKey": ...}`.
    #[serde(borrow)]
    identity: Option<Loose<'a>>,
    connection_id: Option<IgnoredAny>,
}

/// What the class rules and the tenant key read of an event: the header names they look at.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    headers: Option<Arc<[String]>>,
}

impl Wanted {
    /// The headers `rules` read, and `tenant_header`, the one a tenant key reads.
    pub fn of(rules: &Rules, tenant_header: Option<&str>) -> Wanted {
        let mut names = rules.header_names();
        names.extend(tenant_header.map(str::to_string));
        names.sort();
        names.dedup();
        Wanted {
            headers: (!names.is_empty()).then(|| names.into()),
        }
    }
}

/// An HTTP request from a front door: where it came from, and what the class rules and the
/// tenant key read of it.
#[derive(Debug)]
pub struct HttpRequest<'a> {
    pub front_door: FrontDoor,
    pub request: Request<'a>,
    /// The client's address as API Gateway or a Function URL saw it (not ALB's).
    pub source_ip: Option<Cow<'a, str>>,
    /// API Gateway REST's API key.
    pub api_key: Option<Cow<'a, str>>,
}

/// The HTTP request in `event`, if it is one a client waits on (see [`FrontDoor::classify`]),
/// with its method, path and the headers `wanted` names.
pub fn read<'a>(event: &'a [u8], wanted: &Wanted) -> Option<HttpRequest<'a>> {
    WANTED_HEADERS.with(|w| w.replace(wanted.headers.clone()));
    let probe = EventProbe::of(event);
    WANTED_HEADERS.with(|w| w.replace(None));
    let probe = probe?;
    let front_door = FrontDoor::of(&probe)?;
    let text = |t: Option<Loose<'a>>| t.and_then(Loose::text);
    let (http, identity) = probe
        .request_context
        .map(|c| (c.http, c.identity))
        .unwrap_or_default();
    let (http, identity) = (
        http.map(Loose::fields).unwrap_or_default(),
        identity.map(Loose::fields).unwrap_or_default(),
    );
    let (method, path, source_ip) = match front_door {
        FrontDoor::HttpApiV2 => (http.method, text(probe.raw_path), http.source_ip),
        _ => (
            text(probe.http_method),
            text(probe.path),
            identity.source_ip,
        ),
    };
    let mut headers = Vec::new();
    for probe in [probe.headers, probe.multi_value_headers]
        .into_iter()
        .flatten()
    {
        headers.extend(probe.wanted);
    }
    Some(HttpRequest {
        front_door,
        request: Request {
            method,
            path,
            headers,
        },
        source_ip,
        api_key: identity.api_key,
    })
}

impl FrontDoor {
    /// The HTTP front door that sent `event`; `None` for everything that is not an HTTP request.
    pub fn classify(event: &[u8]) -> Option<FrontDoor> {
        read(event, &Wanted::default()).map(|r| r.front_door)
    }

    fn of(probe: &EventProbe) -> Option<FrontDoor> {
        let ctx = probe.request_context.as_ref()?;
        let headers = [&probe.headers, &probe.multi_value_headers];
        let forwarded = headers.into_iter().flatten().any(|h| h.forwarded);
        let health_check = ctx.elb.is_some()
            && !forwarded
            && headers.into_iter().flatten().any(|h| h.health_check);
        let no_client_waiting = probe.method_arn.is_some()
            || probe.route_arn.is_some()
            || health_check
            || headers.into_iter().flatten().any(|h| h.lazy_reinvocation);
        if no_client_waiting || ctx.connection_id.is_some() {
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
    /// seconds: buffered, or (`streaming`) in the shape of a streamed HTTP integration response.
    pub fn shed_answer(self, retry_after: u64, streaming: bool) -> ShedAnswer {
        let (headers, multi) = shed_headers(retry_after);
        let body =
            json!({"message": "Too Many Requests", "retryAfterSeconds": retry_after}).to_string();
        let response = match self {
            // Streamed front doors (Function URLs in RESPONSE_STREAM mode, REST integrations with
            // STREAM transfer) read status and headers from a prelude: JSON, 8 NUL bytes, the body.
            FrontDoor::ApiGatewayV1 | FrontDoor::HttpApiV2 if streaming => {
                let prelude = json!({"statusCode": 429, "headers": headers, "cookies": []});
                let mut bytes = prelude.to_string().into_bytes();
                bytes.extend_from_slice(&[0u8; 8]);
                bytes.extend_from_slice(body.as_bytes());
                return ShedAnswer {
                    body: Bytes::from(bytes),
                    streaming: true,
                };
            }
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
        ShedAnswer {
            body: Bytes::from(response.to_string()),
            streaming: false,
        }
    }
}

/// A 429's headers, as a map and (REST, ALB in multi-value mode) as a multi-value map.
fn shed_headers(retry_after: u64) -> (serde_json::Value, serde_json::Value) {
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
    (headers, multi)
}

/// A 429 ready to post as an invocation's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShedAnswer {
    pub body: Bytes,
    /// Post it as a streamed HTTP integration response.
    pub streaming: bool,
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

    #[test]
    fn requests_no_client_waits_on_are_not_http() {
        let cases = [
            // REST API REQUEST authorizer.
            json!({"type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:a/prod/GET/",
                "resource": "/", "path": "/", "httpMethod": "GET", "headers": {},
                "requestContext": {"stage": "prod", "requestId": "r"}}),
            // HTTP API authorizer, payload 2.0.
            json!({"version": "2.0", "type": "REQUEST", "routeArn": "arn:aws:execute-api:us-east-1:1:a/$default/GET/",
                "routeKey": "GET /", "rawPath": "/", "requestContext": {"http": {"method": "GET"}}}),
            // Slack Bolt's lazy listener re-invoking itself asynchronously, any header case.
            json!({"httpMethod": "POST", "headers": {"X-Slack-Bolt-Lazy-Only": "true"},
                "requestContext": {"stage": "prod"}}),
            json!({"version": "2.0", "headers": {"x-slack-bolt-lazy-only": "1"},
                "requestContext": {"http": {"method": "POST"}}}),
            // ALB health checks, with and without multi-value headers.
            json!({"httpMethod": "GET", "path": "/health", "headers": {"user-agent": "ELB-HealthChecker/2.0"},
                "requestContext": {"elb": {"targetGroupArn": "arn"}}}),
            json!({"httpMethod": "GET", "path": "/health", "multiValueHeaders": {"user-agent": ["ELB-HealthChecker/2.0"]},
                "requestContext": {"elb": {"targetGroupArn": "arn"}}}),
        ];
        for c in cases {
            assert_eq!(classify(c.clone()), None, "{c}");
        }
        // A client cannot pass for the health checker: its requests carry X-Forwarded-For.
        let spoofed = json!({"httpMethod": "GET", "path": "/", "headers": {"user-agent": "ELB-HealthChecker/2.0",
            "x-forwarded-for": "203.0.113.9"}, "requestContext": {"elb": {"targetGroupArn": "arn"}}});
        assert_eq!(
            classify(spoofed),
            Some(FrontDoor::Alb { multi_value: false })
        );
        // Ordinary requests with headers, odd header values included, are still HTTP.
        let browser = json!({"httpMethod": "GET", "headers": {"User-Agent": "Mozilla/5.0", "x-n": null},
            "multiValueHeaders": {"User-Agent": ["Mozilla/5.0"], "a": []}, "requestContext": {"stage": "p"}});
        assert_eq!(classify(browser), Some(FrontDoor::ApiGatewayV1));
    }

    fn shed(fd: FrontDoor) -> Value {
        let answer = fd.shed_answer(7, false);
        assert!(!answer.streaming);
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn streamed_front_doors_get_a_prelude_then_the_body() {
        for fd in [FrontDoor::ApiGatewayV1, FrontDoor::HttpApiV2] {
            let answer = fd.shed_answer(3, true);
            assert!(answer.streaming);
            let at = answer.body.windows(8).position(|w| w == [0u8; 8]).unwrap();
            let prelude: Value = serde_json::from_slice(&answer.body[..at]).unwrap();
            assert_eq!(prelude["statusCode"], 429);
            assert_eq!(prelude["headers"]["retry-after"], "3");
            assert_eq!(
                prelude["headers"]["x-amzn-ErrorType"],
                "TooManyRequestsException"
            );
            let body: Value = serde_json::from_slice(&answer.body[at + 8..]).unwrap();
            assert_eq!(
                body,
                json!({"message": "Too Many Requests", "retryAfterSeconds": 3})
            );
        }
        // ALB does not stream.
        assert!(
            !FrontDoor::Alb { multi_value: false }
                .shed_answer(3, true)
                .streaming
        );
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

    #[test]
    fn reads_what_the_class_rules_need_from_each_front_door() {
        let rules = Rules::new(
            Vec::new(),
            crate::decision::classes::Rules::parse_list("header:X-Priority")
                .collect::<Result<_, _>>()
                .unwrap(),
            Vec::new(),
        );
        let wanted = Wanted::of(&rules, None);
        let rest = json!({"httpMethod": "POST", "path": "/orders/7", "resource": "/orders/{id}",
            "headers": {"X-Priority": "high", "Accept": "*/*"},
            "multiValueHeaders": {"X-Priority": ["high", "low"]},
            "requestContext": {"stage": "prod", "httpMethod": "POST"}})
        .to_string();
        let r = read(rest.as_bytes(), &wanted).unwrap();
        assert_eq!(r.front_door, FrontDoor::ApiGatewayV1);
        assert_eq!(r.request.method.as_deref(), Some("POST"));
        assert_eq!(r.request.path.as_deref(), Some("/orders/7"));
        let headers: Vec<(&str, &str)> = r
            .request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("x-priority", "high"),
                ("x-priority", "high"),
                ("x-priority", "low")
            ]
        );
        // HTTP API 2.0: `rawPath` and `requestContext.http.method`; an escaped path is decoded.
        let v2 = r#"{"version": "2.0", "rawPath": "/caf\u00e9", "headers": {"x-priority": "1"},
            "requestContext": {"http": {"method": "GET", "path": "/ignored"}}}"#;
        let r = read(v2.as_bytes(), &wanted).unwrap();
        assert_eq!(r.front_door, FrontDoor::HttpApiV2);
        assert_eq!(r.request.method.as_deref(), Some("GET"));
        assert_eq!(r.request.path.as_deref(), Some("/caf\u{e9}"));
        assert_eq!(r.request.headers.len(), 1);
        // Without header rules no header is kept; a malformed path is no path, not no request.
        let odd = json!({"httpMethod": "GET", "path": 7, "headers": {"x-priority": "1"},
            "requestContext": {}})
        .to_string();
        let r = read(odd.as_bytes(), &Wanted::default()).unwrap();
        assert_eq!(r.request.path, None);
        assert!(r.request.headers.is_empty());
    }

    #[test]
    fn rules_may_name_the_headers_the_front_door_reads_itself() {
        let rules = Rules::new(
            Vec::new(),
            Vec::new(),
            crate::decision::classes::Rules::parse_list("header:user-agent,header:x-forwarded-for")
                .collect::<Result<_, _>>()
                .unwrap(),
        );
        let wanted = Wanted::of(&rules, None);
        let check = json!({"httpMethod": "GET", "path": "/", "headers": {"user-agent": "ELB-HealthChecker/2.0"},
            "requestContext": {"elb": {"targetGroupArn": "arn"}}})
        .to_string();
        assert!(
            read(check.as_bytes(), &wanted).is_none(),
            "still a health check"
        );
        let client = json!({"httpMethod": "GET", "path": "/", "headers": {"User-Agent": "bot/1",
            "X-Forwarded-For": "203.0.113.7"}, "requestContext": {"elb": {"targetGroupArn": "arn"}}})
        .to_string();
        let r = read(client.as_bytes(), &wanted).unwrap();
        assert_eq!(r.request.headers.len(), 2, "{:?}", r.request.headers);
    }

    #[test]
    fn odd_values_in_the_fields_read_for_rules_do_not_unmake_a_request() {
        let wanted = Wanted::of(
            &Rules::new(
                crate::decision::classes::Rules::parse_list("header:x-n")
                    .collect::<Result<_, _>>()
                    .unwrap(),
                Vec::new(),
                Vec::new(),
            ),
            None,
        );
        let v2 = json!({"version": "2.0", "rawPath": "/", "headers": {"x-n": 5},
            "requestContext": {"http": "GET"}})
        .to_string();
        let r = read(v2.as_bytes(), &wanted).unwrap();
        assert_eq!(r.front_door, FrontDoor::HttpApiV2);
        assert_eq!(r.request.method, None);
        let v1 = json!({"httpMethod": ["GET"], "path": {"a": 1}, "headers": {"x-n": {"k": true}},
            "requestContext": {}})
        .to_string();
        assert_eq!(
            read(v1.as_bytes(), &wanted).map(|r| r.front_door),
            Some(FrontDoor::ApiGatewayV1)
        );
    }

    #[test]
    fn the_body_is_stepped_over_whatever_it_holds() {
        let rest = |body: &str| {
            format!(
                r#"{{"body": "{body}", "httpMethod": "GET", "path": "/a", "requestContext": {{"identity": {{}}}}}}"#
            )
        };
        let wanted = Wanted::default();
        for body in [
            r#"\"httpMethod\": \"POST\", \"path\": \"/x\""#,
            r#"ends in a backslash \\"#,
            r#"\\\"\\"#,
            r#"\u0022 quoted \u005c"#,
            "",
        ] {
            let event = rest(body);
            let r = read(event.as_bytes(), &wanted).unwrap_or_else(|| panic!("{event}"));
            assert_eq!(r.front_door, FrontDoor::ApiGatewayV1);
            assert_eq!(r.request.method.as_deref(), Some("GET"), "{event}");
            assert_eq!(r.request.path.as_deref(), Some("/a"), "{event}");
        }
        // A large body, with a raw control character serde_json would refuse: stepped over,
        // not validated.
        let big = rest(&format!("{}\u{1}{}", "x".repeat(3 << 20), "y".repeat(100)));
        assert!(read(big.as_bytes(), &wanted).is_some());
        // Escaped member names are read as their names.
        let escaped = r#"{"\u0070ath": "/e", "httpMethod": "GET", "requestContext": {}}"#;
        let r = read(escaped.as_bytes(), &wanted).unwrap();
        assert_eq!(r.request.path.as_deref(), Some("/e"));
    }

    #[test]
    fn what_is_not_one_json_object_or_repeats_a_member_is_not_http() {
        let wanted = Wanted::default();
        let ok = r#" {"httpMethod": "GET", "path": "/", "requestContext": {}} "#;
        assert!(read(ok.as_bytes(), &wanted).is_some(), "whitespace around");
        for bad in [
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {}} x"#,
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {}}}"#,
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {},}"#,
            r#"{"httpMethod": "GET" "path": "/", "requestContext": {}}"#,
            r#"{"httpMethod" "GET", "path": "/", "requestContext": {}}"#,
            r#"{"httpMethod": "GET", "path": "/", "path": "/b", "requestContext": {}}"#,
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {}, "body": "open"#,
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {}, "n": 1x}"#,
            r#"{"httpMethod": "GET", "path": "/", "requestContext": {"#,
            "[]",
            "",
        ] {
            assert!(read(bad.as_bytes(), &wanted).is_none(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::config::rules::Rules;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// What the probe read of `event`, as text to compare.
    fn read_as_text(event: &[u8], wanted: &Wanted) -> String {
        format!("{:?}", read(event, wanted))
    }

    fn wanted() -> Wanted {
        let rules = Rules::new(
            Vec::new(),
            Rules::parse_list("header:x-priority=high")
                .filter_map(Result::ok)
                .collect(),
            Vec::new(),
        );
        Wanted::of(&rules, Some("x-tenant"))
    }

    /// Events of every front door and of none, with values drawn from text that JSON must
    /// escape.
    fn event() -> impl Strategy<Value = Value> {
        let text = "[ -~\u{e9}\u{2028}\\\\\"/]{0,16}";
        let door = 0usize..6;
        (door, text, text, text, any::<bool>()).prop_map(|(door, method, path, header, mv)| {
            let headers = json!({"X-Tenant": header, "x-priority": "high", "accept": "*/*"});
            let multi = json!({"X-Tenant": [header], "x-priority": ["high", "low"]});
            let mut v = match door {
                0 => json!({"resource": "/{proxy+}", "path": path, "httpMethod": method,
                    "requestContext": {"stage": "p", "identity": {"sourceIp": "203.0.113.1", "apiKey": header}}}),
                1 => json!({"version": "2.0", "rawPath": path,
                    "requestContext": {"http": {"method": method, "sourceIp": "203.0.113.1"}}}),
                2 => json!({"httpMethod": method, "path": path,
                    "requestContext": {"elb": {"targetGroupArn": "arn"}}}),
                3 => json!({"requestContext": {"connectionId": "c", "routeKey": path}}),
                4 => json!({"Records": [{"eventSource": "aws:sqs", "body": path}]}),
                _ => json!({"type": "REQUEST", "methodArn": "arn", "httpMethod": method,
                    "requestContext": {"stage": "p"}}),
            };
            v["headers"] = headers;
            if mv {
                v["multiValueHeaders"] = multi;
            }
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any bytes at all: the probe answers (an HTTP request or not), never panics.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = read(&bytes, &wanted());
        }

        /// An event cut short is never taken for a request: a client-facing 429 is only ever
        /// sent for an event read whole.
        #[test]
        fn an_event_cut_short_is_no_request(event in event(), cut in any::<usize>()) {
            let bytes = serde_json::to_vec(&event).unwrap();
            let cut = cut % bytes.len();
            prop_assert!(read(&bytes[..cut], &wanted()).is_none(), "{}", String::from_utf8_lossy(&bytes[..cut]));
        }

        /// How the event is laid out (compact or indented, escaped or not) changes nothing read.
        #[test]
        fn the_layout_of_an_event_changes_nothing_read(event in event()) {
            let compact = serde_json::to_vec(&event).unwrap();
            let pretty = serde_json::to_vec_pretty(&event).unwrap();
            let escaped = String::from_utf8(compact.clone())
                .unwrap()
                .replace('/', "\\/")
                .replace('\u{e9}', "\\u00e9");
            let once = read_as_text(&compact, &wanted());
            prop_assert_eq!(&once, &read_as_text(&pretty, &wanted()));
            prop_assert_eq!(&once, &read_as_text(escaped.as_bytes(), &wanted()));
        }
    }
}
