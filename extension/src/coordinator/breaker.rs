//! A circuit breaker: after repeated failures, skip the shared coordinator for a while, then let
//! one probe through. Decisions made while it is open admit at once instead of waiting on a
//! coordinator that is known to be failing. A probe that never reports (its request was dropped
//! mid-flight) expires after one more back-off, so the breaker cannot stay half-open forever.

use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;

#[derive(Debug)]
pub struct Breaker {
    backoff: Duration,
    failures: u32,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is out; everything else is refused until it reports, or until `until`.
    Probing {
        until: Instant,
    },
}

impl Breaker {
    pub fn new(backoff: Duration) -> Breaker {
        Breaker {
            backoff,
            failures: 0,
            state: State::Closed,
        }
    }

    /// May a request go to the coordinator now?
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } | State::Probing { until } if now >= until => {
                self.state = State::Probing {
                    until: now + self.backoff,
                };
                true
            }
            State::Open { .. } | State::Probing { .. } => false,
        }
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.state = State::Closed;
    }

    /// Records a failure; returns true if this failure opened the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        let open = matches!(self.state, State::Probing { .. }) || self.failures >= FAILURES_TO_OPEN;
        let was_closed = self.state == State::Closed;
        if open {
            self.state = State::Open {
                until: now + self.backoff,
            };
        }
        open && was_closed
    }

    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_then_probes_once() {
        let t = Instant::now();
        let backoff = Duration::from_secs(5);
        let mut b = Breaker::new(backoff);
        assert!(b.allow(t));
        assert!(!b.failure(t));
        assert!(!b.failure(t));
        assert!(b.allow(t), "two failures are not enough");
        assert!(b.failure(t), "the third opens it");
        assert!(!b.allow(t + Duration::from_secs(1)));
        // After the back-off, exactly one probe goes through.
        assert!(b.allow(t + backoff));
        assert!(!b.allow(t + backoff));
        // A failed probe opens it again for a full back-off.
        b.failure(t + backoff);
        assert!(!b.allow(t + backoff + Duration::from_secs(1)));
        assert!(b.allow(t + 2 * backoff));
        b.success();
        assert!(b.allow(t + 2 * backoff) && !b.is_open());
    }

    #[test]
    fn a_probe_that_never_reports_expires() {
        let t = Instant::now();
        let backoff = Duration::from_secs(5);
        let mut b = Breaker::new(backoff);
        for _ in 0..FAILURES_TO_OPEN {
            b.failure(t);
        }
        assert!(b.allow(t + backoff), "the probe");
        // Its request is dropped: no success, no failure.
        assert!(!b.allow(t + backoff + Duration::from_secs(1)));
        assert!(
            b.allow(t + 2 * backoff),
            "a new probe once the first expired"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let t = Instant::now();
        let mut b = Breaker::new(Duration::from_secs(1));
        b.failure(t);
        b.failure(t);
        b.success();
        b.failure(t);
        b.failure(t);
        assert!(b.allow(t));
    }
}
