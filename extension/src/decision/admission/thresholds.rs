//! What the decision admits up to: the threshold of the limit in force, per class, the slots
//! kept for critical requests and for tenants under their share, and the bound of this
//! environment's CPU.

use std::sync::Arc;
use std::time::Instant;

use super::{Admission, Asked};
use crate::config::Mode;
use crate::decision::adaptive::Adaptive;
use crate::decision::classes::Class;
use crate::decision::cpu::CpuPressure;
use crate::decision::limit::{Limit, LimitSource};
use crate::decision::limit::{LimitReceiver, LimitSender};
use crate::lease::{Grant, Lease};
use std::sync::atomic::{AtomicU64, Ordering};

impl Admission {
    /// Sheds on CPU pressure read from `cpu` as well.
    pub fn with_cpu(mut self, cpu: Arc<CpuPressure>) -> Admission {
        self.cpu = Some(cpu);
        self
    }

    /// This environment's invocations in flight now.
    pub fn in_flight(&self) -> u64 {
        self.ledger.count(Instant::now())
    }

    /// With a shared count, the fleet's threshold is not this environment's CPU: an event that
    /// the CPU bound refuses here is refused before the count is asked (and counted with the next
    /// round trip, as sheds from the memo are). One that passes is counted in `asking` until its
    /// lease is in the ledger: `Ok(None)` when the gate does not apply.
    pub(super) fn cpu_gate(
        &self,
        asked: &Asked,
        now: Instant,
    ) -> Result<Option<Asking<'_>>, Grant> {
        let (Some(bound), Some(coordinator), Mode::Enforce) =
            (asked.cpu, &self.coordinator, self.mode)
        else {
            return Ok(None);
        };
        let asking = Asking::new(&self.asking);
        let held = self.ledger.count(now) + asking.before;
        if held < bound {
            return Ok(Some(asking));
        }
        self.ledger.refused(now);
        coordinator.shed_unasked();
        Err(Grant {
            granted: false,
            held,
            fleet: None,
            tenant: None,
            adaptive: None,
        })
    }

    /// Asks the count for `lease` unless the CPU gate refuses it; whether the CPU's bound refused.
    pub(super) async fn acquire_within_cpu(
        &self,
        asked: &Asked,
        lease: Lease<'_>,
        started: Instant,
    ) -> (Option<Grant>, bool) {
        match self.cpu_gate(asked, started) {
            Err(refused) => (Some(refused), true),
            Ok(_asking) => {
                let grant = self.acquire(lease, started).await;
                // With the local count, a refusal at or past the CPU's bound is the CPU's.
                let cpu = matches!((&grant, asked.cpu, &self.coordinator),
                    (Some(g), Some(bound), None) if !g.granted && g.held >= bound);
                (grant, cpu)
            }
        }
    }

    /// Observe mode with a shared count: whether this environment's count is at the CPU's bound.
    pub(super) fn cpu_over(&self, cpu: Option<u64>) -> bool {
        self.mode != Mode::Enforce
            && self.coordinator.is_some()
            && cpu.is_some_and(|b| self.ledger.count(Instant::now()) >= b)
    }

    /// The class's thresholds with this environment's CPU bound, and that bound when it binds
    /// (below the class's own threshold). With the local count the bound is the threshold; a
    /// shared count's is the fleet's, so the bound is checked apart ([`Admission::cpu_refusal`]).
    pub(super) fn cpu_bound(
        &self,
        class: Option<Class>,
        threshold: Option<u64>,
        calm: Option<u64>,
    ) -> (Option<u64>, Option<u64>, Option<u64>) {
        let cpu = class
            .and_then(|c| self.cpu_threshold(c))
            .filter(|&t| threshold.is_some_and(|own| t < own));
        match (cpu, &self.coordinator) {
            (Some(t), None) => (Some(t), calm.map(|c| c.min(t)), cpu),
            _ => (threshold, calm, cpu),
        }
    }

    /// Managed Instances with a shared count: the limit is the pool's, the concurrency of the
    /// environments the count heard from lately, summed; `own` is this environment's (the
    /// wrapper's `max-concurrency`), which every lease publishes, and `pool` where the sum goes.
    /// Until the count has answered once, no limit is known and everything is admitted.
    pub fn with_pool(mut self, own: LimitReceiver, pool: LimitSender) -> Admission {
        self.pool = Some((own, pool));
        self
    }

    /// This environment's concurrency, to publish with a lease.
    pub(super) fn own_capacity(&self) -> Option<u64> {
        let (own, _) = self.pool.as_ref()?;
        own.borrow().map(|l| l.value)
    }

    /// The pool's concurrency, as the count summed it: the limit from now on.
    pub(super) fn pool_seen(&self, capacity: Option<u64>) {
        let (Some((_, pool)), Some(total)) = (&self.pool, capacity.filter(|&n| n > 0)) else {
            return;
        };
        let limit = Limit::new(total, LimitSource::ManagedInstancesPool);
        if pool.send_if_modified(|l| l.replace(limit) != Some(limit)) {
            tracing::debug!(limit = total, "Managed Instances: the pool's concurrency");
        }
    }

    pub(super) fn threshold(&self) -> Option<u64> {
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
    pub(super) fn class_thresholds(
        &self,
        limit: Limit,
        class: Class,
    ) -> (Option<u64>, Option<u64>) {
        // The sheds' headroom is kept on the platform's limit; the classes share what the
        // adaptive limit, if any, allows of it.
        let shared = self.shared_limit(limit);
        let threshold = self.headroom_threshold(limit).min(shared.value);
        // Managed Instances keep their spare slots calm or not: a pool's sum minus one would
        // leave one slot spare across the pool at an overload's start.
        let calm = (self.shed_at.is_none()
            && self.coordinator.is_some()
            && !limit.source.is_managed_instances())
        .then(|| limit.value.saturating_sub(1).max(1).min(shared.value));
        let calm = calm.and_then(|c| match class {
            Class::Critical => Some(c),
            Class::Default => Some(self.below_reserve(c, shared)),
            Class::Exempt | Class::Sheddable => None,
        });
        (self.by_class(class, threshold, shared), calm)
    }

    /// `class`'s part of `threshold` under the limit the classes share: critical requests up to
    /// it, the default class short of it by the critical reserve, sheddable requests from
    /// `ADMISSION_SHEDDABLE_AT` of `shared`; `None`: exempt.
    fn by_class(&self, class: Class, threshold: u64, shared: Limit) -> Option<u64> {
        let default = self.below_reserve(threshold, shared);
        match class {
            Class::Exempt => None,
            Class::Critical => Some(threshold),
            Class::Default => Some(default),
            Class::Sheddable => {
                let share = (shared.value as f64 * self.sheddable_at).floor() as u64;
                Some(share.clamp(1, default))
            }
        }
    }

    /// `threshold` less the slots the default class leaves to critical requests (with critical
    /// rules), at least one.
    fn below_reserve(&self, threshold: u64, shared: Limit) -> u64 {
        let reserve = if self.rules.has_critical() {
            self.reserve_slots(shared, self.critical_reserve)
        } else {
            0
        };
        threshold.saturating_sub(reserve).max(1)
    }

    /// The limit the classes share: the platform's, or the adaptive limit when lower. Computed in
    /// observe mode too, where only `WouldShed` follows it (no lease asked carries a threshold).
    pub(super) fn shared_limit(&self, limit: Limit) -> Limit {
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
    pub(super) fn headroom_threshold(&self, limit: Limit) -> u64 {
        let shed_secs = self.ledger.mean_shed_secs();
        // Managed Instances size the spare slots for this environment's own shed rate, in whole
        // sheds a second.
        let shed_rate = if limit.source.is_managed_instances() {
            self.ledger.shed_rate(std::time::Instant::now()).round()
        } else {
            0.0
        };
        let key = (limit, shed_secs.to_bits(), shed_rate.to_bits());
        let mut memo = self.threshold_memo.lock();
        match *memo {
            Some((k, threshold)) if k == key => threshold,
            _ => {
                let threshold = limit.threshold(self.shed_at, shed_secs, shed_rate);
                *memo = Some((key, threshold));
                threshold
            }
        }
    }

    /// The threshold of `class` under CPU pressure: the CPU's cap is a limit the classes share as
    /// they share the platform's (critical requests up to it, the default class short of it by
    /// the critical reserve, sheddable requests from `ADMISSION_SHEDDABLE_AT` of it). `None`:
    /// CPU pressure is off, no cap is known, or the class is exempt.
    pub(super) fn cpu_threshold(&self, class: Class) -> Option<u64> {
        let cap = self.cpu.as_ref()?.cap()?;
        self.by_class(class, cap, Limit::new(cap, LimitSource::Env))
    }

    /// `share` of the limit, in whole slots, at least one.
    pub(super) fn reserve_slots(&self, limit: Limit, share: f64) -> u64 {
        ((limit.value as f64 * share).floor() as u64).max(1)
    }
}

/// A decision counted in [`Admission::cpu_gate`]'s pending count until dropped.
pub(super) struct Asking<'a> {
    count: &'a AtomicU64,
    /// The decisions pending before this one.
    before: u64,
}

impl<'a> Asking<'a> {
    fn new(count: &'a AtomicU64) -> Asking<'a> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Asking { count, before }
    }
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}
