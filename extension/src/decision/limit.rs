//! The concurrency limit, as one published value.
//!
//! Several sources may know it: `ADMISSION_LIMIT`, Managed Instances' per-environment
//! concurrency, the Lambda API (reserved concurrency, or the account's unreserved pool). Each
//! publishes into one `watch` channel; the decision reads the latest value and never asks who
//! wrote it. `None` means no limit is known yet: everything is admitted.

use tokio::sync::watch;

pub use crate::config::{Limit, LimitSource};

/// Lambda's cap on synchronous invocations: this many a second per unit of concurrency.
pub const INVOKES_PER_SECOND_PER_SLOT: u64 = 10;
/// The share of sheds that may find no spare slot (and so be throttled by Lambda into a 500).
const HEADROOM_BLOCKING: f64 = 0.001;
/// What a shed holds its slot for beyond what the proxy measures: the event's way in and the
/// proxy's next `next` call, as Lambda counts the slot.
const SHED_OVERHEAD_SECS: f64 = 0.000_25;
/// Managed Instances run at least this many environments (one per Availability Zone), whose
/// spare slots Lambda's router pools.
const MANAGED_ENVIRONMENTS_MIN: u64 = 3;
/// Managed Instances keep at least one slot in this many spare, whatever the shed rate.
const STALL_SHARE: u64 = 16;

impl Limit {
    /// Lambda's invoke-rate cap for this limit: invocations a second, shed ones included.
    pub fn invoke_rate_cap(self) -> u64 {
        self.value.saturating_mul(INVOKES_PER_SECOND_PER_SLOT)
    }

    /// The in-flight count below which an event is admitted. The slots above it stay free so
    /// that shed answers never find the fleet full: a shed request is an invocation too, busy
    /// in Lambda's count while the proxy answers it.
    ///
    /// With `ADMISSION_SHED_AT` set: `max(1, floor(limit × shed_at))`. Otherwise just the
    /// headroom the sheds can need. Arrivals are random, so the spare slots are sized like a
    /// telephone exchange: the fewest `c` (at least 1) whose Erlang-B blocking `B(c, a)` is at
    /// most 0.1 % for the sheds' offered load `a`, and the threshold is `max(1, limit − c)`.
    ///
    /// On demand, `a = 10 × limit × (shed_secs + 0.25 ms)`: at most `10 × limit` invocations
    /// arrive a second (Lambda's cap, above which it throttles whatever the layer does), each shed
    /// holding a slot for `shed_secs` plus its way in and out. On Managed Instances the limit is
    /// one environment's and no per-environment rate cap exists: `a` is this environment's own
    /// shed rate (`shed_rate` a second) times the same hold, and since Lambda's router sends an
    /// invoke to any environment with a free slot, the spare slots of the (at least three)
    /// environments serve the sheds together: `c` is a third of what three environments' sheds
    /// need, `B(3c, 3a) ≤ 0.1 %`, and at least one slot in sixteen: the environment's processes
    /// share their vCPUs with the function's, and a stall of a few milliseconds holds every shed
    /// arriving meanwhile at once, more of them the more slots the environment has (measured
    /// with 32 slots at 10×: one spare slot left 2.1 % of requests to Lambda's throttle, two
    /// left 0.03–0.11 %).
    pub fn threshold(self, shed_at: Option<f64>, shed_secs: f64, shed_rate: f64) -> u64 {
        let hold = shed_secs.max(0.0) + SHED_OVERHEAD_SECS;
        let kept = match shed_at {
            Some(share) => (self.value as f64 * share).floor() as u64,
            None if self.source.is_managed_instances() => {
                let pooled = spare_slots(
                    shed_rate.max(0.0) * hold * MANAGED_ENVIRONMENTS_MIN as f64,
                    HEADROOM_BLOCKING,
                );
                let floor = self.value.div_ceil(STALL_SHARE).max(1);
                self.value
                    .saturating_sub(pooled.div_ceil(MANAGED_ENVIRONMENTS_MIN).max(floor))
            }
            None => {
                let load = self.invoke_rate_cap() as f64 * hold;
                self.value
                    .saturating_sub(spare_slots(load, HEADROOM_BLOCKING))
            }
        };
        kept.max(1)
    }
}

/// The fewest servers (at least 1) that carry an offered load of `erlangs` with a blocking
/// probability of at most `blocking` (Erlang B, by its recurrence).
pub fn spare_slots(erlangs: f64, blocking: f64) -> u64 {
    if !erlangs.is_finite() {
        return u64::MAX;
    }
    let mut b = 1.0;
    let mut c = 0u64;
    while c < 1 || b > blocking {
        c += 1;
        b = erlangs * b / (c as f64 + erlangs * b);
        if c >= 100_000 {
            break;
        }
    }
    c
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
        let t =
            |value, shed_at| Limit::new(value, LimitSource::Env).threshold(Some(shed_at), 0.0, 0.0);
        assert_eq!(t(100, 0.9), 90);
        assert_eq!(t(1, 0.9), 1);
        assert_eq!(t(10, 1.0), 10);
        assert_eq!(t(7, 0.5), 3);
        assert_eq!(t(1600, 0.01), 16);
    }

    #[test]
    fn erlang_b_sizes_the_spare_slots() {
        // 1 erlang: B(4) = 1.5 %, B(5) = 0.31 %, B(6) = 0.05 %.
        assert_eq!(spare_slots(1.0, 0.001), 6);
        assert_eq!(spare_slots(1.0, 0.02), 4);
        assert_eq!(spare_slots(1.0, 0.01), 5);
        assert_eq!(spare_slots(0.0, 0.001), 1, "at least one");
        assert_eq!(spare_slots(0.1, 0.001), 3);
    }

    #[test]
    fn the_default_headroom_is_what_the_sheds_can_need() {
        let t = |value, shed_ms: f64| {
            Limit::new(value, LimitSource::Env).threshold(None, shed_ms / 1000.0, 0.0)
        };
        // 10 × 20 a second × 0.5 ms = 0.1 erlang → 3 spare.
        assert_eq!(t(20, 0.25), 17);
        // 10 × 100 a second × 0.5 ms = 0.5 erlang → 5 spare: 95 %.
        assert_eq!(t(100, 0.25), 95);
        // Slower sheds need more room.
        assert!(t(100, 5.0) < 90);
        // Never below one admitted.
        assert_eq!(t(1, 1.0), 1);
        assert_eq!(t(2, 100.0), 1);
    }

    #[test]
    fn managed_instances_keep_the_spare_slots_their_own_sheds_need() {
        let mi = |k, shed_rate| {
            Limit::new(k, LimitSource::ManagedInstances).threshold(None, 0.00075, shed_rate)
        };
        // No sheds: one slot in sixteen spare (at least one), for the first sheds and a stall.
        assert_eq!(mi(32, 0.0), 30);
        assert_eq!(mi(4, 0.0), 3);
        // 300 sheds a second held 1 ms: 0.3 erlang here, 0.9 over three environments:
        // B(6, 0.9) = 0.03 % → two spare slots each; 600: B(9, 1.8) = 0.05 % → three.
        assert_eq!(mi(32, 300.0), 30);
        assert_eq!(mi(32, 600.0), 29);
        // A flood of sheds takes more, never the last slot.
        assert!(mi(32, 3000.0) < 28);
        assert_eq!(mi(2, 100_000.0), 1);
        // No rate cap on Managed Instances: a larger environment keeps its sixteenth spare.
        assert_eq!(mi(320, 3000.0), 320 - 20);
        assert_eq!(mi(640, 3000.0), 640 - 40);
        assert_eq!(mi(1, 0.0), 1, "never below one");
    }
}
