//! The one HTTP/1 server loop of the emulated services: accept on a loopback listener, serve each
//! connection with keep-alive and `TCP_NODELAY`, answer every request with `handler`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves `listener` in the background until the process ends.
pub fn spawn<H, Fut, B>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                // Lambda takes request heads of a MiB and more (X-Ray error causes).
                let _ = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(4 * 1024 * 1024)
                    .max_header_size(4 * 1024 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
