//! The shared coordinator's benchmark (not a test): decision latency with Redis on loopback side
//! by side with the local coordinator in one run, and how many decisions one Redis sustains.
//!
//! Run with `scripts/bench.sh` or `cargo run --release -p lambda-emulator --bin bench-coordinator`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_admission::config::Config;
use lambda_admission::coordinator;
use lambda_admission::decision::admission::{Admission, Decision};
use lambda_admission::decision::limit;
use lambda_admission::lease::{unix_ms, Deadline};
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::stats::percentile_of;

const EVENT: &[u8] =
    br#"{"httpMethod":"GET","headers":{"x-tenant":"acme"},"requestContext":{"stage":"p"}}"#;

fn admission(vars: &[(&str, &str)]) -> Admission {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into());
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "bench".into());
    let config = Config::from_strings(&env).expect("config");
    let coordinator = coordinator::from_config(&config).expect("coordinator");
    let (_, limit) = limit::channel(config.limit);
    Admission::new(&config, limit, coordinator)
}

async fn connected(a: &Admission) {
    for _ in 0..500 {
        if a.status()["coordinatorConnected"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not connected to redis");
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    percentile_of(v, q).unwrap_or_default().as_nanos() as f64 / 1000.0
}

/// One decision and its release, timed separately.
async fn cycle(a: &Admission, id: &str) -> (Duration, Duration) {
    let deadline = Deadline::from_unix_ms(Some(unix_ms() + 30_000));
    let t = Instant::now();
    let d = a.decide(id, deadline, EVENT, None).await;
    let decided = t.elapsed();
    assert_eq!(d, Decision::Admit);
    let t = Instant::now();
    a.release(id, false).await;
    (decided, t.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = 7;
    let per_round = 3000;
    let redis = RedisServer::start(RedisMode::Plain).await;
    let url = redis.url();
    let local = admission(&[("ADMISSION_LIMIT", "1000000")]);
    let fair = ("ADMISSION_TENANT", "header:x-tenant");
    let local_tenants = admission(&[("ADMISSION_LIMIT", "1000000"), fair]);
    let redis_vars = [
        ("ADMISSION_LIMIT", "1000000"),
        ("ADMISSION_COORDINATOR", url.as_str()),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "1000"),
    ];
    let shared = admission(&redis_vars);
    let shared_tenants = admission(&[&redis_vars[..], &[fair]].concat());
    connected(&shared).await;
    connected(&shared_tenants).await;
    let configs = [
        ("local", &local),
        ("local, tenants", &local_tenants),
        ("redis", &shared),
        ("redis, tenants", &shared_tenants),
    ];
    println!("coordinator benchmark: {rounds} rounds x {per_round} decisions each, redis-server 127.0.0.1:{}", redis.port);
    let mut n = 0u64;
    for _ in 0..2000 {
        n += 1;
        for (_, a) in &configs {
            cycle(a, &format!("w{n}")).await;
        }
    }
    let mut results: Vec<(&str, Vec<Duration>, Vec<Duration>)> = configs
        .iter()
        .map(|(name, _)| (*name, vec![], vec![]))
        .collect();
    for round in 0..rounds {
        for k in 0..configs.len() {
            let i = (round + k) % configs.len();
            let a = configs[i].1;
            for _ in 0..per_round {
                n += 1;
                let (d, r) = cycle(a, &format!("r{n}")).await;
                results[i].1.push(d);
                results[i].2.push(r);
            }
        }
    }
    println!("\n## One decision, one at a time, µs");
    println!("| coordinator | decide p50 | decide p99 | release p50 | release p99 |");
    println!("|---|---|---|---|---|");
    for (name, d, r) in &mut results {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            pct(d, 0.5),
            pct(d, 0.99),
            pct(r, 0.5),
            pct(r, 0.99)
        );
    }

    // Throughput: many environments (one connection each) deciding at once for a few seconds.
    let envs = 32;
    let seconds = 5;
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for e in 0..envs {
        let a = admission(&[
            ("ADMISSION_LIMIT", "1000000"),
            ("ADMISSION_COORDINATOR", &url),
            ("ADMISSION_COORDINATOR_TIMEOUT_MS", "1000"),
            ("ADMISSION_POOL", "throughput"),
        ]);
        connected(&a).await;
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                cycle(&a, &format!("t{e}-{i}")).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "\nThroughput: {envs} environments deciding at once on this 2-core machine (redis-server and the benchmark share it): {:.0} admissions/s, each a decision and a release ({:.0} Redis round trips/s)",
        total as f64 / seconds as f64,
        2.0 * total as f64 / seconds as f64
    );
}
