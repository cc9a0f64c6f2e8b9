//! The ledger: what this environment has handed to its runtime and not yet seen answered.
//!
//! An invocation is in flight from the moment its event leaves the proxy until the runtime posts
//! its `response` or `error`, or its deadline passes (a runtime that crashed or timed out never
//! answers, and must not hold a slot forever). The ledger also keeps the load history that
//! `Retry-After` is computed from: recent durations and the recent share of refused events.
//! With the local coordinator it is the count itself; with a shared one it mirrors this
//! environment's part of the fleet's.
//!
//! Only [`crate::admission::Admission`] writes it. It owns no I/O and takes the time as an
//! argument, so tests drive it with any clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::lease::{Grant, Lease};

/// How far back the admitted/refused rates look (the time constant of their exponential decay).
const RATE_WINDOW_SECS: f64 = 10.0;
/// Weight of the newest duration in the moving average.
const DURATION_WEIGHT: f64 = 0.2;
/// The duration assumed before any invocation has finished.
const DEFAULT_DURATION_SECS: f64 = 1.0;
/// How long a shed is assumed to hold its slot before one has been timed.
const DEFAULT_SHED_SECS: f64 = 0.002;

#[derive(Default)]
pub struct InFlight {
    inner: Mutex<Inner>,
}

struct Inner {
    invocations: HashMap<Box<str>, Invocation>,
    /// No invocation expires before this: expiry scans only once it has passed.
    earliest_deadline: Option<Instant>,
    /// Highest count since the last [`InFlight::take_max`].
    max: u64,
    mean_duration_secs: f64,
    /// How long answering a shed event takes, event in to 429 accepted (moving average).
    mean_shed_secs: f64,
    admitted_rate: Decayed,
    refused_rate: Decayed,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            invocations: HashMap::new(),
            earliest_deadline: None,
            max: 0,
            mean_duration_secs: DEFAULT_DURATION_SECS,
            mean_shed_secs: DEFAULT_SHED_SECS,
            admitted_rate: Decayed::default(),
            refused_rate: Decayed::default(),
        }
    }
}

struct Invocation {
    started: Instant,
    deadline: Instant,
}

impl InFlight {
    /// Grants `lease` if fewer than its threshold are in flight, counting it.
    pub fn try_take(&self, lease: Lease<'_>, now: Instant) -> Grant {
        let mut inner = self.inner.lock();
        inner.expire(now);
        let held = inner.invocations.len() as u64;
        if lease.threshold.is_some_and(|t| held >= t) {
            inner.refused_rate.add(now);
            return Grant {
                granted: false,
                held,
                fleet: None,
            };
        }
        inner.insert(lease.id, lease.deadline.at, now);
        Grant {
            granted: true,
            held,
            fleet: None,
        }
    }

    /// Records `id` as in flight whatever the count: granted by a shared coordinator, or
    /// admitted because the decision could not be made.
    pub fn take(&self, id: &str, deadline: Instant, now: Instant) {
        self.inner.lock().insert(id, deadline, now);
    }

    /// Counts a refusal decided elsewhere (by a shared coordinator), for `Retry-After`.
    pub fn refused(&self, now: Instant) {
        self.inner.lock().refused_rate.add(now);
    }

    /// A shed event took `took` to answer. One stall must not size the headroom for the next
    /// twenty sheds: a sample counts for at most 50 ms.
    pub fn shed_took(&self, took: Duration) {
        let took = took.min(Duration::from_millis(50)).as_secs_f64();
        let mut inner = self.inner.lock();
        inner.mean_shed_secs =
            DURATION_WEIGHT * took + (1.0 - DURATION_WEIGHT) * inner.mean_shed_secs;
    }

    pub fn mean_shed_secs(&self) -> f64 {
        self.inner.lock().mean_shed_secs
    }

    /// Ends `id`'s invocation; returns how long it ran, or `None` if it was not in flight.
    pub fn release(&self, id: &str, now: Instant) -> Option<Duration> {
        let mut inner = self.inner.lock();
        let inv = inner.invocations.remove(id)?;
        let ran = now.saturating_duration_since(inv.started);
        inner.mean_duration_secs = DURATION_WEIGHT * ran.as_secs_f64()
            + (1.0 - DURATION_WEIGHT) * inner.mean_duration_secs;
        Some(ran)
    }

    /// Ends every invocation (SHUTDOWN): the ids whose leases are still held.
    pub fn drain(&self) -> Vec<Box<str>> {
        let mut inner = self.inner.lock();
        inner.earliest_deadline = None;
        inner.invocations.drain().map(|(id, _)| id).collect()
    }

    /// Drops invocations past their deadline; returns how many are left.
    pub fn count(&self, now: Instant) -> u64 {
        let mut inner = self.inner.lock();
        inner.expire(now);
        inner.invocations.len() as u64
    }

    /// The highest count since the previous call; starts the next period at the current count.
    pub fn take_max(&self) -> u64 {
        let mut inner = self.inner.lock();
        let current = inner.invocations.len() as u64;
        std::mem::replace(&mut inner.max, current)
    }

    /// Recent durations and admitted/refused rates, the inputs of [`retry_after`].
    pub fn load(&self, now: Instant) -> Load {
        let mut inner = self.inner.lock();
        let admitted = inner.admitted_rate.value(now);
        let refused = inner.refused_rate.value(now);
        Load {
            mean_duration_secs: inner.mean_duration_secs,
            admitted,
            refused,
        }
    }
}

impl Inner {
    fn insert(&mut self, id: &str, deadline: Instant, now: Instant) {
        self.invocations.insert(
            id.into(),
            Invocation {
                started: now,
                deadline,
            },
        );
        self.earliest_deadline = Some(self.earliest_deadline.map_or(deadline, |e| e.min(deadline)));
        self.admitted_rate.add(now);
        self.max = self.max.max(self.invocations.len() as u64);
    }

    /// Drops invocations past their deadline: a scan only once the earliest deadline has passed.
    fn expire(&mut self, now: Instant) {
        if self.earliest_deadline.is_none_or(|e| now < e) {
            return;
        }
        self.invocations.retain(|_, inv| inv.deadline > now);
        self.earliest_deadline = self.invocations.values().map(|inv| inv.deadline).min();
    }
}

/// The tracker's recent history, as `Retry-After` needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    pub mean_duration_secs: f64,
    /// Events admitted and refused, exponentially decayed over about ten seconds.
    pub admitted: f64,
    pub refused: f64,
}

/// `Retry-After` in whole seconds:
///
/// `clamp(ceil(D × O × J), 1, max)`, where `D` is the moving average of recent invocation
/// durations (1 s before any has finished), `O = (admitted + refused) / admitted` (the fleet's last
/// second with a shared count, else this environment's last ~10 s) is how far demand exceeds what
/// is being served (at least 1, at most 100), and `J` is
/// uniform in [1, 2) so that refused clients spread out instead of returning in lockstep.
pub fn retry_after(load: Load, max: u64, jitter: f64) -> u64 {
    let overload = ((load.admitted + load.refused) / load.admitted.max(1.0)).clamp(1.0, 100.0);
    let seconds = (load.mean_duration_secs * overload * (1.0 + jitter.clamp(0.0, 1.0))).ceil();
    (seconds as u64).clamp(1, max.max(1))
}

/// A count that decays exponentially with time: a rate over the last `RATE_WINDOW_SECS`.
#[derive(Default)]
struct Decayed {
    value: f64,
    at: Option<Instant>,
}

impl Decayed {
    fn decay(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.value *= (-dt / RATE_WINDOW_SECS).exp();
        }
        self.at = Some(now);
    }
    fn add(&mut self, now: Instant) {
        self.decay(now);
        self.value += 1.0;
    }
    fn value(&mut self, now: Instant) -> f64 {
        self.decay(now);
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{unix_ms, Deadline};

    const S: Duration = Duration::from_secs(1);

    fn lease(id: &str, deadline: Instant, threshold: Option<u64>) -> Lease<'_> {
        let now = Instant::now();
        let ms = unix_ms() + deadline.saturating_duration_since(now).as_millis() as u64;
        Lease {
            id,
            deadline: Deadline {
                at: deadline,
                unix_ms: ms,
            },
            threshold,
            calm_threshold: None,
            invocation: true,
        }
    }

    fn granted(held: u64) -> Grant {
        Grant {
            granted: true,
            held,
            fleet: None,
        }
    }

    fn refused(held: u64) -> Grant {
        Grant {
            granted: false,
            held,
            fleet: None,
        }
    }

    #[test]
    fn admits_up_to_the_threshold_and_frees_on_release() {
        let t = InFlight::default();
        let now = Instant::now();
        let dl = now + 10 * S;
        assert_eq!(t.try_take(lease("a", dl, Some(2)), now), granted(0));
        assert_eq!(t.try_take(lease("b", dl, Some(2)), now), granted(1));
        assert_eq!(t.try_take(lease("c", dl, Some(2)), now), refused(2));
        assert_eq!(t.release("a", now + S), Some(S));
        assert_eq!(t.release("a", now + S), None, "released twice");
        assert_eq!(t.try_take(lease("c", dl, Some(2)), now + S), granted(1));
        assert_eq!(t.take_max(), 2);
    }

    #[test]
    fn no_threshold_admits_everything_and_reports_what_was_held() {
        let t = InFlight::default();
        let now = Instant::now();
        for i in 0..100u64 {
            let id = i.to_string();
            assert_eq!(t.try_take(lease(&id, now + S, None), now), granted(i));
        }
        assert_eq!(t.count(now), 100);
    }

    #[test]
    fn an_invocation_past_its_deadline_frees_its_slot() {
        let t = InFlight::default();
        let now = Instant::now();
        assert_eq!(
            t.try_take(lease("stuck", now + S, Some(1)), now),
            granted(0)
        );
        assert_eq!(
            t.try_take(lease("x", now + 9 * S, Some(1)), now),
            refused(1)
        );
        // At the deadline the slot is free again, with or without a threshold.
        assert_eq!(
            t.try_take(lease("x", now + 9 * S, None), now + S),
            granted(0)
        );
        assert_eq!(t.release("stuck", now + 2 * S), None);
        assert_eq!(t.count(now + 10 * S), 0);
    }

    #[test]
    fn forced_takes_count_and_raise_the_max() {
        let t = InFlight::default();
        let now = Instant::now();
        t.take("a", now + S, now);
        t.take("b", now + S, now);
        assert_eq!(t.take_max(), 2);
        t.release("a", now);
        t.release("b", now);
        assert_eq!(t.take_max(), 2, "the max of the period that just ended");
        assert_eq!(t.take_max(), 0);
    }

    #[test]
    fn retry_after_follows_durations_and_overload() {
        let idle = Load {
            mean_duration_secs: 0.1,
            admitted: 10.0,
            refused: 0.0,
        };
        assert_eq!(retry_after(idle, 30, 0.0), 1, "never below one second");
        let hot = Load {
            mean_duration_secs: 2.0,
            admitted: 10.0,
            refused: 40.0,
        };
        // 2 s × 5 = 10 s, then jitter spreads it over [10, 20).
        assert_eq!(retry_after(hot, 30, 0.0), 10);
        assert_eq!(retry_after(hot, 30, 0.5), 15);
        assert_eq!(retry_after(hot, 12, 0.5), 12, "capped");
        let nothing_admitted = Load {
            mean_duration_secs: 1.0,
            admitted: 0.0,
            refused: 1000.0,
        };
        assert_eq!(
            retry_after(nothing_admitted, 1000, 0.0),
            100,
            "overload capped at 100"
        );
    }

    #[test]
    fn load_reflects_refusals_and_durations() {
        let t = InFlight::default();
        let now = Instant::now();
        t.try_take(lease("a", now + 60 * S, Some(1)), now);
        for _ in 0..4 {
            t.try_take(lease("b", now + 60 * S, Some(1)), now);
        }
        t.release("a", now + 3 * S);
        let load = t.load(now + 3 * S);
        assert!(load.refused > 3.0 * load.admitted * 0.9, "{load:?}");
        // 0.2 × 3 s + 0.8 × 1 s
        assert!((load.mean_duration_secs - 1.4).abs() < 1e-9, "{load:?}");
        // The rates fade away once the overload is over.
        let later = t.load(now + 120 * S);
        assert!(later.refused < 0.01, "{later:?}");
    }
}
