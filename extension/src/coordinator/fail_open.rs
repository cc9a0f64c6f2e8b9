//! The fail-open policy, the same for every backend: a decision never waits on a shared count
//! that is slow, down, or unreachable after a freeze, and the count comes back to the truth once
//! the backend does.
//!
//! - Every round trip has a budget (`ADMISSION_COORDINATOR_TIMEOUT_MS`); past it the decision
//!   admits.
//! - A connection that errs is replaced in the background. One that only overran the budget may
//!   just have been slow (one reply among many on a multiplexed connection): it is checked with a
//!   ping, skipped meanwhile, and replaced only if the ping fails too (a socket that died during a
//!   freeze).
//! - After repeated failures the breaker skips the backend for `ADMISSION_COORDINATOR_BACKOFF_MS`,
//!   then probes. A failed connect waits out the same back-off, unless the attempt spanned a
//!   freeze.
//! - A lease that could not be returned is kept (a bounded list) and returned with the next round
//!   trip that gets through, or, if none comes (an environment left idle), by a try of its own
//!   every back-off period: a fault never leaves the fleet count high until the deadlines. (On
//!   demand, Lambda freezes an idle environment: its try comes when it thaws, beside the next
//!   event's acquire. Managed Instances are never frozen.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::breaker::Breaker;
use super::count::{BoxFuture, Coordinator, CoordinatorError, RideAlong, SharedCount};
use crate::config::SharedConfig;
use crate::decision::adaptive::{Closed, Sample};
use crate::lease::{Grant, Lease};

/// Leases kept for returning later, at most; past it the oldest are left to their deadlines.
pub const MAX_UNRETURNED: usize = 256;
/// How long a connection that overran the budget has to answer a ping: 20 budgets, within these.
const CHECK_GRACE_MIN: Duration = Duration::from_millis(100);
const CHECK_GRACE_MAX: Duration = Duration::from_secs(1);
/// The budget for returning every lease at SHUTDOWN (Lambda allows 2 s in all).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(500);
/// The budget for background notes (the shared limit): no decision waits on them.
const NOTE_BUDGET: Duration = Duration::from_secs(1);

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
    /// A connection that overran the budget is being pinged; skip it until then.
    checking: AtomicBool,
    /// After a failed connect, none is tried again before this.
    retry_at: Mutex<Option<Instant>>,
    breaker: Mutex<Breaker>,
    /// Leases this environment could not return yet.
    unreturned: Mutex<Vec<Box<str>>>,
    /// A try to return them is scheduled.
    returning_later: AtomicBool,
    /// Sheds not counted by the backend yet.
    unasked_sheds: AtomicU64,
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
                checking: AtomicBool::new(false),
                retry_at: Mutex::new(None),
                breaker: Mutex::new(Breaker::new(shared.backoff)),
                unreturned: Mutex::new(Vec::new()),
                returning_later: AtomicBool::new(false),
                unasked_sheds: AtomicU64::new(0),
            }),
        }
    }

    /// Starts connecting in the background unless connected, connecting, or backing off.
    pub fn connect_in_background(&self) {
        self.inner.connect_in_background();
    }
}

/// The outcome of one bounded round trip.
type Attempt<T> = Result<Result<T, String>, tokio::time::error::Elapsed>;

impl<B: SharedCount> Inner<B> {
    /// Background work on the live connection (the shared limit, the adaptive state): within
    /// [`NOTE_BUDGET`], outside any decision's; `None` when not connected, failed or late.
    async fn in_background<T, F>(&self, work: impl FnOnce(B::Connection) -> F) -> Option<T>
    where
        F: std::future::Future<Output = Result<T, String>>,
    {
        let (_, conn) = self.conn.lock().clone()?;
        tokio::time::timeout(NOTE_BUDGET, work(conn))
            .await
            .ok()?
            .ok()
    }

    fn connect_in_background(self: &Arc<Self>) {
        if self.conn.lock().is_some()
            || self.retry_at.lock().is_some_and(|at| Instant::now() < at)
            || self.connecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let connected = match this.backend.connect().await {
                Ok(conn) => {
                    let generation = this.generations.fetch_add(1, Ordering::Relaxed) + 1;
                    *this.retry_at.lock() = None;
                    *this.conn.lock() = Some((generation, conn));
                    true
                }
                Err(e) => {
                    tracing::warn!(coordinator = %this.backend.target(), error = %e, "cannot connect to the shared coordinator; admitting meanwhile");
                    // An attempt that outlived its own timeouts by far spanned a freeze: its
                    // failure says nothing about the backend, so try again at once.
                    let frozen = started.elapsed() > super::count::CONNECT_TIMEOUT * 2;
                    *this.retry_at.lock() = (!frozen).then(|| Instant::now() + this.backoff);
                    false
                }
            };
            this.connecting.store(false, Ordering::Release);
            // The new connection may have failed already, while this connect still counted as
            // under way: then nobody else started the next one.
            if connected && this.conn.lock().is_none() {
                this.connect_in_background();
            } else if connected {
                this.return_unreturned().await;
            }
        });
    }

    /// The connection to use now, or why there is none.
    fn ready(self: &Arc<Self>) -> Result<(u64, B::Connection), CoordinatorError> {
        let current = self.conn.lock().clone();
        let Some(current) = current else {
            self.connect_in_background();
            return Err(CoordinatorError::NotConnected);
        };
        if self.checking.load(Ordering::Acquire) {
            return Err(CoordinatorError::NotConnected);
        }
        if !self.breaker.lock().allow(Instant::now()) {
            return Err(CoordinatorError::BreakerOpen);
        }
        Ok(current)
    }

    /// Books the outcome of a round trip on `conn`: the breaker, and the connection's fate.
    fn settle<T>(
        self: &Arc<Self>,
        generation: u64,
        conn: B::Connection,
        attempt: Attempt<T>,
    ) -> Result<T, CoordinatorError> {
        let error = match attempt {
            Ok(Ok(value)) => {
                let mut breaker = self.breaker.lock();
                if breaker.is_open() {
                    tracing::info!(coordinator = %self.backend.target(), "shared coordinator answering again");
                }
                breaker.success();
                return Ok(value);
            }
            Ok(Err(e)) => {
                self.replace(generation);
                CoordinatorError::Backend(e)
            }
            Err(_) => {
                self.check(generation, conn);
                CoordinatorError::Timeout(self.budget)
            }
        };
        if self.breaker.lock().failure(Instant::now()) {
            tracing::warn!(
                coordinator = %self.backend.target(),
                error = %error,
                "shared coordinator failing; admitting without it for the back-off period"
            );
        }
        Err(error)
    }

    /// Pings a connection that overran the budget; replaces it if the ping fails too.
    fn check(self: &Arc<Self>, generation: u64, conn: B::Connection) {
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        /// Clears `checking` however the check ends.
        struct Checked<'a>(&'a AtomicBool);
        impl Drop for Checked<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _checked = Checked(&this.checking);
            let grace = (this.budget * 20).clamp(CHECK_GRACE_MIN, CHECK_GRACE_MAX);
            let alive = matches!(
                tokio::time::timeout(grace, this.backend.ping(conn)).await,
                Ok(Ok(()))
            );
            if alive {
                drop(_checked);
                this.return_unreturned().await;
            } else {
                this.replace(generation);
            }
        });
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

    /// Once the backend answers again, the leases kept meanwhile go back at once: an idle
    /// environment may not make another round trip for a long time.
    async fn return_unreturned(self: &Arc<Self>) {
        if !self.unreturned.lock().is_empty() {
            let _ = self.release(Vec::new(), self.budget, None).await;
        }
    }

    fn take_unreturned(&self) -> Vec<Box<str>> {
        std::mem::take(&mut *self.unreturned.lock())
    }

    /// Keeps `ids` for the next round trip, the newest `MAX_UNRETURNED` of them, and tries to
    /// return them after a back-off if no round trip comes first.
    fn keep_unreturned(self: &Arc<Self>, ids: impl IntoIterator<Item = Box<str>>) {
        {
            let mut kept = self.unreturned.lock();
            kept.extend(ids);
            let excess = kept.len().saturating_sub(MAX_UNRETURNED);
            if excess > 0 {
                kept.drain(..excess);
                tracing::debug!(
                    dropped = excess,
                    "too many leases to return; the oldest expire at their deadlines"
                );
            }
            if kept.is_empty() {
                return;
            }
        }
        self.return_later();
    }

    /// One try to return the kept leases, a back-off from now (one scheduled at a time; a try
    /// that fails keeps them and schedules the next).
    fn return_later(self: &Arc<Self>) {
        if self.returning_later.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.backoff.max(this.budget)).await;
            // A connect that failed meanwhile waits out its own back-off: so does this try.
            let retry_at = *this.retry_at.lock();
            if let Some(at) = retry_at {
                tokio::time::sleep_until(at.into()).await;
            }
            this.returning_later.store(false, Ordering::Release);
            this.return_unreturned().await;
        });
    }

    async fn release(
        self: &Arc<Self>,
        ids: Vec<Box<str>>,
        budget: Duration,
        sample: Option<Sample>,
    ) -> Result<Option<Closed>, CoordinatorError> {
        let mut ids = ids;
        ids.extend(self.take_unreturned());
        let (generation, conn) = match self.ready() {
            Ok(c) => c,
            Err(e) => {
                self.keep_unreturned(ids);
                return Err(e);
            }
        };
        let attempt =
            tokio::time::timeout(budget, self.backend.release(conn.clone(), &ids, sample)).await;
        let result = self.settle(generation, conn, attempt);
        if result.is_err() {
            self.keep_unreturned(ids);
        }
        result
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
        Box::pin(async move {
            let inner = &self.inner;
            let (generation, conn) = inner.ready()?;
            // Leases that could not be returned before ride along with this round trip.
            let returning = inner.take_unreturned();
            let unasked_sheds = inner.unasked_sheds.swap(0, Ordering::Relaxed);
            let along = RideAlong {
                returning: &returning,
                unasked_sheds,
            };
            let attempt = tokio::time::timeout(
                inner.budget,
                inner.backend.acquire(conn.clone(), lease, along),
            )
            .await;
            let result = inner.settle(generation, conn, attempt);
            if result.is_err() {
                inner.keep_unreturned(returning);
                inner
                    .unasked_sheds
                    .fetch_add(unasked_sheds, Ordering::Relaxed);
            }
            result
        })
    }

    fn release<'a>(
        &'a self,
        id: Option<&'a str>,
        sample: Option<Sample>,
    ) -> BoxFuture<'a, Result<Option<Closed>, CoordinatorError>> {
        let ids = id.into_iter().map(Box::from).collect();
        Box::pin(self.inner.release(ids, self.inner.budget, sample))
    }

    fn release_all(&self, ids: Vec<Box<str>>) -> BoxFuture<'_, Result<(), CoordinatorError>> {
        Box::pin(async move {
            self.inner
                .release(ids, SHUTDOWN_BUDGET.max(self.inner.budget), None)
                .await
                .map(drop)
        })
    }

    fn unreturned(&self) -> usize {
        self.inner.unreturned.lock().len()
    }

    fn return_with_next(&self, id: Box<str>) {
        self.inner.keep_unreturned([id]);
    }

    fn shed_unasked(&self) {
        self.inner.unasked_sheds.fetch_add(1, Ordering::Relaxed);
    }

    fn read_note<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let backend = &self.inner.backend;
            self.inner
                .in_background(|conn| backend.note(conn, name, None))
                .await?
        })
    }

    fn publish_adaptive<'a>(
        &'a self,
        window: u64,
        state: &'a str,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let backend = &self.inner.backend;
            self.inner
                .in_background(|conn| backend.publish(conn, window, state, limit, ttl))
                .await
                == Some(true)
        })
    }

    fn write_note<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let backend = &self.inner.backend;
            let note = Some((value, ttl, only_if_absent));
            self.inner
                .in_background(|conn| backend.note(conn, name, note))
                .await
                .is_some_and(|written| written.is_some())
        })
    }
}
