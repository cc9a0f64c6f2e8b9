//! What splitting a pool over several keys (`ADMISSION_POOL_SHARDS`) gains and costs (not a test),
//! side by side in one run, with the extension's own Redis backend (the real scripts):
//!
//! 1. **Throughput** on a Redis cluster of several primaries on loopback: simulated environments
//!    (one connection and one invocation at a time each, as on demand) acquire and release as
//!    fast as they can, the pool on one key and split over K keys. Besides round trips per second
//!    on this machine (server and clients share its cores), it reports how the calls spread over
//!    the nodes and each node's own CPU per call, from which the largest limit N follows when
//!    every node has a core of its own.
//! 2. **Admission error** on one redis-server: Poisson arrivals, exponential hold times, offered
//!    loads around the threshold T; the exact count (one key) beside K shards with two choices.
//!    Reports the share refused, the mean in flight over T, and any admission past T (none may).
//!
//! `cargo run --release -p lambda-emulator --bin bench-shards`; `SHARDS_NODES` (default 4),
//! `SHARDS_K` (default `1,4,8`; the first is the reference), `SHARDS_SECONDS` (default 3) per
//! throughput run, `SHARDS_ERROR_SECONDS` (default 4) per error run, `SHARDS_REPEATS` (default 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_admission::config::SharedConfig;
use lambda_admission::coordinator::{RedisCount, RideAlong, SharedCount};
use lambda_admission::lease::{unix_ms, Deadline, Lease};
use lambda_emulator::env_or;
use lambda_emulator::services::{RedisCluster, RedisMode, RedisServer};

fn shared(pool: &str, shards: usize) -> SharedConfig {
    SharedConfig {
        pool: pool.to_string(),
        timeout: Duration::from_secs(1),
        backoff: Duration::from_secs(5),
        ca_file: None,
        tenants_max: 1000,
        shards,
        adaptive: false,
    }
}

fn lease(id: &str, threshold: u64) -> Lease<'_> {
    Lease {
        id,
        deadline: Deadline::from_unix_ms(Some(unix_ms() + 60_000)),
        threshold: Some(threshold),
        calm_threshold: None,
        invocation: true,
        tenant: None,
        fair: None,
        capacity: None,
    }
}

/// `envs` environments acquiring and releasing for `seconds` on a pool of `shards` keys:
/// round trips a second.
async fn drive(url: &str, shards: usize, envs: usize, seconds: f64) -> f64 {
    let pool = format!("throughput-{shards}");
    let count = Arc::new(RedisCount::new(url, None, &shared(&pool, shards)).expect("redis url"));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for e in 0..envs {
        let (count, calls) = (count.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            let conn = count.connect().await.expect("connect");
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let id = format!("e{e}-{i}");
                count
                    .acquire(
                        conn.clone(),
                        lease(&id, 1_000_000_000),
                        RideAlong::default(),
                    )
                    .await
                    .expect("acquire");
                count
                    .release(conn.clone(), &[id.as_str().into()], None)
                    .await
                    .expect("release");
                calls.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.expect("task");
    }
    calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(seconds)
}

#[derive(Default)]
struct Admission {
    arrivals: u64,
    refused: u64,
    /// Grants made while T leases were already held (must stay 0).
    past_threshold: u64,
    /// Time-average of the leases held, over T.
    mean_in_flight: f64,
}

/// Poisson arrivals offering `load` × `t` erlangs to a pool of threshold `t` split over
/// `shards` keys, for `seconds` after a warm-up of one mean hold time × 4.
async fn admission(url: &str, t: u64, shards: usize, load: f64, seconds: f64) -> Admission {
    let pool = format!("error-{t}-{shards}-{load}");
    let count = Arc::new(RedisCount::new(url, None, &shared(&pool, shards)).expect("redis url"));
    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(count.connect().await.expect("connect"));
    }
    // Hold times averaging t / 2000 s: 2000 × load arrivals a second whatever t is.
    let hold_mean = t as f64 / 2000.0;
    let rate = load * t as f64 / hold_mean;
    let held = Arc::new(AtomicU64::new(0));
    let counters: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let warm_up = Duration::from_secs_f64(hold_mean * 4.0);
    let start = Instant::now();
    let (measure_from, end) = (
        start + warm_up,
        start + warm_up + Duration::from_secs_f64(seconds),
    );
    let sampler = {
        let held = held.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let (mut sum, mut n) = (0u64, 0u64);
            while Instant::now() < end {
                sum += held.load(Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sum as f64 / n.max(1) as f64
        })
    };
    let exp = |mean: f64| -mean * (1.0 - fastrand::f64()).ln();
    let mut next = start;
    let mut n = 0u64;
    let mut tasks = Vec::new();
    while next < end {
        let now = Instant::now();
        while next <= now {
            n += 1;
            let measured = next >= measure_from;
            let (count, conn) = (count.clone(), conns[n as usize % conns.len()].clone());
            let (held, counters) = (held.clone(), counters.clone());
            let hold = Duration::from_secs_f64(exp(hold_mean));
            tasks.push(tokio::spawn(async move {
                let id = format!("a{n}");
                let Ok(grant) = count
                    .acquire(conn.clone(), lease(&id, t), RideAlong::default())
                    .await
                else {
                    return;
                };
                if grant.granted {
                    // Counted in after Redis granted, out before Redis has it back: never above
                    // Redis's own count, so a grant finding T already counted is one past T.
                    let before = held.fetch_add(1, Ordering::Relaxed);
                    if before >= t {
                        counters[2].fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(hold).await;
                    held.fetch_sub(1, Ordering::Relaxed);
                    let _ = count.release(conn, &[id.as_str().into()], None).await;
                } else if measured {
                    counters[1].fetch_add(1, Ordering::Relaxed);
                }
                if measured {
                    counters[0].fetch_add(1, Ordering::Relaxed);
                }
            }));
            next += Duration::from_secs_f64(exp(1.0 / rate));
        }
        tokio::time::sleep_until(next.into()).await;
    }
    let mean = sampler.await.unwrap_or(0.0);
    for task in tasks {
        let _ = task.await;
    }
    Admission {
        arrivals: counters[0].load(Ordering::Relaxed),
        refused: counters[1].load(Ordering::Relaxed),
        past_threshold: counters[2].load(Ordering::Relaxed),
        mean_in_flight: mean / t as f64,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nodes: usize = env_or("SHARDS_NODES", 4usize);
    let ks: Vec<usize> = std::env::var("SHARDS_K")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds: f64 = env_or("SHARDS_SECONDS", 3.0);
    let error_seconds: f64 = env_or("SHARDS_ERROR_SECONDS", 4.0);
    let repeats: usize = env_or("SHARDS_REPEATS", 3usize);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    let cluster = RedisCluster::start(nodes).await;
    println!(
        "sharding benchmark: a Redis cluster of {nodes} primaries on loopback, 64 simulated \
         environments, {seconds} s per run, {cpus} vCPU shared by the nodes and the clients"
    );
    println!("\n| keys (K) | round trips/s here | gain over one key | calls per node (share) | busiest node µs per call | largest N, one core per node (20 × N/s) |");
    println!("|---|---|---|---|---|---|");
    let mut one_key = 0.0;
    for &k in &ks {
        for node in &cluster.nodes {
            node.cli(&["CONFIG", "RESETSTAT"]).await;
        }
        let rate = drive(&cluster.url(), k, 64, seconds).await;
        if k == 1 {
            one_key = rate;
        }
        let mut stats = Vec::new();
        for node in &cluster.nodes {
            stats.push(node.command_stats(&["evalsha", "zrem"]).await);
        }
        let total: f64 = stats.iter().map(|s| s.0).sum::<f64>().max(1.0);
        let shares: Vec<String> = stats
            .iter()
            .map(|s| format!("{:.0}%", 100.0 * s.0 / total))
            .collect();
        let (busiest_calls, busiest_usec) =
            stats
                .iter()
                .copied()
                .fold((0.0, 0.0), |b, s| if s.0 > b.0 { s } else { b });
        let per_call = busiest_usec / busiest_calls.max(1.0);
        // The busiest node saturates first: it takes `share` of the fleet's 20 × N calls a second.
        let share = busiest_calls / total;
        let largest_n = 1e6 / per_call.max(0.1) / share.max(1e-9) / 20.0;
        println!(
            "| {k} | {rate:.0} | {:.2}× | {} | {per_call:.1} | {largest_n:.0} |",
            rate / one_key.max(1.0),
            shares.join(" / "),
        );
    }
    drop(cluster);

    let redis = RedisServer::start(RedisMode::Plain).await;
    println!(
        "\nadmission error: one redis-server, Poisson arrivals, exponential hold times (mean \
         T / 2000 s), {error_seconds} s measured per run after a warm-up; medians of {repeats} \
         runs, the keys interleaved (\"refused − exact count\": the median of each run's \
         difference from the one-key run beside it)"
    );
    println!("\n| threshold T | offered load | keys (K) | refused | refused − exact count | mean in flight ÷ T | admitted past T |");
    println!("|---|---|---|---|---|---|---|");
    for t in [64u64, 1000] {
        for load in [0.9, 1.0, 1.5] {
            // The keys interleaved, `repeats` times: medians of each.
            let mut runs: Vec<Vec<Admission>> = ks.iter().map(|_| Vec::new()).collect();
            for _ in 0..repeats {
                for (i, &k) in ks.iter().enumerate() {
                    runs[i].push(admission(&redis.url(), t, k, load, error_seconds).await);
                }
            }
            let refused = |a: &Admission| 100.0 * a.refused as f64 / a.arrivals.max(1) as f64;
            let exact: Vec<f64> = runs[0].iter().map(refused).collect();
            for (i, &k) in ks.iter().enumerate() {
                let diffs: Vec<f64> = runs[i]
                    .iter()
                    .zip(&exact)
                    .map(|(a, e)| refused(a) - e)
                    .collect();
                println!(
                    "| {t} | {load:.1} × T | {k} | {:.2}% | {:+.2} pp | {:.3} | {} |",
                    median(runs[i].iter().map(refused).collect()),
                    median(diffs),
                    median(runs[i].iter().map(|a| a.mean_in_flight).collect()),
                    runs[i].iter().map(|a| a.past_threshold).sum::<u64>()
                );
            }
        }
    }
}
