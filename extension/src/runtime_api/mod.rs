//! The Runtime API proxy the function's runtime talks to: it forwards, holds `next` for a
//! decision, posts the 429s, and answers the wrapper's health probe and the status route.
//!
//! - [`invocation`]: the invocation core, which knows no transport: an event's fetch on the
//!   async path, its decision and **the 429 a shed event gets** (`invocation/shed.rs`:
//!   `Invocations::admit`, `post_shed`), parking, and the lease's release.
//! - Two transports drive it. [`forwarder`]: threads with blocking sockets for the hot path
//!   (`next` and the runtime's answers, one read and one write a message), over the HTTP/1
//!   framing in [`wire`], which knows neither transport, and its own keep-alive connection to
//!   Lambda ([`upstream`]). [`proxy`]: hyper on the async runtime, for everything else (streamed
//!   answers, the proxy's own routes) and for the connections the forwarder gives up, which reach
//!   it as an [`invocation::HandOff`]. Neither transport calls the other.
//! - `client`: the async way to Lambda, for the core and the hyper transport.

mod client;
pub(crate) mod forwarder;
pub mod invocation;
pub mod proxy;
pub(crate) mod upstream;
pub(crate) mod wire;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use proxy::Proxy;

/// Serves the runtime's connections from `listener`: on threads with blocking sockets (the
/// forwarder), which serve for the life of the process and hand what they do not carry to hyper;
/// or, when no thread can be started, on hyper until this task is dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let handle = tokio::runtime::Handle::current();
    let blocking = listener
        .into_std()
        .and_then(|l| l.set_nonblocking(false).map(|()| l));
    let (hand_offs, handed_off) = invocation::hand_offs();
    let listener = match blocking {
        Ok(listener) => {
            let core = proxy.invocations().clone();
            match forwarder::start(core, hand_offs, listener, handle) {
                Ok(()) => return proxy.serve_hand_offs(handed_off).await,
                Err((listener, e)) => {
                    tracing::warn!(error = %e, "no thread for the runtime's connections; serving them on the async runtime");
                    listener
                        .set_nonblocking(true)
                        .and_then(|()| TcpListener::from_std(listener))
                }
            }
        }
        Err(e) => Err(e),
    };
    match listener {
        Ok(listener) => proxy.serve_async(listener).await,
        Err(e) => {
            tracing::error!(error = %e, "the proxy cannot accept connections; the function runs unprotected")
        }
    }
}
