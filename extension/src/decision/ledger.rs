//! The ledger: what this environment has handed to its runtime and not yet seen answered.
//!
//! An invocation is in flight from the moment its event leaves the proxy until the runtime posts
//! its `response` or `error`, or its deadline passes (a runtime that crashed or timed out never
//! answers, and must not hold a slot forever). The ledger also keeps the load history that
//! `Retry-After` is computed from: recent durations and the recent share of refused events.
//! With the local coordinator it is the count itself; with a shared one it mirrors this
//! environment's part of the fleet's.
//!
//! Only [`crate::decision::admission::Admission`] writes it. It owns no I/O and takes the time as an
//! argument, so tests drive it with any clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::decision::tenants::{self, OVERFLOW};
use crate::lease::{Grant, Lease, TenantLoad};

/// How far back the admitted/refused rates look (the time constant of their exponential decay).
const RATE_WINDOW_SECS: f64 = 10.0;
/// Weight of the newest duration in the moving average.
const DURATION_WEIGHT: f64 = 0.2;
/// The duration assumed before any invocation has finished.
const DEFAULT_DURATION_SECS: f64 = 1.0;
/// How long a shed is assumed to hold its slot before one has been timed.
pub const DEFAULT_SHED_SECS: f64 = 0.002;

pub struct InFlight {
    inner: Mutex<Inner>,
    /// At most this many tenants are counted apart (`ADMISSION_TENANTS_MAX`).
    tenants_max: u64,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(1000)
    }
}

struct Inner {
    invocations: HashMap<Box<str>, Invocation>,
    /// Leases per tenant, for the tenants with any in flight.
    tenants: HashMap<Box<str>, u64>,
    /// No invocation expires before this: expiry scans only once it has passed.
    earliest_deadline: Option<Instant>,
    /// Highest count since the last [`InFlight::take_max`].
    max: u64,
    mean_duration_secs: f64,
    /// How long answering a shed event takes, event in to 429 accepted (moving average).
    mean_shed_secs: f64,
    admitted_rate: Decayed,
    refused_rate: Decayed,
    overload: Overload,
    /// Refusals in the current wall-clock second and the last: the shed rate the spare slots
    /// are sized for.
    sheds: Seconds,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            invocations: HashMap::new(),
            tenants: HashMap::new(),
            earliest_deadline: None,
            max: 0,
            mean_duration_secs: DEFAULT_DURATION_SECS,
            mean_shed_secs: DEFAULT_SHED_SECS,
            admitted_rate: Decayed::default(),
            refused_rate: Decayed::default(),
            overload: Overload::default(),
            sheds: Seconds::default(),
        }
    }
}

struct Invocation {
    started: Instant,
    deadline: Instant,
    /// The tenant it counts for (the overflow tenant past the bound).
    tenant: Option<Box<str>>,
    /// Taken without the count's answer: it may hold the lease as the overflow tenant's.
    unsure: bool,
    /// The count holds its lease, or may (granted, or asked without an answer); not when a shared
    /// count was skipped, down or not connected: such an invocation has nothing to return.
    counted: bool,
}

/// How an invocation was taken: the tenant it counts for, and what the shared count knows of it.
struct Taken {
    tenant: Option<Box<str>>,
    unsure: bool,
    counted: bool,
}

/// An invocation that ended: how long it ran, and its lease's name in a shared count.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended {
    pub ran: Duration,
    pub member: Box<str>,
    /// The name it has if the count granted it as the overflow tenant's, when the count's
    /// answer never came.
    pub or_else: Option<Box<str>>,
    /// A shared count holds its lease, or may: it is to be returned.
    pub counted: bool,
}

impl InFlight {
    pub fn new(tenants_max: u64) -> InFlight {
        InFlight {
            inner: Mutex::new(Inner::default()),
            tenants_max,
        }
    }

    /// Grants `lease` if fewer than its threshold are in flight (and, for a tenant holding its
    /// fair share or more, fewer than [`FairShare::below`]); counts it.
    pub fn try_take(&self, lease: Lease<'_>, now: Instant) -> Grant {
        let mut inner = self.inner.lock();
        inner.expire(now);
        let held = inner.invocations.len() as u64;
        let tenant = lease.tenant.map(|t| inner.tenant_load(t, self.tenants_max));
        let fair = match (tenant, lease.fair) {
            (Some(t), Some(fair)) => fair.allows(held, t),
            _ => true,
        };
        let granted = lease.threshold.is_none_or(|t| held < t && fair);
        if granted {
            let counted = lease.tenant.map(|t| counted_as(t, tenant));
            // The count is this ledger itself, and it holds the lease.
            let taken = Taken {
                tenant: counted,
                unsure: false,
                counted: true,
            };
            inner.insert(lease.id, taken, lease.deadline.at, now);
        } else {
            inner.refused_rate.add(now);
            inner.overload.note(now);
            inner.sheds.add(now);
        }
        Grant {
            granted,
            held,
            fleet: None,
            tenant,
            adaptive: None,
        }
    }

    /// Records `id` as in flight whatever the count: granted by a shared coordinator (for
    /// `tenant`, as the grant says it counted it), or admitted because the decision could not
    /// be made; `counted`: the shared count holds its lease, or may.
    pub fn take(
        &self,
        id: &str,
        tenant: Option<(&str, Option<TenantLoad>)>,
        counted: bool,
        deadline: Instant,
        now: Instant,
    ) {
        let taken = Taken {
            tenant: tenant.map(|(t, load)| counted_as(t, load)),
            unsure: tenant.is_some_and(|(_, load)| load.is_none()),
            counted,
        };
        self.inner.lock().insert(id, taken, deadline, now);
    }

    /// Tenants with leases in flight here.
    pub fn tenants(&self) -> u64 {
        self.inner.lock().tenants.len() as u64
    }

    /// Counts a refusal decided elsewhere (by a shared coordinator), for `Retry-After`.
    pub fn refused(&self, now: Instant) {
        let mut inner = self.inner.lock();
        inner.refused_rate.add(now);
        inner.overload.note(now);
        inner.sheds.add(now);
    }

    /// Refusals a second here: the last whole second's, or the current one's so far if more
    /// (over at least a quarter of a second, so that the first refusals do not read as a flood).
    pub fn shed_rate(&self, now: Instant) -> f64 {
        self.inner.lock().sheds.rate(now)
    }

    /// The fleet refused events elsewhere (its shared count said so): the overload goes on.
    pub fn overloaded(&self, now: Instant) {
        self.inner.lock().overload.note(now);
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

    /// Ends `id`'s invocation; `None` if it was not in flight.
    pub fn release(&self, id: &str, now: Instant) -> Option<Ended> {
        let mut inner = self.inner.lock();
        let (id, inv) = inner.invocations.remove_entry(id)?;
        count_down(&mut inner.tenants, inv.tenant.as_deref());
        let ran = now.saturating_duration_since(inv.started);
        inner.mean_duration_secs = DURATION_WEIGHT * ran.as_secs_f64()
            + (1.0 - DURATION_WEIGHT) * inner.mean_duration_secs;
        let or_else = (inv.unsure && inv.tenant.as_deref() != Some(OVERFLOW))
            .then(|| tenants::member(&id, Some(OVERFLOW)));
        Some(Ended {
            ran,
            member: tenants::member(&id, inv.tenant.as_deref()),
            or_else,
            counted: inv.counted,
        })
    }

    /// Ends every invocation (SHUTDOWN): the names of the leases a shared count holds or may.
    pub fn drain(&self) -> Vec<Box<str>> {
        let mut inner = self.inner.lock();
        inner.earliest_deadline = None;
        inner.tenants.clear();
        inner
            .invocations
            .drain()
            .filter(|(_, inv)| inv.counted)
            .map(|(id, inv)| tenants::member(&id, inv.tenant.as_deref()))
            .collect()
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
            overloaded_secs: inner.overload.age(now),
        }
    }
}

/// How long events have been refused without a pause: the age of the current overload.
#[derive(Default)]
struct Overload {
    since: Option<Instant>,
    last: Option<Instant>,
}

/// Counts per second: the current second's and the last one's.
#[derive(Default)]
struct Seconds {
    started: Option<Instant>,
    current: u64,
    last: u64,
}

impl Seconds {
    fn roll(&mut self, now: Instant) {
        let Some(started) = self.started else {
            self.started = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(started).as_secs();
        if elapsed >= 1 {
            self.last = if elapsed == 1 { self.current } else { 0 };
            self.current = 0;
            self.started = Some(started + Duration::from_secs(elapsed));
        }
    }

    fn add(&mut self, now: Instant) {
        self.roll(now);
        self.current += 1;
    }

    fn rate(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let so_far = self.started.map_or(1.0, |s| {
            now.saturating_duration_since(s).as_secs_f64().max(0.25)
        });
        (self.last as f64).max(self.current as f64 / so_far)
    }
}

/// A second without any refusal ends an overload.
const OVERLOAD_PAUSE: Duration = Duration::from_secs(1);

impl Overload {
    fn note(&mut self, now: Instant) {
        if !self.going_on(now) {
            self.since = Some(now);
        }
        self.last = Some(now);
    }

    fn going_on(&self, now: Instant) -> bool {
        self.last
            .is_some_and(|last| now.saturating_duration_since(last) <= OVERLOAD_PAUSE)
    }

    fn age(&self, now: Instant) -> f64 {
        match self.since {
            Some(since) if self.going_on(now) => now.saturating_duration_since(since).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// The tenant a lease counts for: its own, or the overflow tenant when the count said so.
/// One lease of `tenant` ended.
fn count_down(tenants: &mut HashMap<Box<str>, u64>, tenant: Option<&str>) {
    let Some(tenant) = tenant else { return };
    if let Some(n) = tenants.get_mut(tenant) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            tenants.remove(tenant);
        }
    }
}

fn counted_as(tenant: &str, load: Option<TenantLoad>) -> Box<str> {
    if load.is_some_and(|l| l.overflowed) {
        OVERFLOW.into()
    } else {
        tenant.into()
    }
}

impl Inner {
    /// `tenant`'s leases and the number of tenants in flight with it, the bound applied.
    fn tenant_load(&self, tenant: &str, max: u64) -> TenantLoad {
        let known = self.tenants.len() as u64;
        let (held, overflowed) = match self.tenants.get(tenant) {
            Some(&n) => (n, false),
            None if known >= max => (self.tenants.get(OVERFLOW).copied().unwrap_or(0), true),
            None => (0, false),
        };
        TenantLoad {
            held,
            tenants: known + u64::from(held == 0),
            overflowed,
        }
    }

    fn insert(&mut self, id: &str, taken: Taken, deadline: Instant, now: Instant) {
        if let Some(t) = &taken.tenant {
            *self.tenants.entry(t.clone()).or_insert(0) += 1;
        }
        let replaced = self.invocations.insert(
            id.into(),
            Invocation {
                started: now,
                deadline,
                tenant: taken.tenant,
                unsure: taken.unsure,
                counted: taken.counted,
            },
        );
        if let Some(old) = replaced {
            count_down(&mut self.tenants, old.tenant.as_deref());
        }
        self.earliest_deadline = Some(self.earliest_deadline.map_or(deadline, |e| e.min(deadline)));
        self.admitted_rate.add(now);
        self.max = self.max.max(self.invocations.len() as u64);
    }

    /// Drops invocations past their deadline: a scan only once the earliest deadline has passed.
    fn expire(&mut self, now: Instant) {
        if self.earliest_deadline.is_none_or(|e| now < e) {
            return;
        }
        let tenants = &mut self.tenants;
        self.invocations.retain(|_, inv| {
            let live = inv.deadline > now;
            if !live {
                count_down(tenants, inv.tenant.as_deref());
            }
            live
        });
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
    /// How long events have been refused without a second's pause (0: no overload now).
    pub overloaded_secs: f64,
}

/// `Retry-After` in whole seconds:
///
/// `clamp(ceil(max(D × O, A) × J), 1, max)`, where `D` is the moving average of recent invocation
/// durations (1 s before any has finished), `O = (admitted + refused) / admitted` (the fleet's last
/// second with a shared count, else this environment's last ~10 s) is how far demand exceeds what
/// is being served (at least 1, at most 100), `A` is how long events have been refused without a
/// second's pause (an overload that has lasted `A` is as likely as not to last `A` more: a client
/// sent back sooner meets it again and spends a retry for nothing), and `J` is uniform in [1, 2)
/// so that refused clients spread out instead of returning in lockstep.
pub fn retry_after(load: Load, max: u64, jitter: f64) -> u64 {
    let overload = ((load.admitted + load.refused) / load.admitted.max(1.0)).clamp(1.0, 100.0);
    let wait = (load.mean_duration_secs * overload).max(load.overloaded_secs);
    let seconds = (wait * (1.0 + jitter.clamp(0.0, 1.0))).ceil();
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
    use crate::lease::{unix_ms, Deadline, FairShare};

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
            tenant: None,
            fair: None,
            capacity: None,
        }
    }

    fn granted(held: u64) -> Grant {
        Grant {
            granted: true,
            held,
            fleet: None,
            tenant: None,
            adaptive: None,
        }
    }

    fn refused(held: u64) -> Grant {
        Grant {
            granted: false,
            held,
            fleet: None,
            tenant: None,
            adaptive: None,
        }
    }

    #[test]
    fn the_shed_rate_is_the_last_seconds_or_the_current_ones_so_far() {
        let l = InFlight::default();
        let t = Instant::now();
        assert_eq!(l.shed_rate(t), 0.0);
        let ms = |n: u64| t + Duration::from_millis(n);
        l.refused(ms(10));
        l.refused(ms(20));
        assert_eq!(
            l.shed_rate(ms(30)),
            8.0,
            "two over at least a quarter of a second"
        );
        for i in 3..=50 {
            l.refused(ms(i * 10));
        }
        assert_eq!(l.shed_rate(ms(500)), 100.0, "50 in half a second");
        assert_eq!(l.shed_rate(ms(1500)), 50.0, "the last whole second's");
        assert_eq!(l.shed_rate(ms(3500)), 0.0, "a quiet second in between");
    }

    #[test]
    fn admits_up_to_the_threshold_and_frees_on_release() {
        let t = InFlight::default();
        let now = Instant::now();
        let dl = now + 10 * S;
        assert_eq!(t.try_take(lease("a", dl, Some(2)), now), granted(0));
        assert_eq!(t.try_take(lease("b", dl, Some(2)), now), granted(1));
        assert_eq!(t.try_take(lease("c", dl, Some(2)), now), refused(2));
        assert_eq!(t.release("a", now + S).map(|e| e.ran), Some(S));
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
        t.take("a", None, true, now + S, now);
        t.take("b", None, true, now + S, now);
        assert_eq!(t.take_max(), 2);
        t.release("a", now);
        t.release("b", now);
        assert_eq!(t.take_max(), 2, "the max of the period that just ended");
        assert_eq!(t.take_max(), 0);
    }

    fn tenant_lease<'a>(id: &'a str, tenant: &'a str, dl: Instant) -> Lease<'a> {
        Lease {
            tenant: Some(tenant),
            fair: Some(FairShare {
                below: 4,
                pool: 6.0,
            }),
            ..lease(id, dl, Some(6))
        }
    }

    #[test]
    fn near_the_threshold_only_tenants_under_their_fair_share_get_in() {
        // Threshold 6; a tenant at or over its share stops at 4.
        let t = InFlight::new(100);
        let now = Instant::now();
        let dl = now + 10 * S;
        for i in 0..6 {
            assert!(
                t.try_take(tenant_lease(&format!("a{i}"), "a", dl), now)
                    .granted
            );
        }
        // Alone, `a` is under its share (6) until it holds the whole threshold.
        let g = t.try_take(tenant_lease("a6", "a", dl), now);
        assert!(!g.granted);
        assert_eq!(g.tenant.map(|l| (l.held, l.tenants)), Some((6, 1)));
        assert!(t.release("a5", now).is_some());
        assert!(t.release("a4", now).is_some());
        // With `b` in flight, `a` (4 of a share of 3) stops at 4; `b` goes on to the threshold.
        assert!(t.try_take(tenant_lease("b0", "b", dl), now).granted);
        assert!(!t.try_take(tenant_lease("a4", "a", dl), now).granted);
        assert!(t.try_take(tenant_lease("b1", "b", dl), now).granted);
        let g = t.try_take(tenant_lease("b2", "b", dl), now);
        assert!(!g.granted, "6 held: the threshold");
        assert!(t.release("a0", now).is_some());
        // 5 held: `a` (3, its share) does not get the freed slot; `c` (none) does.
        assert!(!t.try_take(tenant_lease("a4", "a", dl), now).granted);
        assert!(t.try_take(tenant_lease("c0", "c", dl), now).granted);
        assert_eq!(t.tenants(), 3);
        // A release counts its tenant down; the tenant's last lease takes it off the count.
        let ended = t.release("c0", now).unwrap();
        assert_eq!(&*ended.member, "c|c0");
        assert_eq!(t.tenants(), 2);
        // Expiry counts tenants down too.
        assert_eq!(t.count(dl), 0);
        assert_eq!(t.tenants(), 0);
    }

    #[test]
    fn a_lease_taken_without_the_counts_answer_is_returned_under_either_name() {
        let t = InFlight::new(10);
        let now = Instant::now();
        t.take("x", Some(("a", None)), true, now + S, now);
        let ended = t.release("x", now).unwrap();
        assert_eq!(
            (&*ended.member, ended.or_else.as_deref()),
            ("a|x", Some("~|x"))
        );
        let granted = TenantLoad {
            held: 0,
            tenants: 1,
            overflowed: false,
        };
        t.take("y", Some(("a", Some(granted))), true, now + S, now);
        assert_eq!(t.release("y", now).unwrap().or_else, None);
    }

    #[test]
    fn an_invocation_the_shared_count_never_saw_has_no_lease_to_return() {
        let t = InFlight::new(10);
        let now = Instant::now();
        t.take("skipped", None, false, now + S, now);
        t.take("granted", None, true, now + S, now);
        t.take("skipped-too", None, false, now + S, now);
        assert_eq!(t.count(now), 3, "every one is in flight here");
        assert!(!t.release("skipped", now).unwrap().counted);
        assert!(t.release("granted", now).unwrap().counted);
        t.take("granted-too", None, true, now + S, now);
        assert_eq!(t.drain(), vec![Box::<str>::from("granted-too")]);
    }

    #[test]
    fn tenants_past_the_bound_share_the_overflow_tenant() {
        let t = InFlight::new(2);
        let now = Instant::now();
        let dl = now + 10 * S;
        assert!(t.try_take(tenant_lease("a", "a", dl), now).granted);
        assert!(t.try_take(tenant_lease("b", "b", dl), now).granted);
        let g = t.try_take(tenant_lease("c", "c", dl), now);
        assert_eq!(g.tenant.map(|l| l.overflowed), Some(true));
        let g = t.try_take(tenant_lease("d", "d", dl), now);
        assert_eq!(
            g.tenant.map(|l| (l.held, l.tenants, l.overflowed)),
            Some((1, 3, true)),
            "c and d are one tenant"
        );
        assert_eq!(t.tenants(), 3, "the bound and the overflow tenant");
        let mut members = t.drain();
        members.sort();
        assert_eq!(members, ["a|a", "b|b", "~|c", "~|d"].map(Box::<str>::from));
        assert_eq!(t.tenants(), 0);
    }

    #[test]
    fn retry_after_follows_durations_and_overload() {
        let idle = Load {
            mean_duration_secs: 0.1,
            admitted: 10.0,
            refused: 0.0,
            overloaded_secs: 0.0,
        };
        assert_eq!(retry_after(idle, 30, 0.0), 1, "never below one second");
        let hot = Load {
            mean_duration_secs: 2.0,
            admitted: 10.0,
            refused: 40.0,
            overloaded_secs: 3.0,
        };
        // 2 s × 5 = 10 s, then jitter spreads it over [10, 20).
        assert_eq!(retry_after(hot, 30, 0.0), 10);
        assert_eq!(retry_after(hot, 30, 0.5), 15);
        assert_eq!(retry_after(hot, 12, 0.5), 12, "capped");
        let nothing_admitted = Load {
            mean_duration_secs: 1.0,
            admitted: 0.0,
            refused: 1000.0,
            overloaded_secs: 0.0,
        };
        assert_eq!(
            retry_after(nothing_admitted, 1000, 0.0),
            100,
            "overload capped at 100"
        );
        // An overload that has gone on for 12 s sends clients past the next 12 s at least.
        let long = Load {
            overloaded_secs: 12.0,
            ..hot
        };
        assert_eq!(retry_after(long, 30, 0.0), 12);
        assert_eq!(retry_after(long, 30, 0.5), 18);
    }

    #[test]
    fn an_overload_lasts_until_a_second_passes_without_a_refusal() {
        let t = InFlight::default();
        let start = Instant::now();
        assert_eq!(t.load(start).overloaded_secs, 0.0);
        for ms in (0..=4000).step_by(500) {
            t.refused(start + Duration::from_millis(ms));
        }
        let at = |ms| t.load(start + Duration::from_millis(ms)).overloaded_secs;
        assert_eq!(at(4000), 4.0);
        assert_eq!(at(5000), 5.0, "a second's pause at most");
        assert_eq!(at(5001), 0.0, "over");
        // Refusals seen elsewhere in the fleet keep it going too; a new one starts afresh.
        t.overloaded(start + Duration::from_millis(4800));
        assert_eq!(at(5500), 5.5);
        t.refused(start + Duration::from_millis(9000));
        assert_eq!(at(9500), 0.5);
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
