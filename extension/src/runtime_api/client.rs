//! The async way to Lambda's Runtime API (a keep-alive hyper client): the events the invocation
//! core fetches on the async path, its shed posts, and whatever the hyper transport forwards.
//! The blocking transport has its own connection ([`super::upstream`]).

use http::header::{self, HeaderValue};
use http::uri::{Authority, InvalidUri, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::http::{self as plumbing, Body, HttpClient};
use crate::runtime_api::wire::HOP_BY_HOP;

/// Lambda's Runtime API, reached over hyper.
pub(crate) struct Lambda {
    upstream: Authority,
    /// The `Host` header for upstream requests, built once.
    host: HeaderValue,
    client: HttpClient,
}

/// Why a request to Lambda got no answer.
pub(crate) type SendError = hyper_util::client::legacy::Error;

impl Lambda {
    pub(crate) fn new(upstream: &str) -> Result<Lambda, InvalidUri> {
        let upstream = upstream.parse::<Authority>()?;
        // An authority is always a valid header value.
        let host = HeaderValue::from_str(upstream.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Ok(Lambda {
            upstream,
            host,
            client: plumbing::client(),
        })
    }

    /// `host:port` of the Runtime API, for connections of one's own.
    pub(crate) fn address(&self) -> &str {
        self.upstream.as_str()
    }

    pub(crate) fn uri(&self, pq: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.upstream.clone());
        parts.path_and_query = Some(pq);
        // Scheme, authority and path are each valid, so the URI is too.
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// Sends `req` (its URI already Lambda's) without what belongs to the runtime's connection.
    pub(crate) async fn send(
        &self,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let h = req.headers_mut();
        for name in HOP_BY_HOP {
            h.remove(name);
        }
        h.insert(header::HOST, self.host.clone());
        self.client.request(req).await
    }

    /// Forwards the runtime's request to the same path upstream: Lambda's answer, or a 502.
    pub(crate) async fn forward(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = self.uri(pq);
        match self.send(Request::from_parts(parts, body)).await {
            Ok(r) => r.map(BodyExt::boxed),
            Err(e) => bad_gateway(&e),
        }
    }
}

/// What the runtime gets when the Runtime API cannot be reached: an error it reports as it would
/// any Runtime API failure.
pub(crate) fn bad_gateway(e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "Lambda Runtime API unreachable");
    let body = json!({
        "errorMessage": format!("lambda-admission: Runtime API unreachable: {e}"),
        "errorType": "Extension.ProxyUpstreamError",
    });
    plumbing::json_response(StatusCode::BAD_GATEWAY, &body)
}
