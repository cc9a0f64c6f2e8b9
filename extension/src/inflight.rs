//! What this environment has handed to its runtime and not yet seen answered.
//!
//! An invocation is in flight from the moment its event leaves the proxy until the runtime posts
//! its `response` or `error`, or its deadline passes (a runtime that crashed or timed out never
//! answers, and must not hold a slot forever). The tracker also keeps the load history that
//! `Retry-After` is computed from: recent durations and the recent share of refused events.
//!
//! It owns no I/O and takes the time as an argument, so tests drive it with any clock.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// How far back the admitted/refused rates look (the time constant of their exponential decay).
const RATE_WINDOW_SECS: f64 = 10.0;
/// Weight of the newest duration in the moving average.
const DURATION_WEIGHT: f64 = 0.2;
/// The duration assumed before any invocation has finished.
const DEFAULT_DURATION_SECS: f64 = 1.0;

/// Lambda's longest invocation; the bound for an event that carries no deadline.
pub const MAX_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// When an invocation ends at the latest: on this process's clock, and as Unix milliseconds for
/// a coordinator shared with other environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub unix_ms: u64,
}

impl Deadline {
    /// From `Lambda-Runtime-Deadline-Ms`; missing or absurd values are bounded by 15 minutes.
    pub fn from_unix_ms(deadline_ms: Option<u64>) -> Deadline {
        let now = Instant::now();
        let now_ms = unix_ms();
        let max_ms = now_ms + MAX_INVOCATION.as_millis() as u64;
        let unix_ms = deadline_ms.unwrap_or(max_ms).min(max_ms);
        Deadline {
            at: now + Duration::from_millis(unix_ms.saturating_sub(now_ms)),
            unix_ms,
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Taken; the count includes this invocation.
    Taken { in_flight: u64 },
    /// Refused; nothing was recorded.
    Full { in_flight: u64 },
}

#[derive(Default)]
pub struct InFlight {
    inner: Mutex<Inner>,
}

struct Inner {
    invocations: HashMap<Box<str>, Invocation>,
    /// Highest count since the last [`InFlight::take_max`].
    max: u64,
    mean_duration_secs: f64,
    admitted_rate: Decayed,
    refused_rate: Decayed,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            invocations: HashMap::new(),
            max: 0,
            mean_duration_secs: DEFAULT_DURATION_SECS,
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
    /// Takes a slot for `id` if fewer than `threshold` are in flight (`None`: no limit).
    pub fn try_take(
        &self,
        id: &str,
        deadline: Instant,
        threshold: Option<u64>,
        now: Instant,
    ) -> Slot {
        let mut inner = self.inner.lock();
        if let Some(threshold) = threshold {
            if inner.invocations.len() as u64 >= threshold {
                // Only now is expiry worth a scan: below the threshold it cannot change the answer.
                inner.invocations.retain(|_, inv| inv.deadline > now);
            }
            let in_flight = inner.invocations.len() as u64;
            if in_flight >= threshold {
                inner.refused_rate.add(now);
                return Slot::Full { in_flight };
            }
        }
        inner.insert(id, deadline, now)
    }

    /// Records `id` as in flight whatever the count: for events that are admitted past a refusal
    /// (not HTTP, observe mode, a shed answer that could not be posted) or decided elsewhere.
    pub fn take(&self, id: &str, deadline: Instant, now: Instant) -> u64 {
        match self.inner.lock().insert(id, deadline, now) {
            Slot::Taken { in_flight } | Slot::Full { in_flight } => in_flight,
        }
    }

    /// Counts a refusal decided elsewhere (by a shared coordinator), for `Retry-After`.
    pub fn refused(&self, now: Instant) {
        self.inner.lock().refused_rate.add(now);
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

    pub fn count(&self) -> u64 {
        self.inner.lock().invocations.len() as u64
    }

    /// Drops invocations past their deadline; returns how many are left.
    pub fn expire(&self, now: Instant) -> u64 {
        let mut inner = self.inner.lock();
        inner.invocations.retain(|_, inv| inv.deadline > now);
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
    fn insert(&mut self, id: &str, deadline: Instant, now: Instant) -> Slot {
        self.invocations.insert(
            id.into(),
            Invocation {
                started: now,
                deadline,
            },
        );
        self.admitted_rate.add(now);
        let in_flight = self.invocations.len() as u64;
        self.max = self.max.max(in_flight);
        Slot::Taken { in_flight }
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
/// durations (1 s before any has finished), `O = (admitted + refused) / admitted` over the last
/// ~10 s is how far demand exceeds what is being served (at least 1, at most 100), and `J` is
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

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn deadlines_are_read_and_bounded() {
        let now_ms = unix_ms();
        let d = Deadline::from_unix_ms(Some(now_ms + 3000));
        assert_eq!(d.unix_ms, now_ms + 3000);
        let left = d.at.duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(2500) && left <= Duration::from_millis(3000),
            "{left:?}"
        );
        let d = Deadline::from_unix_ms(None);
        assert!(d.at.duration_since(Instant::now()) > Duration::from_secs(890));
        let d = Deadline::from_unix_ms(Some(now_ms + 3_600_000));
        assert!(d.at.duration_since(Instant::now()) <= MAX_INVOCATION);
        let d = Deadline::from_unix_ms(Some(1));
        assert!(
            d.at <= Instant::now(),
            "a deadline in the past is already over"
        );
    }

    #[test]
    fn admits_up_to_the_threshold_and_frees_on_release() {
        let t = InFlight::default();
        let now = Instant::now();
        let dl = now + 10 * S;
        assert_eq!(
            t.try_take("a", dl, Some(2), now),
            Slot::Taken { in_flight: 1 }
        );
        assert_eq!(
            t.try_take("b", dl, Some(2), now),
            Slot::Taken { in_flight: 2 }
        );
        assert_eq!(
            t.try_take("c", dl, Some(2), now),
            Slot::Full { in_flight: 2 }
        );
        assert_eq!(t.release("a", now + S), Some(S));
        assert_eq!(t.release("a", now + S), None, "released twice");
        assert_eq!(
            t.try_take("c", dl, Some(2), now + S),
            Slot::Taken { in_flight: 2 }
        );
        assert_eq!(t.take_max(), 2);
    }

    #[test]
    fn no_threshold_admits_everything() {
        let t = InFlight::default();
        let now = Instant::now();
        for i in 0..100 {
            let id = i.to_string();
            assert!(matches!(
                t.try_take(&id, now + S, None, now),
                Slot::Taken { .. }
            ));
        }
        assert_eq!(t.count(), 100);
    }

    #[test]
    fn an_invocation_past_its_deadline_frees_its_slot() {
        let t = InFlight::default();
        let now = Instant::now();
        assert!(matches!(
            t.try_take("stuck", now + S, Some(1), now),
            Slot::Taken { .. }
        ));
        assert!(matches!(
            t.try_take("x", now + 9 * S, Some(1), now),
            Slot::Full { .. }
        ));
        // At the deadline the slot is free again.
        assert_eq!(
            t.try_take("x", now + 9 * S, Some(1), now + S),
            Slot::Taken { in_flight: 1 }
        );
        assert_eq!(t.release("stuck", now + 2 * S), None);
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
        t.try_take("a", now + 60 * S, Some(1), now);
        for _ in 0..4 {
            t.try_take("b", now + 60 * S, Some(1), now);
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
