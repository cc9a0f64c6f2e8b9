//! The hyper transport: the runtime's connections on the async runtime, for everything the
//! blocking one does not carry (streamed answers, `Expect: 100-continue`, odd heads, the proxy's
//! own routes) and for the connections it hands off.
//!
//! Everything is forwarded untouched, bodies streamed, except where the invocation core has a
//! say: `GET .../invocation/next` is the core's ([`Invocations::next`]: parked events, the fetch,
//! the decision, the shed posts), and a `POST .../invocation/{id}/response|error` returns its
//! lease once forwarded ([`Invocations::answering`]).
//!
//! Two routes of its own: [`HEALTH`], the wrapper's probe, and [`STATUS`], what the decision sees.
//!
//! The proxy must never lose or alter an invocation: errors here turn into a plain forward, or,
//! when the real Runtime API itself cannot be reached, a 502 the runtime reports as it would any
//! Runtime API failure.

use bytes::Bytes;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::decision::admission;
use crate::decision::limit::{Limit, LimitSender, LimitSource};
use crate::http as plumbing;
pub(crate) use crate::http::Body;
use crate::runtime_api::invocation::{HandOff, HandedOff, Invocations};
use crate::runtime_api::wire::{answered_invocation, MAX_HEAD_BYTES, NEXT};
use crate::warnings::Warnings;

/// Answered by the proxy itself, so the wrapper can tell this proxy from anything else on the port.
pub const HEALTH: &str = "/lambda-admission/health";
/// The body of [`HEALTH`]'s answer, which the wrapper checks.
pub const HEALTH_BODY: &str = "lambda-admission";
/// What the decision sees, as JSON: for handlers that degrade under load, and for tests.
pub const STATUS: &str = "/lambda-admission/v1/status";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid upstream {0:?}: {1}")]
    Upstream(String, http::uri::InvalidUri),
}

pub struct Proxy {
    /// The invocations this transport carries, as the blocking one does.
    core: Arc<Invocations>,
    /// Managed Instances without `ADMISSION_LIMIT`: the runtime's concurrency, which only the
    /// wrapper sees (it runs in the runtime's environment), is the limit.
    concurrency: Option<LimitSender>,
    /// Off mode's status: what the configuration alone says (with a decision, it says it).
    warnings: Warnings,
}

impl Proxy {
    pub fn new(
        config: &Config,
        admission: Option<Arc<admission::Admission>>,
        concurrency: Option<LimitSender>,
    ) -> Result<Proxy, ProxyError> {
        let core = Invocations::new(config, admission)
            .map_err(|e| ProxyError::Upstream(config.upstream.clone(), e))?;
        Ok(Proxy {
            core: Arc::new(core),
            concurrency,
            warnings: Warnings::new(config),
        })
    }

    /// The invocation core, which the blocking transport drives too.
    pub fn invocations(&self) -> &Arc<Invocations> {
        &self.core
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

    /// Serves the connections the blocking transport gives up, each from where it left off,
    /// until the channel closes.
    pub(crate) async fn serve_hand_offs(self: Arc<Self>, mut handed_off: HandedOff) {
        while let Some(HandOff { stream, unread }) = handed_off.recv().await {
            let stream = match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "a runtime connection could not be handed over; dropped");
                    continue;
                }
            };
            tokio::spawn(self.clone().serve_connection(Prefixed { unread, stream }));
        }
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
                        .core
                        .admission()
                        .map_or_else(|| admission::off_status(&self.warnings), |a| a.status());
                    return plumbing::json_response(StatusCode::OK, &status);
                }
                _ => {}
            }
        }
        let lambda = self.core.lambda();
        if self.core.admission().is_none() {
            return lambda.forward(req.map(BodyExt::boxed)).await;
        }
        if req.method() == Method::GET && path == NEXT {
            self.core.runtime_ready();
            return self.core.next(req.headers().clone()).await;
        }
        if req.method() == Method::POST {
            if let Some(id) = answered_invocation(path) {
                let release = self
                    .core
                    .answering(id, path.ends_with("/error"), req.headers());
                let response = lambda.forward(req.map(BodyExt::boxed)).await;
                if let Some(release) = release {
                    release.now().await;
                }
                return response;
            }
        }
        lambda.forward(req.map(BodyExt::boxed)).await
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
