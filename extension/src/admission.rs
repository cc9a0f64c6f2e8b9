//! The admission decision, made for every event before the runtime sees it.
//!
//! An event is admitted while the in-flight count (this environment's, or the fleet's through a
//! shared coordinator) is below `max(1, floor(limit × ADMISSION_SHED_AT))`. A refused event is
//! shed only if it came through an HTTP front door and the mode is `enforce`; otherwise it is
//! admitted and counted (`WouldShed` in observe mode). Whatever fails here admits: a decision
//! that cannot be made must never cost the function an invocation.

use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::config::{Config, LimitSource, Mode};
use crate::coordinator::Coordinator;
use crate::front_door::FrontDoor;
use crate::inflight::{self, Deadline, InFlight, Slot};
use crate::metrics::{Metrics, Outcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand the event to the runtime.
    Admit,
    /// Post `response` as the invocation's answer and hand the runtime the next event instead.
    Shed { response: Bytes, retry_after: u64 },
}

enum Answer {
    Slot(Slot),
    /// The coordinator could not answer; the slot was taken locally.
    FailedOpen,
}

pub struct Admission {
    mode: Mode,
    shed_at: f64,
    retry_after_max: u64,
    /// Replaced when a limit is learnt after init; `None` admits everything.
    limit: Mutex<Option<(u64, LimitSource)>>,
    in_flight: InFlight,
    coordinator: Coordinator,
    metrics: Metrics,
}

/// The in-flight count below which an event is admitted: `max(1, floor(limit × shed_at))`.
/// The slots above it stay free so that shed answers never wait for capacity.
pub fn threshold(limit: u64, shed_at: f64) -> u64 {
    ((limit as f64 * shed_at).floor() as u64).max(1)
}

impl Admission {
    pub fn new(config: &Config, coordinator: Coordinator) -> Admission {
        Admission {
            mode: config.mode,
            shed_at: config.shed_at,
            retry_after_max: config.retry_after_max,
            limit: Mutex::new(config.limit),
            in_flight: InFlight::default(),
            coordinator,
            metrics: Metrics::new(
                &config.metrics_namespace,
                &config.function_name,
                config.mode.as_str(),
            ),
        }
    }

    pub fn limit(&self) -> Option<(u64, LimitSource)> {
        *self.limit.lock()
    }

    pub fn set_limit(&self, limit: Option<(u64, LimitSource)>) {
        *self.limit.lock() = limit;
    }

    /// Whether a shared coordinator is connected (a local one always is).
    pub fn coordinator_connected(&self) -> bool {
        match &self.coordinator {
            Coordinator::Local => true,
            Coordinator::Redis(r) => r.is_connected(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.count()
    }

    fn threshold(&self) -> Option<u64> {
        self.limit()
            .map(|(limit, _)| threshold(limit, self.shed_at))
    }

    /// Decides for the event `id`, whose invocation ends at `deadline` at the latest.
    pub async fn decide(&self, id: &str, deadline: Deadline, event: &[u8]) -> Decision {
        let started = Instant::now();
        let (decision, outcome) = self.decide_timed(id, deadline, event, started).await;
        self.metrics.record(outcome, started.elapsed());
        decision
    }

    async fn decide_timed(
        &self,
        id: &str,
        deadline: Deadline,
        event: &[u8],
        now: Instant,
    ) -> (Decision, Outcome) {
        let in_flight = match self.acquire(id, deadline, self.threshold(), now).await {
            Answer::Slot(Slot::Full { in_flight }) => in_flight,
            Answer::Slot(Slot::Taken { .. }) => return (Decision::Admit, Outcome::Admitted),
            Answer::FailedOpen => return (Decision::Admit, Outcome::FailOpen),
        };
        // Parsed only on refusal: an admitted event costs no JSON work at all.
        let front_door = FrontDoor::classify(event);
        let retry_after = inflight::retry_after(
            self.in_flight.load(now),
            self.retry_after_max,
            fastrand::f64(),
        );
        let response = match (self.mode, front_door.shed_response(retry_after)) {
            (Mode::Enforce, Some(response)) => response,
            (_, response) => {
                // Not HTTP, or observe mode: it runs, so it holds a slot like any other.
                self.acquire(id, deadline, None, now).await;
                let outcome = match response {
                    Some(_) => Outcome::WouldShed,
                    None => Outcome::Admitted,
                };
                tracing::debug!(
                    request_id = id,
                    in_flight,
                    front_door = front_door.as_str(),
                    "over the limit; admitted"
                );
                return (Decision::Admit, outcome);
            }
        };
        tracing::debug!(request_id = id, in_flight, retry_after, "shedding");
        (
            Decision::Shed {
                response,
                retry_after,
            },
            Outcome::Shed,
        )
    }

    /// Asks the coordinator for a slot (`threshold` `None`: take it regardless). When the
    /// coordinator cannot answer, the slot is taken locally: the event is admitted.
    async fn acquire(
        &self,
        id: &str,
        deadline: Deadline,
        threshold: Option<u64>,
        now: Instant,
    ) -> Answer {
        let asked = Instant::now();
        let result = self
            .coordinator
            .acquire(&self.in_flight, id, deadline, threshold, now)
            .await;
        match result {
            Ok(slot) => {
                if self.coordinator.is_shared() {
                    let (Slot::Taken { in_flight } | Slot::Full { in_flight }) = slot;
                    self.metrics
                        .coordinator_answered(asked.elapsed(), in_flight);
                }
                Answer::Slot(slot)
            }
            Err(e) => {
                tracing::debug!(request_id = id, error = %e, "coordinator gave no answer; admitting");
                self.metrics.coordinator_failed(e.is_round_trip());
                self.in_flight.take(id, deadline.at, now);
                Answer::FailedOpen
            }
        }
    }

    /// The shed answer for `id` could not be posted, so the event goes to the runtime after all.
    pub async fn shed_failed(&self, id: &str, deadline: Deadline) {
        self.acquire(id, deadline, None, Instant::now()).await;
        self.metrics.shed_failed();
    }

    /// The runtime answered `id` (response or error): its slot is free.
    pub async fn release(&self, id: &str) {
        if self.in_flight.release(id, Instant::now()).is_some() {
            if let Err(e) = self.coordinator.release(id).await {
                // The coordinator logs outages once; the lease ends at its deadline anyway.
                tracing::debug!(error = %e, "releasing the slot failed; it expires at the deadline");
            }
        }
    }

    /// Writes the metrics of the period that just ended, if anything was decided in it.
    pub fn emit_metrics(&self) {
        self.in_flight.expire(Instant::now());
        self.metrics.emit(self.in_flight.take_max(), self.limit());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn admission(pairs: &[(&str, &str)]) -> Admission {
        let mut env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:1".into());
        let config = Config::from_strings(&env).unwrap();
        Admission::new(&config, Coordinator::Local)
    }

    const REST: &[u8] = br#"{"httpMethod":"GET","requestContext":{"stage":"p"}}"#;
    const SQS: &[u8] = br#"{"Records":[{"eventSource":"aws:sqs"}]}"#;

    fn deadline() -> Deadline {
        Deadline::from_unix_ms(Some(inflight::unix_ms() + 60_000))
    }

    #[test]
    fn threshold_keeps_the_last_slots_free_but_never_zero() {
        assert_eq!(threshold(100, 0.9), 90);
        assert_eq!(threshold(1, 0.9), 1);
        assert_eq!(threshold(10, 1.0), 10);
        assert_eq!(threshold(7, 0.5), 3);
        assert_eq!(threshold(1600, 0.01), 16);
    }

    #[tokio::test]
    async fn sheds_http_past_the_threshold_and_admits_after_release() {
        let a = admission(&[("ADMISSION_LIMIT", "3")]); // threshold floor(2.7) = 2
        assert_eq!(a.decide("1", deadline(), REST).await, Decision::Admit);
        assert_eq!(a.decide("2", deadline(), REST).await, Decision::Admit);
        let Decision::Shed {
            response,
            retry_after,
        } = a.decide("3", deadline(), REST).await
        else {
            panic!("third event should be shed");
        };
        assert!(retry_after >= 1);
        let v: serde_json::Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(v["statusCode"], 429);
        assert_eq!(v["headers"]["retry-after"], retry_after.to_string());
        assert_eq!(a.in_flight(), 2, "a shed event holds no slot");
        a.release("1").await;
        assert_eq!(a.decide("4", deadline(), REST).await, Decision::Admit);
    }

    #[tokio::test]
    async fn non_http_events_are_never_shed_but_count() {
        let a = admission(&[("ADMISSION_LIMIT", "1")]);
        assert_eq!(a.decide("1", deadline(), REST).await, Decision::Admit);
        assert_eq!(a.decide("2", deadline(), SQS).await, Decision::Admit);
        assert_eq!(a.in_flight(), 2);
        assert!(matches!(
            a.decide("3", deadline(), REST).await,
            Decision::Shed { .. }
        ));
    }

    #[tokio::test]
    async fn observe_mode_admits_and_counts_would_shed() {
        let a = admission(&[("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", "observe")]);
        for i in 0..3 {
            assert_eq!(
                a.decide(&i.to_string(), deadline(), REST).await,
                Decision::Admit
            );
        }
        let line = a.metrics.flush(3, a.limit()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["WouldShed"], 2);
        assert_eq!(v["Shed"], 0);
        assert_eq!(v["Admitted"], 3);
    }

    #[tokio::test]
    async fn no_limit_admits_everything() {
        let a = admission(&[]);
        for i in 0..50 {
            assert_eq!(
                a.decide(&i.to_string(), deadline(), REST).await,
                Decision::Admit
            );
        }
        a.set_limit(Some((10, LimitSource::Env)));
        assert!(matches!(
            a.decide("x", deadline(), REST).await,
            Decision::Shed { .. }
        ));
    }

    #[tokio::test]
    async fn a_failed_shed_admits_and_counts_fail_open() {
        let a = admission(&[("ADMISSION_LIMIT", "1")]);
        a.decide("1", deadline(), REST).await;
        assert!(matches!(
            a.decide("2", deadline(), REST).await,
            Decision::Shed { .. }
        ));
        a.shed_failed("2", deadline()).await;
        assert_eq!(a.in_flight(), 2);
        let v: serde_json::Value =
            serde_json::from_str(&a.metrics.flush(2, a.limit()).unwrap()).unwrap();
        assert_eq!(
            (
                v["Admitted"].as_u64(),
                v["Shed"].as_u64(),
                v["FailOpen"].as_u64()
            ),
            (Some(2), Some(0), Some(1))
        );
    }
}
