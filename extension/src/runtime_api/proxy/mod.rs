//! The Runtime API proxy: the runtime talks to it as if it were Lambda's Runtime API.
//!
//! Everything is forwarded untouched, bodies streamed, except in two places:
//! - `GET .../invocation/next`: the event is held while admission decides. A shed event is
//!   answered upstream by the proxy itself and the proxy fetches the next event instead, so the
//!   runtime never sees it. At most once: the event goes to the runtime only if the answer
//!   certainly never reached Lambda (no connection); a post that times out or is refused may
//!   have been recorded, and the client must not get a 429 for a request that also runs. The
//!   fetch runs apart from the runtime's connection: an event that arrives after the runtime hung
//!   up is kept for its next `next` call, never dropped.
//! - `POST .../invocation/{id}/response` and `.../error`: once forwarded, the lease is returned,
//!   before the runtime learns the post went through, hence before its next `next` call (and
//!   even if the runtime hangs up meanwhile). A streamed HTTP answer teaches the proxy to post
//!   its 429s streamed too (`ADMISSION_RESPONSE_MODE=auto`).
//!
//! Two routes of its own: [`HEALTH`], the wrapper's probe, and [`STATUS`], what the decision sees.
//!
//! The proxy must never lose or alter an invocation: errors here turn into a plain forward, or,
//! when the real Runtime API itself cannot be reached, a 502 the runtime reports as it would any
//! Runtime API failure.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{Config, ResponseMode};
use crate::decision::admission::{self, Admission};
use crate::decision::limit::{Limit, LimitSender, LimitSource};
pub(crate) use crate::http::Body;
use crate::http::{self as plumbing, full_body, HttpClient};
use crate::lease::Deadline;

mod next;
mod shed;
use crate::runtime_api::wire::{
    answered_invocation, DEADLINE_MS, HOP_BY_HOP, MAX_HEAD_BYTES, NEXT, RESPONSE_MODE,
};
use crate::warnings::Warnings;

/// Answered by the proxy itself, so the wrapper can tell this proxy from anything else on the port.
pub const HEALTH: &str = "/lambda-admission/health";
/// The body of [`HEALTH`]'s answer, which the wrapper checks.
pub const HEALTH_BODY: &str = "lambda-admission";
/// What the decision sees, as JSON: for handlers that degrade under load, and for tests.
pub const STATUS: &str = "/lambda-admission/v1/status";
/// The content type of a streamed HTTP integration response.
const HTTP_INTEGRATION_RESPONSE: &str = "application/vnd.awslambda.http-integration-response";
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid upstream {0:?}: {1}")]
    Upstream(String, http::uri::InvalidUri),
}

pub struct Proxy {
    upstream: Authority,
    /// `host:port` of the Runtime API, for the blocking forwarder's connections.
    address: String,
    /// The `Host` header for upstream requests, built once.
    host: HeaderValue,
    client: HttpClient,
    /// `None` in `off` mode: every request is a plain forward.
    admission: Option<Arc<Admission>>,
    response_mode: ResponseMode,
    /// The runtime has posted a streamed HTTP answer: its front door streams.
    runtime_streams: AtomicBool,
    /// Events fetched for a runtime that hung up before they arrived, oldest first.
    parked: Mutex<VecDeque<Fetched>>,
    /// An event was parked: a `next` call waiting on its own fetch takes it instead.
    parked_arrived: tokio::sync::Notify,
    /// `next` fetches under way upstream. The blocking forwarder fetches only when none is: a
    /// second `next` (a runtime that hung up and asks again) must also watch for parked events,
    /// which only the async path does.
    pub(crate) fetching: AtomicUsize,
    /// Managed Instances without `ADMISSION_LIMIT`: the runtime's concurrency, which only the
    /// wrapper sees (it runs in the runtime's environment), is the limit.
    concurrency: Option<LimitSender>,
    /// Off mode's status: what the configuration alone says (with a decision, it says it).
    warnings: Warnings,
}

/// An event as Lambda handed it out: its head and its body.
pub(crate) struct Fetched {
    pub(crate) parts: http::response::Parts,
    pub(crate) event: Bytes,
}

/// Counts a `next` fetch under way while it lives.
pub(crate) struct Fetching(Arc<Proxy>);

impl Fetching {
    fn add(proxy: &Arc<Proxy>) -> Fetching {
        proxy.fetching.fetch_add(1, Ordering::AcqRel);
        Fetching(proxy.clone())
    }

    /// The only fetch under way, or none if another is.
    pub(crate) fn alone(proxy: &Arc<Proxy>) -> Option<Fetching> {
        proxy
            .fetching
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Fetching(proxy.clone()))
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.fetching.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Fetched {
    fn into_response(self) -> Response<Body> {
        Response::from_parts(self.parts, full_body(self.event))
    }
}

/// Returns `id`'s lease when dropped, if nobody did before: a runtime that hangs up mid-answer
/// must not leave its lease behind.
struct Release {
    admission: Arc<Admission>,
    id: Option<String>,
    /// The runtime answered with an error: its duration says nothing of the downstream.
    errored: bool,
}

impl Release {
    async fn now(mut self) {
        if let Some(id) = self.id.take() {
            self.admission.release(&id, self.errored).await;
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let admission = self.admission.clone();
            // The runtime hung up mid-answer: no sample.
            runtime.spawn(async move { admission.release(&id, true).await });
        }
    }
}

impl Proxy {
    pub fn new(
        config: &Config,
        admission: Option<Arc<Admission>>,
        concurrency: Option<LimitSender>,
    ) -> Result<Proxy, ProxyError> {
        let upstream = config
            .upstream
            .parse::<Authority>()
            .map_err(|e| ProxyError::Upstream(config.upstream.clone(), e))?;
        // An authority is always a valid header value.
        let host = HeaderValue::from_str(upstream.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Ok(Proxy {
            address: upstream.as_str().to_string(),
            upstream,
            host,
            client: plumbing::client(),
            admission,
            response_mode: config.response_mode,
            runtime_streams: AtomicBool::new(false),
            parked: Mutex::new(VecDeque::new()),
            parked_arrived: tokio::sync::Notify::new(),
            fetching: AtomicUsize::new(0),
            concurrency,
            warnings: Warnings::new(config),
        })
    }

    pub(crate) fn upstream_address(&self) -> &str {
        &self.address
    }

    pub(crate) fn admission(&self) -> Option<&Arc<Admission>> {
        self.admission.as_ref()
    }

    pub(crate) fn take_parked(&self) -> Option<Fetched> {
        self.parked.lock().pop_front()
    }

    /// Keeps an event whose runtime hung up for the next `next` call, waking one that waits.
    pub(crate) fn park(&self, fetched: Fetched) {
        self.parked.lock().push_back(fetched);
        self.parked_arrived.notify_waiters();
    }

    /// Serves connections from `listener` on hyper until the task is dropped.
    pub async fn serve_async(self: Arc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().serve_connection(Prefixed {
                unread: Bytes::new(),
                stream,
            }));
        }
    }

    /// Serves a connection on hyper from here on; `unread` came from it already.
    pub(crate) fn hand_off(
        self: Arc<Self>,
        stream: std::net::TcpStream,
        unread: Bytes,
        handle: &tokio::runtime::Handle,
    ) {
        handle.spawn(async move {
            let stream = match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "a runtime connection could not be handed over; dropped");
                    return;
                }
            };
            self.serve_connection(Prefixed {
                unread,
                stream,
            })
            .await;
        });
    }

    async fn serve_connection(self: Arc<Self>, io: Prefixed) {
        let proxy = self;
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES + 64 * 1024)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(io), service)
            .await
        {
            tracing::debug!(error = %e, "runtime connection ended with an error");
        }
    }

    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if req.method() == Method::GET {
            match path {
                HEALTH => {
                    self.learn_concurrency(req.uri().query());
                    return plumbing::response(StatusCode::OK, HEALTH_BODY);
                }
                STATUS => {
                    let status = self
                        .admission
                        .as_ref()
                        .map_or_else(|| admission::off_status(&self.warnings), |a| a.status());
                    return plumbing::json_response(StatusCode::OK, &status);
                }
                _ => {}
            }
        }
        let Some(admission) = &self.admission else {
            return self.forward(req.map(BodyExt::boxed)).await;
        };
        if req.method() == Method::GET && path == NEXT {
            admission.runtime_ready();
            return self.next(admission.clone(), req.headers().clone()).await;
        }
        if req.method() == Method::POST {
            if let Some(id) = answered_invocation(path) {
                self.learn_response_mode(req.headers());
                let release = Release {
                    admission: admission.clone(),
                    id: Some(id.to_string()),
                    errored: path.ends_with("/error"),
                };
                let response = self.forward(req.map(BodyExt::boxed)).await;
                release.now().await;
                return response;
            }
        }
        self.forward(req.map(BodyExt::boxed)).await
    }

    /// The wrapper's probe carries `max-concurrency=N` on Managed Instances.
    fn learn_concurrency(&self, query: Option<&str>) {
        let Some(limit) = &self.concurrency else {
            return;
        };
        let n = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("max-concurrency="))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| (1..=100_000).contains(n));
        if let Some(n) = n {
            let learnt = Limit::new(n, LimitSource::ManagedInstances);
            if limit.send_replace(Some(learnt)) != Some(learnt) {
                tracing::info!(
                    limit = n,
                    "Managed Instances: the runtime's concurrency is the limit"
                );
            }
        }
    }

    fn learn_response_mode(&self, headers: &HeaderMap) {
        let streamed_http = headers
            .get(RESPONSE_MODE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"))
            && headers.get(header::CONTENT_TYPE).is_some_and(|v| {
                v.as_bytes()
                    .starts_with(HTTP_INTEGRATION_RESPONSE.as_bytes())
            });
        if streamed_http && !self.runtime_streams.swap(true, Ordering::Relaxed) {
            tracing::info!("the runtime streams its HTTP answers: 429s are streamed from now on");
        }
    }

    fn streams(&self) -> bool {
        match self.response_mode {
            ResponseMode::Buffered => false,
            ResponseMode::Streaming => true,
            ResponseMode::Auto => self.runtime_streams.load(Ordering::Relaxed),
        }
    }

    async fn forward(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = self.upstream_uri(pq);
        let req = prepare(Request::from_parts(parts, body), &self.host);
        match self.client.request(req).await {
            Ok(r) => r.map(BodyExt::boxed),
            Err(e) => bad_gateway(&e),
        }
    }

    fn upstream_uri(&self, pq: PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.upstream.clone());
        parts.path_and_query = Some(pq);
        // Scheme, authority and path are each valid, so the URI is too.
        Uri::from_parts(parts).unwrap_or_default()
    }
}

/// Strips what belongs to the runtime's connection, not to the message.
fn prepare(mut req: Request<Body>, host: &HeaderValue) -> Request<Body> {
    let h = req.headers_mut();
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    h.insert(header::HOST, host.clone());
    req
}

fn deadline(headers: &HeaderMap) -> Deadline {
    Deadline::from_unix_ms(
        headers
            .get(DEADLINE_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
    )
}

pub(crate) fn bad_gateway(e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "Lambda Runtime API unreachable");
    let body = json!({
        "errorMessage": format!("lambda-admission: Runtime API unreachable: {e}"),
        "errorType": "Extension.ProxyUpstreamError",
    });
    plumbing::json_response(StatusCode::BAD_GATEWAY, &body)
}

/// A connection handed to hyper with bytes already read from it, which hyper reads first.
struct Prefixed {
    unread: Bytes,
    stream: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            let head = self.unread.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_answered_invocation() {
        let p = "/2018-06-01/runtime/invocation/abc-123/response";
        assert_eq!(answered_invocation(p), Some("abc-123"));
        let p = "/2018-06-01/runtime/invocation/abc/error";
        assert_eq!(answered_invocation(p), Some("abc"));
        assert_eq!(answered_invocation(NEXT), None);
        assert_eq!(
            answered_invocation("/2018-06-01/runtime/invocation//response"),
            None
        );
        assert_eq!(
            answered_invocation("/2018-06-01/runtime/invocation/a/b/response"),
            None
        );
        assert_eq!(answered_invocation("/2018-06-01/runtime/init/error"), None);
    }
}
