//! ElastiCache IAM authentication end to end: the real extension, a real redis-server, and
//! between them a TLS 1.3 front that checks every token by signing it again with botocore
//! (`tests/python/iam_front.py`), as ElastiCache does with IAM. The coordinator's fault tests
//! also run through this front (`tests/faults.rs`).

use std::time::{Duration, Instant};

use lambda_emulator::faults::{leases, REST};
use lambda_emulator::services::{
    IamFront, IamFrontOptions, RedisMode, RedisServer, IAM_ACCESS_KEY, IAM_SECRET_KEY,
    IAM_SESSION_TOKEN,
};
use lambda_emulator::{hand_driven, Environment, RuntimeClient};

async fn environment(
    front: &IamFront,
    pool: &str,
    extra: &[(&str, &str)],
) -> (Environment, RuntimeClient) {
    let vars = front.vars();
    let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend([
        // Everything the extension logs, to look for credentials in it.
        ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ("ADMISSION_POOL", pool),
        ("ADMISSION_LIMIT", "10"),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "250"),
        ("ADMISSION_COORDINATOR_BACKOFF_MS", "200"),
        // The lease an environment holds while it initialises is taken in the background as
        // soon as the coordinator connects, racing the first invocation's: these tests count
        // the invocation's lease alone.
        ("ADMISSION_INIT_LEASE", "false"),
    ]);
    // Later entries win: a test may override the front's own variables, or drop one with "".
    all.retain(|(k, _)| !extra.iter().any(|(e, v)| e == k && v.is_empty()));
    all.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    hand_driven(&all).await
}

/// One invocation held, counted in Redis or not, then answered; whether it was counted.
async fn counted(
    env: &Environment,
    runtime: &RuntimeClient,
    redis: &RedisServer,
    pool: &str,
) -> bool {
    let held = env.hold(runtime, 1, REST).await;
    let counted = leases(redis, pool).await == 1;
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        let outcome = task.await.expect("client");
        assert_eq!(
            outcome.body(),
            b"\"ok\"",
            "the invocation reached its client"
        );
    }
    counted
}

fn assert_no_credentials(logs: &str) {
    for secret in [
        IAM_SECRET_KEY,
        IAM_SESSION_TOKEN,
        "X-Amz-Signature",
        "X-Amz-Credential",
    ] {
        assert!(!logs.contains(secret), "a credential in the logs: {logs}");
    }
    assert!(
        !logs.contains(IAM_ACCESS_KEY),
        "the access key in the logs: {logs}"
    );
}

#[tokio::test]
async fn a_good_token_is_accepted_and_the_fleet_counts_through_it() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let front = IamFront::start(redis.port, IamFrontOptions::default()).await;
    let (env, runtime) = environment(&front, "iam-good", &[]).await;
    env.wait_connected().await;
    assert!(counted(&env, &runtime, &redis, "iam-good").await);
    assert_eq!(
        leases(&redis, "iam-good").await,
        0,
        "released through the front"
    );
    let auths = front.auths();
    assert!(
        !auths.is_empty() && auths.iter().all(|(ok, _, _)| *ok),
        "{auths:?}"
    );
    assert_no_credentials(&env.extension_stderr.text());
}

#[tokio::test]
async fn a_bad_token_is_refused_and_the_function_keeps_working_unprotected() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let front = IamFront::start(redis.port, IamFrontOptions::default()).await;
    // Signed with the wrong secret; then for the wrong cache; then for the wrong user.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (
            "bad signature",
            &[("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")],
            "iam-bad-secret",
        ),
        (
            "wrong cache",
            &[("ADMISSION_REDIS_IAM_CACHE", "another-cache")],
            "iam-bad-cache",
        ),
        (
            "wrong resource type",
            &[("ADMISSION_REDIS_IAM_SERVERLESS", "true")],
            "iam-bad-type",
        ),
    ];
    for (why, extra, pool) in cases {
        let (env, runtime) = environment(&front, pool, extra).await;
        let refused = Instant::now();
        while !front.auths().iter().any(|(ok, w, _)| !ok && w == why) {
            assert!(
                refused.elapsed() < Duration::from_secs(5),
                "{why}: {:?}",
                front.auths()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Fail open: served, not counted, and the logs say why.
        assert!(!counted(&env, &runtime, &redis, pool).await, "{why}");
        assert_eq!(env.status().await["coordinatorConnected"], false, "{why}");
        let logs = env.extension_stderr.text();
        assert!(
            logs.contains("cannot connect to the shared coordinator"),
            "{why}: {logs}"
        );
        assert!(
            logs.contains("WRONGPASS") || logs.contains("uthentication"),
            "{why}: {logs}"
        );
        assert_no_credentials(&logs);
    }
}

#[tokio::test]
async fn without_a_region_no_token_is_signed_and_the_log_says_why() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let front = IamFront::start(redis.port, IamFrontOptions::default()).await;
    // Not even from the instance metadata service (Lambda has none; here it would only be slow).
    let (env, runtime) = environment(
        &front,
        "iam-no-region",
        &[("AWS_REGION", ""), ("AWS_EC2_METADATA_DISABLED", "true")],
    )
    .await;
    let said = Instant::now();
    while !env.extension_stderr.text().contains("no AWS region") {
        assert!(
            said.elapsed() < Duration::from_secs(5),
            "{}",
            env.extension_stderr.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!counted(&env, &runtime, &redis, "iam-no-region").await);
    assert!(front.auths().is_empty(), "no AUTH without a token");
    assert_no_credentials(&env.extension_stderr.text());
}

#[tokio::test]
async fn tokens_are_refreshed_and_connections_outlive_the_auth_age_limit() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // Tokens valid 2 s, connections closed 3 s after their last AUTH: the 900 s and the
    // 12 hours of ElastiCache, shortened.
    let front = IamFront::start(
        redis.port,
        IamFrontOptions {
            max_auth_age: 3.0,
            ..IamFrontOptions::default()
        },
    )
    .await;
    let (env, runtime) = environment(
        &front,
        "iam-refresh",
        &[("ADMISSION_REDIS_IAM_TOKEN_TTL", "2")],
    )
    .await;
    env.wait_connected().await;
    let started = Instant::now();
    let mut decisions = 0;
    while started.elapsed() < Duration::from_secs(7) {
        assert!(
            counted(&env, &runtime, &redis, "iam-refresh").await,
            "decision {decisions} at {:?} not counted: {:?}",
            started.elapsed(),
            front.events()
        );
        decisions += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = front.events();
    let connects = events.iter().filter(|e| e["event"] == "connect").count();
    let drops = events.iter().filter(|e| e["event"] == "drop").count();
    let auths = front.auths();
    let reauths = auths
        .iter()
        .filter(|(ok, _, reauth)| *ok && *reauth)
        .count();
    assert!(
        auths.iter().all(|(ok, _, _)| *ok),
        "every token accepted: {auths:?}"
    );
    assert_eq!(
        (connects, drops),
        (1, 0),
        "one connection, never closed: {events:?}"
    );
    // A fresh token every second on the one connection (7 s; the freshly opened connection also
    // authenticates twice at once).
    assert!(reauths >= 5, "{reauths} re-authentications: {auths:?}");
    assert_no_credentials(&env.extension_stderr.text());
}

#[tokio::test]
async fn a_connection_closed_at_the_auth_age_limit_is_replaced_with_a_valid_token() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // Connections are closed 1 s after their last AUTH; tokens live 4 s and are renewed every
    // 2 s, so every connection is closed before it re-authenticates, and each replacement must
    // present a token that has not expired.
    let front = IamFront::start(
        redis.port,
        IamFrontOptions {
            max_auth_age: 1.0,
            ..IamFrontOptions::default()
        },
    )
    .await;
    let (env, runtime) = environment(
        &front,
        "iam-replaced",
        &[("ADMISSION_REDIS_IAM_TOKEN_TTL", "4")],
    )
    .await;
    env.wait_connected().await;
    assert!(counted(&env, &runtime, &redis, "iam-replaced").await);
    // Past several closes and past the first token's expiry.
    let started = Instant::now();
    let mut last_counted = false;
    while started.elapsed() < Duration::from_secs(6) {
        last_counted = counted(&env, &runtime, &redis, "iam-replaced").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drops = front
        .events()
        .iter()
        .filter(|e| e["event"] == "drop")
        .count();
    assert!(
        drops >= 2,
        "the front closed connections: {:?}",
        front.events()
    );
    // Once reconnected, counted again: wait for the connection replaced after the last close.
    let mut again = last_counted;
    for _ in 0..20 {
        if again {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = counted(&env, &runtime, &redis, "iam-replaced").await;
    }
    assert!(
        again,
        "counted again after the connection was replaced: {:?}",
        front.events()
    );
    let auths = front.auths();
    assert!(
        auths.iter().all(|(ok, _, _)| *ok),
        "no expired token presented: {auths:?}"
    );
    assert!(auths.len() >= 3, "{auths:?}");
}

#[tokio::test]
async fn a_serverless_cluster_is_reached_node_by_node_with_tokens() {
    // ElastiCache Serverless is a cluster: the nodes the cluster client discovers are reached
    // through the front too (the node announces the front's port).
    let redis = RedisServer::start(RedisMode::Cluster).await;
    let front = IamFront::start(
        redis.port,
        IamFrontOptions {
            serverless: true,
            ..IamFrontOptions::default()
        },
    )
    .await;
    redis
        .cli(&[
            "CONFIG",
            "SET",
            "cluster-announce-port",
            &front.port.to_string(),
        ])
        .await;
    let (env, runtime) = environment(
        &front,
        "iam-cluster",
        &[("ADMISSION_REDIS_IAM_SERVERLESS", "true")],
    )
    .await;
    env.wait_connected().await;
    let was_counted = counted(&env, &runtime, &redis, "iam-cluster").await;
    let logs = env.extension_stderr.text();
    assert!(was_counted, "{logs}");
    assert!(logs.contains("cluster=true"), "{logs}");
    let auths = front.auths();
    let connects = front
        .events()
        .iter()
        .filter(|e| e["event"] == "connect")
        .count();
    assert!(
        connects >= 2,
        "the node connection went through the front too"
    );
    assert!(
        auths.iter().all(|(ok, _, _)| *ok) && auths.len() >= 2,
        "{auths:?}"
    );
    assert_no_credentials(&logs);
}
