//! The fleet's lease count in Redis or Valkey (ElastiCache, including Serverless).
//!
//! One sorted set per pool, `lambda-admission:{<pool>}` (hash-tagged, so cluster mode keeps the
//! pool on one shard): members are request ids, scores their deadlines in Unix milliseconds. One
//! Lua script drops expired leases, counts, and grants or refuses in a single round trip, so a
//! frozen, crashed or timed-out environment never holds a slot past its deadline. With fair
//! shares on, `lambda-admission:{<pool>}:tenants` holds each tenant's number of leases, kept by
//! the same scripts.
//!
//! Any error, including a server's (`READONLY` after a failover, `LOADING`, ...), counts as a
//! failed connection: the script itself raises none, so an error means the server or the link is
//! not one to keep.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, RedisResult, TlsCertificates};

use super::count::{CoordinatorError, RideAlong, SharedCount, CONNECT_TIMEOUT};
use super::iam::IamAuth;
use crate::config::{redact, IamConfig, SharedConfig};
use crate::decision::adaptive::{Closed, Sample, Window, LIMIT_NOTE as ADAPTIVE_LIMIT, STATE_NOTE};
use crate::lease::{unix_ms, FleetLoad, Grant, Lease, TenantLoad};

/// Lua both scripts share: `ended` counts down the tenant of a lease that ended (a tenant's lease
/// is the member `<tenant>|<request id>`), `give_back` returns the leases `ARGV[first..]`.
macro_rules! lease_ends_lua {
    () => {
        r#"
local function ended(tenants, member)
  local bar = string.find(member, '|', 1, true)
  if bar then
    local t = string.sub(member, 1, bar - 1)
    if redis.call('HINCRBY', tenants, t, -1) <= 0 then
      redis.call('HDEL', tenants, t)
    end
  end
end
local function give_back(pool, tenants, first)
  for i = first, #ARGV do
    if redis.call('ZREM', pool, ARGV[i]) == 1 then
      ended(tenants, ARGV[i])
    end
  end
end
"#
    };
}

/// KEYS[1] pool; KEYS[2], KEYS[3] the pool's invocations and refusals in the current second;
/// KEYS[4], KEYS[5] the same for the last second; KEYS[6] the pool's leases per tenant; KEYS[7]
/// (one shard only, with the adaptive limit or a capacity to publish) the pool's adaptive limit,
/// as published; KEYS[8], KEYS[9] (one shard only, with a capacity) the Managed Instances
/// environments heard from, by when they expire, and each one's concurrency (`<id>`) and expiry
/// (`<id>:until`) with the concurrency's sum (`~total`). ARGV:
/// now_ms, deadline_ms, threshold (-1: none, grant), the threshold while calm (-1: none),
/// request id, sheds answered since the last round trip without asking, 1 if the lease is an
/// invocation's (0: an initialising environment's, not an invocation; 3: an invocation's first
/// try on a split pool, a refusal of which a second try follows; 2: that second try), the tenant ('': none),
/// the count from which a tenant holding its fair share or more is refused (-1: none), what
/// the tenants in flight share (the threshold × `ADMISSION_TENANT_OVER_AT`), the most tenants
/// counted apart, 1 to read the adaptive limit, this environment's id and concurrency
/// (`<id> <n>`, '': none to publish), then the leases to return first. Returns {granted, leases
/// held before this request, invocations this second, invocations last second, refusals last
/// second, refusals this second, the tenant's leases before this request, tenants in flight (the
/// requester counted), 1 if the tenant was counted as the overflow tenant, the adaptive limit
/// (-1: none), the concurrency of the environments heard from (-1: none published)}.
///
/// A tenant's lease is the member `<tenant>|<request id>`: whoever drops it (a release, a
/// return, expiry) counts its tenant down in the same script.
const ACQUIRE: &str = concat!(
    lease_ends_lua!(),
    r#"
local now = tonumber(ARGV[1])
local deadline = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
local calm = tonumber(ARGV[4])
local unasked = tonumber(ARGV[6])
local invocation = tonumber(ARGV[7])
local tenant = ARGV[8]
local over_share = tonumber(ARGV[9])
local pool = tonumber(ARGV[10])
local max_tenants = tonumber(ARGV[11])
local function count(value)
  return tonumber(value or '0') or 0
end
give_back(KEYS[1], KEYS[6], 14)
-- Managed Instances: this environment's concurrency is counted in the pool's for 30 s after it
-- was last heard from, and for as long as a lease it took lasts; then it drops out of the sum.
local capacity = -1
if ARGV[13] ~= '' then
  local env, n = string.match(ARGV[13], '^(%S+) (%d+)$')
  n = tonumber(n)
  if redis.call('EXISTS', KEYS[8]) == 0 then
    -- Expired or evicted: the sum starts again from the environments heard from next.
    redis.call('DEL', KEYS[9])
  end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now)) do
    redis.call('HINCRBY', KEYS[9], '~total', -count(redis.call('HGET', KEYS[9], gone)))
    redis.call('HDEL', KEYS[9], gone, gone .. ':until')
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
  local before = count(redis.call('HGET', KEYS[9], env))
  if before ~= n then
    redis.call('HSET', KEYS[9], env, n)
    redis.call('HINCRBY', KEYS[9], '~total', n - before)
  end
  local expires = math.max(now + 30000, deadline, count(redis.call('HGET', KEYS[9], env .. ':until')))
  redis.call('HSET', KEYS[9], env .. ':until', expires)
  redis.call('ZADD', KEYS[8], expires, env)
  local keep = math.max(60000, expires - now + 30000)
  if redis.call('PTTL', KEYS[8]) < keep then
    redis.call('PEXPIRE', KEYS[8], keep)
    redis.call('PEXPIRE', KEYS[9], keep)
  end
  capacity = count(redis.call('HGET', KEYS[9], '~total'))
end
local function add(key, n)
  if n == 0 then
    return count(redis.call('GET', key))
  end
  local total = redis.call('INCRBY', key, n)
  if total == n then
    redis.call('PEXPIRE', key, 3000)
  end
  return total
end
local seen = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5])
local refused_now, last_rate, last_refused = count(seen[1]), count(seen[2]), count(seen[3])
-- A calm fleet (nothing refused this second or the last, sheds carried here included) keeps
-- only one slot spare: its headroom is for answering sheds, and it has none to answer.
-- A tenant over its share keeps its distance below it.
if threshold >= 0 and calm > threshold and refused_now + last_refused + unasked == 0 then
  if over_share >= 0 then
    over_share = over_share + calm - threshold
  end
  threshold = calm
end
-- Every invocation counts toward Lambda's invoke-rate cap, refused or not, once: a split pool's
-- first try (invocation = 3) counts it, its second (2) does not; a refusal is counted by the
-- try that has the last word (not by a first try, which a second may follow).
local counted = (invocation == 1 or invocation == 3) and 1 or 0
local first = invocation == 3 and 0 or 1
local rate = add(KEYS[2], counted + unasked)
if redis.call('EXISTS', KEYS[6]) == 1 then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    ended(KEYS[6], member)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held == 0 then
  -- Nothing in flight: no tenant holds anything, whatever the counts drifted to.
  redis.call('DEL', KEYS[6])
end
local mine, tenants, overflowed = 0, 0, 0
if tenant ~= '' then
  local n = redis.call('HGET', KEYS[6], tenant)
  local known = redis.call('HLEN', KEYS[6])
  if not n and known >= max_tenants then
    tenant, overflowed = '~', 1
    n = redis.call('HGET', KEYS[6], tenant)
  end
  mine = math.min(count(n), held)
  tenants = known
  if mine == 0 then
    tenants = known + 1
  end
end
-- A tenant holding its fair share (the pool over the tenants in flight) or more stops short
-- of the threshold, leaving the room between to tenants under their share.
local granted = threshold < 0 or (held < threshold and
  (tenant == '' or over_share < 0 or held < over_share or mine * tenants < pool))
local adaptive = -1
if ARGV[12] == '1' then
  adaptive = tonumber(redis.call('GET', KEYS[7]) or '-1') or -1
end
if not granted then
  local refused = add(KEYS[3], first + unasked)
  return {0, held, rate, last_rate, last_refused, refused, mine, tenants, overflowed, adaptive,
    capacity}
end
if unasked > 0 then
  refused_now = add(KEYS[3], unasked)
end
local member = ARGV[5]
if tenant ~= '' then
  member = tenant .. '|' .. member
end
-- A lease asked for again (same id) only moves its deadline: counted once.
if redis.call('ZADD', KEYS[1], deadline, member) == 1 and tenant ~= '' then
  redis.call('HINCRBY', KEYS[6], tenant, 1)
end
-- The pool (and its tenants) outlive the latest lease by a minute, and no more.
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or now + ttl < deadline + 60000 then
  redis.call('PEXPIREAT', KEYS[1], deadline + 60000)
  ttl = deadline + 60000 - now
end
if tenant ~= '' then
  redis.call('PEXPIRE', KEYS[6], ttl)
end
return {1, held, rate, last_rate, last_refused, refused_now, mine, tenants, overflowed, adaptive,
  capacity}
"#
);

/// With the adaptive limit: KEYS[1] pool, KEYS[2] its leases per tenant, KEYS[3] the current
/// window of durations, KEYS[4] the one before, KEYS[5] that one's claim, KEYS[6] the
/// controller's state; ARGV[1] the duration's bucket, ARGV[2] the fewest samples a window needs,
/// then the leases to return. Adds the duration and the count in flight (the lease included) to
/// the window; if the window before exists and nobody claimed it, claims it and returns
/// {state or '', its fields...}, or, with too few samples, carries it into the current one;
/// else {}.
const RELEASE_SAMPLED: &str = concat!(
    lease_ends_lua!(),
    r#"
local held = redis.call('ZCARD', KEYS[1])
give_back(KEYS[1], KEYS[2], 3)
local function raise_peak(n)
  local peak = tonumber(redis.call('HGET', KEYS[3], 'peak') or '0') or 0
  if n > peak then
    redis.call('HSET', KEYS[3], 'peak', n)
  end
end
redis.call('HINCRBY', KEYS[3], 'b' .. ARGV[1], 1)
raise_peak(held)
redis.call('PEXPIRE', KEYS[3], 600000)
if redis.call('EXISTS', KEYS[4]) == 1 and redis.call('SET', KEYS[5], '1', 'NX', 'PX', 600000) then
  local closed = redis.call('HGETALL', KEYS[4])
  local n = 0
  for i = 1, #closed, 2 do
    if string.sub(closed[i], 1, 1) == 'b' then
      n = n + (tonumber(closed[i + 1]) or 0)
    end
  end
  if n < tonumber(ARGV[2]) then
    -- Too few samples to act on: carried into the current window, not dropped.
    for i = 1, #closed, 2 do
      if closed[i] == 'peak' then
        raise_peak(tonumber(closed[i + 1]) or 0)
      else
        redis.call('HINCRBY', KEYS[3], closed[i], tonumber(closed[i + 1]) or 0)
      end
    end
    redis.call('DEL', KEYS[4])
    return {}
  end
  table.insert(closed, 1, redis.call('GET', KEYS[6]) or '')
  return closed
end
return {}
"#
);

/// KEYS[1] the fleet's adaptive state, KEYS[2] its limit; ARGV the window the state was computed
/// from, the state (`limit window ...`), the limit, the TTL in ms. Writes both unless the state
/// there is of that window or a later one (a claimer that came late, or a write delayed by a
/// freeze, never overwrites a newer state). Returns 1 if written.
const PUBLISH: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local w = tonumber(string.match(current, '^%S+%s+(%d+)'))
  if w and w >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
"#;

/// KEYS[1] pool, KEYS[2] its leases per tenant; ARGV the leases to return, some of them a
/// tenant's (`<tenant>|<request id>`): their tenants are counted down.
const RELEASE: &str = concat!(
    lease_ends_lua!(),
    r#"
give_back(KEYS[1], KEYS[2], 1)
return 0
"#
);

#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub struct RedisCount {
    url: String,
    certs: Option<TlsCertificates>,
    client: redis::Client,
    /// ElastiCache IAM authentication: tokens instead of a password.
    iam: Option<IamAuth>,
    /// The pool's key; its notes live beside it.
    key: String,
    /// The keys the count is split over (`ADMISSION_POOL_SHARDS`); one: the pool's key itself.
    shards: Arc<Vec<Shard>>,
    /// With more than one shard: where each lease in flight was granted, by request id, so that
    /// its release goes there.
    granted_on: Mutex<HashMap<Box<str>, usize>>,
    tenants_max: u64,
    script: redis::Script,
    release_script: redis::Script,
    sampled_script: redis::Script,
    publish_script: redis::Script,
    /// The adaptive limit is on: acquires read it back.
    adaptive: bool,
    /// This environment's name among the Managed Instances environments publishing their
    /// concurrency to the pool.
    environment: Box<str>,
}

/// One key of the pool's count, with its rate counters and tenant counts under its hash tag.
struct Shard {
    key: String,
    tenants_key: String,
}

/// Past this many leases whose release never came (fail-open paths), the shard of each is
/// forgotten: their releases then go to both shards a lease could be on.
const GRANTED_ON_MAX: usize = 65_536;

impl RedisCount {
    pub fn new(
        url: &str,
        iam: Option<IamConfig>,
        shared: &SharedConfig,
    ) -> Result<RedisCount, CoordinatorError> {
        let certs =
            match &shared.ca_file {
                Some(path) => Some(TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(path).map_err(|e| {
                        CoordinatorError::Backend(format!("cannot read {path}: {e}"))
                    })?),
                }),
                None => None,
            };
        let client = match &certs {
            Some(c) => redis::Client::build_with_tls(url, c.clone()),
            None => redis::Client::open(url),
        }
        .map_err(|e| CoordinatorError::Backend(e.to_string()))?;
        Ok(RedisCount {
            url: url.to_string(),
            certs,
            client,
            iam: iam.map(IamAuth::new),
            key: pool_key(&shared.pool),
            shards: Arc::new(
                (0..shared.shards.max(1))
                    .map(|i| {
                        let key = shard_key(&shared.pool, i, shared.shards);
                        Shard {
                            tenants_key: format!("{key}:tenants"),
                            key,
                        }
                    })
                    .collect(),
            ),
            granted_on: Mutex::new(HashMap::new()),
            tenants_max: shared.tenants_max,
            script: redis::Script::new(ACQUIRE),
            release_script: redis::Script::new(RELEASE),
            sampled_script: redis::Script::new(RELEASE_SAMPLED),
            publish_script: redis::Script::new(PUBLISH),
            adaptive: shared.adaptive,
            environment: format!("env-{:016x}", fastrand::u64(..)).into(),
        })
    }

    async fn open(&self) -> RedisResult<Conn> {
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT));
        if let Some(iam) = &self.iam {
            config = config.set_credentials_provider(iam.clone());
        }
        let mut single = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // ElastiCache Serverless and cluster-mode caches need the cluster client. A user whose
        // ACL forbids INFO is on a server that did not say it is a cluster: take it as one node.
        let info: RedisResult<String> = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut single)
            .await;
        let cluster = match info {
            Ok(info) => info.contains("cluster_enabled:1"),
            Err(e) if e.code() == Some("NOPERM") => false,
            Err(e) => return Err(e),
        };
        if !cluster {
            return Ok(Conn::Single(single));
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(vec![self.url.as_str()])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(CONNECT_TIMEOUT);
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        if let Some(iam) = &self.iam {
            builder = builder.set_credentials_provider(iam.clone());
        }
        Ok(Conn::Cluster(
            builder.build()?.get_async_connection().await?,
        ))
    }

    /// `members` split into those that may be on shard `here` and, per shard, the others.
    fn by_shard(&self, members: &[Box<str>], here: usize) -> (Vec<Box<str>>, Vec<Vec<Box<str>>>) {
        let mut on_here = Vec::new();
        let mut elsewhere: Vec<Vec<Box<str>>> = vec![Vec::new(); self.shards.len()];
        for member in members {
            for shard in self.shards_of(member).into_iter().flatten() {
                if shard == here {
                    on_here.push(member.clone());
                } else {
                    elsewhere[shard].push(member.clone());
                }
            }
        }
        (on_here, elsewhere)
    }
}

impl RedisCount {
    /// Where a lease may be: the shard that granted it, or, if that is not known (its grant's
    /// answer was lost), both shards it could have been granted on.
    fn shards_of(&self, member: &str) -> [Option<usize>; 2] {
        let id = request_id(member);
        match self.granted_on.lock().get(id) {
            Some(&shard) => [Some(shard), None],
            None => {
                let (first, second) = candidates(id, self.shards.len());
                [Some(first), second]
            }
        }
    }

    /// One acquire script on shard `i`, with that shard's part of every threshold. `invocation`:
    /// 1 an invocation, 0 an init lease, 3 an invocation's first try on a split pool, 2 its second.
    async fn acquire_on(
        &self,
        conn: &Conn,
        i: usize,
        lease: &Lease<'_>,
        returning: &[Box<str>],
        unasked_sheds: u64,
        invocation: u8,
    ) -> Result<Grant, String> {
        let k = self.shards.len();
        let shard = &self.shards[i];
        let signed = |t: Option<u64>| t.map_or(-1, |t| part(t, i, k).min(i64::MAX as u64) as i64);
        let invocation = if lease.invocation { invocation } else { 0 };
        let now = unix_ms();
        let (second, last) = (now / 1000, now / 1000 - 1);
        let mut script = self.script.key(&shard.key);
        script
            .key(format!("{}:rate:{second}", shard.key))
            .key(format!("{}:refused:{second}", shard.key))
            .key(format!("{}:rate:{last}", shard.key))
            .key(format!("{}:refused:{last}", shard.key))
            .key(&shard.tenants_key);
        // Beside the pool's key, under its hash tag: the same slot only with one shard.
        let capacity = lease.capacity.filter(|_| k == 1);
        if k == 1 && (self.adaptive || capacity.is_some()) {
            script.key(format!("{}:{ADAPTIVE_LIMIT}", self.key));
        }
        if capacity.is_some() {
            script
                .key(format!("{}:environments", self.key))
                .key(format!("{}:capacity", self.key));
        }
        script
            .arg(now)
            .arg(lease.deadline.unix_ms)
            .arg(signed(lease.threshold))
            .arg(signed(lease.calm_threshold))
            .arg(lease.id)
            .arg(unasked_sheds)
            .arg(invocation)
            .arg(lease.tenant.unwrap_or(""))
            .arg(signed(lease.fair.map(|f| f.below)))
            .arg(lease.fair.map_or(0.0, |f| f.pool / k as f64))
            .arg(self.tenants_max)
            .arg(u8::from(k == 1 && self.adaptive))
            .arg(capacity.map_or(String::new(), |n| format!("{} {n}", self.environment)));
        for id in returning {
            script.arg(&**id);
        }
        let answer: Vec<i64> = invoke(conn, &script).await?;
        Ok(grant_from(&answer, lease))
    }

    /// Returns `members` (one shard) and adds `sample` to its window; claims the window before
    /// it if this closed it.
    async fn release_sampled(
        &self,
        conn: &Conn,
        members: &[Box<str>],
        sample: Sample,
    ) -> Result<Option<Closed>, String> {
        let shard = &self.shards[0];
        let window = |w: u64| format!("{}:adaptive:w:{w}", self.key);
        let previous = sample.window.saturating_sub(1);
        let mut script = self.sampled_script.key(&shard.key);
        script
            .key(&shard.tenants_key)
            .key(window(sample.window))
            .key(window(previous))
            .key(format!("{}:adaptive:claim:{previous}", self.key))
            .key(format!("{}:{STATE_NOTE}", self.key))
            .arg(sample.bucket)
            .arg(crate::decision::adaptive::MIN_SAMPLES);
        for m in members {
            script.arg(&**m);
        }
        let answer: Vec<String> = invoke(conn, &script).await?;
        Ok(answer.split_first().map(|(state, fields)| Closed {
            window: previous,
            summary: Window::from_fields(fields),
            state: (!state.is_empty()).then(|| state.clone()),
        }))
    }

    /// Returns `members` on shard `i`.
    async fn release_on(&self, conn: &Conn, i: usize, members: &[Box<str>]) -> Result<(), String> {
        give_back(conn, &self.shards[i], &self.release_script, members).await
    }

    /// Returns leases on other shards than a decision's, in the background and concurrently.
    fn return_elsewhere(&self, conn: &Conn, by_shard: Vec<Vec<Box<str>>>) {
        if by_shard.iter().all(Vec::is_empty) {
            return;
        }
        {
            let mut granted_on = self.granted_on.lock();
            for member in by_shard.iter().flatten() {
                granted_on.remove(request_id(member));
            }
        }
        let (conn, shards, script) = (
            conn.clone(),
            self.shards.clone(),
            self.release_script.clone(),
        );
        tokio::spawn(async move {
            let returns = by_shard
                .iter()
                .enumerate()
                .filter(|(_, members)| !members.is_empty())
                .map(|(i, members)| give_back(&conn, &shards[i], &script, members));
            for result in futures_util::future::join_all(returns).await {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "returning leases on another shard failed; they expire at their deadlines");
                }
            }
        });
    }
}

/// Returns `members` on `shard`: with the release script when some are a tenant's (their
/// tenants are counted down), else one `ZREM`.
async fn give_back(
    conn: &Conn,
    shard: &Shard,
    release_script: &redis::Script,
    members: &[Box<str>],
) -> Result<(), String> {
    if members.iter().any(|m| m.contains('|')) {
        let mut script = release_script.key(&shard.key);
        script.key(&shard.tenants_key);
        for m in members {
            script.arg(&**m);
        }
        return invoke::<i64>(conn, &script).await.map(drop);
    }
    let mut cmd = redis::cmd("ZREM");
    cmd.arg(&shard.key);
    for m in members {
        cmd.arg(&**m);
    }
    query::<i64>(conn.clone(), cmd).await.map(drop)
}

/// A shard's answer as the fleet's: its counts times the shards (request ids spread evenly).
/// `full_at`: every shard tried was full, so the refusal reads as a fleet at its threshold at
/// least (a refusal by the fair-share rule below it does not).
fn scale(grant: Grant, k: usize, full_at: Option<u64>) -> Grant {
    let k = k as u64;
    let held = grant.held * k;
    Grant {
        granted: grant.granted,
        held: match full_at {
            Some(t) if !grant.granted => held.max(t),
            _ => held,
        },
        fleet: grant.fleet.map(|f| FleetLoad {
            rate: f.rate * k,
            refused: f.refused * k,
            last_second: f.last_second * k,
            last_second_refused: f.last_second_refused * k,
            capacity: f.capacity,
        }),
        tenant: grant.tenant.map(|t| TenantLoad {
            held: t.held * k,
            ..t
        }),
        adaptive: grant.adaptive,
    }
}

/// The acquire script's answer as a grant.
fn grant_from(answer: &[i64], lease: &Lease<'_>) -> Grant {
    let count = |i: usize| answer.get(i).map_or(0, |&n| n.max(0) as u64);
    Grant {
        granted: count(0) == 1,
        held: count(1),
        fleet: Some(FleetLoad {
            rate: count(2),
            refused: count(5),
            last_second: count(3),
            last_second_refused: count(4),
            capacity: answer.get(10).and_then(|&n| u64::try_from(n).ok()),
        }),
        tenant: lease.tenant.map(|_| TenantLoad {
            held: count(6),
            tenants: count(7),
            overflowed: count(8) == 1,
        }),
        adaptive: answer.get(9).and_then(|&n| u64::try_from(n).ok()),
    }
}

/// The pool's key; the hash tag keeps it on one shard.
pub fn pool_key(pool: &str) -> String {
    format!("lambda-admission:{{{pool}}}")
}

/// Shard `i` of a pool split over `shards` keys: each under its own hash tag, so that a cluster
/// spreads them over its nodes. One shard is the pool's key itself.
pub fn shard_key(pool: &str, i: usize, shards: usize) -> String {
    if shards <= 1 {
        pool_key(pool)
    } else {
        format!("lambda-admission:{{{pool}#{i}}}")
    }
}

/// `x` split over `k` shards: shard `i`'s part. The parts add up to `x`.
pub fn part(x: u64, i: usize, k: usize) -> u64 {
    let k = k.max(1) as u64;
    x / k + u64::from((i as u64) < x % k)
}

/// The two shards a request may be admitted on: where its id hashes to, and a second, different
/// one when the first is full (the power of two choices). `None` with one shard.
pub fn candidates(id: &str, shards: usize) -> (usize, Option<usize>) {
    if shards <= 1 {
        return (0, None);
    }
    // FNV-1a: request ids are random already; this only has to spread them.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let k = shards as u64;
    let first = h % k;
    let second = (first + 1 + (h >> 32) % (k - 1)) % k;
    (first as usize, Some(second as usize))
}

/// The request id of a lease member (`<tenant>|<request id>` or the id itself).
fn request_id(member: &str) -> &str {
    member.rsplit_once('|').map_or(member, |(_, id)| id)
}

impl SharedCount for RedisCount {
    type Connection = Conn;

    fn target(&self) -> String {
        redact(&self.url)
    }

    async fn connect(&self) -> Result<Conn, String> {
        let conn = self.open().await.map_err(|e| e.to_string())?;
        let cluster = matches!(conn, Conn::Cluster(_));
        tracing::info!(coordinator = %self.target(), key = %self.key, cluster, "connected to the shared coordinator");
        Ok(conn)
    }

    async fn acquire(
        &self,
        conn: Conn,
        lease: Lease<'_>,
        along: RideAlong<'_>,
    ) -> Result<Grant, String> {
        let k = self.shards.len();
        if k == 1 {
            return self
                .acquire_on(&conn, 0, &lease, along.returning, along.unasked_sheds, 1)
                .await;
        }
        let (first, second) = candidates(lease.id, k);
        // Leases to return go along with this acquire if they may be on its shard; those that
        // may be on others go back there in the background, concurrently, off this decision's
        // path (if that fails too, they expire at their deadlines).
        let (here, elsewhere) = self.by_shard(along.returning, first);
        self.return_elsewhere(&conn, elsewhere);
        let threshold = lease.threshold;
        // The first of two tries counts the invocation but not a refusal: the second does.
        let code = if threshold.is_some() { 3 } else { 1 };
        let tried = self
            .acquire_on(&conn, first, &lease, &here, along.unasked_sheds, code)
            .await?;
        {
            let mut granted_on = self.granted_on.lock();
            for member in &here {
                granted_on.remove(request_id(member));
            }
        }
        let full = |shard: usize, held: u64| threshold.is_some_and(|t| held >= part(t, shard, k));
        let (grant, on, full) = match second {
            Some(second) if !tried.granted && threshold.is_some() => {
                let again = self.acquire_on(&conn, second, &lease, &[], 0, 2).await?;
                let both_full = full(first, tried.held) && full(second, again.held);
                // The fleet seen from both shards; the rate as the first counted it.
                let held = (tried.held + again.held).div_ceil(2);
                let grant = Grant {
                    granted: again.granted,
                    held,
                    fleet: tried.fleet,
                    tenant: again.tenant,
                    adaptive: again.adaptive,
                };
                (grant, second, both_full)
            }
            _ => {
                let full = full(first, tried.held);
                (tried, first, full)
            }
        };
        if grant.granted {
            let mut granted_on = self.granted_on.lock();
            if granted_on.len() >= GRANTED_ON_MAX {
                granted_on.clear();
            }
            granted_on.insert(lease.id.into(), on);
        }
        Ok(scale(grant, k, threshold.filter(|_| full)))
    }

    async fn release(
        &self,
        conn: Conn,
        ids: &[Box<str>],
        sample: Option<Sample>,
    ) -> Result<Option<Closed>, String> {
        if let Some(sample) = sample.filter(|_| self.shards.len() == 1) {
            return self.release_sampled(&conn, ids, sample).await;
        }
        if ids.is_empty() {
            return Ok(None);
        }
        if self.shards.len() == 1 {
            return self.release_on(&conn, 0, ids).await.map(|()| None);
        }
        let mut by_shard: Vec<Vec<Box<str>>> = vec![Vec::new(); self.shards.len()];
        for member in ids {
            for shard in self.shards_of(member).into_iter().flatten() {
                by_shard[shard].push(member.clone());
            }
        }
        for (shard, members) in by_shard.iter().enumerate() {
            if !members.is_empty() {
                self.release_on(&conn, shard, members).await?;
            }
        }
        let mut granted_on = self.granted_on.lock();
        for member in ids {
            granted_on.remove(request_id(member));
        }
        Ok(None)
    }

    async fn ping(&self, conn: Conn) -> Result<(), String> {
        query::<String>(conn, redis::cmd("PING")).await.map(drop)
    }

    async fn publish(
        &self,
        conn: Conn,
        window: u64,
        state: &str,
        limit: u64,
        ttl: std::time::Duration,
    ) -> Result<bool, String> {
        let mut script = self
            .publish_script
            .key(format!("{}:{STATE_NOTE}", self.key));
        script
            .key(format!("{}:{ADAPTIVE_LIMIT}", self.key))
            .arg(window)
            .arg(state)
            .arg(limit)
            .arg(ttl.as_millis() as u64);
        invoke::<i64>(&conn, &script).await.map(|n| n == 1)
    }

    async fn note(
        &self,
        conn: Conn,
        name: &str,
        write: Option<(&str, std::time::Duration, bool)>,
    ) -> Result<Option<String>, String> {
        // Next to the pool, under its hash tag: the same shard in cluster mode.
        let key = format!("{}:{name}", self.key);
        match write {
            None => query::<Option<String>>(conn, redis::cmd("GET").arg(&key).clone()).await,
            Some((value, ttl, only_if_absent)) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ttl.as_millis() as u64);
                if only_if_absent {
                    cmd.arg("NX");
                }
                let set: Option<String> = query(conn, cmd).await?;
                Ok(set.map(|_| value.to_string()))
            }
        }
    }
}

/// One script on `conn`, its errors as text.
async fn invoke<T: redis::FromRedisValue>(
    conn: &Conn,
    script: &redis::ScriptInvocation<'_>,
) -> Result<T, String> {
    let mut conn = conn.clone();
    let answer = match &mut conn {
        Conn::Single(c) => script.invoke_async(c).await,
        Conn::Cluster(c) => script.invoke_async(c).await,
    };
    answer.map_err(|e| e.to_string())
}

async fn query<T: redis::FromRedisValue>(mut conn: Conn, cmd: redis::Cmd) -> Result<T, String> {
    let answer = match &mut conn {
        Conn::Single(c) => cmd.query_async(c).await,
        Conn::Cluster(c) => cmd.query_async(c).await,
    };
    answer.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_whole() {
        for k in 1..=16 {
            for x in [0, 1, 3, 7, 8, 100, 1001] {
                let parts: Vec<u64> = (0..k).map(|i| part(x, i, k)).collect();
                assert_eq!(parts.iter().sum::<u64>(), x, "{x} over {k}");
                let (lo, hi) = (parts.iter().min(), parts.iter().max());
                assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{parts:?}");
            }
        }
    }

    #[test]
    fn a_request_has_two_different_shards_and_every_shard_is_chosen() {
        assert_eq!(candidates("any", 1), (0, None));
        for k in [2, 3, 4, 8, 64] {
            let mut firsts = vec![0u32; k];
            for n in 0..(k * 200) {
                let id = format!("8f2b1c4e-{n:04}-4d1a-9a3e-5c7b0e6d2f11");
                let (a, b) = candidates(&id, k);
                let b = b.expect("a second shard");
                assert!(a < k && b < k && a != b, "{id}: {a} {b}");
                assert_eq!(candidates(&id, k), (a, Some(b)), "deterministic");
                firsts[a] += 1;
            }
            assert!(firsts.iter().all(|&n| n > 100), "{k}: {firsts:?}");
        }
    }

    #[test]
    fn one_shard_is_the_pool_key_and_more_have_their_own_hash_tags() {
        assert_eq!(shard_key("orders", 0, 1), pool_key("orders"));
        assert_eq!(shard_key("orders", 3, 4), "lambda-admission:{orders#3}");
        assert_eq!(request_id("0123456789abcdef|req-1"), "req-1");
        assert_eq!(request_id("req-1"), "req-1");
    }
}
