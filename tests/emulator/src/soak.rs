//! The soak: a fleet of real extensions counting in Redis behind the recipe's front door, offered
//! 2–5× its capacity by clients that retry (urllib3's policy), while faults strike at random, two
//! at a time at most: one on Redis, one on the platform. Every draw comes from one seed, so a run
//! can be replayed (the load's timing still depends on the machine).
//!
//! Redis: killed and restarted empty, paused (SIGSTOP), failed over to its replica (the old
//! primary comes back as a replica, the endpoint moves), its scripts flushed, every connection
//! cut, its replies held up (`CLIENT PAUSE`). The platform: a runtime killed mid-invocation
//! (Lambda answers `Runtime.ExitError`, sends SHUTDOWN and starts another environment on demand),
//! an idle environment reclaimed and another started, a shed post refused once, shed
//! acknowledgements held past the extension's patience.
//!
//! Then, with the load stopped and the faults healed, it checks what must hold whatever broke:
//! no invocation unanswered (a 504), none answered with a 429 and run too, none run twice, no 2xx
//! the handler did not produce, the pool's count back to zero within the function's timeout,
//! each surviving extension's memory and descriptors where they were after warm-up, and the
//! extensions' own counters against what the platforms saw.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clients::Client;
use crate::fleet::{ApiGateway, Fleet, FleetConfig, Layer, PlatformLimits};
use crate::forwarder::Forwarder;
use crate::load::{self, LoadSpec, Record, Step};
use crate::services::{RedisMode, RedisServer};
use crate::{scenario, Environment, Runtime};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct SoakSpec {
    pub seconds: f64,
    pub seed: u64,
    /// Execution environments: the function's reserved concurrency.
    pub environments: usize,
}

/// The function's timeout: each invocation's deadline, after which its lease expires anyway.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Once the load stops, every lease must be back within this (two of the extensions' 1 s
/// back-offs, a connect timeout and room), well before the deadlines of the last invocations'
/// leases (the function's timeout): nothing expires meanwhile.
const RETURNED_WITHIN: Duration = Duration::from_secs(10);
/// How long each load step of the soak lasts; its multiple is drawn from 2–5×.
const STEP_SECONDS: f64 = 10.0;
/// What an extension's RSS may grow by between warm-up and the end.
pub const RSS_MARGIN: u64 = 1 << 20;
/// A forwarding thread parks this long before it exits (the extension's own idle timeout, with
/// room): the quiet wait before memory and descriptors are read.
const QUIET: Duration = Duration::from_secs(7);

/// The faults, by kind, in the order of the summary.
pub const REDIS_FAULTS: &[&str] = &[
    "redis-restarted",
    "redis-paused",
    "redis-failover",
    "redis-script-flush",
    "redis-connections-cut",
    "redis-replies-delayed",
];
pub const PLATFORM_FAULTS: &[&str] = &[
    "runtime-crashed",
    "environment-recycled",
    "shed-post-refused",
    "shed-ack-lost",
];

/// The two Redis servers (a primary and its replica) behind one endpoint.
struct Redis {
    servers: [RedisServer; 2],
    primary: usize,
    endpoint: Forwarder,
}

impl Redis {
    async fn start() -> Redis {
        let servers = [
            RedisServer::start(RedisMode::Plain).await,
            RedisServer::start(RedisMode::Plain).await,
        ];
        let port = servers[0].port.to_string();
        servers[1].cli(&["REPLICAOF", "127.0.0.1", &port]).await;
        let endpoint = Forwarder::start(addr(&servers[0])).await;
        Redis {
            servers,
            primary: 0,
            endpoint,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.endpoint.port)
    }

    fn primary(&self) -> &RedisServer {
        &self.servers[self.primary]
    }

    /// Strikes with `kind`, and heals before returning.
    async fn strike(&mut self, kind: &str, rng: &mut fastrand::Rng) {
        let outage = Duration::from_millis(rng.u64(300..2000));
        match kind {
            "redis-restarted" => {
                let server = &mut self.servers[self.primary];
                server.kill().await;
                tokio::time::sleep(outage).await;
                server.restart().await;
            }
            "redis-paused" => {
                if let Some(pid) = self.primary().pid() {
                    send(pid, "STOP");
                    tokio::time::sleep(outage).await;
                    send(pid, "CONT");
                }
            }
            "redis-failover" => {
                let (old, new) = (self.primary, 1 - self.primary);
                self.servers[new].cli(&["REPLICAOF", "NO", "ONE"]).await;
                let port = self.servers[new].port.to_string();
                self.servers[old]
                    .cli(&["REPLICAOF", "127.0.0.1", &port])
                    .await;
                self.endpoint.retarget(addr(&self.servers[new]));
                self.primary = new;
            }
            "redis-script-flush" => {
                self.primary().cli(&["SCRIPT", "FLUSH"]).await;
            }
            "redis-connections-cut" => self.endpoint.cut(),
            "redis-replies-delayed" => {
                let ms = rng.u64(100..800).to_string();
                self.primary().cli(&["CLIENT", "PAUSE", &ms, "ALL"]).await;
            }
            other => panic!("no Redis fault {other}"),
        }
    }

    /// Leases in `pool` whose deadline has not passed (the count every acquire sees), and all.
    async fn leases(&self, pool: &str) -> (u64, u64) {
        let key = format!("lambda-admission:{{{pool}}}");
        let now = crate::platform::unix_ms().to_string();
        let number = |reply: String| {
            let reply = reply.trim().trim_start_matches(':').to_string();
            reply.parse().unwrap_or(u64::MAX)
        };
        let live = number(self.primary().cli(&["ZCOUNT", &key, &now, "+inf"]).await);
        let all = number(self.primary().cli(&["ZCARD", &key]).await);
        (live, all)
    }
}

fn addr(server: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// Sends a signal to a process that may have exited already (never to a process group: `pid` 0
/// is refused).
fn send(pid: u32, signal: &str) {
    if pid == 0 {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Whether the process has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

fn pid(child: &Option<tokio::process::Child>) -> Option<u32> {
    child.as_ref().and_then(tokio::process::Child::id)
}

/// An extension's resident memory (bytes) and what its descriptors are ([`descriptors`]).
struct Footprint {
    rss: u64,
    fds: Vec<String>,
}

fn footprint(env: &Environment) -> Option<Footprint> {
    let pid = pid(&env.extension)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(Footprint {
        rss: kb * 1024,
        fds: descriptors(env),
    })
}

/// Whether a descriptor is a Runtime API connection: the runtime's to the proxy, or the
/// proxy's to Lambda. How many there are follows the runtime client's keep-alive pool (it opens
/// another when one is busy, and keeps it) and the forwarder's threads, each keeping its
/// connection to Lambda (bounded, `MAX_IDLE` waiting): reported apart from the rest.
fn runtime_api_side(descriptor: &str, env: &Environment) -> bool {
    let platform = env.platform.address();
    let platform_port = platform.rsplit(':').next().unwrap_or("");
    let mut ports = descriptor
        .strip_prefix("tcp ")
        .map(|rest| rest.split([' ', '-', '>']).filter(|p| !p.is_empty()));
    let local = ports.as_mut().and_then(Iterator::next);
    let remote = ports.as_mut().and_then(Iterator::next);
    local == Some(&env.port.to_string()) || remote == Some(platform_port)
}

/// How an extension's footprint moved between two readings.
#[derive(Default)]
struct Growth {
    rss: i64,
    /// Descriptors other than Runtime API connections.
    own_fds: i64,
    runtime_api_fds: i64,
    base_rss: u64,
    base_fds: usize,
    added: Vec<String>,
    gone: Vec<String>,
}

fn growth(env: &Environment, base: &Footprint, now: &Footprint) -> Growth {
    let side = |fds: &[String]| {
        let api = fds.iter().filter(|d| runtime_api_side(d, env)).count() as i64;
        (fds.len() as i64 - api, api)
    };
    let ((own_base, api_base), (own_now, api_now)) = (side(&base.fds), side(&now.fds));
    let mut gone = base.fds.clone();
    let mut added = Vec::new();
    for d in &now.fds {
        match gone.iter().position(|b| b == d) {
            Some(i) => {
                gone.remove(i);
            }
            None => added.push(d.clone()),
        }
    }
    Growth {
        rss: now.rss as i64 - base.rss as i64,
        own_fds: own_now - own_base,
        runtime_api_fds: api_now - api_base,
        base_rss: base.rss,
        base_fds: base.fds.len(),
        added,
        gone,
    }
}

/// What each of the extension's descriptors is: a file's path, or a socket's local and remote
/// port and TCP state (from `/proc/net/tcp`), so that a descriptor left open can be named.
fn descriptors(env: &Environment) -> Vec<String> {
    let Some(pid) = pid(&env.extension) else {
        return Vec::new();
    };
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |hex: &str| {
        let p = hex.rsplit(':').next().unwrap_or("");
        u16::from_str_radix(p, 16).unwrap_or(0)
    };
    let sockets: HashMap<&str, String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let state = match *f.get(3)? {
                "01" => "established",
                "06" => "time-wait",
                "08" => "close-wait",
                "0A" => "listen",
                other => other,
            };
            let what = format!("tcp {} -> {} {state}", port(f[1]), port(f[2]));
            Some((*f.get(9)?, what))
        })
        .collect();
    let mut all: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|target| {
                    let target = target.display().to_string();
                    let inode = target
                        .strip_prefix("socket:[")
                        .and_then(|t| t.strip_suffix(']'));
                    inode
                        .and_then(|i| sockets.get(i).cloned())
                        .unwrap_or(target)
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort();
    all
}

/// Lambda's SHUTDOWN to the extension of `env`, waited for (its 2 s), then the end of its
/// processes.
async fn shut_down(env: &Environment, reason: &str) -> bool {
    env.platform.shutdown(reason, Duration::from_secs(2));
    let ext = pid(&env.extension).unwrap_or(0);
    let until = Instant::now() + Duration::from_secs(2);
    while !exited(ext) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clean = ext != 0 && exited(ext);
    send(ext, "KILL");
    if let Some(runtime) = pid(&env.runtime) {
        send(runtime, "KILL");
    }
    env.extension_stdout.closed().await;
    clean
}

/// What the platform faults did to the fleet.
#[derive(Default)]
struct Retired {
    envs: Vec<Arc<Environment>>,
    /// Those whose runtime was killed (an event may have been on its way through the
    /// extension: Lambda's answer for it is the exit error, whatever the extension counted).
    crashed: Vec<Arc<Environment>>,
    /// Extensions that did not exit within SHUTDOWN's 2 s.
    unclean: usize,
}

/// Strikes the platform with `kind`; `false` if nothing qualified (no busy environment).
async fn strike_platform(
    kind: &str,
    fleet: &Fleet,
    spare: &Arc<Environment>,
    retired: &mut Retired,
    rng: &mut fastrand::Rng,
) -> bool {
    match kind {
        "runtime-crashed" | "environment-recycled" => {
            let crash = kind == "runtime-crashed";
            // Lambda reclaims an environment that is idle: wait a little for one.
            let mut env = fleet.retire(crash, spare);
            for _ in 0..40 {
                if env.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                env = fleet.retire(crash, spare);
            }
            let Some(env) = env else {
                return false;
            };
            if crash {
                send(pid(&env.runtime).unwrap_or(0), "KILL");
                env.platform.runtime_died();
            }
            let reason = if crash { "failure" } else { "spindown" };
            retired.unclean += usize::from(!shut_down(&env, reason).await);
            if crash {
                retired.crashed.push(env.clone());
            }
            retired.envs.push(env);
        }
        "shed-post-refused" => {
            let envs = fleet.environments();
            envs[rng.usize(..envs.len())].platform.refuse_sheds(1);
        }
        "shed-ack-lost" => {
            let envs = fleet.environments();
            let env = &envs[rng.usize(..envs.len())];
            env.platform
                .delay_acknowledgements(Some(Duration::from_secs(3)));
            tokio::time::sleep(Duration::from_millis(rng.u64(500..2000))).await;
            env.platform.delay_acknowledgements(None);
        }
        other => panic!("no platform fault {other}"),
    }
    true
}

/// What an extension logs when it could not return its leases at SHUTDOWN.
const SHUTDOWN_RETURN_FAILED: &str = "could not return the leases at shutdown";

/// The fault kinds in shuffled rounds: every kind once before any twice.
struct Rounds {
    kinds: &'static [&'static str],
    next: Vec<&'static str>,
}

impl Rounds {
    fn new(kinds: &'static [&'static str]) -> Rounds {
        Rounds {
            kinds,
            next: Vec::new(),
        }
    }

    fn pick(&mut self, rng: &mut fastrand::Rng) -> &'static str {
        if self.next.is_empty() {
            self.next = self.kinds.to_vec();
            rng.shuffle(&mut self.next);
        }
        self.next.pop().unwrap_or(self.kinds[0])
    }
}

/// The soak's parts: the fleet, the front door, Redis, and what the faults did so far.
struct Soak {
    fleet: Arc<Fleet>,
    gateway: Arc<ApiGateway>,
    /// The environment never retired: some extension lives through the whole soak.
    spare: Arc<Environment>,
    redis: Redis,
    retired: Retired,
    kinds: (Rounds, Rounds),
    struck: BTreeMap<&'static str, u64>,
}

impl Soak {
    /// `load` through the front door while faults strike Redis and the platform at random
    /// intervals, one of each at a time, until the load's steps are over.
    async fn phase(&mut self, load: LoadSpec, rng: &mut fastrand::Rng) -> load::Run {
        let seconds: f64 = load.steps.iter().map(|s| s.seconds).sum();
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let (mut redis_rng, mut platform_rng) = (
            fastrand::Rng::with_seed(rng.u64(..)),
            fastrand::Rng::with_seed(rng.u64(..)),
        );
        let (redis_kinds, platform_kinds) = (&mut self.kinds.0, &mut self.kinds.1);
        let (fleet, spare, retired, redis) =
            (&self.fleet, &self.spare, &mut self.retired, &mut self.redis);
        let redis_faults = async {
            let mut struck = Vec::new();
            while let Some(pause) = next_pause(until, &mut redis_rng) {
                tokio::time::sleep(pause).await;
                let kind = redis_kinds.pick(&mut redis_rng);
                redis.strike(kind, &mut redis_rng).await;
                struck.push(kind);
            }
            struck
        };
        let platform_faults = async {
            let mut struck = Vec::new();
            while let Some(pause) = next_pause(until, &mut platform_rng) {
                tokio::time::sleep(pause).await;
                let kind = platform_kinds.pick(&mut platform_rng);
                if strike_platform(kind, fleet, spare, retired, &mut platform_rng).await {
                    struck.push(kind);
                }
            }
            struck
        };
        let running = load::run(self.fleet.clone(), self.gateway.clone(), &load, |_, _| {});
        let (run, on_redis, on_platform) = tokio::join!(running, redis_faults, platform_faults);
        for kind in on_redis.into_iter().chain(on_platform) {
            *self.struck.entry(kind).or_insert(0) += 1;
        }
        run
    }
}

/// The wait before the next fault, if it comes before `until`.
fn next_pause(until: Instant, rng: &mut fastrand::Rng) -> Option<Duration> {
    let pause = Duration::from_millis(rng.u64(1500..5000));
    (Instant::now() + pause < until).then_some(pause)
}

fn load_spec(seed: u64, steps: Vec<Step>) -> LoadSpec {
    let mut spec = LoadSpec::standard(STEP_SECONDS);
    spec.steps = steps;
    spec.seed = seed;
    spec.client = Client::Urllib3;
    spec.timeout = TIMEOUT;
    spec
}

/// The soak's steps: `seconds` of 2–5× in steps of [`STEP_SECONDS`].
fn soak_steps(seconds: f64, rng: &mut fastrand::Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut left = seconds;
    while left > 0.0 {
        let multiple = 2.0 + 3.0 * rng.f64();
        steps.push(Step {
            multiple: (multiple * 10.0).round() / 10.0,
            seconds: left.min(STEP_SECONDS),
        });
        left -= STEP_SECONDS;
    }
    steps
}

/// Runs the soak; its summary (`target/soak/summary.json`).
pub async fn run(spec: &SoakSpec) -> Value {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let dir = crate::workspace().join("target/soak");
    std::fs::create_dir_all(&dir).expect("target/soak");
    let runs_file = dir.join(format!("runs-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&runs_file);
    let pool = format!("soak-{}", std::process::id());
    let redis = Redis::start().await;
    let n = spec.environments;
    let config = FleetConfig {
        environments: n,
        per_environment: 1,
        runtime: Runtime::Rust { stream: false },
        layer: Layer::Redis(redis.url()),
        shed_at: None,
        pool: pool.clone(),
        platform: PlatformLimits::lambda(),
        extension_env: vec![("ADMISSION_COORDINATOR_BACKOFF_MS", "1000")],
        runtime_env: vec![("TEST_FUNCTION_RUNS".into(), runs_file.display().to_string())],
        managed: None,
    };
    let fleet = Arc::new(Fleet::start(&config).await);
    let gateway = Arc::new(ApiGateway::new(
        false,
        Some(scenario::recommended_stage_throttle(n)),
    ));

    let mut soak = Soak {
        fleet: fleet.clone(),
        gateway,
        spare: fleet.environments()[0].clone(),
        redis,
        retired: Retired::default(),
        kinds: (Rounds::new(REDIS_FAULTS), Rounds::new(PLATFORM_FAULTS)),
        struck: BTreeMap::new(),
    };
    // Two halves, faults in both. The first is the warm-up: after it, and quiet, what each
    // extension holds is the baseline (its pools and threads grown to what such faults ask);
    // the second must leave them where they were.
    let steps = soak_steps(spec.seconds, &mut rng);
    let half = steps.len().div_ceil(2);
    let started = Instant::now();
    let warm = soak
        .phase(load_spec(rng.u64(..), steps[..half].to_vec()), &mut rng)
        .await;
    tokio::time::sleep(QUIET).await;
    let baseline: Vec<(Arc<Environment>, Footprint)> = fleet
        .environments()
        .into_iter()
        .filter_map(|e| footprint(&e).map(|f| (e, f)))
        .collect();
    let run = soak
        .phase(load_spec(rng.u64(..), steps[half..].to_vec()), &mut rng)
        .await;
    let load_seconds = started.elapsed().as_secs_f64();
    let Soak {
        redis,
        mut retired,
        struck: faults,
        ..
    } = soak;

    // The load has stopped and every request has its answer: every lease must be back, none
    // kept to return, within RETURNED_WITHIN; except the leases of an environment that shut
    // down while Redis could not be reached, which go at their deadlines (it says so in its log).
    let stopped = Instant::now();
    let (at_stop, _) = redis.leases(&pool).await;
    let unreachable_at_shutdown = retired
        .envs
        .iter()
        .filter(|e| e.extension_stderr.text().contains(SHUTDOWN_RETURN_FAILED))
        .count();
    let bound = if unreachable_at_shutdown > 0 {
        TIMEOUT + Duration::from_secs(2)
    } else {
        RETURNED_WITHIN
    };
    let mut cleared_after = None;
    while stopped.elapsed() < bound {
        if redis.leases(&pool).await.0 == 0 && kept(&fleet).await == 0 {
            cleared_after = Some(stopped.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (leases_left, leases_stored) = redis.leases(&pool).await;
    let unreturned = kept(&fleet).await;
    tokio::time::sleep(QUIET.saturating_sub(stopped.elapsed())).await;

    // Memory and descriptors of the extensions that lived through it all.
    let grown: Vec<Growth> = baseline
        .iter()
        .filter(|(env, _)| fleet.environments().iter().any(|e| Arc::ptr_eq(e, env)))
        .filter_map(|(env, base)| footprint(env).map(|now| growth(env, base, &now)))
        .collect();
    let recycled = retired.envs.len();
    for env in fleet.environments() {
        retired.unclean += usize::from(!shut_down(&env, "spindown").await);
        retired.envs.push(env);
    }

    let records: Vec<&Record> = warm.records.iter().chain(&run.records).collect();
    let requests = warm.requests.len() + run.requests.len();
    let ctx = Accounting {
        records: &records,
        envs: &retired.envs,
        crashed: &retired.crashed,
        runs_file: &runs_file,
    };
    let accounts = ctx.account();
    let _ = std::fs::remove_file(&runs_file);
    let rss_growth = grown.iter().map(|g| g.rss).max().unwrap_or(0);
    let fd_growth = grown.iter().map(|g| g.own_fds).max().unwrap_or(0);
    let api_fd_growth = grown.iter().map(|g| g.runtime_api_fds).max().unwrap_or(0);
    let checks = json!({
        "everyFaultStruck": REDIS_FAULTS.iter().chain(PLATFORM_FAULTS).all(|k| faults.contains_key(k)),
        "noneLost": accounts.lost == 0,
        "noneDuplicated": accounts.duplicated == 0,
        "noneRanTwice": accounts.ran_twice == 0,
        "no2xxWithoutRun": accounts.ok_without_run == 0,
        "leasesBackToZero": leases_left == 0,
        "noLeaseKeptToReturn": unreturned == 0,
        "rssWithinMargin": !grown.is_empty() && rss_growth < RSS_MARGIN as i64,
        "fdsWhereTheyWere": !grown.is_empty() && fd_growth <= 0,
        "shedsCountedAsLambdaSawThem": accounts.shed_metric == accounts.shed_answers,
        "decisionsCountedAsEventsDelivered": accounts.decided == accounts.delivered,
        "failOpenOnlyFromTheCoordinator": accounts.fail_open == accounts.coordinator_errors,
        "extensionsExitedAtShutdown": retired.unclean == 0,
    });
    let counters = json!({
        "shed": accounts.shed_metric,
        "shedAnswersLambdaRecorded": accounts.shed_answers,
        "decided": accounts.decided,
        "eventsDelivered": accounts.delivered,
        "failOpen": accounts.fail_open,
        "coordinatorErrors": accounts.coordinator_errors,
        "shedUnconfirmed": accounts.shed_unconfirmed,
        "eventsUncountedAtCrashes": accounts.uncounted_at_crashes,
        "shedsLambdaAnsweredOtherwiseAtCrashes": accounts.sheds_lost_to_crashes,
    });
    let passed = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v == true));
    json!({
        "seed": spec.seed,
        "seconds": spec.seconds,
        "loadSeconds": round1(load_seconds),
        "environments": n,
        "client": "urllib3",
        "steps": steps.iter().map(|s| s.multiple).collect::<Vec<_>>(),
        "requests": requests,
        "attempts": records.len(),
        "answers": accounts.answers,
        "faults": faults,
        "faultsTotal": faults.values().sum::<u64>(),
        "environmentsReplaced": recycled,
        "lost": accounts.lost,
        "duplicated": accounts.duplicated,
        "ranTwice": accounts.ran_twice,
        "okWithoutRun": accounts.ok_without_run,
        "runs": accounts.runs,
        "leasesAtStop": at_stop,
        "leasesClearedAfterSeconds": cleared_after.map(round1),
        "leasesBoundSeconds": bound.as_secs(),
        "shutdownsWithRedisUnreachable": unreachable_at_shutdown,
        "leasesLeft": leases_left,
        "leasesStored": leases_stored,
        "unreturnedLeases": unreturned,
        "rssGrowthBytes": rss_growth,
        "fdGrowth": fd_growth,
        "runtimeApiConnectionsGrowth": api_fd_growth,
        "fdsAdded": grown.iter().flat_map(|g| g.added.clone()).collect::<Vec<_>>(),
        "fdsGone": grown.iter().flat_map(|g| g.gone.clone()).collect::<Vec<_>>(),
        "extensionsMeasured": grown.len(),
        "baselineRssBytes": grown.iter().map(|g| g.base_rss).max().unwrap_or(0),
        "baselineFds": grown.iter().map(|g| g.base_fds).max().unwrap_or(0),
        "counters": counters,
        "checks": checks,
        "passed": passed,
    })
}

/// Leases the fleet's extensions keep to return (their status's `unreturnedLeases`).
async fn kept(fleet: &Fleet) -> u64 {
    let mut kept = 0u64;
    for e in fleet.environments() {
        let status = e.status().await;
        kept = kept.saturating_add(status["unreturnedLeases"].as_u64().unwrap_or(u64::MAX));
    }
    kept
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Everything the clients, the handlers, the platforms and the extensions recorded.
struct Accounting<'a> {
    records: &'a [&'a Record],
    envs: &'a [Arc<Environment>],
    crashed: &'a [Arc<Environment>],
    runs_file: &'a std::path::Path,
}

#[derive(Default)]
struct Accounts {
    answers: BTreeMap<String, u64>,
    lost: u64,
    duplicated: u64,
    ran_twice: u64,
    ok_without_run: u64,
    runs: u64,
    shed_metric: u64,
    shed_answers: u64,
    decided: u64,
    delivered: u64,
    fail_open: u64,
    coordinator_errors: u64,
    shed_unconfirmed: u64,
    /// In the environments whose runtime was killed: events handed out but not counted, and
    /// sheds counted that Lambda answered otherwise (the exit error).
    uncounted_at_crashes: u64,
    sheds_lost_to_crashes: u64,
}

impl Accounting<'_> {
    fn account(&self) -> Accounts {
        let mut a = Accounts::default();
        let runs_text = std::fs::read_to_string(self.runs_file).unwrap_or_default();
        let mut runs: HashMap<&str, u64> = HashMap::new();
        for id in runs_text.lines().filter(|l| !l.is_empty()) {
            *runs.entry(id).or_insert(0) += 1;
        }
        a.runs = runs.len() as u64;
        a.ran_twice = runs.values().filter(|n| **n > 1).count() as u64;
        for r in self.records {
            let class = format!("{}xx", r.status / 100);
            let key = if r.status == 429 || r.status == 500 || r.status == 504 {
                r.status.to_string()
            } else {
                class
            };
            *a.answers.entry(key).or_insert(0) += 1;
            a.lost += u64::from(r.status == 504);
            let ran = r
                .request_id
                .as_deref()
                .is_some_and(|id| runs.contains_key(id));
            a.ok_without_run += u64::from((200..300).contains(&r.status) && !ran);
        }
        let mut shed: HashSet<String> = HashSet::new();
        for env in self.envs {
            let recorded = env.platform.shed_ids();
            let (delivered, recorded_sheds) =
                (env.platform.delivered() as u64, recorded.len() as u64);
            shed.extend(recorded);
            let (mut decided, mut sheds) = (0, 0);
            for m in env.metric_lines() {
                // Class lines repeat the totals by class: only the function's lines count.
                if m.get("Class").is_some() {
                    continue;
                }
                let get = |k: &str| m[k].as_u64().unwrap_or(0);
                sheds += get("Shed");
                decided += get("Admitted") + get("Shed");
                a.fail_open += get("FailOpen");
                a.coordinator_errors += get("CoordinatorErrors");
                a.shed_unconfirmed += get("ShedUnconfirmed");
            }
            if self.crashed.iter().any(|c| Arc::ptr_eq(c, env)) {
                a.uncounted_at_crashes += delivered.saturating_sub(decided);
                a.sheds_lost_to_crashes += sheds.saturating_sub(recorded_sheds);
                // What the crash took is reported apart and excused, never the other way round:
                // more decided than handed out, or fewer sheds than recorded, still fails.
                decided = decided.max(delivered);
                sheds = sheds.min(recorded_sheds);
            }
            a.delivered += delivered;
            a.decided += decided;
            a.shed_metric += sheds;
            a.shed_answers += recorded_sheds;
        }
        a.duplicated = shed
            .iter()
            .filter(|id| runs.contains_key(id.as_str()))
            .count() as u64;
        a
    }
}

/// The one-line verdict.
pub fn verdict(summary: &Value) -> String {
    let failed: Vec<&str> = summary["checks"]
        .as_object()
        .map(|c| {
            c.iter()
                .filter(|(_, v)| **v != true)
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    format!(
        "soak {}: seed {}, {} s, {} requests ({} attempts), {} faults; lost {}, duplicated {}, ran twice {}, 2xx without a run {}, leases left {}, RSS growth {} B, fd growth {}{}",
        if failed.is_empty() { "passed" } else { "FAILED" },
        summary["seed"],
        summary["seconds"],
        summary["requests"],
        summary["attempts"],
        summary["faultsTotal"],
        summary["lost"],
        summary["duplicated"],
        summary["ranTwice"],
        summary["okWithoutRun"],
        summary["leasesLeft"],
        summary["rssGrowthBytes"],
        summary["fdGrowth"],
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failed.join(", "))
        }
    )
}
