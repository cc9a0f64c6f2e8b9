//! Fleet-wide admission: several extension processes, each in its own emulated environment,
//! counting in one real `redis-server`.

use std::time::{Duration, Instant};

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{signal, Builder, Environment, Outcome, Runtime, RuntimeClient};
use serde_json::json;

fn rest_event(i: usize) -> String {
    json!({"resource": "/", "path": format!("/{i}"), "httpMethod": "GET", "headers": {},
        "requestContext": {"stage": "prod", "requestId": format!("gw-{i}")}})
    .to_string()
}

struct Fleet {
    envs: Vec<Environment>,
    runtimes: Vec<RuntimeClient>,
    /// Each runtime's `next` call; one still waiting is kept for the next burst, never
    /// abandoned (an abandoned `next` could still take an event).
    waiting: Vec<Option<tokio::task::JoinHandle<lambda_emulator::runtime_client::Event>>>,
}

/// `n` on-demand environments sharing `redis` with `limit`, connected before it returns.
async fn fleet(n: usize, redis: &RedisServer, pool: &str, vars: &[(&str, &str)]) -> Fleet {
    let mut envs = Vec::new();
    for _ in 0..n {
        let mut b = Builder::new(Runtime::None)
            .env("ADMISSION_COORDINATOR", &redis.url())
            .env("ADMISSION_POOL", pool)
            .env("ADMISSION_SHED_AT", "1")
            // Loopback Redis answers in well under a millisecond, but these machines stall.
            .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
            // These runtimes ask for an event only when a test wants one: to the extension they
            // would look as if they were still initialising. The init lease has its own tests.
            .env("ADMISSION_INIT_LEASE", "false");
        if let Some(ca) = &redis.ca_file {
            b = b.env("ADMISSION_REDIS_CA_FILE", &ca.display().to_string());
        }
        b = b.envs(vars);
        envs.push(b.start().await);
    }
    for e in &envs {
        let connected = e
            .wait_status(Duration::from_secs(5), |s| {
                s["coordinator"] == "redis" && s["coordinatorConnected"] == true
            })
            .await;
        assert!(
            connected.is_ok(),
            "{connected:?} {}",
            e.extension_stderr.text()
        );
    }
    let runtimes = envs
        .iter()
        .map(|e| RuntimeClient::new(&format!("127.0.0.1:{}", e.port)))
        .collect();
    let waiting = (0..n).map(|_| None).collect();
    Fleet {
        envs,
        runtimes,
        waiting,
    }
}

impl Fleet {
    /// One invocation per environment at once, each environment's runtime waiting in `next`.
    /// Returns the events the runtimes received and the 429s the clients got.
    async fn burst(
        &mut self,
        timeout: Duration,
    ) -> (
        Vec<(usize, String)>,
        Vec<serde_json::Value>,
        Vec<tokio::task::JoinHandle<Outcome>>,
    ) {
        for (r, w) in self.runtimes.iter().zip(&mut self.waiting) {
            if w.is_none() {
                let r = r.clone();
                *w = Some(tokio::spawn(async move { r.next().await }));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut invokes = Vec::new();
        for (i, e) in self.envs.iter().enumerate() {
            let p = e.platform.clone();
            invokes.push(tokio::spawn(async move {
                p.invoke(rest_event(i), timeout).await
            }));
        }
        let mut shed = Vec::new();
        let mut pending = Vec::new();
        for inv in invokes {
            // A shed answer comes back at once; an admitted one waits for its runtime.
            tokio::time::sleep(Duration::from_millis(1)).await;
            pending.push(inv);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = Vec::new();
        for inv in pending {
            if inv.is_finished() {
                shed.push(inv.await.unwrap().json());
            } else {
                still.push(inv);
            }
        }
        let mut admitted = Vec::new();
        for (i, w) in self.waiting.iter_mut().enumerate() {
            if w.as_ref().is_some_and(|n| n.is_finished()) {
                admitted.push((i, w.take().unwrap().await.unwrap().id));
            }
        }
        (admitted, shed, still)
    }

    /// Bursts (answering every admitted invocation, so none is lost) until exactly `limit` are
    /// admitted and the rest shed: the shared count is in use. False if that never happens.
    async fn counts_again(&mut self, limit: usize) -> bool {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(350)).await;
            let (admitted, shed, pending) = self.burst(Duration::from_secs(20)).await;
            for (i, id) in &admitted {
                self.runtimes[*i].respond(id, "\"served\"").await;
            }
            for p in pending {
                assert_eq!(p.await.unwrap().body(), b"\"served\"");
            }
            assert_eq!(
                admitted.len() + shed.len(),
                self.envs.len(),
                "every invocation answered"
            );
            if admitted.len() == limit && shed.len() == self.envs.len() - limit {
                return true;
            }
        }
        false
    }
}

#[tokio::test]
async fn a_burst_is_admitted_exactly_up_to_the_fleet_limit() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut f = fleet(8, &redis, "burst", &[("ADMISSION_LIMIT", "5")]).await;
    let (admitted, shed, pending) = f.burst(Duration::from_secs(20)).await;
    assert_eq!(
        admitted.len(),
        5,
        "exactly the limit is admitted across the fleet: {}",
        redis
            .cli(&[
                "ZRANGE",
                "lambda-admission:{burst}",
                "0",
                "-1",
                "WITHSCORES"
            ])
            .await
    );
    assert_eq!(shed.len(), 3);
    for s in &shed {
        assert_eq!(s["statusCode"], 429);
        assert_eq!(s["headers"]["x-amzn-ErrorType"], "TooManyRequestsException");
    }
    assert_eq!(pending.len(), 5);
    let key = "lambda-admission:{burst}";
    assert!(
        redis.cli(&["ZCARD", key]).await.contains(":5"),
        "five leases in the pool"
    );
    // While leases are held, the pool key expires a minute after the latest deadline, no later.
    let ttl: i64 = redis
        .cli(&["PTTL", key])
        .await
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        (60_000..=80_000).contains(&ttl),
        "pool key TTL {ttl} ms for invocations of 20 s"
    );
    // Answering frees the leases before the runtimes' next `next`.
    for (i, id) in &admitted {
        assert_eq!(
            f.runtimes[*i]
                .respond(id, r#"{"statusCode":200,"body":"ok"}"#)
                .await,
            202
        );
    }
    for p in pending {
        assert_eq!(p.await.unwrap().json()["statusCode"], 200);
    }
    assert!(
        redis.cli(&["ZCARD", key]).await.contains(":0"),
        "{}",
        redis.cli(&["ZRANGE", key, "0", "-1"]).await
    );
}

/// How many times Redis ran `command` since the last `CONFIG RESETSTAT`.
async fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).await;
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn one_round_trip_decides_an_event_and_one_returns_its_lease_in_every_mode() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": "m"}]}).to_string();
    for mode in ["enforce", "observe"] {
        let pool = format!("calls-{mode}");
        let f = fleet(
            1,
            &redis,
            &pool,
            &[("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", mode)],
        )
        .await;
        let (env, runtime) = (&f.envs[0], &f.runtimes[0]);
        // The first call loads the script; count from the second on.
        for (id, task) in env.hold(runtime, 1, &rest_event(0)).await {
            runtime.respond(&id, "\"ok\"").await;
            task.await.unwrap();
        }
        redis.cli(&["CONFIG", "RESETSTAT"]).await;
        // One event holds the only slot; three more go over it and are admitted all the same:
        // HTTP ones in observe mode, events that are not HTTP in enforce mode.
        let over = if mode == "observe" {
            rest_event(1)
        } else {
            sqs.clone()
        };
        let mut held = env.hold(runtime, 1, &rest_event(1)).await;
        held.extend(env.hold(runtime, 3, &over).await);
        let status = env.status().await;
        assert_eq!(status["inFlight"], 4, "{mode}: {status}");
        for (id, task) in held {
            runtime.respond(&id, "\"ok\"").await;
            task.await.unwrap();
        }
        assert_eq!(
            calls(&redis, "evalsha").await,
            4,
            "{mode}: one acquire per event"
        );
        assert_eq!(
            calls(&redis, "zrem").await,
            4,
            "{mode}: one release per event"
        );
        assert_eq!(calls(&redis, "eval").await, 0, "{mode}");
    }
    // A shed event costs its one acquire and nothing else.
    let f = fleet(1, &redis, "calls-shed", &[("ADMISSION_LIMIT", "1")]).await;
    let (env, runtime) = (&f.envs[0], &f.runtimes[0]);
    let held = env.hold(runtime, 1, &rest_event(0)).await;
    redis.cli(&["CONFIG", "RESETSTAT"]).await;
    let waiting = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    assert_eq!(env.invoke(rest_event(1)).await.json()["statusCode"], 429);
    assert_eq!(calls(&redis, "evalsha").await, 1);
    assert_eq!(calls(&redis, "zrem").await, 0);
    drop((held, waiting));
}

#[tokio::test]
async fn while_the_fleet_is_known_full_sheds_cost_no_round_trip() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let f = fleet(1, &redis, "memo", &[("ADMISSION_LIMIT", "1")]).await;
    let (env, runtime) = (&f.envs[0], &f.runtimes[0]);
    let held = env.hold(runtime, 1, &rest_event(0)).await;
    let waiting = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    redis.cli(&["CONFIG", "RESETSTAT"]).await;
    // An overload: requests back to back, each shed.
    let started = std::time::Instant::now();
    let n = 40;
    for i in 0..n {
        assert_eq!(env.invoke(rest_event(i)).await.json()["statusCode"], 429);
    }
    let elapsed = started.elapsed();
    let trips = calls(&redis, "evalsha").await;
    // One round trip per 10 ms memo at most (and the first), not one per shed.
    let most = 1 + (elapsed.as_millis() / 10) as u64;
    assert!(
        trips <= most && trips < n as u64,
        "{trips} round trips for {n} sheds in {elapsed:?}"
    );
    // Once the fleet has room, the next request is admitted: the memo is short.
    for (id, _) in held {
        runtime.respond(&id, "\"ok\"").await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let p = env.platform.clone();
    let admitted = tokio::spawn(async move {
        p.invoke(rest_event(99), std::time::Duration::from_secs(5))
            .await
    });
    let event = tokio::time::timeout(std::time::Duration::from_secs(3), waiting)
        .await
        .expect("admitted once there is room")
        .unwrap();
    runtime.respond(&event.id, "\"ok\"").await;
    assert_eq!(admitted.await.unwrap().body(), b"\"ok\"");
    // Sheds answered without a round trip still count toward the fleet's invocations per second
    // (Lambda's rate cap counts them): the next round trip carried them.
    let counted = redis
        .cli(&[
            "EVAL",
            "local t = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             t = t + tonumber(redis.call('GET', k)) end return t",
            "0",
            "lambda-admission:{memo}:rate:*",
        ])
        .await;
    assert_eq!(
        counted.trim(),
        format!(":{}", 1 + n + 1),
        "the held invocation, every shed, the admitted one"
    );
}

#[tokio::test]
async fn retry_after_follows_the_fleets_load_not_one_fresh_environments() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let f = fleet(3, &redis, "retry", &[("ADMISSION_LIMIT", "1")]).await;
    // The fresh environment's runtime waits for an event.
    let waiting = {
        let r = f.runtimes[2].clone();
        tokio::spawn(async move { r.next().await })
    };
    // The fleet is full: one long invocation holds the only slot.
    let held = f.envs[0].hold(&f.runtimes[0], 1, &rest_event(0)).await;
    // Meanwhile another environment serves a steady stream of queue events: never shed, counted,
    // so the fleet serves far more than it refuses.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served = {
        let (platform, runtime, stop) = (
            f.envs[1].platform.clone(),
            f.runtimes[1].clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": "m"}]}).to_string();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = platform.clone();
                let s = sqs.clone();
                let invoke = tokio::spawn(async move { p.invoke(s, Duration::from_secs(5)).await });
                let event = runtime.next().await;
                runtime.respond(&event.id, "{}").await;
                assert_eq!(invoke.await.unwrap().body(), b"{}");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // A fresh environment sheds: its own history is nothing but refusals (it would say
    // ceil(1 s × k × [1, 2)) after k of them), the fleet's is mostly admissions.
    let mut retry_after = Vec::new();
    for i in 0..10 {
        let shed = f.envs[2].invoke(rest_event(i)).await.json();
        assert_eq!(shed["statusCode"], 429);
        retry_after.push(
            shed["headers"]["retry-after"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = served.await.unwrap();
    assert!(served > 50, "the stream kept the fleet busy: {served}");
    assert!(
        retry_after.iter().all(|&r| r <= 3),
        "Retry-After from the fleet's last second (mostly admitted): {retry_after:?}"
    );
    assert!(!waiting.is_finished(), "every event was shed");
    drop(held);
}

#[tokio::test]
async fn a_lease_that_is_never_returned_expires_at_the_deadline() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let f = fleet(2, &redis, "expiry", &[("ADMISSION_LIMIT", "1")]).await;
    // Environment 0 takes the only slot for an invocation that ends in 1 s and never answers.
    let p = f.envs[0].platform.clone();
    let _stuck =
        tokio::spawn(async move { p.invoke(rest_event(0), Duration::from_millis(1000)).await });
    let _event = f.runtimes[0].next().await;
    let waiting = {
        let r = f.runtimes[1].clone();
        tokio::spawn(async move { r.next().await })
    };
    let out = f.envs[1].invoke(rest_event(1)).await;
    assert_eq!(out.json()["statusCode"], 429, "the fleet is full");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = f.envs[1].platform.clone();
    let invoke =
        tokio::spawn(async move { p.invoke(rest_event(2), Duration::from_secs(10)).await });
    let got = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("admitted after the deadline")
        .unwrap();
    f.runtimes[1].respond(&got.id, "\"ok\"").await;
    assert_eq!(invoke.await.unwrap().body(), b"\"ok\"");
}

#[tokio::test]
async fn a_dead_redis_loses_no_invocation_and_is_used_again_when_back() {
    let mut redis = RedisServer::start(RedisMode::Plain).await;
    let mut f = fleet(
        3,
        &redis,
        "outage",
        &[
            ("ADMISSION_LIMIT", "2"),
            ("ADMISSION_COORDINATOR_BACKOFF_MS", "300"),
        ],
    )
    .await;
    redis.kill().await;
    // Three invocations each round, over a limit of two: all admitted, all answered.
    for _ in 0..3 {
        let (admitted, shed, pending) = f.burst(Duration::from_secs(20)).await;
        assert_eq!((admitted.len(), shed.len()), (3, 0), "fail open: {shed:?}");
        for (i, id) in &admitted {
            f.runtimes[*i].respond(id, "\"served\"").await;
        }
        for p in pending {
            assert_eq!(p.await.unwrap().body(), b"\"served\"");
        }
    }
    // Only a round trip that went out may have left a lease to return (the first, which met
    // the dead server): the invocations admitted while it was skipped took none.
    for e in &f.envs {
        let status = e.status().await;
        let unreturned = status["unreturnedLeases"].as_u64().unwrap_or(u64::MAX);
        assert!(
            unreturned <= 1,
            "nothing to return for skipped invocations: {status}"
        );
    }
    redis.restart().await;
    // Each environment reconnects after its back-off, on its next decision.
    assert!(
        f.counts_again(2).await,
        "the fleet count is used again once Redis is back"
    );
    let (mut fail_open, mut coordinator_errors) = (0, 0);
    for e in &mut f.envs {
        e.shutdown().await;
        for m in e.metric_lines() {
            fail_open += m["FailOpen"].as_u64().unwrap_or(0);
            coordinator_errors += m["CoordinatorErrors"].as_u64().unwrap_or(0);
        }
    }
    assert!(
        fail_open >= 9,
        "every invocation admitted without Redis is counted: {fail_open}"
    );
    // Every one of them is the coordinator's doing, whether its round trip failed or it was
    // skipped while known down: not one error for a whole outage.
    assert_eq!(coordinator_errors, fail_open);
}

#[tokio::test]
async fn connections_dropped_while_frozen_are_replaced_on_thaw() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut f = fleet(
        2,
        &redis,
        "thaw",
        &[
            ("ADMISSION_LIMIT", "1"),
            ("ADMISSION_COORDINATOR_BACKOFF_MS", "300"),
        ],
    )
    .await;
    assert!(
        f.counts_again(1).await,
        "the count is in use before the freeze"
    );
    // Lambda freezes the environments between invocations; meanwhile the server (an idle
    // timeout, a failover) drops their connections, which they learn only once thawed.
    let pids: Vec<u32> = f
        .envs
        .iter()
        .filter_map(|e| e.extension.as_ref().and_then(|c| c.id()))
        .collect();
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        signal(pid, "STOP");
    }
    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]).await;
    let killed: u32 = killed.trim().trim_start_matches(':').parse().unwrap_or(0);
    assert!(
        killed >= 2,
        "both environments' connections dropped: {killed}"
    );
    for &pid in &pids {
        signal(pid, "CONT");
    }
    // Thawed: every invocation is answered, and the dead sockets are replaced, not waited on.
    assert!(
        f.counts_again(1).await,
        "the count is used again after the thaw: {}",
        f.envs[0].extension_stderr.text()
    );
}

#[tokio::test]
async fn a_redis_that_stops_answering_costs_a_decision_its_budget_and_no_more() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut f = fleet(
        2,
        &redis,
        "hang",
        &[
            ("ADMISSION_LIMIT", "1"),
            ("ADMISSION_COORDINATOR_BACKOFF_MS", "300"),
        ],
    )
    .await;
    // A stopped server accepts nothing and answers nothing, like a host that vanished: calls
    // hang rather than fail. Each decision may wait its budget (250 ms here), then admits.
    let pid = redis.pid().expect("redis-server runs");
    signal(pid, "STOP");
    for i in 0..2 {
        let runtime = f.runtimes[i].clone();
        let next = tokio::spawn(async move { runtime.next().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let platform = f.envs[i].platform.clone();
        let start = Instant::now();
        let invoke = tokio::spawn(async move {
            platform
                .invoke(rest_event(i), Duration::from_secs(20))
                .await
        });
        let event = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the event reaches the runtime although Redis hangs")
            .unwrap();
        let waited = start.elapsed();
        assert!(
            waited < Duration::from_millis(1500),
            "the decision waited {waited:?} on a hanging Redis, budget 250 ms"
        );
        f.runtimes[i].respond(&event.id, "\"served\"").await;
        let answer = tokio::time::timeout(Duration::from_secs(5), invoke)
            .await
            .expect("the answer is not held by the release")
            .unwrap();
        assert_eq!(answer.body(), b"\"served\"");
    }
    signal(pid, "CONT");
    assert!(
        f.counts_again(1).await,
        "the count is used again once Redis answers"
    );
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let redis = RedisServer::start(RedisMode::Tls).await;
    assert!(redis.url().starts_with("rediss://"));
    let mut f = fleet(3, &redis, "tls", &[("ADMISSION_LIMIT", "2")]).await;
    assert!(f.envs[0].extension_stderr.text().contains("cluster=false"));
    let (admitted, shed, _pending) = f.burst(Duration::from_secs(20)).await;
    assert_eq!((admitted.len(), shed.len()), (2, 1));
}

#[tokio::test]
async fn tls_refuses_a_server_it_cannot_verify() {
    let redis = RedisServer::start(RedisMode::Tls).await;
    // No CA file: the public roots do not know the test CA, so the extension never connects,
    // and admits everything.
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_LIMIT", "1")
        .start()
        .await;
    assert!(
        env.extension_stderr
            .wait_for(
                "cannot connect to the shared coordinator",
                Duration::from_secs(5)
            )
            .await
    );
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    for i in 0..2 {
        let p = env.platform.clone();
        let inv =
            tokio::spawn(async move { p.invoke(rest_event(i), Duration::from_secs(10)).await });
        let e = runtime.next().await;
        runtime.respond(&e.id, "\"ok\"").await;
        assert_eq!(inv.await.unwrap().body(), b"\"ok\"");
    }
}

#[tokio::test]
async fn cluster_mode_with_a_hash_tagged_pool() {
    let redis = RedisServer::start(RedisMode::Cluster).await;
    let mut f = fleet(4, &redis, "cluster", &[("ADMISSION_LIMIT", "3")]).await;
    assert!(f.envs[0].extension_stderr.text().contains("cluster=true"));
    let (admitted, shed, _pending) = f.burst(Duration::from_secs(20)).await;
    assert_eq!((admitted.len(), shed.len()), (3, 1));
    assert!(redis
        .cli(&["ZCARD", "lambda-admission:{cluster}"])
        .await
        .contains(":3"));
}

#[tokio::test]
async fn cluster_mode_over_tls_only_as_elasticache_serverless_serves() {
    let redis = RedisServer::start(RedisMode::TlsCluster).await;
    assert!(redis.url().starts_with("rediss://"));
    let mut f = fleet(4, &redis, "serverless", &[("ADMISSION_LIMIT", "3")]).await;
    assert!(
        f.envs[0].extension_stderr.text().contains("cluster=true"),
        "{}",
        f.envs[0].extension_stderr.text()
    );
    let (admitted, shed, _pending) = f.burst(Duration::from_secs(20)).await;
    assert_eq!((admitted.len(), shed.len()), (3, 1));
    assert!(redis
        .cli(&["ZCARD", "lambda-admission:{serverless}"])
        .await
        .contains(":3"));
}

#[tokio::test]
async fn a_redis_user_without_info_is_taken_as_one_node() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // An ACL user allowed the script and ZREM but not INFO (which cluster detection asks).
    let set = redis
        .cli(&[
            "ACL", "SETUSER", "limited", "on", ">s3cret", "~*", "+@all", "-info",
        ])
        .await;
    assert!(set.starts_with("+OK"), "{set}");
    let url = format!("redis://limited:s3cret@127.0.0.1:{}", redis.port);
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", &url)
        .env("ADMISSION_POOL", "noperm")
        .env("ADMISSION_LIMIT", "5")
        .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
        .start()
        .await;
    env.wait_connected().await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    let _held = env.hold(&runtime, 2, &rest_event(0)).await;
    assert!(redis
        .cli(&["ZCARD", "lambda-admission:{noperm}"])
        .await
        .contains(":2"));
    assert!(
        !env.extension_stderr.text().contains("s3cret"),
        "the password never reaches the log"
    );
}

#[tokio::test]
async fn the_fleets_invocations_per_second_are_counted_in_the_same_round_trip() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut f = fleet(2, &redis, "rate", &[("ADMISSION_LIMIT", "20")]).await;
    let second =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let began = std::time::SystemTime::now();
    let mut held = Vec::new();
    for (env, runtime) in f.envs.iter().zip(&f.runtimes) {
        held.push(env.hold(runtime, 3, &rest_event(0)).await);
    }
    let one_second = second(began) == second(std::time::SystemTime::now());
    redis.cli(&["CONFIG", "RESETSTAT"]).await;
    let mut rates = Vec::new();
    for e in &mut f.envs {
        e.shutdown().await;
        let m = e.metric_lines();
        assert_eq!(m[0]["InvokeRateLimit"], 200, "10 × the limit");
        rates.push(m[0]["InvokeRate"].as_u64().unwrap());
    }
    // Each environment saw three of its own; the fleet's count, from Redis, saw all six.
    if one_second {
        assert_eq!(rates.iter().max(), Some(&6), "{rates:?}");
    } else {
        assert!(rates.iter().all(|&r| r >= 1), "{rates:?}");
    }
    drop(held);
}

/// Leases in `pool` as Redis counts them.
async fn zcard(redis: &RedisServer, pool: &str) -> String {
    let key = format!("lambda-admission:{{{pool}}}");
    redis.cli(&["ZCARD", &key]).await.trim().to_string()
}

/// The pool's count once it reads `want`, or the last one read within a second.
async fn zcard_becomes(redis: &RedisServer, pool: &str, want: &str) -> String {
    let mut counted = String::new();
    for _ in 0..100 {
        counted = zcard(redis, pool).await;
        if counted == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    counted
}

#[tokio::test]
async fn an_environment_counts_in_the_fleet_while_it_initialises() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // Two environments initialising (their runtimes have not asked for an event yet), a limit of 1.
    let f = fleet(
        2,
        &redis,
        "init",
        &[("ADMISSION_LIMIT", "1"), ("ADMISSION_INIT_LEASE", "true")],
    )
    .await;
    // Each takes its lease as soon as it is connected: one round trip later.
    let counted = zcard_becomes(&redis, "init", ":2").await;
    assert_eq!(counted, ":2", "one init lease each");
    // The first runtime is ready: its init lease goes back, the other's still counts, so the
    // fleet (limit 1) is full and the ready environment sheds.
    let waiting = {
        let r = f.runtimes[0].clone();
        tokio::spawn(async move { r.next().await })
    };
    let counted = zcard_becomes(&redis, "init", ":1").await;
    assert_eq!(counted, ":1");
    assert_eq!(
        f.envs[0].invoke(rest_event(0)).await.json()["statusCode"],
        429
    );
    // Once the second has initialised too, the fleet has room again.
    let second = {
        let r = f.runtimes[1].clone();
        tokio::spawn(async move { r.next().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = f.envs[0].platform.clone();
    let invoke = tokio::spawn(async move { p.invoke(rest_event(1), Duration::from_secs(5)).await });
    let event = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("admitted once no environment initialises")
        .unwrap();
    f.runtimes[0].respond(&event.id, "\"ok\"").await;
    assert_eq!(invoke.await.unwrap().body(), b"\"ok\"");
    second.abort();
}

#[tokio::test]
async fn no_init_lease_when_switched_off_or_initialised_ahead_of_invokes() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let _off = fleet(1, &redis, "off", &[("ADMISSION_INIT_LEASE", "false")]).await;
    let _ahead = fleet(
        1,
        &redis,
        "ahead",
        &[
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency"),
            ("ADMISSION_INIT_LEASE", "true"),
        ],
    )
    .await;
    let _on = fleet(1, &redis, "on", &[("ADMISSION_INIT_LEASE", "true")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(zcard(&redis, "off").await, ":0");
    assert_eq!(zcard(&redis, "ahead").await, ":0");
    assert_eq!(zcard(&redis, "on").await, ":1");
}

#[tokio::test]
async fn a_calm_fleet_keeps_one_slot_spare_and_the_full_headroom_once_it_sheds() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    // Limit 10, the extension's own headroom: 4 spare slots while shedding (threshold 6, the
    // shed time not measured yet), 1 while calm (threshold 9).
    let f = fleet(
        2,
        &redis,
        "calm",
        &[("ADMISSION_LIMIT", "10"), ("ADMISSION_SHED_AT", "")],
    )
    .await;
    let (env, runtime) = (&f.envs[0], &f.runtimes[0]);
    assert_eq!(env.status().await["threshold"], 6);
    let mut held = env.hold(runtime, 9, &rest_event(0)).await;
    // The tenth finds the calm threshold reached: the first refusal.
    let waiting = {
        let r = f.runtimes[1].clone();
        tokio::spawn(async move { r.next().await })
    };
    let status = |i| {
        let p = f.envs[1].platform.clone();
        async move { p.invoke(rest_event(i), Duration::from_secs(5)).await.json()["statusCode"].clone() }
    };
    assert_eq!(status(10).await, 429);
    // Shedding now: back to the full headroom, so 6 held are enough to shed.
    for (id, task) in held.drain(..3) {
        runtime.respond(&id, "\"ok\"").await;
        assert_eq!(task.await.unwrap().body(), b"\"ok\"");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(status(11).await, 429, "6 held, threshold 6 while shedding");
    // Two whole seconds without a refusal: calm again, and 6 held leave room.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let p = f.envs[1].platform.clone();
    let invoke =
        tokio::spawn(async move { p.invoke(rest_event(12), Duration::from_secs(5)).await });
    let event = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("admitted: the fleet is calm")
        .unwrap();
    f.runtimes[1].respond(&event.id, "\"ok\"").await;
    assert_eq!(invoke.await.unwrap().body(), b"\"ok\"");
    drop(held);
}
