//! Faults of the shared count, injected for real: Redis stopped between an acquire and its
//! release, a runtime that crashes with leases held, a failover that leaves the old primary up as
//! a replica, a flushed script cache, a reply slower than the budget. For each: no invocation lost
//! or run twice, and the fleet count back to the truth within a stated bound.

use std::net::SocketAddr;
use std::time::Duration;

use lambda_emulator::forwarder::Forwarder;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{signal, Builder, Environment, Runtime, RuntimeClient};
use serde_json::json;

const REST: &str = r#"{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"}}"#;

/// One on-demand environment counting in Redis at `url`, connected before it returns.
async fn env(url: &str, pool: &str, vars: &[(&str, &str)]) -> (Environment, RuntimeClient) {
    let mut b = Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", url)
        .env("ADMISSION_POOL", pool)
        .env("ADMISSION_LIMIT", "10")
        .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
        .env("ADMISSION_COORDINATOR_BACKOFF_MS", "200");
    for (k, v) in vars {
        b = b.env(k, v);
    }
    let env = b.start().await;
    let connected = env
        .wait_status(Duration::from_secs(5), |s| {
            s["coordinatorConnected"] == true
        })
        .await;
    assert!(connected.is_ok(), "{}", env.extension_stderr.text());
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    (env, runtime)
}

/// Leases in the pool, as Redis counts them.
async fn leases(redis: &RedisServer, pool: &str) -> u64 {
    let key = format!("lambda-admission:{{{pool}}}");
    let reply = redis.cli(&["ZCARD", &key]).await;
    reply.trim().trim_start_matches(':').parse().unwrap()
}

/// One invocation through the proxy, answered: it must reach the runtime and its client.
async fn serve_one(env: &Environment, runtime: &RuntimeClient) {
    for (id, task) in env.hold(runtime, 1, REST).await {
        runtime.respond(&id, "\"ok\"").await;
        assert_eq!(task.await.unwrap().body(), b"\"ok\"");
    }
}

/// Serves invocations until the environment has no lease left to return (at most `n`).
async fn until_returned(env: &Environment, runtime: &RuntimeClient, n: usize) -> usize {
    for served in 0..n {
        if env.status().await["unreturnedLeases"] == 0 {
            return served;
        }
        serve_one(env, runtime).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "leases still unreturned after {n} invocations: {}",
        env.status().await
    );
}

#[tokio::test]
async fn a_release_lost_with_its_connection_goes_back_with_the_next_round_trip() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let path = Forwarder::start(SocketAddr::from(([127, 0, 0, 1], redis.port))).await;
    let url = format!("redis://127.0.0.1:{}", path.port);
    let (env, runtime) = env(&url, "cut", &[]).await;
    let held = env.hold(&runtime, 1, REST).await;
    assert_eq!(leases(&redis, "cut").await, 1);
    // The connection dies between the acquire and the release.
    path.cut();
    for (id, task) in held {
        assert_eq!(runtime.respond(&id, "\"ok\"").await, 202);
        assert_eq!(
            task.await.unwrap().body(),
            b"\"ok\"",
            "the answer is not held up"
        );
    }
    let s = env.status().await;
    assert_eq!(
        (&s["inFlight"], &s["unreturnedLeases"]),
        (&json!(0), &json!(1)),
        "{s}"
    );
    assert_eq!(
        leases(&redis, "cut").await,
        1,
        "the lease is still in Redis"
    );
    // The first round trip on the new connection returns it: the count is true again at once,
    // not at the lease's deadline.
    let served = until_returned(&env, &runtime, 20).await;
    assert!(served <= 3, "returned after {served} invocations");
    assert_eq!(leases(&redis, "cut").await, 0, "back to the truth");
}

#[tokio::test]
async fn redis_stopped_between_acquire_and_release_loses_nothing() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let (env, runtime) = env(&redis.url(), "stopped", &[]).await;
    let held = env.hold(&runtime, 1, REST).await;
    let pid = redis.pid().unwrap();
    signal(pid, "STOP");
    for (id, task) in held {
        assert_eq!(runtime.respond(&id, "\"ok\"").await, 202);
        assert_eq!(
            task.await.unwrap().body(),
            b"\"ok\"",
            "the answer is not held up"
        );
    }
    assert_eq!(env.status().await["unreturnedLeases"], 1);
    signal(pid, "CONT");
    // The release overran its budget but was on its way: Redis applies it once thawed, and the
    // retry that rides along with the next round trip is harmless.
    until_returned(&env, &runtime, 20).await;
    assert_eq!(leases(&redis, "stopped").await, 0);
    serve_one(&env, &runtime).await;
    assert_eq!(leases(&redis, "stopped").await, 0);
}

#[tokio::test]
async fn a_runtime_crash_returns_every_lease_at_shutdown() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let (mut env, runtime) = env(&redis.url(), "crash", &[]).await;
    let _held = env.hold(&runtime, 3, REST).await;
    assert_eq!(leases(&redis, "crash").await, 3);
    // The runtime dies mid-invocation: Lambda resets the environment with SHUTDOWN "failure".
    env.platform.shutdown("failure", Duration::from_secs(2));
    let ext = env.extension.as_mut().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(2), ext.wait())
        .await
        .expect("within the shutdown deadline")
        .unwrap();
    assert!(status.success());
    assert_eq!(
        leases(&redis, "crash").await,
        0,
        "no lease left to its deadline"
    );
}

#[tokio::test]
async fn a_failover_that_leaves_the_old_primary_a_replica_is_followed() {
    let (old, new) = (
        RedisServer::start(RedisMode::Plain).await,
        RedisServer::start(RedisMode::Plain).await,
    );
    let addr = |r: &RedisServer| SocketAddr::from(([127, 0, 0, 1], r.port));
    new.cli(&["REPLICAOF", "127.0.0.1", &old.port.to_string()])
        .await;
    // The cache's endpoint: a name that moves to the new primary on failover.
    let endpoint = Forwarder::start(addr(&old)).await;
    let url = format!("redis://127.0.0.1:{}", endpoint.port);
    let (env, runtime) = env(&url, "failover", &[]).await;
    serve_one(&env, &runtime).await;
    // Failover: the replica is promoted, the old primary comes back as its replica, and the
    // endpoint now leads to the new primary. Open connections stay on the old one.
    new.cli(&["REPLICAOF", "NO", "ONE"]).await;
    old.cli(&["REPLICAOF", "127.0.0.1", &new.port.to_string()])
        .await;
    endpoint.retarget(addr(&new));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // READONLY from the old primary replaces the connection; within a few decisions the count
    // is kept on the new primary again. No invocation is lost meanwhile.
    let mut counted = false;
    for _ in 0..20 {
        let held = env.hold(&runtime, 1, REST).await;
        counted = leases(&new, "failover").await == 1;
        for (id, task) in held {
            runtime.respond(&id, "\"ok\"").await;
            assert_eq!(task.await.unwrap().body(), b"\"ok\"");
        }
        if counted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        counted,
        "the fleet count follows the failover: {}",
        env.extension_stderr.text()
    );
    assert_eq!(leases(&new, "failover").await, 0);
}

#[tokio::test]
async fn a_flushed_script_cache_costs_no_decision() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let (env, runtime) = env(&redis.url(), "flush", &[]).await;
    serve_one(&env, &runtime).await;
    redis.cli(&["SCRIPT", "FLUSH"]).await;
    let held = env.hold(&runtime, 3, REST).await;
    assert_eq!(
        leases(&redis, "flush").await,
        3,
        "counted right after the flush"
    );
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        task.await.unwrap();
    }
    assert_eq!(leases(&redis, "flush").await, 0);
}

/// The extension's connections to `redis` (not the admin connection asking).
async fn client_ids(redis: &RedisServer) -> Vec<String> {
    let list = redis.cli(&["CLIENT", "LIST", "TYPE", "normal"]).await;
    list.lines()
        .filter(|l| l.contains("id=") && !l.contains("cmd=client|list"))
        .filter_map(|l| l.split_whitespace().find(|f| f.starts_with("id=")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn one_slow_reply_does_not_cost_the_connection() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let (env, runtime) = env(
        &redis.url(),
        "slow",
        &[("ADMISSION_COORDINATOR_TIMEOUT_MS", "20")],
    )
    .await;
    serve_one(&env, &runtime).await;
    let before = client_ids(&redis).await;
    assert_eq!(before.len(), 1, "{before:?}");
    // Redis stalls for 120 ms: one decision overruns its 20 ms budget and admits.
    redis.cli(&["CLIENT", "PAUSE", "120", "ALL"]).await;
    serve_one(&env, &runtime).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client_ids(&redis).await, before, "the connection was kept");
    // And it is in use: the next event is counted.
    let held = env.hold(&runtime, 1, REST).await;
    assert_eq!(leases(&redis, "slow").await, 1);
    drop(held);
}
