//! A minimal runtime that the tests drive by hand: it takes events and answers them when told,
//! so a test can hold invocations in flight.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Longer than any test waits for an event on purpose; shorter than the test harness's patience.
pub const NEXT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct RuntimeClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RuntimeClient {
    /// A runtime talking to the Runtime API at `host:port`.
    pub fn new(address: &str) -> RuntimeClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        RuntimeClient {
            base: format!("http://{address}/2018-06-01/runtime"),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Waits for an event, at most [`NEXT_TIMEOUT`]: a test that expects one fails, not hangs.
    pub async fn next(&self) -> Event {
        let req = Request::get(format!("{}/invocation/next", self.base))
            .body(Full::default())
            .expect("request");
        let r = tokio::time::timeout(NEXT_TIMEOUT, self.client.request(req))
            .await
            .expect("no event reached the runtime in time")
            .expect("next");
        assert_eq!(r.status(), StatusCode::OK, "next failed");
        let headers = r.headers().clone();
        let body = r
            .into_body()
            .collect()
            .await
            .expect("event body")
            .to_bytes();
        let id = headers["lambda-runtime-aws-request-id"]
            .to_str()
            .expect("id")
            .to_string();
        Event { id, headers, body }
    }

    pub async fn respond(&self, id: &str, body: impl Into<Bytes>) -> StatusCode {
        self.post(&format!("invocation/{id}/response"), body.into(), None)
            .await
    }

    pub async fn error(&self, id: &str, error_type: &str, body: impl Into<Bytes>) -> StatusCode {
        self.post(
            &format!("invocation/{id}/error"),
            body.into(),
            Some(error_type),
        )
        .await
    }

    async fn post(&self, path: &str, body: Bytes, error_type: Option<&str>) -> StatusCode {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = error_type {
            req = req.header("lambda-runtime-function-error-type", t);
        }
        let r = self
            .client
            .request(req.body(Full::new(body)).expect("request"))
            .await
            .expect("post");
        let status = r.status();
        let _ = r.into_body().collect().await;
        status
    }
}
