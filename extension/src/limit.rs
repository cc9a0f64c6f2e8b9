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

impl Limit {
    pub fn new(value: u64, source: LimitSource) -> Limit {
        Limit { value, source }
    }

    /// The in-flight count below which an event is admitted: `max(1, floor(limit × shed_at))`.
    /// The slots above it stay free so that shed answers never wait for capacity.
    pub fn threshold(self, shed_at: f64) -> u64 {
        ((self.value as f64 * shed_at).floor() as u64).max(1)
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
        let t = |value, shed_at| Limit::new(value, LimitSource::Env).threshold(shed_at);
        assert_eq!(t(100, 0.9), 90);
        assert_eq!(t(1, 0.9), 1);
        assert_eq!(t(10, 1.0), 10);
        assert_eq!(t(7, 0.5), 3);
        assert_eq!(t(1600, 0.01), 16);
    }
}
