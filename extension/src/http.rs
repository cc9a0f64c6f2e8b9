//! HTTP plumbing shared by the two APIs the extension speaks: the Extensions API (as a client)
//! and the Runtime API (as a proxy). One body type, one client, nothing protocol-specific.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub type Body = BoxBody<Bytes, hyper::Error>;
pub type HttpClient = Client<HttpConnector, Body>;

/// How long a pooled connection may stay idle: a burst of concurrent posts (a slow
/// acknowledgement, many sheds) opens connections that are not kept past it.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A keep-alive HTTP/1 client with `TCP_NODELAY`: every request here is small and latency-bound.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

pub fn full_body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    full_body(Bytes::new())
}

pub fn response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full_body(body));
    *r.status_mut() = status;
    r
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = response(status, body.to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
