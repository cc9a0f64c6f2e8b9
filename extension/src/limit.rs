//! The concurrency limit, as one published value.
//!
//! Several sources may know it: `ADMISSION_LIMIT`, Managed Instances' per-environment
//! concurrency, the Lambda API (reserved concurrency, or the account's unreserved pool). Each
//! publishes into one `watch` channel; the decision reads the latest value and never asks who
//! wrote it. `None` means no limit is known yet: everything is admitted.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    pub source: LimitSource,
}

/// Lambda's cap on synchronous invocations: this many a second per unit of concurrency.
pub const INVOKES_PER_SECOND_PER_SLOT: u64 = 10;
/// How many times the slots the sheds need on average are kept free (Poisson bursts).
const HEADROOM_SAFETY: f64 = 2.0;

impl Limit {
    pub fn new(value: u64, source: LimitSource) -> Limit {
        Limit { value, source }
    }

    /// Lambda's invoke-rate cap for this limit: invocations a second, shed ones included.
    pub fn invoke_rate_cap(self) -> u64 {
        self.value.saturating_mul(INVOKES_PER_SECOND_PER_SLOT)
    }

    /// The in-flight count below which an event is admitted. The slots above it stay free so
    /// that shed answers never find the fleet full: a shed request is an invocation too, busy
    /// in Lambda's count while the proxy answers it.
    ///
    /// With `ADMISSION_SHED_AT` set: `max(1, floor(limit × shed_at))`. Otherwise just the
    /// headroom the sheds can need: at most `10 × limit` invocations arrive a second (Lambda's
    /// cap, above which it throttles whatever the layer does), each shed holding its slot for
    /// `shed_secs`, so `spare = max(1, ceil(2 × 10 × limit × shed_secs))` slots stay free and
    /// the threshold is `max(1, limit − spare)`.
    pub fn threshold(self, shed_at: Option<f64>, shed_secs: f64) -> u64 {
        let kept = match shed_at {
            Some(share) => (self.value as f64 * share).floor() as u64,
            None => {
                let needed = HEADROOM_SAFETY * self.invoke_rate_cap() as f64 * shed_secs.max(0.0);
                self.value.saturating_sub((needed.ceil() as u64).max(1))
            }
        };
        kept.max(1)
    }
}

/// Where the limit came from; reported next to the `Limit` metric and in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    Env,
    ManagedInstances,
    /// The function's reserved concurrency (`GetFunctionConcurrency`).
    Reserved,
    /// The account's unreserved pool (`GetAccountSettings`).
    Account,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Env => "env",
            LimitSource::ManagedInstances => "managed-instances",
            LimitSource::Reserved => "reserved",
            LimitSource::Account => "account",
        }
    }
}

/// The publishing side, held by whichever source learns the limit after init.
pub type LimitSender = watch::Sender<Option<Limit>>;
/// The reading side: the decision's view of the limit.
pub type LimitReceiver = watch::Receiver<Option<Limit>>;

pub fn channel(initial: Option<Limit>) -> (LimitSender, LimitReceiver) {
    watch::channel(initial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_the_last_slots_free_but_never_zero() {
        let t = |value, shed_at| Limit::new(value, LimitSource::Env).threshold(Some(shed_at), 0.0);
        assert_eq!(t(100, 0.9), 90);
        assert_eq!(t(1, 0.9), 1);
        assert_eq!(t(10, 1.0), 10);
        assert_eq!(t(7, 0.5), 3);
        assert_eq!(t(1600, 0.01), 16);
    }

    #[test]
    fn the_default_headroom_is_what_the_sheds_can_need() {
        let t = |value, shed_ms: f64| {
            Limit::new(value, LimitSource::Env).threshold(None, shed_ms / 1000.0)
        };
        // 10 × 30 a second, 1 ms each, twice over: 0.6 → one slot spare.
        assert_eq!(t(30, 1.0), 29);
        // 10 × 100 a second at 1 ms: 2 spare; at 5 ms: 10 spare.
        assert_eq!(t(100, 1.0), 98);
        assert_eq!(t(100, 5.0), 90);
        // Always one spare, never below one admitted.
        assert_eq!(t(1000, 0.0), 999);
        assert_eq!(t(1, 1.0), 1);
        assert_eq!(t(2, 100.0), 1);
    }
}
