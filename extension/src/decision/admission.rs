//! The admission decision, made for every event before the runtime sees it.
//!
//! One pass per event, one question to the count: an HTTP event in `enforce` mode asks for a
//! lease below the threshold (`max(1, floor(limit × ADMISSION_SHED_AT))`); every other event
//! (observe mode, events that are not HTTP, no limit known) takes its lease regardless, and the
//! count that comes back says whether it would have been shed. Whatever fails here admits: a
//! decision that cannot be made must never cost the function an invocation.
//!
//! `Admission` is the only writer of this environment's ledger ([`InFlight`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use serde_json::json;

use crate::config::{Config, Mode};
use crate::coordinator::Coordinator;
use crate::decision::adaptive::Adaptive;
use crate::decision::classes::{Class, Rules};
use crate::decision::front_door::{self, FrontDoor, Wanted};
use crate::decision::ledger::{self, InFlight};
use crate::decision::limit::{Limit, LimitReceiver};
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
    threshold_memo: Mutex<Option<((Limit, u64), u64)>>,
    /// `ADMISSION_LIMIT=adaptive`.
    adaptive: Option<Adaptive>,
    metrics: Metrics,
    /// Settings that protect nothing, for the status and the log.
    warnings: Warnings,
    /// The runtime has asked the proxy for an event (it runs through the wrapper).
    runtime_seen: AtomicBool,
}

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
            tenants: config.tenants.clone(),
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

    fn threshold(&self) -> Option<u64> {
        self.limit().map(|l| self.headroom_threshold(l))
    }

    /// The threshold of `class` under `limit`, and its threshold while the fleet is calm;
    /// `None`: never shed.
    ///
    /// The default class sheds at the headroom's threshold and, with a shared count and no
    /// `ADMISSION_SHED_AT`, keeps only one slot spare while the fleet is calm. Critical requests
    /// get the same threshold, never the spare slots above it: those are the sheds' room, and a
    /// shed that finds none is a 500 for whoever arrives then. Their priority comes from the
    /// default class stopping short of it, leaving them `ADMISSION_CRITICAL_RESERVE` of the limit
    /// (at least one slot).
    fn class_thresholds(&self, limit: Limit, class: Class) -> (Option<u64>, Option<u64>) {
        // The sheds' headroom is kept on the platform's limit; the classes share what the
        // adaptive limit, if any, allows of it.
        let shared = self.shared_limit(limit);
        let threshold = self.headroom_threshold(limit).min(shared.value);
        let calm = (self.shed_at.is_none() && self.coordinator.is_some())
            .then(|| limit.value.saturating_sub(1).max(1).min(shared.value));
        let reserve = if self.rules.has_critical() {
            self.reserve_slots(shared, self.critical_reserve)
        } else {
            0
        };
        let below = |t: u64| t.saturating_sub(reserve).max(1);
        let default = below(threshold);
        match class {
            Class::Exempt => (None, None),
            Class::Critical => (Some(threshold), calm),
            Class::Default => (Some(default), calm.map(below)),
            Class::Sheddable => {
                let share = (shared.value as f64 * self.sheddable_at).floor() as u64;
                (Some(share.clamp(1, default)), None)
            }
        }
    }

    /// The limit the classes share: the platform's, or the adaptive limit when lower. Computed in
    /// observe mode too, where only `WouldShed` follows it (no lease asked carries a threshold).
    fn shared_limit(&self, limit: Limit) -> Limit {
        match self.adaptive.as_ref().and_then(Adaptive::cap) {
            Some(cap) if cap < limit.value => Limit {
                value: cap,
                ..limit
            },
            _ => limit,
        }
    }

    /// [`Limit::threshold`] for the current mean shed time, computed again only when the limit
    /// or that time changes: sizing the spare slots takes as many steps as there are, thousands
    /// for a limit in the tens of thousands.
    fn headroom_threshold(&self, limit: Limit) -> u64 {
        let shed_secs = self.ledger.mean_shed_secs();
        let key = (limit, shed_secs.to_bits());
        let mut memo = self.threshold_memo.lock();
        match *memo {
            Some((k, threshold)) if k == key => threshold,
            _ => {
                let threshold = limit.threshold(self.shed_at, shed_secs);
                *memo = Some((key, threshold));
                threshold
            }
        }
    }

    /// `share` of the limit, in whole slots, at least one.
    fn reserve_slots(&self, limit: Limit, share: f64) -> u64 {
        ((limit.value as f64 * share).floor() as u64).max(1)
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
        let limit = self.limit();
        // Without a limit nothing can be shed, so the event is not even parsed.
        let http = limit.and_then(|_| front_door::read(event, &self.wanted));
        let class = http.as_ref().map(|h| self.rules.classify(&h.request));
        let (class_threshold, calm) = match (limit, class) {
            (Some(limit), Some(class)) => self.class_thresholds(limit, class),
            _ => (None, None),
        };
        let tenant = self
            .tenants
            .as_ref()
            .map(|t| t.of(lambda_tenant, http.as_ref()));
        // A tenant over its fair share stops `ADMISSION_TENANT_RESERVE` short of the threshold
        // (sheddable requests stop at theirs whoever sends them).
        let fair_class = matches!(class, Some(Class::Default | Class::Critical));
        let fair = match (limit, class_threshold, &self.tenants) {
            (Some(limit), Some(t), Some(tenants)) if fair_class => Some(FairShare {
                below: t
                    .saturating_sub(self.reserve_slots(self.shared_limit(limit), tenants.reserve))
                    .max(1),
                pool: t as f64 * tenants.over_at,
            }),
            _ => None,
        };
        let enforce = self.mode == Mode::Enforce;
        let lease = Lease {
            id,
            deadline,
            threshold: class_threshold.filter(|_| enforce),
            calm_threshold: calm.filter(|_| enforce),
            invocation: true,
            tenant: tenant.as_deref(),
            fair: fair.filter(|_| enforce),
        };
        let front_door = http.map(|h| h.front_door);
        let grant = self.acquire(lease, started).await;
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
        let (decision, outcome) = match (grant, front_door) {
            (None, _) => (Decision::Admit, Outcome::FailOpen),
            (Some(Grant { granted: false, .. }), Some(front_door)) => {
                let retry_after =
                    ledger::retry_after(self.load(started), self.retry_after_max, fastrand::f64());
                tracing::debug!(
                    request_id = id,
                    tenant = tenant.as_deref(),
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
                self.ledger.take(
                    id,
                    tenant.as_deref().map(|t| (t, None)),
                    deadline.at,
                    started,
                );
                (Decision::Admit, Outcome::FailOpen)
            }
            (Some(grant), _) => {
                // Only observe mode admits what it would shed (enforce may admit past the
                // threshold while the fleet is calm).
                let fair_ok = match (grant.tenant, fair) {
                    (Some(t), Some(f)) => f.allows(grant.held, t),
                    _ => true,
                };
                let over = !enforce && class_threshold.is_some_and(|t| grant.held >= t || !fair_ok);
                let outcome = if over {
                    Outcome::WouldShed
                } else {
                    Outcome::Admitted
                };
                (Decision::Admit, outcome)
            }
        };
        self.metrics.record(outcome, class, started.elapsed());
        decision
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
        match coordinator.acquire(lease).await {
            Ok(grant) => {
                if let Some(adaptive) = &self.adaptive {
                    match grant.adaptive {
                        Some(cap) => {
                            adaptive.set_cap(cap);
                            self.metrics.adaptive_limit(cap);
                        }
                        // The fleet's state expired: it starts afresh, from the ceiling.
                        None => adaptive.clear_cap(),
                    }
                }
                *self.full_until.lock() = (!grant.granted).then_some((now + FULL_MEMO, grant.held));
                let fleet = grant.held + u64::from(grant.granted);
                *self.fleet_in_flight.lock() = Some((now, fleet));
                self.metrics.coordinator_answered(
                    asked.elapsed(),
                    fleet,
                    grant.fleet.map(|f| f.rate),
                );
                if let Some(load) = grant.fleet {
                    *self.fleet_load.lock() = Some((now, load));
                }
                if grant.granted {
                    let tenant = lease.tenant.map(|t| (t, grant.tenant));
                    self.ledger.take(lease.id, tenant, lease.deadline.at, now);
                } else {
                    self.ledger.refused(now);
                }
                Some(grant)
            }
            Err(e) => {
                tracing::debug!(request_id = lease.id, error = %e, "coordinator gave no answer; admitting");
                self.metrics.coordinator_failed(e.is_round_trip());
                let tenant = lease.tenant.map(|t| (t, None));
                self.ledger.take(lease.id, tenant, lease.deadline.at, now);
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

    /// Counts this environment in the shared count while it initialises: on demand, a cold start
    /// is busy for Lambda from the invoke that started it, and a fleet count without it admits
    /// into slots Lambda no longer has. The lease is taken as soon as the coordinator connects
    /// and returned at the runtime's first `next` ([`Admission::runtime_ready`]); it expires by
    /// itself after Lambda's init timeout.
    pub fn hold_while_initialising(self: &Arc<Self>) {
        let Some(coordinator) = self.coordinator.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            while !coordinator.connected() {
                if *this.init_lease.lock() != InitLease::Pending || started.elapsed() > INIT_TIMEOUT
                {
                    return;
                }
                tokio::time::sleep(INIT_POLL).await;
            }
            let id: Box<str> = format!("init-{:016x}", fastrand::u64(..)).into();
            let deadline = Deadline::from_unix_ms(Some(
                crate::lease::unix_ms()
                    + INIT_TIMEOUT.saturating_sub(started.elapsed()).as_millis() as u64,
            ));
            let lease = Lease {
                id: &id,
                deadline,
                threshold: None,
                calm_threshold: None,
                invocation: false,
                tenant: None,
                fair: None,
            };
            if *this.init_lease.lock() != InitLease::Pending {
                return;
            }
            if coordinator.acquire(lease).await.is_err() {
                // A round trip that overran its budget may still have taken the lease.
                coordinator.return_with_next(id);
                return;
            }
            let kept = {
                let mut state = this.init_lease.lock();
                let pending = *state == InitLease::Pending;
                if pending {
                    *state = InitLease::Held(id.clone());
                }
                pending
            };
            if !kept {
                // The runtime got ready meanwhile: give it back at once.
                let _ = coordinator.release(&id, None).await;
            }
        });
    }

    /// The runtime asked for an event: initialisation is over, and its lease goes back.
    pub fn runtime_ready(&self) {
        if !self.runtime_seen.swap(true, Ordering::Relaxed) {
            self.warnings.set_runtime_bypasses(false);
        }
        let held = {
            let mut state = self.init_lease.lock();
            if *state == InitLease::Done {
                return;
            }
            std::mem::replace(&mut *state, InitLease::Done)
        };
        if let (InitLease::Held(id), Some(coordinator)) = (held, &self.coordinator) {
            // The first event's acquire may leave before this release: it carries the lease
            // back itself, so the environment never counts twice against its own first event.
            coordinator.return_with_next(id.clone());
            let coordinator = coordinator.clone();
            tokio::spawn(async move {
                if let Err(e) = coordinator.release(&id, None).await {
                    tracing::debug!(error = %e, "returning the init lease failed; it rides along with the next round trip");
                }
            });
        }
    }

    /// The shed answer for `id` could not be posted, so the event goes to the runtime after all,
    /// holding a lease like any other (counted for no tenant: the event is not read again).
    pub async fn shed_failed(&self, id: &str, deadline: Deadline) {
        let lease = Lease {
            id,
            deadline,
            threshold: None,
            calm_threshold: None,
            invocation: true,
            tenant: None,
            fair: None,
        };
        self.acquire(lease, Instant::now()).await;
        self.metrics.shed_failed();
    }

    /// A shed event took `took` to answer: the headroom follows it.
    pub fn shed_took(&self, took: Duration) {
        self.ledger.shed_took(took);
    }

    /// A shed answer whose post Lambda did not confirm: the event was not handed over either.
    pub fn shed_unconfirmed(&self) {
        self.metrics.shed_unconfirmed();
    }

    /// The runtime answered `id` (response or error): its lease is returned. The shared count's
    /// round trip runs as its own task, awaited: a runtime that hangs up meanwhile cannot cut it
    /// off (and with it the leases it carries back).
    pub async fn release(&self, id: &str, errored: bool) {
        let now = Instant::now();
        let Some(ended) = self.ledger.release(id, now) else {
            return;
        };
        let sample = self
            .adaptive
            .as_ref()
            .and_then(|a| a.sample(ended.ran, errored, crate::lease::unix_ms()));
        if let (None, Some(adaptive), Some((ran, sample))) =
            (&self.coordinator, &self.adaptive, sample)
        {
            let in_flight = self.ledger.count(now) + 1;
            let bounds = adaptive.bounds(self.limit());
            if let Some(state) = adaptive.add_local(ran, sample, in_flight, bounds) {
                self.adaptive_computed(&state);
            }
        }
        if let Some(coordinator) = &self.coordinator {
            if let Some(other) = ended.or_else {
                // Taken without an answer: the count may have granted it as the overflow
                // tenant's. Returning a lease the count does not hold does nothing.
                coordinator.return_with_next(other);
            }
            let (shared, member) = (coordinator.clone(), ended.member);
            let sample = sample.map(|(_, s)| s);
            let returned = tokio::spawn(async move { shared.release(&member, sample).await }).await;
            match returned {
                Ok(Err(e)) => {
                    // The coordinator logs outages once; the lease goes back with the next round
                    // trip.
                    tracing::debug!(error = %e, "returning the lease failed; it rides along with the next round trip");
                }
                Ok(Ok(Some(closed))) => {
                    // This release closed a window of the fleet's: the next limit is computed
                    // here and published for every environment's next acquire.
                    // Published before this release returns (the runtime's answer waits for it,
                    // once a window for the whole fleet): a write left to a task could land after
                    // a freeze, over a newer state; the script keeps the newer one anyway.
                    let bounds = self.adaptive.as_ref().map(|a| a.bounds(self.limit()));
                    if let (Some(adaptive), Some(bounds)) = (&self.adaptive, bounds) {
                        if let Some(state) = adaptive.fleet_step(&closed, bounds) {
                            self.adaptive_computed(&state);
                            coordinator
                                .publish_adaptive(
                                    closed.window,
                                    &state.encode(),
                                    state.cap(),
                                    ADAPTIVE_NOTE_TTL,
                                )
                                .await;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A limit computed here (a window closed): in force at once, in the metrics and the log.
    fn adaptive_computed(&self, state: &crate::decision::adaptive::State) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        let before = adaptive.cap();
        adaptive.set_cap(state.cap());
        self.metrics.adaptive_limit(state.cap());
        if let (Some(median), Some(baseline)) = (state.median_us, state.baseline_us) {
            self.metrics.adaptive_signal(median, baseline);
        }
        if before != Some(state.cap()) {
            tracing::debug!(
                adaptive_limit = state.cap(),
                median_us = state.median_us.map(|m| m.round()),
                baseline_us = state.baseline_us.map(|b| b.round()),
                "adaptive limit"
            );
        }
    }

    /// Returns every lease this environment holds (SHUTDOWN: a runtime that crashed, or an
    /// environment spun down, must not leave its leases to their deadlines).
    pub async fn release_all(&self) {
        let mut held = self.ledger.drain();
        if let InitLease::Held(id) =
            std::mem::replace(&mut *self.init_lease.lock(), InitLease::Done)
        {
            held.push(id);
        }
        if let Some(coordinator) = &self.coordinator {
            let n = held.len();
            if let Err(e) = coordinator.release_all(held).await {
                tracing::warn!(error = %e, leases = n, "could not return the leases at shutdown; they expire at their deadlines");
            }
        }
    }

    /// Writes the metrics of the period that just ended, if anything was decided in it.
    pub fn emit_metrics(&self) {
        self.ledger.count(Instant::now());
        self.metrics.emit(self.ledger.take_max(), self.limit());
    }

    /// What a handler or a test may read at `/lambda-admission/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let limit = self.limit();
        json!({
            "mode": self.mode.as_str(),
            "limit": limit.map(|l| l.value),
            "limitSource": limit.map(|l| l.source.as_str()),
            "threshold": self.threshold(),
            "inFlight": self.ledger.count(Instant::now()),
            "coordinator": self.coordinator.as_ref().map_or("local", |c| c.kind()),
            "coordinatorConnected": self.coordinator.as_ref().is_none_or(|c| c.connected()),
            "unreturnedLeases": self.coordinator.as_ref().map_or(0, |c| c.unreturned()),
            "admitted": self.metrics.totals().admitted,
            "shed": self.metrics.totals().shed,
            "load": self.load_hints(),
            "adaptiveLimit": self.adaptive.as_ref().and_then(Adaptive::cap),
            "warnings": self.warnings.to_json(),
        })
    }

    /// For handlers that degrade before anything is refused: how full the fleet is (as of this
    /// environment's last decision with a shared count, else this environment's own count), and
    /// which classes that count sheds.
    fn load_hints(&self) -> serde_json::Value {
        let now = Instant::now();
        let Some(limit) = self.limit() else {
            return json!({"utilisation": null, "shedding": {"default": false, "sheddable": false}});
        };
        let fleet = *self.fleet_in_flight.lock();
        let in_flight = fleet
            .filter(|(at, _)| now.saturating_duration_since(*at) < FLEET_LOAD_FRESH)
            .map_or_else(|| self.ledger.count(now), |(_, n)| n);
        let sheds = |class| {
            self.class_thresholds(limit, class)
                .0
                .is_some_and(|t| in_flight >= t)
        };
        let utilisation = in_flight as f64 / limit.value.max(1) as f64;
        json!({
            "utilisation": (utilisation * 1000.0).round() / 1000.0,
            "inFlight": in_flight,
            "shedding": {
                "default": sheds(Class::Default),
                "sheddable": sheds(Class::Sheddable),
            },
        })
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
        "load": {"utilisation": null, "shedding": {"default": false, "sheddable": false}},
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
    }
}
