//! A pool split over several keys (`ADMISSION_POOL_SHARDS`), against a real redis-server: never
//! more admitted than the threshold, a request refused by its first shard tries a second, every
//! lease returned to the shard that granted it, and each invocation counted once.

use std::time::Duration;

use lambda_admission::config::SharedConfig;
use lambda_admission::coordinator::redis::{candidates, shard_key};
use lambda_admission::coordinator::{RedisCount, RideAlong, SharedCount};
use lambda_admission::lease::{unix_ms, Deadline, Lease};
use lambda_emulator::faults::REST;
use lambda_emulator::hand_driven;
use lambda_emulator::services::{RedisMode, RedisServer};

const SHARDS: usize = 4;

fn shared(pool: &str) -> SharedConfig {
    SharedConfig {
        pool: pool.into(),
        timeout: Duration::from_secs(1),
        backoff: Duration::from_secs(5),
        ca_file: None,
        tenants_max: 10,
        shards: SHARDS,
        adaptive: false,
    }
}

fn lease(id: &str, threshold: u64) -> Lease<'_> {
    Lease {
        id,
        deadline: Deadline::from_unix_ms(Some(unix_ms() + 30_000)),
        threshold: Some(threshold),
        calm_threshold: None,
        invocation: true,
        tenant: None,
        fair: None,
        capacity: None,
    }
}

async fn int(redis: &RedisServer, args: &[&str]) -> u64 {
    redis
        .cli(args)
        .await
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap_or(u64::MAX)
}

/// Leases on each shard.
async fn per_shard(redis: &RedisServer, pool: &str) -> Vec<u64> {
    let mut held = Vec::new();
    for i in 0..SHARDS {
        held.push(int(redis, &["ZCARD", &shard_key(pool, i, SHARDS)]).await);
    }
    held
}

/// Invocations counted toward the rate (`what` = `rate`) or refusals (`refused`), over every
/// shard's counters.
async fn counted(redis: &RedisServer, pool: &str, what: &str) -> u64 {
    let mut total = 0;
    for i in 0..SHARDS {
        let pattern = format!("{}:{what}:*", shard_key(pool, i, SHARDS));
        let keys = redis.cli(&["KEYS", &pattern]).await;
        for key in keys.lines().filter(|l| l.starts_with("lambda-admission:")) {
            total += redis
                .cli(&["GET", key])
                .await
                .lines()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

#[tokio::test]
async fn shards_admit_up_to_the_threshold_try_a_second_shard_and_return_leases_where_granted() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let pool = "sharded";
    let count = RedisCount::new(&redis.url(), None, &shared(pool)).unwrap();
    let conn = count.connect().await.unwrap();
    // A threshold of 8: 2 on each of the 4 shards.
    let mut granted = Vec::new();
    let (mut asked, mut refused) = (0u64, 0u64);
    for n in 0..400 {
        if granted.len() == 8 {
            break;
        }
        let id = format!("req-{n}");
        asked += 1;
        let grant = count
            .acquire(conn.clone(), lease(&id, 8), RideAlong::default())
            .await
            .unwrap();
        if grant.granted {
            granted.push(id);
        } else {
            refused += 1;
        }
        let held = per_shard(&redis, pool).await;
        assert!(
            held.iter().all(|&h| h <= 2),
            "a shard past its part: {held:?}"
        );
    }
    assert_eq!(granted.len(), 8, "every shard fills up");
    assert_eq!(per_shard(&redis, pool).await, [2, 2, 2, 2]);
    for n in 0..20 {
        let id = format!("more-{n}");
        asked += 1;
        let grant = count
            .acquire(conn.clone(), lease(&id, 8), RideAlong::default())
            .await
            .unwrap();
        assert!(!grant.granted, "nothing past the threshold");
        assert!(grant.held >= 8, "every shard full: a full fleet {grant:?}");
        refused += 1;
    }
    // Each invocation counted once toward the rate, second tries included; a refusal only when
    // the second try refused too.
    assert_eq!(counted(&redis, pool, "rate").await, asked);
    assert_eq!(counted(&redis, pool, "refused").await, refused);

    // One lease back; a request whose first shard is full and whose second has that room gets in.
    let victim = granted.remove(0);
    count
        .release(conn.clone(), &[victim.as_str().into()], None)
        .await
        .unwrap();
    let on = per_shard(&redis, pool).await;
    let free = on
        .iter()
        .position(|&h| h == 1)
        .expect("one shard with room");
    let second_try = (0..10_000)
        .map(|n| format!("second-{n}"))
        .find(|id| {
            let (first, second) = candidates(id, SHARDS);
            first != free && second == Some(free)
        })
        .unwrap();
    let grant = count
        .acquire(conn.clone(), lease(&second_try, 8), RideAlong::default())
        .await
        .unwrap();
    assert!(grant.granted, "admitted on its second shard");
    assert_eq!(per_shard(&redis, pool).await, [2, 2, 2, 2]);
    granted.push(second_try);

    // Every lease goes back to the shard that granted it.
    let members: Vec<Box<str>> = granted.iter().map(|id| id.as_str().into()).collect();
    count.release(conn.clone(), &members, None).await.unwrap();
    assert_eq!(per_shard(&redis, pool).await, [0, 0, 0, 0]);
}

#[tokio::test]
async fn a_lease_whose_grant_was_not_heard_is_returned_from_either_shard() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let pool = "unheard";
    // One backend grants; another (as after a restart, or a grant whose answer was lost) does
    // not know where, and returns it all the same.
    let granting = RedisCount::new(&redis.url(), None, &shared(pool)).unwrap();
    let other = RedisCount::new(&redis.url(), None, &shared(pool)).unwrap();
    let conn = granting.connect().await.unwrap();
    // One lease where its id hashes to (shard 0), one refused there and granted on its second.
    let first_on = |shard: usize, second: Option<usize>| {
        (0..10_000)
            .map(|n| format!("req-{n}"))
            .find(|id| {
                let (a, b) = candidates(id, SHARDS);
                a == shard && second.is_none_or(|s| b == Some(s))
            })
            .expect("an id")
    };
    let (here, moved) = (first_on(0, None), first_on(0, Some(1)));
    for id in [&here, &moved] {
        let grant = granting
            .acquire(conn.clone(), lease(id, 4), RideAlong::default())
            .await
            .unwrap();
        assert!(grant.granted, "{id}");
    }
    assert_eq!(per_shard(&redis, pool).await, [1, 1, 0, 0]);
    let members: Vec<Box<str>> = [&here, &moved]
        .iter()
        .map(|id| id.as_str().into())
        .collect();
    other.release(conn.clone(), &members, None).await.unwrap();
    assert_eq!(per_shard(&redis, pool).await, [0, 0, 0, 0]);
    // And through the ride-along of the next acquire.
    let id = "late".to_string();
    assert!(
        granting
            .acquire(conn.clone(), lease(&id, 4), RideAlong::default())
            .await
            .unwrap()
            .granted
    );
    let returning: Vec<Box<str>> = vec![id.as_str().into()];
    let along = RideAlong {
        returning: &returning,
        unasked_sheds: 0,
    };
    let grant = other
        .acquire(conn.clone(), lease("next", 4), along)
        .await
        .unwrap();
    assert!(grant.granted);
    assert_eq!(
        per_shard(&redis, pool).await.iter().sum::<u64>(),
        1,
        "only `next` held"
    );
}

#[tokio::test]
async fn an_environment_with_sharded_pool_sheds_past_the_threshold_and_returns_every_lease() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let pool = "sharded-env";
    let (env, runtime) = hand_driven(&[
        ("ADMISSION_COORDINATOR", &redis.url()),
        ("ADMISSION_POOL", pool),
        ("ADMISSION_POOL_SHARDS", "4"),
        ("ADMISSION_LIMIT", "8"),
        ("ADMISSION_SHED_AT", "1"),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "250"),
    ])
    .await;
    env.wait_connected().await;
    let mut held = Vec::new();
    let mut shed = 0;
    for n in 0..16 {
        let waiting = {
            let r = runtime.clone();
            tokio::spawn(async move { r.next().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let platform = env.platform.clone();
        let out = tokio::spawn(async move {
            platform
                .invoke_as(
                    &format!("sharded-{n}"),
                    REST.to_string(),
                    Duration::from_secs(10),
                )
                .await
        });
        // Either the runtime gets the event (admitted, held) or the client its 429 (shed).
        while !waiting.is_finished() && !out.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if waiting.is_finished() {
            held.push((waiting.await.expect("next").id, out));
        } else {
            waiting.abort();
            let outcome = out.await.expect("client");
            assert_eq!(outcome.json()["statusCode"], 429, "{outcome:?}");
            shed += 1;
        }
    }
    let on_shards: u64 = per_shard(&redis, pool).await.iter().sum();
    assert_eq!(
        on_shards,
        held.len() as u64,
        "every admitted invocation counted"
    );
    assert!(
        held.len() <= 8,
        "{} admitted past the threshold",
        held.len()
    );
    assert!(
        held.len() >= 6,
        "two choices fill the shards: {} admitted",
        held.len()
    );
    assert_eq!(held.len() + shed, 16);
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        assert_eq!(task.await.expect("client").body(), b"\"ok\"");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(per_shard(&redis, pool).await, [0, 0, 0, 0]);
}
