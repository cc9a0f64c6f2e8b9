//! Faults injected for real around the extension, each run to the end and reduced to what the
//! reliability table reports: what the client saw, invocations lost or run twice, leases left in
//! the shared count after the stated bound. The fault tests assert on these reports; the
//! `reliability` command repeats them and prints the table in docs/reliability.md.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::task::JoinHandle;

use crate::forwarder::Forwarder;
use crate::services::{IamFront, IamFrontOptions, RedisMode, RedisServer};
use crate::{signal, Environment, Outcome, RuntimeClient};

/// An API Gateway REST request: the kind of event the proxy may shed.
pub const REST: &str = r#"{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"}}"#;

/// One fault, run once.
#[derive(Debug, Clone)]
pub struct Report {
    pub fault: &'static str,
    /// What the client of the faulted invocation received.
    pub client_saw: String,
    /// Invocations whose client got no answer at all.
    pub lost: usize,
    /// Invocations both answered with a 429 and run.
    pub duplicated: usize,
    /// Leases in the shared count that outlived their invocations, once `bound` had passed.
    pub leases_left: u64,
    /// When the count is back to the truth.
    pub bound: &'static str,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.leases_left == 0
    }
}

/// The scenarios, by name, in the table's order.
pub const ALL: &[&str] = &[
    "shed-ack-lost",
    "shed-refused-once",
    "runtime-hangs-up-next",
    "runtime-retries-next",
    "runtime-hangs-up-while-deciding",
    "event-breaks-off",
    "next-refused",
    "redis-connection-cut",
    "redis-stopped",
    "redis-stopped-then-idle",
    "redis-failover",
    "redis-script-flush",
    "redis-slow-reply",
    "runtime-crash",
];

/// The scenarios with a shared coordinator: also run with IAM authentication.
pub const COORDINATED: &[&str] = &[
    "runtime-hangs-up-while-deciding",
    "redis-connection-cut",
    "redis-stopped",
    "redis-stopped-then-idle",
    "redis-failover",
    "redis-script-flush",
    "redis-slow-reply",
    "runtime-crash",
];

/// How the extension authenticates to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No password, or the URL's: the extension talks to redis-server directly.
    Password,
    /// ElastiCache IAM tokens, through the checking TLS front ([`IamFront`]).
    Iam,
}

/// The extension's way to a redis-server (or a forwarder before one) on a plain port.
struct Endpoint {
    vars: Vec<(&'static str, String)>,
    _front: Option<IamFront>,
}

impl Endpoint {
    async fn new(auth: Auth, port: u16) -> Endpoint {
        match auth {
            Auth::Password => Endpoint {
                vars: vec![("ADMISSION_COORDINATOR", format!("redis://127.0.0.1:{port}"))],
                _front: None,
            },
            Auth::Iam => {
                let front = IamFront::start(port, IamFrontOptions::default()).await;
                Endpoint {
                    vars: front.vars(),
                    _front: Some(front),
                }
            }
        }
    }
}

pub async fn run(name: &str) -> Report {
    run_with(name, Auth::Password).await
}

/// The scenario `name`, the extension authenticating to Redis with `auth`.
pub async fn run_with(name: &str, auth: Auth) -> Report {
    match name {
        "shed-ack-lost" => shed_ack_lost().await,
        "shed-refused-once" => shed_refused_once().await,
        "runtime-hangs-up-next" => runtime_hangs_up_next().await,
        "runtime-retries-next" => runtime_retries_next().await,
        "runtime-hangs-up-while-deciding" => runtime_hangs_up_while_deciding(auth).await,
        "event-breaks-off" => event_breaks_off().await,
        "next-refused" => next_refused().await,
        "redis-connection-cut" => redis_connection_cut(auth).await,
        "redis-stopped" => redis_stopped(auth).await,
        "redis-stopped-then-idle" => redis_stopped_then_idle(auth).await,
        "redis-failover" => redis_failover(auth).await,
        "redis-script-flush" => redis_script_flush(auth).await,
        "redis-slow-reply" => redis_slow_reply(auth).await,
        "runtime-crash" => runtime_crash(auth).await,
        other => panic!("no fault scenario {other}"),
    }
}

/// An environment counting in Redis through `endpoint`, connected before it returns.
async fn shared(
    endpoint: &Endpoint,
    pool: &str,
    vars: &[(&str, &str)],
) -> (Environment, RuntimeClient) {
    let mut all: Vec<(&str, &str)> = endpoint
        .vars
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    all.extend([
        ("ADMISSION_POOL", pool),
        ("ADMISSION_LIMIT", "10"),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "250"),
        ("ADMISSION_COORDINATOR_BACKOFF_MS", "200"),
    ]);
    all.extend_from_slice(vars);
    let (env, runtime) = crate::hand_driven(&all).await;
    env.wait_connected().await;
    (env, runtime)
}

/// Leases in `pool`, as Redis counts them.
pub async fn leases(redis: &RedisServer, pool: &str) -> u64 {
    let key = format!("lambda-admission:{{{pool}}}");
    let reply = redis.cli(&["ZCARD", &key]).await;
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or(u64::MAX)
}

/// Invocations held by `runtime`, answered; how many of them did not reach their client.
async fn answer(runtime: &RuntimeClient, held: Vec<(String, JoinHandle<Outcome>)>) -> usize {
    let mut lost = 0;
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        lost += usize::from(task.await.map(|o| o.body() != b"\"ok\"").unwrap_or(true));
    }
    lost
}

/// One invocation through the proxy, answered; `false` if it did not reach its client.
async fn serve_one(env: &Environment, runtime: &RuntimeClient) -> bool {
    answer(runtime, env.hold(runtime, 1, REST).await).await == 0
}

/// Serves invocations until no lease waits to be returned (at most `n`); how many it took.
async fn until_returned(env: &Environment, runtime: &RuntimeClient, n: usize) -> usize {
    for served in 0..n {
        if env.status().await["unreturnedLeases"] == 0 {
            return served;
        }
        serve_one(env, runtime).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Timeout => "no answer".into(),
        Outcome::Error { error_type, .. } => format!("error {error_type}"),
        Outcome::Response { .. } => match outcome.json()["statusCode"].as_u64() {
            Some(429) => "429 with Retry-After".into(),
            Some(code) => format!("{code}"),
            None => String::from_utf8_lossy(outcome.body()).into_owned(),
        },
    }
}

/// The only slot held, and a `next` call waiting for whatever comes after.
async fn full(
    vars: &[(&str, &str)],
) -> (
    Environment,
    RuntimeClient,
    tokio::task::JoinHandle<crate::runtime_client::Event>,
) {
    let mut all = vec![("ADMISSION_LIMIT", "1")];
    all.extend_from_slice(vars);
    let (env, runtime) = crate::hand_driven(&all).await;
    let held = env.hold(&runtime, 1, REST).await;
    std::mem::forget(held); // stays in flight for the whole scenario
    let waiting = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    (env, runtime, waiting)
}

/// Lambda records the 429, but its acknowledgement never reaches the proxy in time.
async fn shed_ack_lost() -> Report {
    let (env, _runtime, waiting) = full(&[]).await;
    env.platform
        .delay_acknowledgements(Some(Duration::from_secs(3)));
    let out = env.invoke(REST).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ran = waiting.is_finished();
    waiting.abort();
    Report {
        fault: "Lambda records a 429 but its 202 is lost (held 3 s; the proxy waits 2 s)",
        client_saw: describe(&out),
        lost: usize::from(out == Outcome::Timeout),
        duplicated: usize::from(ran),
        leases_left: 0,
        bound: "—",
    }
}

/// Lambda refuses one post of a 429 (not recorded); the retry lands.
async fn shed_refused_once() -> Report {
    let (env, _runtime, waiting) = full(&[]).await;
    env.platform
        .refuse_responses_times(StatusCode::INTERNAL_SERVER_ERROR, 1);
    let out = env.invoke(REST).await;
    let ran = waiting.is_finished();
    waiting.abort();
    Report {
        fault: "Lambda refuses the first post of a 429 (500, not recorded)",
        client_saw: describe(&out),
        lost: usize::from(out == Outcome::Timeout),
        duplicated: usize::from(ran),
        leases_left: 0,
        bound: "—",
    }
}

/// A runtime asks the proxy on `port` for an event and hangs up before one comes.
async fn abandon_next(port: u16) {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = tcp
        .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The runtime's `next` connection closes while the proxy waits upstream.
async fn runtime_hangs_up_next() -> Report {
    let (env, runtime) = crate::hand_driven(&[("ADMISSION_LIMIT", "5")]).await;
    abandon_next(env.port).await;
    let p = env.platform.clone();
    let client = tokio::spawn(async move { p.invoke(REST, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let event = runtime.next().await;
    runtime.respond(&event.id, "\"ok\"").await;
    let out = client.await.unwrap_or(Outcome::Timeout);
    let served = out.body() == b"\"ok\"";
    Report {
        fault: "the runtime hangs up its `next` while the proxy waits for an event",
        client_saw: if served {
            "200 (served once, through the runtime's next call)".into()
        } else {
            describe(&out)
        },
        lost: usize::from(!served),
        duplicated: 0,
        leases_left: 0,
        bound: "—",
    }
}

/// The runtime gives up on its `next` and asks again before any event comes: the abandoned
/// fetch receives the event, which must reach the runtime's new call.
async fn runtime_retries_next() -> Report {
    let (env, runtime) = crate::hand_driven(&[("ADMISSION_LIMIT", "5")]).await;
    abandon_next(env.port).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = env.platform.clone();
    let client = tokio::spawn(async move { p.invoke(REST, Duration::from_secs(5)).await });
    let served = match tokio::time::timeout(Duration::from_secs(3), again).await {
        Ok(Ok(event)) => {
            runtime.respond(&event.id, "\"ok\"").await;
            true
        }
        _ => false,
    };
    let out = client.await.unwrap_or(Outcome::Timeout);
    Report {
        fault: "the runtime hangs up its `next` and asks again before an event comes",
        client_saw: if served && out.body() == b"\"ok\"" {
            "200 (served once, through the runtime's new call)".into()
        } else {
            describe(&out)
        },
        lost: usize::from(out.body() != b"\"ok\""),
        duplicated: 0,
        leases_left: 0,
        bound: "—",
    }
}

/// The runtime hangs up while the proxy is deciding (its Redis round trip stalled).
async fn runtime_hangs_up_while_deciding(auth: Auth) -> Report {
    use tokio::io::AsyncWriteExt;
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (env, runtime) = shared(&endpoint, "deciding", &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .expect("connect");
    let _ = tcp
        .write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.cli(&["CLIENT", "PAUSE", "400", "ALL"]).await;
    let p = env.platform.clone();
    let client = tokio::spawn(async move { p.invoke(REST, Duration::from_secs(5)).await });
    // The event has arrived; its decision waits on Redis: the runtime goes away now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    let event = runtime.next().await;
    runtime.respond(&event.id, "\"ok\"").await;
    let out = client.await.unwrap_or(Outcome::Timeout);
    let served = out.body() == b"\"ok\"";
    tokio::time::sleep(Duration::from_millis(500)).await;
    Report {
        fault: "the runtime hangs up while the proxy decides (Redis stalled 400 ms)",
        client_saw: if served {
            "200 (served once, through the runtime's next call)".into()
        } else {
            describe(&out)
        },
        lost: usize::from(!served),
        duplicated: 0,
        leases_left: leases(&redis, "deciding").await,
        bound: "at once",
    }
}

/// An event's body breaks off half-way between Lambda and the proxy.
async fn event_breaks_off() -> Report {
    let (env, runtime) = crate::hand_driven(&[("ADMISSION_LIMIT", "5")]).await;
    env.platform.break_next_event();
    let p = env.platform.clone();
    let client = tokio::spawn(async move { p.invoke(REST, Duration::from_secs(1)).await });
    let (code, body) = crate::http_get(env.port, "/2018-06-01/runtime/invocation/next").await;
    let told = code == 502 && body.contains("Extension.ProxyUpstreamError");
    let out = client.await.unwrap_or(Outcome::Timeout);
    let nothing_held = env.status().await["inFlight"] == 0;
    let next_served = serve_one(&env, &runtime).await;
    Report {
        fault: "an event's body breaks off half-way from Lambda to the proxy",
        client_saw: if told && nothing_held && next_served {
            format!(
                "{} (the event never arrived whole, as without the layer); the runtime got a JSON 502, no lease was taken, the next invocation was served",
                describe(&out)
            )
        } else {
            format!("runtime told: {told}, lease free: {nothing_held}, next served: {next_served}")
        },
        // The platform lost this one before the layer had it; the layer loses nothing more.
        lost: usize::from(!next_served),
        duplicated: 0,
        leases_left: u64::from(!nothing_held),
        bound: "—",
    }
}

/// Lambda answers `next` with 5xx and 410.
async fn next_refused() -> Report {
    let (env, runtime) = crate::hand_driven(&[("ADMISSION_LIMIT", "5")]).await;
    let mut passed_on = true;
    for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::GONE] {
        env.platform.fail_next(status);
        let (code, _) = crate::http_get(env.port, "/2018-06-01/runtime/invocation/next").await;
        passed_on &= code == status.as_u16();
    }
    let served = serve_one(&env, &runtime).await;
    Report {
        fault: "Lambda answers `next` with 500, then 410",
        client_saw: if passed_on && served {
            "the runtime gets 500 and 410 unchanged; the next invocation is served".into()
        } else {
            "altered".into()
        },
        lost: usize::from(!served),
        duplicated: 0,
        leases_left: 0,
        bound: "—",
    }
}

/// The Redis connection dies between an acquire and its release.
async fn redis_connection_cut(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let path = Forwarder::start(SocketAddr::from(([127, 0, 0, 1], redis.port))).await;
    let endpoint = Endpoint::new(auth, path.port).await;
    let (env, runtime) = shared(&endpoint, "cut", &[]).await;
    let held = env.hold(&runtime, 1, REST).await;
    path.cut();
    let lost = answer(&runtime, held).await;
    let rounds = until_returned(&env, &runtime, 10).await;
    Report {
        fault: "the Redis connection is cut between an acquire and its release",
        client_saw: "200 (served)".into(),
        lost,
        duplicated: 0,
        leases_left: leases(&redis, "cut").await,
        bound: if rounds <= 2 {
            "the next round trip"
        } else {
            "more than two round trips"
        },
    }
}

/// One invocation taken through the proxy, Redis stopped (SIGSTOP, left stopped), and the
/// invocation answered: whether it reached its client, and whether its answer was held up.
async fn answered_while_stopped(
    env: &Environment,
    runtime: &RuntimeClient,
    pid: u32,
) -> (usize, bool) {
    let held = env.hold(runtime, 1, REST).await;
    signal(pid, "STOP");
    let started = Instant::now();
    let lost = answer(runtime, held).await;
    (lost, started.elapsed() > Duration::from_secs(1))
}

/// Redis is stopped (SIGSTOP) between an acquire and its release, then continued.
async fn redis_stopped(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (env, runtime) = shared(&endpoint, "stopped", &[]).await;
    let pid = redis.pid().unwrap_or(0);
    let (lost, answer_held_up) = answered_while_stopped(&env, &runtime, pid).await;
    signal(pid, "CONT");
    until_returned(&env, &runtime, 10).await;
    Report {
        fault: "Redis stopped (SIGSTOP) between an acquire and its release",
        client_saw: if answer_held_up {
            "200, held up".into()
        } else {
            "200 (served, not held up)".into()
        },
        lost,
        duplicated: 0,
        leases_left: leases(&redis, "stopped").await,
        bound: "once Redis runs again",
    }
}

/// Redis stops while a lease goes back, long enough for the extension to give up its connection
/// and fail to connect again; then no invocation comes. The environment returns the lease on its
/// own once Redis answers.
async fn redis_stopped_then_idle(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (env, runtime) = shared(&endpoint, "idle", &[]).await;
    let pid = redis.pid().unwrap_or(0);
    let (lost, answer_held_up) = answered_while_stopped(&env, &runtime, pid).await;
    // The connection's ping fails, then a connect attempt times out (2 s): nothing is left
    // that would try again.
    let _ = env
        .wait_status(Duration::from_secs(5), |s| {
            s["coordinatorConnected"] == false
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    signal(pid, "CONT");
    let thawed = Instant::now();
    let returned = env
        .wait_status(Duration::from_secs(5), |s| s["unreturnedLeases"] == 0)
        .await
        .is_ok();
    let took = thawed.elapsed();
    Report {
        fault: "Redis stopped while a lease goes back, then no invocation follows",
        client_saw: if answer_held_up {
            "200, held up".into()
        } else {
            "200 (served, not held up)".into()
        },
        lost,
        duplicated: 0,
        leases_left: leases(&redis, "idle").await,
        bound: if returned && took < Duration::from_secs(3) {
            "within 3 s of Redis answering, with no invocation"
        } else {
            "more than 3 s after Redis answered"
        },
    }
}

/// A failover that leaves the old primary up as a replica: `READONLY` on old connections.
async fn redis_failover(auth: Auth) -> Report {
    let (old, new) = (
        RedisServer::start(RedisMode::Plain).await,
        RedisServer::start(RedisMode::Plain).await,
    );
    let addr = |r: &RedisServer| SocketAddr::from(([127, 0, 0, 1], r.port));
    new.cli(&["REPLICAOF", "127.0.0.1", &old.port.to_string()])
        .await;
    let endpoint = Forwarder::start(addr(&old)).await;
    let way = Endpoint::new(auth, endpoint.port).await;
    let (env, runtime) = shared(&way, "failover", &[]).await;
    serve_one(&env, &runtime).await;
    new.cli(&["REPLICAOF", "NO", "ONE"]).await;
    old.cli(&["REPLICAOF", "127.0.0.1", &new.port.to_string()])
        .await;
    endpoint.retarget(addr(&new));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut lost, mut decisions) = (0, 0);
    for _ in 0..20 {
        decisions += 1;
        let held = env.hold(&runtime, 1, REST).await;
        let counted = leases(&new, "failover").await == 1;
        lost += answer(&runtime, held).await;
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Report {
        fault: "failover: the old primary comes back as a replica (READONLY), the endpoint moves",
        client_saw: "200 (served; admitted without the count until reconnected)".into(),
        lost,
        duplicated: 0,
        leases_left: leases(&new, "failover").await,
        bound: if decisions <= 3 {
            "within 3 decisions"
        } else {
            "more than 3 decisions"
        },
    }
}

/// `SCRIPT FLUSH` empties Redis' script cache under the extension.
async fn redis_script_flush(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (env, runtime) = shared(&endpoint, "flush", &[]).await;
    serve_one(&env, &runtime).await;
    redis.cli(&["SCRIPT", "FLUSH"]).await;
    let held = env.hold(&runtime, 3, REST).await;
    let counted = leases(&redis, "flush").await;
    let lost = answer(&runtime, held).await;
    Report {
        fault: "SCRIPT FLUSH empties the script cache",
        client_saw: if counted == 3 {
            "200, each counted at once".into()
        } else {
            format!("200, {counted} of 3 counted")
        },
        lost,
        duplicated: 0,
        leases_left: leases(&redis, "flush").await,
        bound: "at once",
    }
}

/// One Redis reply slower than the budget (`CLIENT PAUSE`).
async fn redis_slow_reply(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (env, runtime) = shared(
        &endpoint,
        "slow",
        &[("ADMISSION_COORDINATOR_TIMEOUT_MS", "20")],
    )
    .await;
    serve_one(&env, &runtime).await;
    redis.cli(&["CLIENT", "PAUSE", "120", "ALL"]).await;
    let served = serve_one(&env, &runtime).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let held = env.hold(&runtime, 1, REST).await;
    let counted = leases(&redis, "slow").await == 1;
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        let _ = task.await;
    }
    Report {
        fault: "one Redis reply 120 ms late (budget 20 ms)",
        client_saw: if counted {
            "200 (admitted unchecked); the connection is kept".into()
        } else {
            "200; the count was not in use afterwards".into()
        },
        lost: usize::from(!served),
        duplicated: 0,
        leases_left: leases(&redis, "slow").await,
        bound: "at once",
    }
}

/// The runtime crashes with invocations in flight: Lambda resets the environment.
async fn runtime_crash(auth: Auth) -> Report {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let endpoint = Endpoint::new(auth, redis.port).await;
    let (mut env, runtime) = shared(&endpoint, "crash", &[]).await;
    let held = env.hold(&runtime, 3, REST).await;
    env.platform.shutdown("failure", Duration::from_secs(2));
    let exited = match env.extension.as_mut() {
        Some(ext) => tokio::time::timeout(Duration::from_secs(2), ext.wait())
            .await
            .is_ok(),
        None => false,
    };
    drop(held);
    Report {
        fault: "the runtime crashes with 3 invocations in flight (SHUTDOWN failure)",
        client_saw: "Lambda's own error (the runtime died)".into(),
        lost: 0,
        duplicated: 0,
        leases_left: leases(&redis, "crash").await,
        bound: if exited {
            "at SHUTDOWN, within its 2 s"
        } else {
            "not within SHUTDOWN's 2 s"
        },
    }
}
