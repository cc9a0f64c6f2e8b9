//! The vocabulary of admission: a *lease* is one invocation's claim on a slot, held from the
//! moment its event leaves for the runtime until the runtime answers or its deadline passes.
//! Whoever counts leases (this environment's ledger, or a shared coordinator) answers an
//! acquire with a [`Grant`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A request for a lease: granted while fewer than `threshold` are held (`None`: granted
/// regardless, and still counted).
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub id: &'a str,
    pub deadline: Deadline,
    pub threshold: Option<u64>,
    /// A shared count admits below this instead while the fleet is calm (it refused nothing this
    /// second or the last): the headroom is for sheds, and a calm fleet has none to answer.
    pub calm_threshold: Option<u64>,
    /// An invocation's lease, counted toward the fleet's invocations per second; `false` for
    /// the lease an environment holds for itself while it initialises.
    pub invocation: bool,
    /// The requester's tenant id (fair shares on): counted per tenant.
    pub tenant: Option<&'a str>,
    /// Fair shares: how a tenant over its share is refused before the threshold.
    pub fair: Option<FairShare>,
    /// Managed Instances with a shared count: this environment's concurrency, published with the
    /// lease so that the count knows the pool's (`None`: nothing to publish).
    pub capacity: Option<u64>,
}

/// Where fair shares bite: a tenant holding `pool ÷ tenants in flight` or more (see
/// [`under_share`]) is refused from `below` on, short of the threshold; the room
/// between is left to tenants under their share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FairShare {
    pub below: u64,
    /// The threshold × `ADMISSION_TENANT_OVER_AT`.
    pub pool: f64,
}

impl FairShare {
    /// Whether a tenant holding `tenant.held` of the `held` leases may take one more.
    pub fn allows(self, held: u64, tenant: TenantLoad) -> bool {
        held < self.below || under_share(tenant.held, tenant.tenants, self.pool)
    }
}

/// The answer to one acquire: whether the lease was granted, and how many were held before it.
/// One answer serves every mode: observe mode asks with no threshold and compares `held` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: bool,
    /// Leases held before this request (not counting it).
    pub held: u64,
    /// What a shared count knows of the fleet's load (`None` from this environment's ledger).
    pub fleet: Option<FleetLoad>,
    /// The requester's tenant, when the lease named one.
    pub tenant: Option<TenantLoad>,
    /// The fleet's adaptive limit, as last published (`ADMISSION_LIMIT=adaptive`).
    pub adaptive: Option<u64>,
}

/// A tenant's part of the count, as an acquire found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLoad {
    /// Leases the tenant held before this request.
    pub held: u64,
    /// Tenants with leases in flight, the requester counted.
    pub tenants: u64,
    /// The count was past its bound of tenants: the lease counts as the overflow tenant's.
    pub overflowed: bool,
}

/// The fleet's invocations per second, as a shared count sees them: every invocation counts,
/// admitted or shed (Lambda's invoke-rate cap counts sheds too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetLoad {
    /// Invocations in the current second so far, this one included.
    pub rate: u64,
    /// Of those, the ones refused a lease.
    pub refused: u64,
    /// Invocations in the last whole second.
    pub last_second: u64,
    /// Of those, the ones refused a lease.
    pub last_second_refused: u64,
    /// Managed Instances: the concurrency of the environments the count heard from lately,
    /// summed (when the lease published its own).
    pub capacity: Option<u64>,
}

/// Whether a tenant holding `held` leases is under its fair share of `pool` among `tenants`
/// tenants with leases in flight (counting itself): the one form of the rule, which the decision
/// and the coordinator's script both follow.
pub fn under_share(held: u64, tenants: u64, pool: f64) -> bool {
    (held as f64) * (tenants.max(1) as f64) < pool
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
