//! The fail-open policy, the same for every backend: a decision never waits on a shared count
//! that is slow, down, or unreachable after a freeze.
//!
//! Every round trip has a budget (`ADMISSION_COORDINATOR_TIMEOUT_MS`); a connection that fails or
//! overruns it is dropped and replaced in the background (after a freeze a socket may be dead
//! without knowing it), and decisions admit meanwhile. After repeated failures the breaker skips
//! the backend for `ADMISSION_COORDINATOR_BACKOFF_MS`, then probes. A failed connect waits out the
//! same back-off before the next one.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::breaker::Breaker;
use super::{BoxFuture, Coordinator, CoordinatorError, SharedCount};
use crate::config::SharedConfig;
use crate::lease::{Grant, Lease};

pub struct FailOpen<B: SharedCount> {
    inner: Arc<Inner<B>>,
}

struct Inner<B: SharedCount> {
    kind: &'static str,
    backend: B,
    budget: Duration,
    backoff: Duration,
    /// The live connection and its generation, so that a failure replaces the connection it
    /// happened on and never a newer one installed meanwhile.
    conn: Mutex<Option<(u64, B::Connection)>>,
    generations: AtomicU64,
    /// One connect at a time.
    connecting: AtomicBool,
    /// After a failed connect, none is tried again before this.
    retry_at: Mutex<Option<Instant>>,
    breaker: Mutex<Breaker>,
}

impl<B: SharedCount> FailOpen<B> {
    pub fn new(kind: &'static str, backend: B, shared: &SharedConfig) -> FailOpen<B> {
        FailOpen {
            inner: Arc::new(Inner {
                kind,
                backend,
                budget: shared.timeout,
                backoff: shared.backoff,
                conn: Mutex::new(None),
                generations: AtomicU64::new(0),
                connecting: AtomicBool::new(false),
                retry_at: Mutex::new(None),
                breaker: Mutex::new(Breaker::new(shared.backoff)),
            }),
        }
    }

    /// Starts connecting in the background unless connected, connecting, or backing off.
    pub fn connect_in_background(&self) {
        self.inner.connect_in_background();
    }
}

impl<B: SharedCount> Inner<B> {
    fn connect_in_background(self: &Arc<Self>) {
        if self.conn.lock().is_some()
            || self.retry_at.lock().is_some_and(|at| Instant::now() < at)
            || self.connecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let connected = match this.backend.connect().await {
                Ok(conn) => {
                    let generation = this.generations.fetch_add(1, Ordering::Relaxed) + 1;
                    *this.retry_at.lock() = None;
                    *this.conn.lock() = Some((generation, conn));
                    true
                }
                Err(e) => {
                    tracing::warn!(coordinator = %this.backend.target(), error = %e, "cannot connect to the shared coordinator; admitting meanwhile");
                    *this.retry_at.lock() = Some(Instant::now() + this.backoff);
                    false
                }
            };
            this.connecting.store(false, Ordering::Release);
            // The new connection may have failed already, while this connect still counted as
            // under way: then nobody else started the next one.
            if connected && this.conn.lock().is_none() {
                this.connect_in_background();
            }
        });
    }

    /// Runs one request within the budget, through the breaker; a failed connection is replaced.
    async fn call<'a, T, Fut>(
        self: &'a Arc<Self>,
        request: impl FnOnce(&'a B, B::Connection) -> Fut,
    ) -> Result<T, CoordinatorError>
    where
        Fut: Future<Output = Result<T, String>> + Send + 'a,
    {
        let current = self.conn.lock().clone();
        let Some((generation, conn)) = current else {
            self.connect_in_background();
            return Err(CoordinatorError::NotConnected);
        };
        if !self.breaker.lock().allow(Instant::now()) {
            return Err(CoordinatorError::BreakerOpen);
        }
        let error = match tokio::time::timeout(self.budget, request(&self.backend, conn)).await {
            Ok(Ok(value)) => {
                let mut breaker = self.breaker.lock();
                if breaker.is_open() {
                    tracing::info!(coordinator = %self.backend.target(), "shared coordinator answering again");
                }
                breaker.success();
                return Ok(value);
            }
            Ok(Err(e)) => CoordinatorError::Backend(e),
            // Overran the budget: maybe a socket that died during a freeze. Do not wait on it.
            Err(_) => CoordinatorError::Timeout(self.budget),
        };
        self.replace(generation);
        if self.breaker.lock().failure(Instant::now()) {
            tracing::warn!(
                coordinator = %self.backend.target(),
                error = %error,
                "shared coordinator failing; admitting without it for the back-off period"
            );
        }
        Err(error)
    }

    fn replace(self: &Arc<Self>, generation: u64) {
        {
            let mut conn = self.conn.lock();
            if conn.as_ref().is_some_and(|(g, _)| *g == generation) {
                *conn = None;
            }
        }
        self.connect_in_background();
    }
}

impl<B: SharedCount> Coordinator for FailOpen<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind
    }

    fn connected(&self) -> bool {
        self.inner.conn.lock().is_some()
    }

    fn acquire<'a>(&'a self, lease: Lease<'a>) -> BoxFuture<'a, Result<Grant, CoordinatorError>> {
        Box::pin(
            self.inner
                .call(move |backend, conn| backend.acquire(conn, lease)),
        )
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), CoordinatorError>> {
        Box::pin(
            self.inner
                .call(move |backend, conn| backend.release(conn, id)),
        )
    }
}
