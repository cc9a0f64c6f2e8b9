//! The Runtime API proxy the function's runtime talks to: it forwards, holds `next` for a
//! decision, posts the 429s, and answers the wrapper's health probe and the status route.
//!
//! Two transports carry the runtime's connections: [`forwarder`], threads with blocking sockets
//! for the hot path (`next` and the runtime's answers, one read and one write a message), and
//! [`proxy`], hyper on the async runtime, for everything else (streamed answers, the proxy's own
//! routes) and for the events the decision parks. The forwarder reads and writes HTTP/1 with
//! [`wire`], which knows neither transport, and talks to Lambda through [`upstream`]; an event's
//! decision and its 429 are the proxy's (`Proxy::admit`), whichever transport fetched it.

pub(crate) mod forwarder;
pub mod proxy;
pub(crate) mod upstream;
pub(crate) mod wire;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use proxy::Proxy;

/// Serves the runtime's connections from `listener`: on threads with blocking sockets (the
/// forwarder), which serve for the life of the process; or, when no thread can be started, on
/// hyper until this task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let handle = tokio::runtime::Handle::current();
    let blocking = listener
        .into_std()
        .and_then(|l| l.set_nonblocking(false).map(|()| l));
    let listener = match blocking {
        Ok(listener) => match forwarder::start(proxy.clone(), listener, handle) {
            Ok(()) => return,
            Err((listener, e)) => {
                tracing::warn!(error = %e, "no thread for the runtime's connections; serving them on the async runtime");
                listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(listener))
            }
        },
        Err(e) => Err(e),
    };
    match listener {
        Ok(listener) => proxy.serve_async(listener).await,
        Err(e) => {
            tracing::error!(error = %e, "the proxy cannot accept connections; the function runs unprotected")
        }
    }
}
