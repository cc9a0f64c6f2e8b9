//! Fair shares per tenant against a real redis-server and several emulated environments: near
//! the threshold, a tenant under its fair share still gets in while one holding its share is
//! shed; per-tenant counts follow releases, deadlines and SHUTDOWN; tenant keys never reach
//! Redis or the logs in clear.

use std::time::Duration;

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{Builder, Environment, Runtime, RuntimeClient};
use serde_json::json;

/// A REST request from `tenant` (`x-tenant` header; none: anonymous).
fn request(tenant: Option<&str>) -> String {
    let headers = tenant.map_or_else(|| json!({}), |t| json!({"X-Tenant": t}));
    json!({"resource": "/{proxy+}", "path": "/orders", "httpMethod": "GET", "headers": headers,
        "requestContext": {"stage": "prod", "requestId": "r", "httpMethod": "GET"}})
    .to_string()
}

/// Limit 10, threshold 6: a tenant holding its share or more (`ADMISSION_TENANT_OVER_AT=1`)
/// stops at 4 (the reserve: 20 % of 10).
const FAIR: &[(&str, &str)] = &[
    ("ADMISSION_LIMIT", "10"),
    ("ADMISSION_SHED_AT", "0.6"),
    ("ADMISSION_TENANT_OVER_AT", "1"),
    ("ADMISSION_TENANT", "header:x-tenant"),
];

async fn environment(redis: &RedisServer, pool: &str, extra: &[(&str, &str)]) -> Environment {
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_POOL", pool)
        .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
        .env("ADMISSION_INIT_LEASE", "false")
        .env("ADMISSION_METRICS_INTERVAL", "3600")
        .env("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
        .envs(FAIR.iter().chain(extra))
        .start()
        .await;
    env.wait_connected().await;
    env
}

fn client(env: &Environment) -> RuntimeClient {
    RuntimeClient::new(&format!("127.0.0.1:{}", env.port))
}

/// The pool's per-tenant counts in Redis, sorted by count.
async fn tenant_counts(redis: &RedisServer, pool: &str) -> Vec<(String, u64)> {
    let out = redis
        .cli(&["HGETALL", &format!("lambda-admission:{{{pool}}}:tenants")])
        .await;
    // RESP: an array (anything else, an error or no answer, fails the test), then skip the
    // length headers.
    assert!(out.starts_with('*'), "HGETALL answered {out:?}");
    let words: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        .collect();
    let mut counts: Vec<(String, u64)> = words
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_string(), c[1].parse().unwrap()))
        .collect();
    counts.sort_by_key(|(t, n)| (*n, t.clone()));
    counts
}

#[tokio::test]
async fn near_the_threshold_a_tenant_under_its_share_gets_in_and_one_at_its_share_is_shed() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut holder = environment(&redis, "fair", &[]).await;
    let mut asker = environment(&redis, "fair", &[]).await;
    let (h, a) = (client(&holder), client(&asker));
    // Elsewhere in the fleet, `acme` holds 4 and `globex` 1: each tenant's share is 6 / 2 = 3.
    let mut held = holder.hold(&h, 4, &request(Some("acme"))).await;
    held.extend(holder.hold(&h, 1, &request(Some("globex"))).await);
    // 5 held: `acme`, over its share, stops two slots (20 % of 10) short of the threshold;
    // `globex` and a newcomer, under theirs, get in.
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        429
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request(Some("globex")), None)
            .await,
        200
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request(Some("initech")), None)
            .await,
        200
    );
    // 6 held: the threshold, for everyone.
    held.extend(holder.hold(&h, 1, &request(Some("globex"))).await);
    assert_eq!(
        asker
            .invoke_answered(&a, request(Some("globex")), None)
            .await,
        429
    );
    assert_eq!(asker.invoke_answered(&a, request(None), None).await, 429);
    // Redis counts per tenant, and knows tenants only by their hashed ids.
    let counts = tenant_counts(&redis, "fair").await;
    let numbers: Vec<u64> = counts.iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, [2, 4], "{counts:?}");
    for (id, _) in &counts {
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    let members = redis
        .cli(&["ZRANGE", "lambda-admission:{fair}", "0", "-1"])
        .await;
    assert!(
        !members.contains("acme") && !members.contains("globex"),
        "{members}"
    );
    // SHUTDOWN returns the holder's leases, and their tenants' counts with them.
    holder.shutdown().await;
    assert_eq!(tenant_counts(&redis, "fair").await, []);
    assert_eq!(
        redis
            .cli(&["ZCARD", "lambda-admission:{fair}"])
            .await
            .trim(),
        ":0"
    );
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        200
    );
    // Metrics: the most tenants in flight any decision saw (two, and the newcomer).
    asker.shutdown().await;
    let line = asker
        .metric_lines()
        .into_iter()
        .find(|l| l.get("TenantsInFlightMax").is_some())
        .expect("a TenantsInFlightMax line");
    assert_eq!(line["TenantsInFlightMax"], 3, "{line}");
    // Keys never appear in the logs, hashed or not in the shed debug lines.
    for log in [
        asker.extension_stderr.text(),
        holder.extension_stderr.text(),
    ] {
        assert!(!log.contains("acme") && !log.contains("globex"), "{log}");
    }
    assert!(
        asker.extension_stderr.text().contains("tenant="),
        "sheds are logged with the hashed tenant"
    );
    drop(held);
}

#[tokio::test]
async fn tenant_counts_expire_with_their_leases() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let holder = environment(&redis, "expiry", &[]).await;
    let asker = environment(&redis, "expiry", &[]).await;
    let (h, a) = (client(&holder), client(&asker));
    // `acme` holds five leases that end in 1.5 s; then `globex` one that outlives the test.
    let mut held = holder
        .hold_for(
            &h,
            5,
            &request(Some("acme")),
            None,
            Duration::from_millis(1500),
        )
        .await;
    held.extend(holder.hold(&h, 1, &request(Some("globex"))).await);
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        429
    );
    let counts = tenant_counts(&redis, "expiry").await;
    assert_eq!(counts.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 5]);
    // The holder's runtime never answers: the leases end at their deadlines, in the next
    // round trip, and the tenant's count with them.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        200
    );
    // Only `globex`'s count is left.
    assert_eq!(tenant_counts(&redis, "expiry").await, [counts[0].clone()]);
    drop(held);
}

#[tokio::test]
async fn tenants_past_the_bound_share_one_fair_share() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let bound = [("ADMISSION_TENANTS_MAX", "2")];
    let mut holder = environment(&redis, "bound", &bound).await;
    let asker = environment(&redis, "bound", &bound).await;
    let (h, a) = (client(&holder), client(&asker));
    let mut held = holder.hold(&h, 2, &request(Some("a"))).await;
    held.extend(holder.hold(&h, 1, &request(Some("b"))).await);
    // `c` and `d` are past the bound: one overflow tenant holding 2. Shares: 6 / 3 = 2.
    held.extend(holder.hold(&h, 1, &request(Some("c"))).await);
    held.extend(holder.hold(&h, 1, &request(Some("d"))).await);
    let counts = tenant_counts(&redis, "bound").await;
    assert!(counts.contains(&("~".to_string(), 2)), "{counts:?}");
    // 5 held: `e`, counted as the overflow tenant, is at its share; `b` is under its own.
    assert_eq!(
        asker.invoke_answered(&a, request(Some("e")), None).await,
        429
    );
    assert_eq!(
        asker.invoke_answered(&a, request(Some("b")), None).await,
        200
    );
    assert_eq!(tenant_counts(&redis, "bound").await.len(), 3);
    // The overflow tenant's leases go back under its name, and its count with them.
    holder.shutdown().await;
    assert_eq!(tenant_counts(&redis, "bound").await, []);
    drop(held);
}

#[tokio::test]
async fn lambda_tenant_ids_count_in_this_environment_without_a_shared_count() {
    // The local coordinator: the ledger counts tenants. Limit 10, threshold 6.
    let env = Builder::new(Runtime::None)
        .envs(&FAIR[..3])
        .env("ADMISSION_TENANT", "lambda")
        .start()
        .await;
    let rt = client(&env);
    let day = Duration::from_secs(20);
    let mut held = env
        .hold_for(&rt, 4, &request(None), Some("tenant-1"), day)
        .await;
    held.extend(
        env.hold_for(&rt, 1, &request(None), Some("tenant-2"), day)
            .await,
    );
    let over = env
        .invoke_answered(&rt, request(None), Some("tenant-1"))
        .await;
    assert_eq!(over, 429, "over its share");
    let under = env
        .invoke_answered(&rt, request(None), Some("tenant-3"))
        .await;
    assert_eq!(under, 200, "under its share");
    drop(held);
}

#[tokio::test]
async fn while_the_fleet_is_calm_a_tenant_over_its_share_keeps_the_reserve_below_the_calm_threshold(
) {
    // No ADMISSION_SHED_AT: the headroom's threshold is 6 (4 spare slots for the sheds of 10),
    // and a calm fleet admits up to 9. A tenant over its share stops 2 slots short of either.
    let redis = RedisServer::start(RedisMode::Plain).await;
    let calm = [("ADMISSION_SHED_AT", "")];
    let holder = environment(&redis, "calm", &calm).await;
    let asker = environment(&redis, "calm", &calm).await;
    let (h, a) = (client(&holder), client(&asker));
    let mut held = holder.hold(&h, 5, &request(Some("acme"))).await;
    held.extend(holder.hold(&h, 1, &request(Some("globex"))).await);
    // 6 held, nothing refused yet: `acme` (5, over its share of 3) still gets in below 7.
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        200
    );
    held.extend(holder.hold(&h, 1, &request(Some("acme"))).await);
    // 7 held: `globex` (1, under its share) still gets in, up to 9; `acme` is refused.
    assert_eq!(
        asker
            .invoke_answered(&a, request(Some("globex")), None)
            .await,
        200
    );
    assert_eq!(
        asker.invoke_answered(&a, request(Some("acme")), None).await,
        429
    );
    // That refusal ends the calm: now `acme` stops at 4 and everyone at 6.
    assert_eq!(
        asker
            .invoke_answered(&a, request(Some("globex")), None)
            .await,
        429
    );
    drop(held);
}

#[tokio::test]
async fn a_lease_asked_for_twice_counts_its_tenant_once() {
    use lambda_admission::config::SharedConfig;
    use lambda_admission::coordinator::{RedisCount, RideAlong, SharedCount};
    use lambda_admission::lease::{unix_ms, Deadline, Lease};
    let redis = RedisServer::start(RedisMode::Plain).await;
    let shared = SharedConfig {
        pool: "twice".into(),
        timeout: Duration::from_secs(1),
        backoff: Duration::from_secs(5),
        ca_file: None,
        tenants_max: 10,
        shards: 1,
        adaptive: false,
    };
    let count = RedisCount::new(&redis.url(), None, &shared).unwrap();
    let conn = count.connect().await.unwrap();
    let lease = Lease {
        id: "req-1",
        deadline: Deadline::from_unix_ms(Some(unix_ms() + 30_000)),
        threshold: Some(10),
        calm_threshold: None,
        invocation: true,
        tenant: Some("0123456789abcdef"),
        fair: None,
        capacity: None,
    };
    for _ in 0..2 {
        let grant = count
            .acquire(conn.clone(), lease, RideAlong::default())
            .await
            .unwrap();
        assert!(grant.granted);
    }
    assert_eq!(
        tenant_counts(&redis, "twice").await,
        [("0123456789abcdef".to_string(), 1)]
    );
    count
        .release(conn.clone(), &["0123456789abcdef|req-1".into()], None)
        .await
        .unwrap();
    assert_eq!(tenant_counts(&redis, "twice").await, []);
}

#[tokio::test]
async fn counts_left_behind_are_dropped_once_nothing_is_in_flight() {
    // A count with no lease behind it (an older layer version sharing the pool expired a
    // tenant's lease without counting it down) would make that tenant look busy for good.
    let redis = RedisServer::start(RedisMode::Plain).await;
    let env = environment(&redis, "drift", &[]).await;
    let rt = client(&env);
    redis
        .cli(&["HSET", "lambda-admission:{drift}:tenants", "ghost", "3"])
        .await;
    assert_eq!(
        env.invoke_answered(&rt, request(Some("acme")), None).await,
        200
    );
    assert_eq!(tenant_counts(&redis, "drift").await, []);
}
