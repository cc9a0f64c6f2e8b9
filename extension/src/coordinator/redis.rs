//! The fleet's in-flight count in Redis or Valkey (ElastiCache, including Serverless).
//!
//! One sorted set per pool, `lambda-admission:{<pool>}` (hash-tagged, so cluster mode keeps the
//! pool on one shard): members are request ids, scores their deadlines in Unix milliseconds. One
//! Lua script drops expired leases, counts, and admits or refuses in a single round trip, so a
//! frozen, crashed or timed-out environment never holds a slot past its deadline.
//!
//! Faults never wait: every call has a budget (`ADMISSION_COORDINATOR_TIMEOUT_MS`); a connection
//! that fails or overruns it is dropped and replaced in the background (after a freeze a socket
//! may be dead without knowing it), and decisions admit meanwhile. After repeated failures the
//! breaker skips Redis for `ADMISSION_COORDINATOR_BACKOFF_MS`, then probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, RedisResult, TlsCertificates};

use super::breaker::Breaker;
use super::CoordinatorError;
use crate::config::{redact, SharedConfig};
use crate::inflight::{unix_ms, Slot};

/// KEYS[1] pool; ARGV now_ms, deadline_ms, threshold (-1: no limit, admit), request id.
/// Returns {admitted, in flight after the decision}.
const ACQUIRE: &str = r#"
local now = tonumber(ARGV[1])
local deadline = tonumber(ARGV[2])
local threshold = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if threshold >= 0 and n >= threshold then
  return {0, n}
end
local added = redis.call('ZADD', KEYS[1], deadline, ARGV[4])
-- The pool outlives its latest lease by a minute, and no more.
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or now + ttl < deadline + 60000 then
  redis.call('PEXPIREAT', KEYS[1], deadline + 60000)
end
return {1, n + added}
"#;

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub struct RedisCoordinator {
    url: String,
    certs: Option<TlsCertificates>,
    client: redis::Client,
    key: String,
    timeout: Duration,
    script: redis::Script,
    conn: Mutex<Option<Conn>>,
    connecting: AtomicBool,
    /// After a failed connect, none is tried again before this.
    retry_at: Mutex<Option<Instant>>,
    backoff: Duration,
    breaker: Mutex<Breaker>,
}

impl RedisCoordinator {
    pub fn new(url: &str, shared: &SharedConfig) -> Result<RedisCoordinator, CoordinatorError> {
        let certs = match &shared.ca_file {
            Some(path) => Some(TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    CoordinatorError::Unavailable(format!("cannot read {path}: {e}"))
                })?),
            }),
            None => None,
        };
        let client = match &certs {
            Some(c) => redis::Client::build_with_tls(url, c.clone()),
            None => redis::Client::open(url),
        }
        .map_err(|e| CoordinatorError::Unavailable(e.to_string()))?;
        Ok(RedisCoordinator {
            url: url.to_string(),
            certs,
            client,
            key: format!("lambda-admission:{{{}}}", shared.pool),
            timeout: shared.timeout,
            script: redis::Script::new(ACQUIRE),
            conn: Mutex::new(None),
            connecting: AtomicBool::new(false),
            retry_at: Mutex::new(None),
            backoff: shared.backoff,
            breaker: Mutex::new(Breaker::new(shared.backoff)),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.conn.lock().is_some()
    }

    /// The URL without credentials, for logs.
    pub fn target(&self) -> String {
        redact(&self.url)
    }

    /// Starts connecting in the background unless connected, connecting, or backing off.
    pub fn connect_in_background(self: &Arc<Self>) {
        if self.conn.lock().is_some()
            || self.retry_at.lock().is_some_and(|at| Instant::now() < at)
            || self.connecting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.connect().await;
            match result {
                Ok(conn) => {
                    let cluster = matches!(conn, Conn::Cluster(_));
                    tracing::info!(coordinator = %this.target(), key = %this.key, cluster, "connected to the shared coordinator");
                    *this.retry_at.lock() = None;
                    *this.conn.lock() = Some(conn);
                }
                Err(e) => {
                    tracing::warn!(coordinator = %this.target(), error = %e, "cannot connect to the shared coordinator; admitting meanwhile");
                    *this.retry_at.lock() = Some(Instant::now() + this.backoff);
                }
            }
            this.connecting.store(false, Ordering::Release);
        });
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut single = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // ElastiCache Serverless and cluster-mode caches need the cluster client.
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut single)
            .await?;
        if !info.contains("cluster_enabled:1") {
            return Ok(Conn::Single(single));
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(vec![self.url.as_str()])
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2));
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        Ok(Conn::Cluster(
            builder.build()?.get_async_connection().await?,
        ))
    }

    /// Takes a lease for `id` until `deadline_ms` if fewer than `threshold` are in flight in the
    /// pool (`None`: take it regardless). One round trip.
    pub async fn acquire(
        self: &Arc<Self>,
        id: &str,
        deadline_ms: u64,
        threshold: Option<u64>,
    ) -> Result<Slot, CoordinatorError> {
        let threshold = threshold.map_or(-1, |t| t.min(i64::MAX as u64) as i64);
        let mut invocation = self.script.key(&self.key);
        invocation
            .arg(unix_ms())
            .arg(deadline_ms)
            .arg(threshold)
            .arg(id);
        let (admitted, count): (i64, i64) = self
            .call(|mut conn| async move {
                match &mut conn {
                    Conn::Single(c) => invocation.invoke_async(c).await,
                    Conn::Cluster(c) => invocation.invoke_async(c).await,
                }
            })
            .await?;
        let in_flight = count.max(0) as u64;
        Ok(if admitted == 1 {
            Slot::Taken { in_flight }
        } else {
            Slot::Full { in_flight }
        })
    }

    /// Returns `id`'s lease. On failure the lease still ends at its deadline.
    pub async fn release(self: &Arc<Self>, id: &str) -> Result<(), CoordinatorError> {
        let key = self.key.clone();
        let id = id.to_string();
        self.call(|mut conn| async move {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(&key).arg(&id);
            match &mut conn {
                Conn::Single(c) => cmd.query_async::<i64>(c).await,
                Conn::Cluster(c) => cmd.query_async::<i64>(c).await,
            }
        })
        .await
        .map(drop)
    }

    /// Runs one request within the budget, through the breaker; a failed connection is replaced.
    async fn call<T, F, Fut>(self: &Arc<Self>, request: F) -> Result<T, CoordinatorError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let Some(conn) = self.conn.lock().clone() else {
            self.connect_in_background();
            return Err(CoordinatorError::NotConnected);
        };
        if !self.breaker.lock().allow(Instant::now()) {
            return Err(CoordinatorError::BreakerOpen);
        }
        let error = match tokio::time::timeout(self.timeout, request(conn)).await {
            Ok(Ok(value)) => {
                let mut breaker = self.breaker.lock();
                if breaker.is_open() {
                    tracing::info!(coordinator = %self.target(), "shared coordinator answering again");
                }
                breaker.success();
                return Ok(value);
            }
            Ok(Err(e)) if !e.is_unrecoverable_error() && !e.is_io_error() && !e.is_timeout() => {
                // Redis answered, with an error: the connection is fine.
                CoordinatorError::Unavailable(e.to_string())
            }
            Ok(Err(e)) => {
                self.replace_connection();
                CoordinatorError::Unavailable(e.to_string())
            }
            Err(_) => {
                // Overran the budget: maybe a socket that died during a freeze. Do not wait on it.
                self.replace_connection();
                CoordinatorError::Timeout(self.timeout)
            }
        };
        if self.breaker.lock().failure(Instant::now()) {
            tracing::warn!(
                coordinator = %self.target(),
                error = %error,
                "shared coordinator failing; admitting without it for the back-off period"
            );
        }
        Err(error)
    }

    fn replace_connection(self: &Arc<Self>) {
        *self.conn.lock() = None;
        self.connect_in_background();
    }
}
