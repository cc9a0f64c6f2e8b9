//! What a shared count is, seen from both sides: [`SharedCount`], what a backend provides (one
//! round trip a method), and [`Coordinator`], what the decision sees of one once the fail-open
//! policy wraps it; the errors and the notes that ride along with an acquire.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::decision::adaptive::{Closed, Sample};
use crate::lease::{Grant, Lease};

/// How long a backend may take to connect (in the background: no decision waits on it).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("coordinator error: {0}")]
    Backend(String),
    #[error("coordinator did not answer within {0:?}")]
    Timeout(Duration),
    #[error("coordinator skipped after repeated failures (circuit breaker open)")]
    BreakerOpen,
    #[error("coordinator not connected yet")]
    NotConnected,
}

impl CoordinatorError {
    /// Whether the request went out, so the count may have taken the lease anyway (its reply
    /// lost or late); a round trip skipped took nothing.
    pub fn may_have_counted(&self) -> bool {
        matches!(
            self,
            CoordinatorError::Backend(_) | CoordinatorError::Timeout(_)
        )
    }
}

/// A shared count of leases: what a backend (Redis, Valkey, ...) provides. Every method is one
/// round trip; none retries, times out or reconnects on its own: [`super::FailOpen`] does that.
pub trait SharedCount: Send + Sync + 'static {
    /// A live connection; cloned for every request (backends multiplex).
    type Connection: Clone + Send + Sync + 'static;

    /// Where the count lives, for logs: never with credentials.
    fn target(&self) -> String;

    fn connect(&self) -> impl Future<Output = Result<Self::Connection, String>> + Send;

    /// Returns the leases `along.returning`, counts `along.unasked_sheds`, drops expired leases,
    /// then grants `lease` if fewer than its threshold are held.
    fn acquire(
        &self,
        conn: Self::Connection,
        lease: Lease<'_>,
        along: RideAlong<'_>,
    ) -> impl Future<Output = Result<Grant, String>> + Send;

    /// Returns the leases `ids`; with a `sample` (the adaptive limit), also adds it to its window
    /// and, if that closed the previous window and nobody claimed it yet, claims it.
    fn release(
        &self,
        conn: Self::Connection,
        ids: &[Box<str>],
        sample: Option<Sample>,
    ) -> impl Future<Output = Result<Option<Closed>, String>> + Send;

    /// Whether the connection still answers at all.
    fn ping(&self, conn: Self::Connection) -> impl Future<Output = Result<(), String>> + Send;

    /// Publishes the fleet's adaptive state (computed from window `window`) and its limit, for
    /// `ttl`, unless a state of that window or a later one is already there; whether it was.
    fn publish(
        &self,
        conn: Self::Connection,
        window: u64,
        state: &str,
        limit: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, String>> + Send;

    /// The pool's shared note: a short string kept under `name` for `ttl` (`None` when there
    /// is none). With `only_if_absent`, written only if no note of that name exists; returns
    /// whether it was written.
    fn note(
        &self,
        conn: Self::Connection,
        name: &str,
        write: Option<(&str, Duration, bool)>,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// What an acquire carries besides its lease: what earlier decisions could not tell the count.
#[derive(Debug, Clone, Copy, Default)]
pub struct RideAlong<'a> {
    /// Leases whose release did not get through.
    pub returning: &'a [Box<str>],
    /// Sheds answered from the "fleet is full" memo, without a round trip: invocations all the
    /// same, for the fleet's rate and refusals.
    pub unasked_sheds: u64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the decision sees of a shared coordinator.
pub trait Coordinator: Send + Sync {
    /// `redis`, for the status and logs.
    fn kind(&self) -> &'static str;
    fn connected(&self) -> bool;
    fn acquire<'a>(&'a self, lease: Lease<'a>) -> BoxFuture<'a, Result<Grant, CoordinatorError>>;
    /// Returns the lease `id` (none: the count holds none for the invocation), with its duration
    /// for the adaptive limit; a window it closed.
    fn release<'a>(
        &'a self,
        id: Option<&'a str>,
        sample: Option<Sample>,
    ) -> BoxFuture<'a, Result<Option<Closed>, CoordinatorError>>;
    /// Returns every lease in `ids` at once (SHUTDOWN), with a longer budget.
    fn release_all(&self, ids: Vec<Box<str>>) -> BoxFuture<'_, Result<(), CoordinatorError>>;
    /// Leases waiting to be returned with the next round trip.
    fn unreturned(&self) -> usize;
    /// Returns the lease `id` with the next round trip, whichever it is.
    fn return_with_next(&self, id: Box<str>);
    /// An event was shed without asking (the fleet is known to be full): it is counted with the
    /// next round trip.
    fn shed_unasked(&self);
    /// Reads the pool's note `name` (background work, outside any decision's budget).
    fn read_note<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Publishes the fleet's adaptive state and limit (background work, outside any decision's
    /// budget), unless a newer one is there; whether it was.
    fn publish_adaptive<'a>(
        &'a self,
        window: u64,
        state: &'a str,
        limit: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, bool>;
    /// Writes the pool's note `name` for `ttl`; `only_if_absent`: unless it exists. Whether it
    /// was written.
    fn write_note<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
        ttl: Duration,
        only_if_absent: bool,
    ) -> BoxFuture<'a, bool>;
}
