//! The admission decision, made for every event before the runtime sees it.
//!
//! One pass per event, one question to the count: an HTTP event in `enforce` mode asks for a
//! lease below the threshold (`max(1, floor(limit × ADMISSION_SHED_AT))`); every other event
//! (observe mode, events that are not HTTP, no limit known) takes its lease regardless, and the
//! count that comes back says whether it would have been shed. Whatever fails here admits: a
//! decision that cannot be made must never cost the function an invocation.
//!
//! `Admission` is the only writer of this environment's ledger ([`InFlight`]). Its life around
//! the decision (the init lease, releases, sheds that failed) is in `life`, what it reports
//! (metrics, status) in `report`, the thresholds it admits up to in `thresholds`.

mod life;
mod report;
mod thresholds;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use serde_json::json;

use crate::config::{Config, Mode};
use crate::coordinator::Coordinator;
use crate::decision::adaptive::Adaptive;
use crate::decision::classes::{Class, Rules};
use crate::decision::cpu::CpuPressure;
use crate::decision::front_door::{self, FrontDoor, Wanted};
use crate::decision::ledger::{self, InFlight};
use crate::decision::limit::{Limit, LimitReceiver, LimitSender};
use crate::decision::metrics::{Metrics, Outcome};
use crate::decision::tenants::Tenants;
use crate::lease::{Deadline, FairShare, FleetLoad, Grant, Lease};
use crate::warnings::Warnings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand the event to the runtime.
    Admit,
    /// Answer the invocation with a 429 for `front_door` and hand the runtime the next event.
    Shed {
        front_door: FrontDoor,
        retry_after: u64,
    },
}

/// After the shared count refused a lease, HTTP events are shed this long without asking it
/// again: during an overload most sheds then cost no round trip (and spare Redis the overload).
const FULL_MEMO: Duration = Duration::from_millis(10);
/// Lambda's init phase ends within this (on demand): the longest an init lease is held.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the init lease's task looks whether the coordinator has connected.
const INIT_POLL: Duration = Duration::from_millis(2);

/// The lease an environment holds for itself while it initialises.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InitLease {
    /// Not taken (yet).
    Pending,
    Held(Box<str>),
    /// The runtime asked for its first event: none is taken any more.
    Done,
}

/// What an event asks of the count, before the count answers.
struct Asked {
    /// `None`: not an HTTP event (never shed).
    front_door: Option<FrontDoor>,
    class: Option<Class>,
    /// The class's threshold, and the one that applies while the fleet is calm.
    threshold: Option<u64>,
    calm: Option<u64>,
    tenant: Option<Box<str>>,
    fair: Option<FairShare>,
    /// The class's threshold under CPU pressure, when the CPU is what binds: this environment's
    /// own in-flight count is held below it.
    cpu: Option<u64>,
    /// Observe mode with a shared count: this environment's count is at the CPU's bound.
    cpu_over: bool,
}

/// How long the fleet's last-second counts stand for its load in `Retry-After`.
const FLEET_LOAD_FRESH: Duration = Duration::from_secs(2);

pub struct Admission {
    mode: Mode,
    shed_at: Option<f64>,
    retry_after_max: u64,
    limit: LimitReceiver,
    /// This environment's leases, durations and refusals.
    ledger: InFlight,
    /// The fleet's count; `None`: the ledger is the count.
    coordinator: Option<Arc<dyn Coordinator>>,
    /// Until when the fleet is known to be full (the shared count refused a lease), and the
    /// count it refused at: a class allowed more still asks.
    full_until: Mutex<Option<(Instant, u64)>>,
    /// The fleet's last whole second and its current one, as the shared count last told them,
    /// and when.
    fleet_load: Mutex<Option<(Instant, FleetLoad)>>,
    init_lease: Mutex<InitLease>,
    /// The fleet's in-flight count at this environment's last round trip, and when.
    fleet_in_flight: Mutex<Option<(Instant, u64)>>,
    rules: Rules,
    wanted: Wanted,
    sheddable_at: f64,
    critical_reserve: f64,
    /// Fair shares per tenant; `None`: off.
    tenants: Option<Tenants>,
    /// The last threshold computed, for (limit, mean shed time in bits).
    threshold_memo: Mutex<Option<(ThresholdKey, u64)>>,
    /// `ADMISSION_LIMIT=adaptive`.
    adaptive: Option<Adaptive>,
    metrics: Metrics,
    /// Settings that protect nothing, for the status and the log.
    warnings: Warnings,
    /// The runtime has asked the proxy for an event (it runs through the wrapper).
    runtime_seen: AtomicBool,
    /// CPU pressure (`ADMISSION_CPU`); `None`: off, or no CPU use readable.
    cpu: Option<Arc<CpuPressure>>,
    /// Decisions between the CPU gate and their lease in the ledger (shared count, CPU on): the
    /// gate counts them, or a burst would pass it whole during one round trip.
    asking: std::sync::atomic::AtomicU64,
    /// Managed Instances with a shared count: this environment's concurrency (from the wrapper),
    /// published with each lease, and where the pool's sum the count returns is published as
    /// the limit.
    pool: Option<(LimitReceiver, LimitSender)>,
}

/// What a threshold is computed from: the limit, and the mean shed time and shed rate (bits).
type ThresholdKey = (Limit, u64, u64);

/// How long the fleet's adaptive state and limit outlive their last update.
const ADAPTIVE_NOTE_TTL: Duration = Duration::from_secs(600);

impl Admission {
    pub fn new(
        config: &Config,
        limit: LimitReceiver,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> Admission {
        Admission {
            mode: config.mode,
            shed_at: config.shed_at,
            retry_after_max: config.retry_after_max,
            limit,
            ledger: InFlight::new(config.shared.tenants_max),
            coordinator,
            full_until: Mutex::new(None),
            fleet_load: Mutex::new(None),
            init_lease: Mutex::new(InitLease::Pending),
            fleet_in_flight: Mutex::new(None),
            rules: config.rules.clone(),
            wanted: Wanted::of(
                &config.rules,
                config.tenants.as_ref().and_then(|t| t.key.header()),
            ),
            sheddable_at: config.sheddable_at,
            critical_reserve: config.critical_reserve,
            tenants: config
                .tenants
                .clone()
                .map(|settings| Tenants::new(settings, &config.shared.pool)),
            threshold_memo: Mutex::new(None),
            adaptive: config.adaptive.as_ref().map(Adaptive::new),
            metrics: Metrics::new(
                &config.metrics_namespace,
                &config.function_name,
                config.mode.as_str(),
                !config.rules.is_empty(),
            ),
            warnings: Warnings::new(config),
            runtime_seen: AtomicBool::new(false),
            cpu: None,
            asking: std::sync::atomic::AtomicU64::new(0),
            pool: None,
        }
    }

    /// Whether the runtime has asked the proxy for an event yet.
    pub fn runtime_seen(&self) -> bool {
        self.runtime_seen.load(Ordering::Relaxed)
    }

    /// Lambda ends the init phase within this: a runtime that has not asked the proxy for an
    /// event by then talks to the Runtime API itself.
    pub const INIT_TIMEOUT: Duration = INIT_TIMEOUT;

    /// The warnings in force; sources that learn of one later (the limit's reader) hold a clone.
    pub fn warnings(&self) -> &Warnings {
        &self.warnings
    }

    pub fn limit(&self) -> Option<Limit> {
        *self.limit.borrow()
    }

    /// Decides for the event `id`, whose invocation ends at `deadline` at the latest;
    /// `lambda_tenant` is the tenant id Lambda sent with it (tenant-isolation mode).
    pub async fn decide(
        &self,
        id: &str,
        deadline: Deadline,
        event: &[u8],
        lambda_tenant: Option<&str>,
    ) -> Decision {
        let started = Instant::now();
        let asked = self.ask(event, lambda_tenant);
        let enforce = self.mode == Mode::Enforce;
        let lease = Lease {
            id,
            deadline,
            threshold: asked.threshold.filter(|_| enforce),
            calm_threshold: asked.calm.filter(|_| enforce),
            invocation: true,
            tenant: asked.tenant.as_deref(),
            fair: asked.fair.filter(|_| enforce),
            capacity: self.own_capacity(),
        };
        let (grant, cpu_refused) = self.acquire_within_cpu(&asked, lease, started).await;
        if let Some(Grant {
            granted,
            tenant: Some(t),
            ..
        }) = grant
        {
            // The requester is in flight only if it got in.
            let refused_newcomer = !granted && t.held == 0;
            self.metrics
                .tenants_in_flight(t.tenants.saturating_sub(u64::from(refused_newcomer)));
        }
        let class = asked.class;
        let (decision, outcome) = self.answer(id, deadline, asked, grant, started);
        if cpu_refused && outcome == Outcome::Shed {
            self.metrics.cpu_shed();
        }
        self.metrics.record(outcome, class, started.elapsed());
        decision
    }

    /// What the event asks of the count: its front door and class (HTTP events), the
    /// thresholds of its class, its tenant and that tenant's fair share.
    fn ask(&self, event: &[u8], lambda_tenant: Option<&str>) -> Asked {
        let limit = self.limit();
        // Without a limit nothing can be shed, so the event is not even parsed.
        let http = limit.and_then(|_| front_door::read(event, &self.wanted));
        let class = http.as_ref().map(|h| self.rules.classify(&h.request));
        let (threshold, calm) = match (limit, class) {
            (Some(limit), Some(class)) => self.class_thresholds(limit, class),
            _ => (None, None),
        };
        let (threshold, calm, cpu) = self.cpu_bound(class, threshold, calm);
        let tenant = self
            .tenants
            .as_ref()
            .map(|t| t.of(lambda_tenant, http.as_ref()));
        // A tenant over its fair share stops `ADMISSION_TENANT_RESERVE` short of the threshold
        // (sheddable requests stop at theirs whoever sends them).
        let fair_class = matches!(class, Some(Class::Default | Class::Critical));
        let fair = match (limit, threshold, &self.tenants) {
            (Some(limit), Some(t), Some(tenants)) if fair_class => {
                let reserve =
                    self.reserve_slots(self.shared_limit(limit), tenants.settings.reserve);
                Some(FairShare {
                    below: t.saturating_sub(reserve).max(1),
                    pool: t as f64 * tenants.settings.over_at,
                })
            }
            _ => None,
        };
        Asked {
            front_door: http.map(|h| h.front_door),
            class,
            threshold,
            calm,
            tenant,
            fair,
            cpu_over: self.cpu_over(cpu),
            cpu,
        }
    }

    /// The decision and its outcome, from the count's answer (`None`: no answer, admitted).
    fn answer(
        &self,
        id: &str,
        deadline: Deadline,
        asked: Asked,
        grant: Option<Grant>,
        started: Instant,
    ) -> (Decision, Outcome) {
        match (grant, asked.front_door) {
            (None, _) => (Decision::Admit, Outcome::FailOpen),
            (Some(Grant { granted: false, .. }), Some(front_door)) => {
                let retry_after =
                    ledger::retry_after(self.load(started), self.retry_after_max, fastrand::f64());
                tracing::debug!(
                    request_id = id,
                    tenant = asked.tenant.as_deref(),
                    retry_after,
                    "shedding"
                );
                let shed = Decision::Shed {
                    front_door,
                    retry_after,
                };
                (shed, Outcome::Shed)
            }
            (Some(Grant { granted: false, .. }), None) => {
                // Cannot happen (a lease asked without a front door has no threshold); if it
                // did, the event would run uncounted: count it and admit.
                let tenant = asked.tenant.as_deref().map(|t| (t, None));
                self.ledger.take(id, tenant, false, deadline.at, started);
                (Decision::Admit, Outcome::FailOpen)
            }
            (Some(grant), _) => {
                // Only observe mode admits what it would shed (enforce may admit past the
                // threshold while the fleet is calm).
                let fair_ok = match (grant.tenant, asked.fair) {
                    (Some(t), Some(f)) => f.allows(grant.held, t),
                    _ => true,
                };
                let over = self.mode != Mode::Enforce
                    && (asked.threshold.is_some_and(|t| grant.held >= t || !fair_ok)
                        || asked.cpu_over);
                let outcome = if over {
                    Outcome::WouldShed
                } else {
                    Outcome::Admitted
                };
                (Decision::Admit, outcome)
            }
        }
    }

    /// Asks the count for `lease`; `None` when the shared coordinator could not answer, in which
    /// case the lease is taken in the ledger and the event admitted.
    async fn acquire(&self, lease: Lease<'_>, now: Instant) -> Option<Grant> {
        let Some(coordinator) = &self.coordinator else {
            return Some(self.ledger.try_take(lease, now));
        };
        if let Some(threshold) = lease.threshold {
            let memo = *self.full_until.lock();
            if memo.is_some_and(|(until, held)| now < until && held >= threshold) {
                self.ledger.refused(now);
                coordinator.shed_unasked();
                return Some(Grant {
                    granted: false,
                    held: threshold,
                    fleet: None,
                    tenant: None,
                    adaptive: None,
                });
            }
        }
        let asked = Instant::now();
        let (id, deadline) = (lease.id, lease.deadline.at);
        match coordinator.acquire(lease).await {
            Ok(grant) => {
                self.adopt_fleet_cap(grant.adaptive);
                *self.full_until.lock() = (!grant.granted).then_some((now + FULL_MEMO, grant.held));
                let fleet = grant.held + u64::from(grant.granted);
                *self.fleet_in_flight.lock() = Some((now, fleet));
                self.metrics.coordinator_answered(
                    asked.elapsed(),
                    fleet,
                    grant.fleet.map(|f| f.rate),
                );
                if let Some(load) = grant.fleet {
                    self.fleet_seen(load, now);
                    self.pool_seen(load.capacity);
                }
                if grant.granted {
                    let tenant = lease.tenant.map(|t| (t, grant.tenant));
                    self.ledger.take(id, tenant, true, deadline, now);
                } else {
                    self.ledger.refused(now);
                }
                Some(grant)
            }
            Err(e) => {
                tracing::debug!(request_id = lease.id, error = %e, "coordinator gave no answer; admitting");
                self.metrics.coordinator_failed();
                let tenant = lease.tenant.map(|t| (t, None));
                let counted = e.may_have_counted();
                self.ledger.take(id, tenant, counted, deadline, now);
                None
            }
        }
    }

    /// What `Retry-After` is computed from: this environment's durations, and the share of
    /// refusals fleet-wide when a shared count told it lately (on demand, one environment sees
    /// one invocation at a time: its own refusals say little), else this environment's own. Of
    /// the fleet's last whole second and its current one so far, the busier: at the start of an
    /// overload the last second refused nothing yet.
    fn load(&self, now: Instant) -> ledger::Load {
        let mut load = self.ledger.load(now);
        let fleet = *self.fleet_load.lock();
        let Some((_, fleet)) =
            fleet.filter(|(at, _)| now.saturating_duration_since(*at) < FLEET_LOAD_FRESH)
        else {
            return load;
        };
        let overload = |total: u64, refused: u64| {
            let refused = refused.min(total);
            (
                total as f64 / (total - refused).max(1) as f64,
                total - refused,
                refused,
            )
        };
        let seconds = [
            overload(fleet.last_second, fleet.last_second_refused),
            overload(fleet.rate, fleet.refused),
        ];
        if let Some((_, admitted, refused)) = seconds
            .into_iter()
            .filter(|(_, a, r)| a + r > 0)
            .max_by(|x, y| x.0.total_cmp(&y.0))
        {
            load.admitted = admitted as f64;
            load.refused = refused as f64;
        }
        load
    }
}

/// The status when admission is `off`: nothing is decided or counted.
pub fn off_status(warnings: &Warnings) -> serde_json::Value {
    json!({
        "mode": Mode::Off.as_str(),
        "limit": null,
        "limitSource": null,
        "threshold": null,
        "inFlight": 0,
        "coordinator": "local",
        "coordinatorConnected": true,
        "unreturnedLeases": 0,
        "admitted": 0,
        "shed": 0,
        "load": {"utilisation": null, "inFlight": 0, "shedding": {"default": false, "sheddable": false}},
        "warnings": warnings.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::limit::{self, LimitSource};
    use crate::lease::unix_ms;
    use std::collections::HashMap;

    fn admission(pairs: &[(&str, &str)]) -> (Admission, crate::decision::limit::LimitSender) {
        let mut env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:1".into());
        let config = Config::from_strings(&env).unwrap();
        let (tx, rx) = limit::channel(config.limit);
        (Admission::new(&config, rx, None), tx)
    }

    const REST: &[u8] = br#"{"httpMethod":"GET","requestContext":{"stage":"p"}}"#;
    const SQS: &[u8] = br#"{"Records":[{"eventSource":"aws:sqs"}]}"#;

    fn deadline() -> Deadline {
        Deadline::from_unix_ms(Some(unix_ms() + 60_000))
    }

    fn totals(a: &Admission) -> serde_json::Value {
        let line = a.metrics.flush(0, a.limit()).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn sheds_http_past_the_threshold_and_admits_after_release() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "3"), ("ADMISSION_SHED_AT", "0.9")]); // floor(2.7) = 2
        assert_eq!(a.decide("1", deadline(), REST, None).await, Decision::Admit);
        assert_eq!(a.decide("2", deadline(), REST, None).await, Decision::Admit);
        let Decision::Shed {
            front_door,
            retry_after,
        } = a.decide("3", deadline(), REST, None).await
        else {
            panic!("third event should be shed");
        };
        assert!(retry_after >= 1);
        let answer = front_door.shed_answer(retry_after, false);
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(v["statusCode"], 429);
        assert_eq!(v["headers"]["retry-after"], retry_after.to_string());
        assert_eq!(a.status()["inFlight"], 2, "a shed event holds no lease");
        a.release("1", false).await;
        assert_eq!(a.decide("4", deadline(), REST, None).await, Decision::Admit);
    }

    #[tokio::test]
    async fn events_that_are_not_http_are_never_shed_but_count() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "1")]);
        assert_eq!(a.decide("1", deadline(), REST, None).await, Decision::Admit);
        assert_eq!(a.decide("2", deadline(), SQS, None).await, Decision::Admit);
        assert_eq!(a.status()["inFlight"], 2);
        assert!(matches!(
            a.decide("3", deadline(), REST, None).await,
            Decision::Shed { .. }
        ));
        let v = totals(&a);
        assert_eq!(
            (v["Admitted"].as_u64(), v["WouldShed"].as_u64()),
            (Some(2), Some(0))
        );
    }

    #[tokio::test]
    async fn observe_mode_admits_and_counts_would_shed_once_per_event() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", "observe")]);
        for i in 0..3 {
            assert_eq!(
                a.decide(&i.to_string(), deadline(), REST, None).await,
                Decision::Admit
            );
        }
        assert_eq!(
            a.status()["inFlight"],
            3,
            "each event holds exactly one lease"
        );
        let v = totals(&a);
        assert_eq!(v["WouldShed"], 2);
        assert_eq!(v["Shed"], 0);
        assert_eq!(v["Admitted"], 3);
        // Observe mode's refusals are not refusals: Retry-After is not skewed by them.
        assert_eq!(a.ledger.load(Instant::now()).refused, 0.0);
    }

    #[tokio::test]
    async fn without_a_limit_everything_is_admitted_until_one_is_published() {
        let (a, tx) = admission(&[]);
        for i in 0..50 {
            assert_eq!(
                a.decide(&i.to_string(), deadline(), REST, None).await,
                Decision::Admit
            );
        }
        assert_eq!(a.status()["inFlight"], 50);
        tx.send_replace(Some(Limit::new(10, LimitSource::Reserved)));
        assert!(matches!(
            a.decide("x", deadline(), REST, None).await,
            Decision::Shed { .. }
        ));
        assert_eq!(a.status()["limitSource"], "reserved");
        // 10 × 10 invocations a second × (2 ms + 0.25 ms) = 0.225 erlang → 4 spare slots.
        assert_eq!(a.status()["threshold"], 6);
    }

    #[tokio::test]
    async fn a_failed_shed_admits_and_counts_fail_open() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "1")]);
        a.decide("1", deadline(), REST, None).await;
        assert!(matches!(
            a.decide("2", deadline(), REST, None).await,
            Decision::Shed { .. }
        ));
        a.shed_failed("2", deadline()).await;
        assert_eq!(a.status()["inFlight"], 2);
        let v = totals(&a);
        assert_eq!(
            (
                v["Admitted"].as_u64(),
                v["Shed"].as_u64(),
                v["FailOpen"].as_u64()
            ),
            (Some(2), Some(0), Some(1))
        );
    }

    #[test]
    fn retry_after_reads_the_busier_of_the_fleets_last_and_current_second() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "10")]);
        let now = Instant::now();
        let fleet = |last_second, last_second_refused, rate, refused| FleetLoad {
            rate,
            refused,
            last_second,
            last_second_refused,
            capacity: None,
        };
        // The start of an overload: the last second was calm, this one refuses four in five.
        *a.fleet_load.lock() = Some((now, fleet(100, 0, 50, 40)));
        let l = a.load(now);
        assert_eq!((l.admitted, l.refused), (10.0, 40.0));
        // Steady overload: the last whole second says more than the first moments of this one.
        *a.fleet_load.lock() = Some((now, fleet(100, 80, 2, 0)));
        let l = a.load(now);
        assert_eq!((l.admitted, l.refused), (20.0, 80.0));
        // Stale counts are not used.
        *a.fleet_load.lock() = Some((now - Duration::from_secs(5), fleet(100, 80, 2, 0)));
        assert_eq!(a.load(now).refused, 0.0);
    }

    #[tokio::test]
    async fn fair_shares_decide_in_enforce_and_are_counted_in_observe() {
        for mode in ["enforce", "observe"] {
            // Threshold 12; a tenant holding twice its share (12 × 2 / tenants) or more stops
            // four slots (20 %) short of it.
            let (a, _tx) = admission(&[
                ("ADMISSION_LIMIT", "20"),
                ("ADMISSION_SHED_AT", "0.6"),
                ("ADMISSION_MODE", mode),
                ("ADMISSION_TENANT", "lambda"),
            ]);
            let decide = |id: String, tenant: &'static str| {
                let a = &a;
                async move { a.decide(&id, deadline(), REST, Some(tenant)).await }
            };
            for i in 0..8 {
                assert_eq!(decide(format!("a{i}"), "t1").await, Decision::Admit);
            }
            assert_eq!(decide("b0".into(), "t2").await, Decision::Admit);
            assert_eq!(decide("c0".into(), "t3").await, Decision::Admit);
            // 10 held: t1 (8 of a share of 4, twice that) is refused; t2 (1) still gets in.
            let over = decide("a8".into(), "t1").await;
            assert_eq!(decide("b1".into(), "t2").await, Decision::Admit);
            let v = totals(&a);
            if mode == "enforce" {
                assert!(matches!(over, Decision::Shed { .. }));
                assert_eq!(
                    (v["Shed"].as_u64(), v["Admitted"].as_u64()),
                    (Some(1), Some(11))
                );
            } else {
                assert_eq!(over, Decision::Admit);
                assert_eq!(v["WouldShed"], 1, "only t1's ninth");
            }
            assert_eq!(v["TenantsInFlightMax"], 3);
        }
    }

    #[tokio::test]
    async fn the_status_says_what_the_decision_uses() {
        let (a, _tx) = admission(&[("ADMISSION_LIMIT", "10"), ("ADMISSION_SHED_AT", "0.5")]);
        a.decide("1", deadline(), REST, None).await;
        let s = a.status();
        assert_eq!(s["mode"], "enforce");
        assert_eq!(s["limit"], 10);
        assert_eq!(s["limitSource"], "env");
        assert_eq!(s["threshold"], 5);
        assert_eq!(s["inFlight"], 1);
        assert_eq!(s["coordinator"], "local");
        assert_eq!(s["coordinatorConnected"], true);
        assert_eq!(s["admitted"], 1);
        assert_eq!(s["load"]["inFlight"], 1);
    }

    #[tokio::test]
    async fn the_status_counts_what_is_in_flight_before_a_limit_is_known() {
        let (a, _tx) = admission(&[]);
        a.decide("1", deadline(), REST, None).await;
        let s = a.status();
        assert_eq!(s["limit"], serde_json::Value::Null);
        assert_eq!(s["load"]["utilisation"], serde_json::Value::Null);
        assert_eq!(s["load"]["inFlight"], 1, "{s}");
        assert_eq!(off_status(&Warnings::default())["load"]["inFlight"], 0);
    }
}
