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

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, RedisResult, TlsCertificates};

use super::iam::IamAuth;
use super::{CoordinatorError, RideAlong, SharedCount, CONNECT_TIMEOUT};
use crate::config::{redact, IamConfig, SharedConfig};
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
/// KEYS[4], KEYS[5] the same for the last second; KEYS[6] the pool's leases per tenant. ARGV:
/// now_ms, deadline_ms, threshold (-1: none, grant), the threshold while calm (-1: none),
/// request id, sheds answered since the last round trip without asking, 1 if the lease is an
/// invocation's (0: an initialising environment's, not an invocation), the tenant ('': none),
/// the count from which a tenant holding its fair share or more is refused (-1: none), what
/// the tenants in flight share (the threshold × `ADMISSION_TENANT_OVER_AT`), the most tenants
/// counted apart,
/// then the leases to return first. Returns {granted, leases held before this request,
/// invocations this second, invocations last second, refusals last second, refusals this
/// second, the tenant's leases before this request, tenants in flight (the requester counted),
/// 1 if the tenant was counted as the overflow tenant}.
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
give_back(KEYS[1], KEYS[6], 12)
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
-- Every invocation counts toward Lambda's invoke-rate cap, refused or not.
local rate = add(KEYS[2], invocation + unasked)
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
if not granted then
  local refused = add(KEYS[3], 1 + unasked)
  return {0, held, rate, last_rate, last_refused, refused, mine, tenants, overflowed}
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
return {1, held, rate, last_rate, last_refused, refused_now, mine, tenants, overflowed}
"#
);

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
    key: String,
    tenants_key: String,
    tenants_max: u64,
    script: redis::Script,
    release_script: redis::Script,
}

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
            tenants_key: format!("{}:tenants", pool_key(&shared.pool)),
            tenants_max: shared.tenants_max,
            script: redis::Script::new(ACQUIRE),
            release_script: redis::Script::new(RELEASE),
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
}

/// The pool's key; the hash tag keeps it on one shard.
pub fn pool_key(pool: &str) -> String {
    format!("lambda-admission:{{{pool}}}")
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
        mut conn: Conn,
        lease: Lease<'_>,
        along: RideAlong<'_>,
    ) -> Result<Grant, String> {
        let signed = |t: Option<u64>| t.map_or(-1, |t| t.min(i64::MAX as u64) as i64);
        let now = unix_ms();
        let (second, last) = (now / 1000, now / 1000 - 1);
        let mut invocation = self.script.key(&self.key);
        invocation
            .key(format!("{}:rate:{second}", self.key))
            .key(format!("{}:refused:{second}", self.key))
            .key(format!("{}:rate:{last}", self.key))
            .key(format!("{}:refused:{last}", self.key))
            .key(&self.tenants_key)
            .arg(now)
            .arg(lease.deadline.unix_ms)
            .arg(signed(lease.threshold))
            .arg(signed(lease.calm_threshold))
            .arg(lease.id)
            .arg(along.unasked_sheds)
            .arg(u8::from(lease.invocation))
            .arg(lease.tenant.unwrap_or(""))
            .arg(signed(lease.fair.map(|f| f.below)))
            .arg(lease.fair.map_or(0.0, |f| f.pool))
            .arg(self.tenants_max);
        for id in along.returning {
            invocation.arg(&**id);
        }
        let answer: RedisResult<Vec<i64>> = match &mut conn {
            Conn::Single(c) => invocation.invoke_async(c).await,
            Conn::Cluster(c) => invocation.invoke_async(c).await,
        };
        let answer = answer.map_err(|e| e.to_string())?;
        let count = |i: usize| answer.get(i).map_or(0, |&n| n.max(0) as u64);
        Ok(Grant {
            granted: count(0) == 1,
            held: count(1),
            fleet: Some(FleetLoad {
                rate: count(2),
                refused: count(5),
                last_second: count(3),
                last_second_refused: count(4),
            }),
            tenant: lease.tenant.map(|_| TenantLoad {
                held: count(6),
                tenants: count(7),
                overflowed: count(8) == 1,
            }),
        })
    }

    async fn release(&self, mut conn: Conn, ids: &[Box<str>]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        if ids.iter().any(|id| id.contains('|')) {
            let mut invocation = self.release_script.key(&self.key);
            invocation.key(&self.tenants_key);
            for id in ids {
                invocation.arg(&**id);
            }
            let answer: RedisResult<i64> = match &mut conn {
                Conn::Single(c) => invocation.invoke_async(c).await,
                Conn::Cluster(c) => invocation.invoke_async(c).await,
            };
            return answer.map(drop).map_err(|e| e.to_string());
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(&self.key);
        for id in ids {
            cmd.arg(&**id);
        }
        query::<i64>(conn, cmd).await.map(drop)
    }

    async fn ping(&self, conn: Conn) -> Result<(), String> {
        query::<String>(conn, redis::cmd("PING")).await.map(drop)
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

async fn query<T: redis::FromRedisValue>(mut conn: Conn, cmd: redis::Cmd) -> Result<T, String> {
    let answer = match &mut conn {
        Conn::Single(c) => cmd.query_async(c).await,
        Conn::Cluster(c) => cmd.query_async(c).await,
    };
    answer.map_err(|e| e.to_string())
}
