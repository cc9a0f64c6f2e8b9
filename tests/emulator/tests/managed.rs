//! Managed Instances as the emulator models them (`lambda_emulator::managed`): the router, the
//! throttles (every slot busy; CPU protection), the scaler, and the emulated cgroup the extension
//! reads its CPU from, which it sheds on before CPU protection binds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_emulator::fleet::{
    ApiGateway, Fleet, FleetConfig, Invoke, Layer, PlatformLimits, Throttle,
};
use lambda_emulator::managed::Managed;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{Builder, Environment, Runtime};

fn config(k: usize, layer: Layer, managed: Managed) -> FleetConfig {
    FleetConfig {
        environments: managed.max,
        per_environment: k,
        runtime: Runtime::Rust { stream: false },
        layer,
        shed_at: None,
        pool: "managed".into(),
        platform: PlatformLimits::concurrency_only(),
        extension_env: Vec::new(),
        runtime_env: Vec::new(),
        managed: Some(managed),
    }
}

fn work(ms: u64, cpu: f64) -> String {
    ApiGateway::event(
        "/x",
        &[
            ("op", "sleep"),
            ("ms", &ms.to_string()),
            ("cpu", &cpu.to_string()),
        ],
    )
}

/// Invokes `n` at once, each `work(ms, cpu)`, without waiting for them.
fn spawn_many(
    fleet: &Arc<Fleet>,
    n: usize,
    ms: u64,
    cpu: f64,
) -> Vec<tokio::task::JoinHandle<Invoke>> {
    (0..n)
        .map(|_| {
            let fleet = fleet.clone();
            tokio::spawn(async move { fleet.invoke(work(ms, cpu), Duration::from_secs(10)).await })
        })
        .collect()
}

async fn outcomes(tasks: Vec<tokio::task::JoinHandle<Invoke>>) -> Vec<Invoke> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("invoke task"));
    }
    out
}

fn is_429(invoke: &Invoke) -> bool {
    matches!(invoke, Invoke::Done(o) if o.json()["statusCode"] == 429)
}

/// A Managed Instances environment of `k` slots counting in `redis`'s `pool`, connected.
async fn pool_environment(
    redis: &RedisServer,
    pool: &str,
    k: u32,
    vars: &[(&str, &str)],
) -> Environment {
    let env = Builder::new(Runtime::Rust { stream: false })
        .managed_instances(k)
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_POOL", pool)
        .envs(vars)
        .start()
        .await;
    let ready = env
        .wait_status(Duration::from_secs(10), |s| {
            s["coordinatorConnected"] == true
        })
        .await;
    assert!(ready.is_ok(), "{}", env.extension_stderr.text());
    env
}

fn assert_pool_limit(status: &serde_json::Value, limit: u64) {
    assert_eq!(
        (&status["limit"], &status["limitSource"]),
        (
            &serde_json::json!(limit),
            &serde_json::json!("managed-instances-pool")
        ),
        "{status}"
    );
}

#[tokio::test]
async fn the_router_fills_the_least_busy_environment_and_throttles_when_every_slot_is_busy() {
    let fleet = Arc::new(Fleet::start(&config(2, Layer::None, Managed::documented(2, 2))).await);
    let running = spawn_many(&fleet, 4, 800, 0.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_env: Vec<usize> = fleet
        .environments()
        .iter()
        .map(|e| e.platform.slots_in_use())
        .collect();
    assert_eq!(per_env, vec![2, 2], "spread over both environments");
    let fifth = fleet.invoke(work(0, 0.0), Duration::from_secs(5)).await;
    assert_eq!(fifth, Invoke::Throttled(Throttle::Concurrency));
    assert!(outcomes(running)
        .await
        .iter()
        .all(|o| matches!(o, Invoke::Done(_))));
    // Free again once the runtime has asked for its next events.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        fleet.invoke(work(0, 0.0), Duration::from_secs(5)).await,
        Invoke::Done(_)
    ));
}

#[tokio::test]
async fn an_environment_running_hot_takes_no_new_invoke_until_it_cools() {
    // 8 invocations of 0.4 vCPU on 2 vCPUs: the CPU is saturated while slots are free.
    let fleet = Arc::new(Fleet::start(&config(16, Layer::None, Managed::documented(1, 1))).await);
    let running = spawn_many(&fleet, 8, 1800, 0.4);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let env = &fleet.environments()[0];
    assert!(
        env.platform.cpu_utilisation() > 0.9,
        "{}",
        env.platform.cpu_utilisation()
    );
    let refused = fleet.invoke(work(0, 0.0), Duration::from_secs(5)).await;
    assert_eq!(
        refused,
        Invoke::Throttled(Throttle::Cpu),
        "a free slot, but high CPU"
    );
    assert_eq!(Throttle::Cpu.id(), "cpu");
    outcomes(running).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(env.platform.cpu_utilisation() < 0.1);
    assert!(matches!(
        fleet.invoke(work(0, 0.0), Duration::from_secs(5)).await,
        Invoke::Done(_)
    ));
}

#[tokio::test]
async fn the_scaler_adds_environments_under_load_no_faster_than_it_may_and_removes_them_when_calm()
{
    let mut managed = Managed::documented(1, 4);
    managed.period = Duration::from_millis(300);
    managed.launch_delay = Duration::from_millis(400);
    managed.doubling = Duration::from_secs(3);
    managed.scale_down_after = Duration::from_millis(1500);
    let fleet = Arc::new(Fleet::start(&config(2, Layer::None, managed)).await);
    fleet.start_scaler();
    let started = Instant::now();
    // Two slots busy without a break: utilisation 1 against a target of 0.6.
    let busy = {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            while started.elapsed() < Duration::from_secs(5) {
                let a = fleet.invoke(work(300, 0.0), Duration::from_secs(5));
                let b = fleet.invoke(work(300, 0.0), Duration::from_secs(5));
                tokio::join!(a, b);
                // A slot is free again once its runtime has asked for the next event.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut grown_at = None;
    while started.elapsed() < Duration::from_secs(5) {
        if fleet.started() >= 2 && grown_at.is_none() {
            grown_at = Some(started.elapsed());
        }
        assert!(
            fleet.started() <= 2 || started.elapsed() >= Duration::from_secs(3),
            "more than doubled within the doubling window: {} at {:?}",
            fleet.started(),
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown_at = grown_at.expect("the scaler added an environment");
    assert!(
        grown_at >= Duration::from_millis(400),
        "no environment before the launch delay: {grown_at:?}"
    );
    busy.await.unwrap();
    let peak = fleet.started();
    let calm = Instant::now();
    while fleet.started() > 1 && calm.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fleet.started(), 1, "scaled down to the minimum from {peak}");
    assert!(
        calm.elapsed() >= Duration::from_millis(1500),
        "gradually: {:?}",
        calm.elapsed()
    );
    let sizes: Vec<usize> = fleet.sizes().iter().map(|s| s.1).collect();
    assert_eq!(sizes.first(), Some(&1));
    assert!(
        sizes.windows(2).all(|w| w[0].abs_diff(w[1]) == 1),
        "{sizes:?}"
    );
}

#[tokio::test]
async fn the_layer_reads_the_environments_cpu_and_sheds_before_cpu_protection_binds() {
    // 0.2 vCPU per invocation on 2 vCPUs: protection (90 %) binds at 9 in flight, the layer's
    // cap (80 %) at 8.
    let fleet = Arc::new(Fleet::start(&config(16, Layer::Local, Managed::documented(1, 1))).await);
    let env = fleet.environments()[0].clone();
    // Calm first: four at a time, so that the extension learns what one invocation costs.
    for _ in 0..3 {
        outcomes(spawn_many(&fleet, 4, 600, 0.2)).await;
    }
    let status = env.status().await;
    let cpu = &status["cpu"];
    assert!(
        cpu["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("cgroup2:")),
        "{status}"
    );
    assert_eq!(cpu["vcpus"], 2.0);
    // (1.6 − 0) / 0.2 = 8, or 7 with the estimate a little high.
    let cap = cpu["cap"].as_u64().expect("a cap");
    assert!((7..=8).contains(&cap), "{status}");
    // Then fifteen at once (a slot frees when its runtime asks for the next event: give the
    // last ones time to): the slots would take them all, the CPU would not.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let burst = outcomes(spawn_many(&fleet, 15, 1500, 0.2)).await;
    let shed = burst.iter().filter(|o| is_429(o)).count();
    let throttled = burst
        .iter()
        .filter(|o| matches!(o, Invoke::Throttled(_)))
        .count();
    assert_eq!(throttled, 0, "{burst:?}");
    // The estimate moves a little with every sample: 7 or 8 admitted.
    let admitted = 15 - shed;
    assert!(
        (7..=8).contains(&admitted),
        "the layer admits up to its cap ({cap} at the status): {burst:?}"
    );
    assert!(env.platform.cpu_utilisation() < 0.9);
}

/// With a shared count, the fleet's threshold is not this environment's CPU: the CPU's bound is
/// this environment's own in-flight count, checked before Redis is asked.
#[tokio::test]
async fn with_a_shared_count_the_cpu_bounds_this_environments_own_invocations() {
    use lambda_admission::config::Config;
    use lambda_admission::decision::admission::{Admission, Decision};
    use lambda_admission::decision::cpu::{CpuPressure, Estimate};
    use lambda_admission::lease::{unix_ms, Deadline};

    let redis = RedisServer::start(RedisMode::Plain).await;
    let vars: std::collections::HashMap<String, String> = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "cpu-shared"),
        ("ADMISSION_LIMIT", "100"),
        ("ADMISSION_COORDINATOR", &redis.url()),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "200"),
        ("ADMISSION_INIT_LEASE", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_strings(&vars).expect("config");
    let coordinator = lambda_admission::coordinator::from_config(&config).expect("coordinator");
    let (_tx, limit) = lambda_admission::decision::limit::channel(config.limit);
    let pressure = Arc::new(CpuPressure::new(
        &lambda_admission::platform::cpu::Source::ProcStat,
        2.0,
        0.8,
    ));
    pressure.publish_for_test(Estimate {
        utilisation: 0.5,
        per_invocation: 0.5,
        cap: Some(3),
    });
    let a = Admission::new(&config, limit, coordinator).with_cpu(pressure);
    let started = Instant::now();
    while a.status()["coordinatorConnected"] != true {
        assert!(started.elapsed() < Duration::from_secs(5), "not connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = br#"{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"}}"#;
    let deadline = Deadline::from_unix_ms(Some(unix_ms() + 60_000));
    // Five at once: all of them pass the gate before Redis answers any, unless the gate counts
    // the decisions under way.
    let ids: Vec<String> = (0..5).map(|i| format!("cpu-{i}")).collect();
    let decide = |i: usize| a.decide(&ids[i], deadline, event, None);
    let (d0, d1, d2, d3, d4) = tokio::join!(decide(0), decide(1), decide(2), decide(3), decide(4));
    let decisions = [d0, d1, d2, d3, d4];
    let admitted = decisions.iter().filter(|d| **d == Decision::Admit).count();
    assert_eq!(
        admitted, 3,
        "the fleet's threshold is far off, the CPU's is 3: {decisions:?}"
    );
    // Redis counted the three admitted only: the two refused never asked it.
    let held = redis.cli(&["ZCARD", "lambda-admission:{cpu-shared}"]).await;
    assert_eq!(held.trim(), ":3", "leases in Redis (a RESP integer)");
    let first = ids[decisions
        .iter()
        .position(|d| *d == Decision::Admit)
        .unwrap_or(0)]
    .clone();
    a.release(&first, false).await;
    assert_eq!(
        a.decide("cpu-5", deadline, event, None).await,
        Decision::Admit
    );
    let status = a.status();
    assert_eq!(status["shed"], 2);
    assert_eq!(status["cpu"]["cap"], 3);
}

/// Managed Instances sharing a count: each environment publishes its concurrency with its
/// leases, and the pool's limit is their sum, as environments come and go.
#[tokio::test]
async fn with_a_shared_count_the_pools_limit_is_the_sum_of_its_environments_concurrency() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let a = pool_environment(&redis, "mi-pool", 4, &[]).await;
    let b = pool_environment(&redis, "mi-pool", 6, &[]).await;
    assert_eq!(
        a.status().await["limit"],
        serde_json::Value::Null,
        "nothing heard yet"
    );
    let event = work(0, 0.0);
    for e in [&a, &b, &a] {
        let out = e.invoke(event.clone()).await;
        assert_eq!(out.json()["statusCode"], 200, "{out:?}");
    }
    assert_pool_limit(&a.status().await, 10);
    // b goes away and is no longer heard from: its entry expires (here, moved to the past).
    drop(b);
    let members = redis
        .cli(&[
            "ZRANGE",
            "lambda-admission:{mi-pool}:environments",
            "0",
            "-1",
        ])
        .await;
    let envs: Vec<&str> = members.lines().filter(|l| l.starts_with("env-")).collect();
    assert_eq!(envs.len(), 2, "{members}");
    for env in envs {
        redis
            .cli(&["ZADD", "lambda-admission:{mi-pool}:environments", "1", env])
            .await;
    }
    assert_eq!(a.invoke(event).await.json()["statusCode"], 200);
    assert_eq!(a.status().await["limit"], 4, "a alone");
}

/// The adaptive limit on a Managed Instances pool works under the pool's sum: it is the
/// adaptive limit's ceiling.
#[tokio::test]
async fn an_adaptive_limit_on_a_pool_has_the_pools_sum_for_its_ceiling() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let limit = [("ADMISSION_LIMIT", "adaptive")];
    let env = pool_environment(&redis, "mi-adaptive", 4, &limit).await;
    assert_eq!(env.invoke(work(0, 0.0)).await.json()["statusCode"], 200);
    let s = env.status().await;
    assert_pool_limit(&s, 4);
    assert!(
        s["adaptiveLimit"].as_u64().is_none_or(|a| a <= 4),
        "never above the pool's sum: {s}"
    );
    assert_eq!(s["threshold"], 3, "one slot in sixteen, at least one: {s}");
}
