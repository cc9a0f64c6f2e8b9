//! The admission's life around the decision: the lease an environment holds while it
//! initialises, releases (and the adaptive limit's samples they carry), sheds that failed, and
//! the leases returned at shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Admission, InitLease, ADAPTIVE_NOTE_TTL, INIT_POLL, INIT_TIMEOUT};
use crate::coordinator::Coordinator;
use crate::decision::adaptive::Closed;
use crate::lease::{Deadline, FleetLoad, Lease};

impl Admission {
    /// The fleet's load as its shared count returned it: `Retry-After` reads it, and refusals
    /// anywhere in the fleet keep the overload going here too.
    pub(super) fn fleet_seen(&self, load: FleetLoad, now: Instant) {
        if load.refused > 0 || load.last_second_refused > 0 {
            self.ledger.overloaded(now);
        }
        *self.fleet_load.lock() = Some((now, load));
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
                capacity: None,
            };
            if *this.init_lease.lock() != InitLease::Pending {
                return;
            }
            if let Err(e) = coordinator.acquire(lease).await {
                // A round trip that failed or overran its budget may still have taken the lease;
                // one skipped took nothing.
                if e.may_have_counted() {
                    coordinator.return_with_next(id);
                }
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
                let _ = coordinator.release(Some(&id), None).await;
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
                if let Err(e) = coordinator.release(Some(&id), None).await {
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
            capacity: None,
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
        // Admitted while the shared count was skipped, it holds no lease: only its sample for the
        // adaptive limit goes, if there is one.
        let sample = sample.map(|(_, s)| s);
        let member = ended.counted.then_some(ended.member);
        let shared = self
            .coordinator
            .as_ref()
            .filter(|_| member.is_some() || sample.is_some());
        if let Some(coordinator) = shared {
            if let (Some(other), true) = (ended.or_else, ended.counted) {
                // Taken without an answer: the count may have granted it as the overflow
                // tenant's. Returning a lease the count does not hold does nothing.
                coordinator.return_with_next(other);
            }
            let shared = coordinator.clone();
            let returned =
                tokio::spawn(async move { shared.release(member.as_deref(), sample).await }).await;
            match returned {
                Ok(Err(e)) => {
                    // The coordinator logs outages once; the lease goes back with the next round
                    // trip.
                    tracing::debug!(error = %e, "returning the lease failed; it rides along with the next round trip");
                }
                Ok(Ok(Some(closed))) => self.window_closed(coordinator, &closed).await,
                _ => {}
            }
        }
    }

    /// This release closed a window of the fleet's: the next limit is computed here and
    /// published for every environment's next acquire. Published before this release returns
    /// (the runtime's answer waits for it, once a window for the whole fleet): a write left to a
    /// task could land after a freeze, over a newer state; the script keeps the newer one anyway.
    async fn window_closed(&self, coordinator: &Arc<dyn Coordinator>, closed: &Closed) {
        let bounds = self.adaptive.as_ref().map(|a| a.bounds(self.limit()));
        if let (Some(adaptive), Some(bounds)) = (&self.adaptive, bounds) {
            if let Some(state) = adaptive.fleet_step(closed, bounds) {
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

    /// The adaptive limit the fleet's count returned with a grant, in force here at once.
    pub(super) fn adopt_fleet_cap(&self, cap: Option<u64>) {
        let Some(adaptive) = &self.adaptive else {
            return;
        };
        match cap {
            Some(cap) => {
                adaptive.set_cap(cap);
                self.metrics.adaptive_limit(cap);
            }
            // The fleet's state expired: it starts afresh, from the ceiling.
            None => adaptive.clear_cap(),
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
}
