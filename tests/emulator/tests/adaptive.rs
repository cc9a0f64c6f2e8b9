//! The adaptive limit end to end: real environments (the Rust runtime) whose handlers call a
//! downstream of finite capacity, on the complete platform, against a real redis-server (a fleet)
//! and with the local coordinator (Managed Instances). Overloaded, a static limit lets the
//! downstream's queue into every response; the adaptive limit finds the downstream's capacity,
//! keeps its latency near the unloaded one and its workers busy, and publishes the fleet's limit
//! in Redis.

use std::time::Duration;

use lambda_emulator::downstream::{Downstream, DownstreamSpec};
use lambda_emulator::fleet::{FleetConfig, Layer, PlatformLimits};
use lambda_emulator::load::{LoadSpec, Step};
use lambda_emulator::scenario::{self, Outcome, Scenario};
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::Runtime;

const WORKERS: usize = 3;

async fn downstream() -> Downstream {
    Downstream::start(DownstreamSpec {
        workers: WORKERS,
        service: Duration::from_millis(50),
        collapse_at: None,
        collapse_factor: 1.0,
    })
    .await
}

/// 0.5× → 3× → 0.5× of the downstream's capacity.
fn load(down: &Downstream) -> LoadSpec {
    let mut spec = LoadSpec::standard(1.0);
    spec.steps = [(0.5, 4.0), (3.0, 10.0), (0.5, 4.0)]
        .iter()
        .map(|&(multiple, seconds)| Step { multiple, seconds })
        .collect();
    spec.error_share = 0.0;
    spec.downstream = Some((down.port, down.spec.capacity_rps()));
    spec
}

/// Shorter windows than the default, for a short test.
fn with_short_windows(mut s: Scenario) -> Scenario {
    s.fleet
        .extension_env
        .push(("ADMISSION_ADAPTIVE_WINDOW_MS", "500"));
    s
}

fn describe(o: &Outcome) -> String {
    o.steps
        .iter()
        .map(|s| {
            format!(
                "{}×: {} req, {} 2xx, {} 429, {} 500 ({} rate, {} concurrency), share {:.2}, p50 {:.0} ms, p99 {:.0} ms",
                s.multiple,
                s.requests,
                s.ok,
                s.too_many,
                s.server_errors,
                s.rate_throttled,
                s.concurrency_throttled,
                s.downstream_share.unwrap_or(0.0),
                s.p50_ms,
                s.p99_ms
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_finds_the_downstreams_capacity_where_a_static_limit_queues_on_it() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let down = downstream().await;
    let spec = load(&down);
    let scenarios =
        scenario::downstream(12, &redis.url(), Runtime::Rust { stream: false }, WORKERS);
    let pick = |id: &str| scenarios.iter().find(|s| s.id == id).cloned().expect(id);
    let adaptive = with_short_windows(pick("downstream-adaptive"));
    let outcomes = scenario::run_all(&[pick("downstream-static"), adaptive.clone()], &spec).await;
    let (fixed, adapted) = (&outcomes[0], &outcomes[1]);
    let p50 = |o: &Outcome, step: usize| o.steps[step].p50_ms;
    let p99 = |o: &Outcome, step: usize| o.steps[step].p99_ms;
    eprintln!(
        "static: {}\nadaptive: {}",
        describe(fixed),
        describe(adapted)
    );
    // The static limit admits up to the platform's limit (less the sheds' headroom): the
    // downstream's queue is in every admitted response. The adaptive limit keeps it out.
    assert!(
        p50(adapted, 1) <= 0.8 * p50(fixed, 1),
        "static: {}\nadaptive: {}",
        describe(fixed),
        describe(adapted)
    );
    // The adaptive limit keeps admitted latency near the unloaded one and the downstream busy.
    let overload = &adapted.steps[1];
    assert!(
        p50(adapted, 1) <= 1.5 * p50(adapted, 0) && p99(adapted, 1) <= 2.0 * p99(adapted, 0),
        "adaptive: {}",
        describe(adapted)
    );
    assert!(
        overload.downstream_share.unwrap_or(0.0) >= 0.75,
        "adaptive: {}",
        describe(adapted)
    );
    // Lambda's own throttles stay as rare as the recipe keeps them with a static limit (a few
    // sheds caught in a CPU stall of this 2-core machine; docs/benchmarks.md counts them).
    assert!(
        adapted
            .steps
            .iter()
            .all(|s| s.server_errors * 200 <= s.requests),
        "adaptive: {}",
        describe(adapted)
    );
    // Back at 0.5×, the limit recovers: the last two seconds shed next to nothing (at most one
    // request in fifty, where the overload shed two in three; a CPU stall of this 2-core machine
    // now and then costs one).
    let end = adapted.per_second.len();
    let recovered: Vec<_> = adapted.per_second[end.saturating_sub(2)..].to_vec();
    let (ok, shed) = recovered
        .iter()
        .fold((0, 0), |(o, s), &(_, ok, shed, _)| (o + ok, s + shed));
    assert!(
        shed * 50 <= ok + shed,
        "adaptive, per second (s, 2xx, 429, 500): {:?}",
        adapted.per_second
    );
    // The fleet's limit, as the last window's closer published it for every acquire.
    let key = format!(
        "lambda-admission:{{{}}}:adaptive:limit",
        adaptive.fleet.pool
    );
    let published: u64 = redis
        .cli(&["GET", &key])
        .await
        .lines()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=12).contains(&published), "published {published}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_instances_environment_adapts_on_its_own() {
    let down = downstream().await;
    let spec = load(&down);
    let fleet = FleetConfig {
        environments: 1,
        per_environment: 12,
        runtime: Runtime::Rust { stream: false },
        layer: Layer::Local,
        shed_at: None,
        pool: "mi-adaptive".into(),
        platform: PlatformLimits::concurrency_only(),
        extension_env: vec![("ADMISSION_LIMIT", "adaptive")],
        runtime_env: Vec::new(),
        managed: None,
    };
    let scenario = with_short_windows(Scenario {
        id: "mi-adaptive",
        name: "Managed Instances, adaptive".into(),
        fleet,
        remap_5xx_to_429: false,
        stage_throttle: None,
    });
    let outcome = scenario::run(&scenario, &spec, &mut |_, _, _| {}).await;
    let overload = &outcome.steps[1];
    eprintln!("{}", describe(&outcome));
    assert!(
        overload.p50_ms <= 1.5 * outcome.steps[0].p50_ms
            && overload.p99_ms <= 2.5 * outcome.steps[0].p99_ms,
        "{}",
        describe(&outcome)
    );
    assert!(
        overload.downstream_share.unwrap_or(0.0) >= 0.75 && overload.too_many > 0,
        "{}",
        describe(&outcome)
    );
}

/// Observe mode computes the adaptive limit from the handlers' durations and reports it, but
/// sheds nothing. Driven by hand on a Managed Instances environment: fast invocations first (the
/// baseline), then slow ones with the environment full (the limit binds).
#[tokio::test]
async fn observe_mode_reports_the_adaptive_limit_and_sheds_nothing() {
    use lambda_emulator::faults::REST;
    let (env, runtime) = lambda_emulator::hand_driven(&[
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
        ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
        ("ADMISSION_LIMIT", "adaptive"),
        ("ADMISSION_MODE", "observe"),
        ("ADMISSION_ADAPTIVE_WINDOW_MS", "200"),
    ])
    .await;
    let round = |n: usize, hold: Duration| {
        let (env, runtime) = (&env, &runtime);
        async move {
            let held = env.hold(runtime, n, REST).await;
            tokio::time::sleep(hold).await;
            for (id, task) in held {
                runtime
                    .respond(&id, r#"{"statusCode":200,"body":"ok"}"#)
                    .await;
                let outcome = task.await.expect("client");
                assert_eq!(
                    outcome.json()["statusCode"],
                    200,
                    "observe mode sheds nothing"
                );
            }
        }
    };
    // Fast rounds take the limit to the ceiling. A window slowed by the machine (a noisy CI
    // host) lowers it for a moment; the next fast windows bring it back, so wait for that.
    let started = std::time::Instant::now();
    let mut fast = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(10) {
        round(8, Duration::from_millis(5)).await;
        if started.elapsed() < Duration::from_millis(1500) {
            continue;
        }
        fast = env.status().await;
        if fast["adaptiveLimit"] == 8 {
            break;
        }
    }
    assert_eq!(fast["adaptiveLimit"], 8, "fast: the ceiling ({fast})");
    let slow = std::time::Instant::now();
    while slow.elapsed() < Duration::from_millis(1500) {
        round(8, Duration::from_millis(60)).await;
    }
    let status = env.status().await;
    let limit = status["adaptiveLimit"].as_u64().unwrap_or(0);
    assert!(
        (1..8).contains(&limit),
        "slow and full: the limit falls ({status})"
    );
    assert_eq!(status["shed"], 0, "{status}");
}

/// The fleet's windows in Redis: a thin window is carried into the next instead of claimed, a
/// full one is claimed once, and a state is never overwritten by an older one.
#[tokio::test]
async fn windows_are_claimed_once_carried_when_thin_and_published_in_order() {
    use lambda_admission::config::SharedConfig;
    use lambda_admission::coordinator::{RedisCount, SharedCount};
    use lambda_admission::decision::adaptive::Sample;
    let redis = RedisServer::start(RedisMode::Plain).await;
    let shared = SharedConfig {
        pool: "windows".into(),
        timeout: Duration::from_secs(1),
        backoff: Duration::from_secs(5),
        ca_file: None,
        tenants_max: 10,
        shards: 1,
        adaptive: true,
    };
    let count = RedisCount::new(&redis.url(), None, &shared).unwrap();
    let conn = count.connect().await.unwrap();
    let sample = |window| {
        Some(Sample {
            bucket: 100,
            window,
        })
    };
    // Window 10: 4 samples; the first of window 11 finds it thin and carries it.
    for _ in 0..4 {
        assert_eq!(
            count.release(conn.clone(), &[], sample(10)).await.unwrap(),
            None
        );
    }
    assert_eq!(
        count.release(conn.clone(), &[], sample(11)).await.unwrap(),
        None
    );
    // Window 11 now holds 5 + 6 more: 11 samples, claimed once by the first of window 12.
    for _ in 0..6 {
        assert_eq!(
            count.release(conn.clone(), &[], sample(11)).await.unwrap(),
            None
        );
    }
    let closed = count
        .release(conn.clone(), &[], sample(12))
        .await
        .unwrap()
        .expect("window 11 claimed");
    assert_eq!((closed.window, closed.summary.samples()), (11, 11));
    assert_eq!(closed.state, None, "the fleet's first state");
    assert_eq!(
        count.release(conn.clone(), &[], sample(12)).await.unwrap(),
        None
    );
    // Published in order: an older window's state never replaces a newer one.
    let ttl = Duration::from_secs(60);
    assert!(count
        .publish(conn.clone(), 11, "7.000 11", 7, ttl)
        .await
        .unwrap());
    assert!(!count
        .publish(conn.clone(), 10, "9.000 10", 9, ttl)
        .await
        .unwrap());
    assert!(!count
        .publish(conn.clone(), 11, "9.000 11", 9, ttl)
        .await
        .unwrap());
    let limit = redis
        .cli(&["GET", "lambda-admission:{windows}:adaptive:limit"])
        .await;
    assert_eq!(limit.lines().nth(1), Some("7"));
}
