//! The forwarder's threads, bounded. Each blocks in `accept`, serves what it accepted, and
//! accepts again; the last idle one to accept starts another, so a thread is always waiting. A
//! thread keeps its connection to the Runtime API from one runtime connection to the next (some
//! runtime clients open one per request).
//!
//! Two bounds keep a runtime that opens many connections from spending the function's memory on
//! threads: at most [`MAX_THREADS`], and a connection that sends no request for [`IDLE`] gives
//! its thread up. Either way the connection waits on the async runtime, a socket and a small
//! task, until its next request arrives; then a thread serves it if one is free, else hyper does.
//! A thread left with nothing to do ends when [`MAX_IDLE`] others already wait.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::serve;
use crate::runtime_api::invocation::{HandOff, HandOffs, Invocations};
use crate::runtime_api::upstream::Upstream;

/// Idle threads kept waiting for a connection; more end when their connection does. Runtimes
/// keep one connection per concurrent invocation, and some open one per request.
const MAX_IDLE: usize = 4;
/// Threads serving runtime connections, at most: one connection per concurrent invocation, one
/// on demand and tens on Managed Instances. Beyond them hyper serves, once a request comes.
pub(super) const MAX_THREADS: usize = 32;
/// How long a runtime connection may send no request and keep its thread (an invocation the
/// runtime handles for longer pays a thread start, tens of microseconds, when it answers).
pub(crate) const IDLE: Duration = Duration::from_secs(5);

pub(crate) struct Workers {
    listener: std::net::TcpListener,
    /// Threads waiting in `accept`.
    idle: AtomicUsize,
    /// Threads alive.
    threads: AtomicUsize,
    pub(super) core: Arc<Invocations>,
    /// Where the connections this transport gives up go (the hyper transport).
    hand_offs: HandOffs,
    pub(super) handle: Handle,
}

/// Why no thread was started.
enum NoThread {
    /// [`MAX_THREADS`] are serving.
    Busy,
    Failed(io::Error),
}

/// Starts serving `listener` on threads; gives it back if not even one can be started.
pub(crate) fn start(
    core: Arc<Invocations>,
    hand_offs: HandOffs,
    listener: std::net::TcpListener,
    handle: Handle,
) -> Result<(), (std::net::TcpListener, io::Error)> {
    let workers = Arc::new(Workers {
        listener,
        idle: AtomicUsize::new(0),
        threads: AtomicUsize::new(0),
        core,
        hand_offs,
        handle,
    });
    match spawn(&workers, None) {
        Ok(()) => Ok(()),
        Err((_, why)) => match Arc::try_unwrap(workers) {
            Ok(w) => Err((w.listener, why.into())),
            // The thread started after all.
            Err(_) => Ok(()),
        },
    }
}

impl From<NoThread> for io::Error {
    fn from(why: NoThread) -> io::Error {
        match why {
            NoThread::Busy => io::Error::other("every runtime-connection thread is serving"),
            NoThread::Failed(e) => e,
        }
    }
}

/// Starts a thread that serves `first`, if given, then accepts; without one it accepts at once
/// (and counts as idle from now on). Not started, `first` comes back.
fn spawn(
    workers: &Arc<Workers>,
    first: Option<TcpStream>,
) -> Result<(), (Option<TcpStream>, NoThread)> {
    if workers.threads.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
        workers.threads.fetch_sub(1, Ordering::AcqRel);
        return Err((first, NoThread::Busy));
    }
    let accepting = first.is_none();
    if accepting {
        workers.idle.fetch_add(1, Ordering::AcqRel);
    }
    // Kept here until the thread takes it, so that a thread that does not start gives it back.
    let slot = Arc::new(Mutex::new(first));
    let (w, taken) = (workers.clone(), slot.clone());
    let started = std::thread::Builder::new()
        .name("runtime-connections".into())
        .stack_size(2 << 20)
        .spawn(move || {
            let _alive = Alive(w.clone());
            let first = taken.lock().take();
            work(&w, first);
        });
    started.map(drop).map_err(|e| {
        workers.threads.fetch_sub(1, Ordering::AcqRel);
        if accepting {
            workers.idle.fetch_sub(1, Ordering::AcqRel);
        }
        (slot.lock().take(), NoThread::Failed(e))
    })
}

/// Counts its thread among the live ones until the thread ends, however it ends.
struct Alive(Arc<Workers>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.threads.fetch_sub(1, Ordering::AcqRel);
    }
}

fn work(workers: &Arc<Workers>, first: Option<TcpStream>) {
    // Tasks spawned from here (the decision's background work) go to the async runtime.
    let _context = workers.handle.enter();
    let mut lambda = Upstream::new(workers.core.lambda().address());
    if let Some(stream) = first {
        lambda = serve(workers, stream, lambda);
        if !workers.back_to_accept() {
            return;
        }
    }
    loop {
        let stream = match workers.listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if workers.idle.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Err((_, why)) = spawn(workers, None) {
                // No other thread to accept: this connection waits for its request on the async
                // runtime (then a thread serves it if one is free, else hyper), this one accepts.
                why.log("no thread for another runtime connection");
                workers.idle.fetch_add(1, Ordering::AcqRel);
                workers.rest(stream);
                continue;
            }
        }
        lambda = serve(workers, stream, lambda);
        if !workers.back_to_accept() {
            return;
        }
    }
}

impl NoThread {
    fn log(&self, what: &str) {
        match self {
            // Expected of a runtime with many connections: debug only.
            NoThread::Busy => tracing::debug!("{what}: {MAX_THREADS} threads busy"),
            NoThread::Failed(e) => tracing::warn!(error = %e, "{what}"),
        }
    }
}

impl Workers {
    /// A thread done with its connection accepts again, or ends if enough others do.
    fn back_to_accept(&self) -> bool {
        if self.idle.fetch_add(1, Ordering::AcqRel) >= MAX_IDLE {
            self.idle.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives a connection, with the bytes already read from it, to the hyper transport.
    pub(super) fn hand_off(&self, stream: TcpStream, unread: Bytes) {
        if self.hand_offs.send(HandOff { stream, unread }).is_err() {
            tracing::warn!("a runtime connection could not be handed over; dropped");
        }
    }

    /// Keeps an idle connection on the async runtime until its next request comes (then a
    /// thread serves it again, or hyper if none can) or it closes.
    pub(super) fn rest(self: &Arc<Self>, stream: TcpStream) {
        let workers = self.clone();
        self.handle.spawn(async move {
            let waiting = match stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(stream))
            {
                Ok(waiting) => waiting,
                Err(e) => {
                    tracing::warn!(error = %e, "an idle runtime connection could not be kept; dropped");
                    return;
                }
            };
            let mut byte = [0u8; 1];
            if !matches!(waiting.peek(&mut byte).await, Ok(n) if n > 0) {
                return; // closed by the runtime
            }
            let stream = match waiting.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "an idle runtime connection could not be resumed; dropped");
                    return;
                }
            };
            match stream.set_nonblocking(false) {
                Ok(()) => workers.resume(stream),
                // Not for a thread, then: hyper reads it without blocking.
                Err(_) => workers.hand_off(stream, Bytes::new()),
            }
        });
    }

    /// A rested connection's next request came: a thread serves it, else hyper.
    fn resume(self: &Arc<Self>, stream: TcpStream) {
        if let Err((stream, why)) = spawn(self, Some(stream)) {
            why.log("no thread for a runtime connection's next request; serving it on the async runtime");
            if let Some(stream) = stream {
                self.hand_off(stream, Bytes::new());
            }
        }
    }
}
