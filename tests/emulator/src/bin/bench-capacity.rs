//! How large a fleet one pool serves (not a test): one `redis-server` driven with the real acquire
//! and release (the extension's own Redis backend, so the real scripts) by more and more simulated
//! environments, side by side with plain `INCR`/`DECR` as the floor, until it saturates.
//!
//! Each simulated environment is what an on-demand environment is to the coordinator: its own
//! multiplexed connection and one invocation at a time (an acquire, then a release). Prints, per
//! fleet size, the round trips per second and the latency per call, and from the saturated rate
//! the largest limit N one pool serves at Lambda's cap of 10 × N invocations a second.
//!
//! `cargo run --release -p lambda-emulator --bin bench-capacity`; `CAPACITY_SECONDS` (default 3)
//! per fleet size, `CAPACITY_FLEETS` (default `1,4,16,64,256`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_admission::config::SharedConfig;
use lambda_admission::coordinator::{RedisCount, RideAlong, SharedCount};
use lambda_admission::lease::{Deadline, Lease};
use lambda_emulator::env_or;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::stats::percentile_of;

/// What the simulated environments do per invocation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    /// The extension's acquire and release scripts, with a threshold as in enforce mode.
    Lease,
    /// The same, each lease a tenant's (fair shares on).
    TenantLease,
    /// `INCR` then `DECR` of one key: the fewest round trips a shared count can make.
    Floor,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Lease => "acquire + release",
            Work::TenantLease => "acquire + release, tenants",
            Work::Floor => "INCR + DECR (floor)",
        }
    }
}

struct Measured {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// The server's own CPU per call of its busiest commands (`INFO commandstats`' `usec_per_call`,
/// weighted by calls): what the server itself spends, whatever the clients and the network do.
async fn server_usec_per_call(redis: &RedisServer) -> f64 {
    let (calls, usec) = redis
        .command_stats(&["evalsha", "incr", "decr", "zrem"])
        .await;
    usec / calls.max(1.0)
}

fn shared(pool: &str) -> SharedConfig {
    SharedConfig {
        pool: pool.to_string(),
        timeout: Duration::from_secs(1),
        backoff: Duration::from_secs(5),
        ca_file: None,
        tenants_max: 1000,
        shards: 1,
        adaptive: false,
    }
}

/// `envs` environments doing `work` for `seconds`: round trips a second and latency per call.
async fn drive(url: &str, work: Work, envs: usize, seconds: f64) -> Measured {
    let pool = format!("capacity-{envs}-{}", work as u8);
    let count = Arc::new(RedisCount::new(url, None, &shared(&pool)).expect("redis url"));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for e in 0..envs {
        let count = count.clone();
        let client = redis::Client::open(url).expect("url");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut floor = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            let conn = count.connect().await.expect("connect");
            let tenant = format!("{:016x}", e % 100);
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let id = format!("e{e}-{i}");
                let t = Instant::now();
                match work {
                    Work::Floor => {
                        let _: i64 = redis::cmd("INCR")
                            .arg("capacity-floor")
                            .query_async(&mut floor)
                            .await
                            .expect("INCR");
                        latencies.push(t.elapsed());
                        let t = Instant::now();
                        let _: i64 = redis::cmd("DECR")
                            .arg("capacity-floor")
                            .query_async(&mut floor)
                            .await
                            .expect("DECR");
                        latencies.push(t.elapsed());
                    }
                    Work::Lease | Work::TenantLease => {
                        let tenant = (work == Work::TenantLease).then_some(tenant.as_str());
                        let lease = Lease {
                            id: &id,
                            deadline: Deadline::from_unix_ms(Some(
                                lambda_admission::lease::unix_ms() + 30_000,
                            )),
                            threshold: Some(1_000_000),
                            calm_threshold: None,
                            invocation: true,
                            tenant,
                            fair: None,
                            capacity: None,
                        };
                        count
                            .acquire(conn.clone(), lease, RideAlong::default())
                            .await
                            .expect("acquire");
                        latencies.push(t.elapsed());
                        let member = lambda_admission::decision::tenants::member(&id, tenant);
                        let t = Instant::now();
                        count
                            .release(conn.clone(), &[member], None)
                            .await
                            .expect("release");
                        latencies.push(t.elapsed());
                    }
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let took = started.elapsed().as_secs_f64().max(seconds);
    all.sort();
    let calls_per_sec = all.len() as f64 / took;
    let mut us = |q: f64| percentile_of(&mut all, q).unwrap_or_default().as_secs_f64() * 1e6;
    Measured {
        calls_per_sec,
        p50_us: us(0.5),
        p99_us: us(0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: f64 = env_or("CAPACITY_SECONDS", 3.0);
    let fleets: Vec<usize> = std::env::var("CAPACITY_FLEETS")
        .unwrap_or_else(|_| "1,4,16,64,256".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let redis = RedisServer::start(RedisMode::Plain).await;
    let url = redis.url();
    println!(
        "capacity benchmark: one redis-server on loopback, {seconds} s per fleet size, \
         {} vCPU shared by redis-server and the simulated environments",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("\n| environments | work | round trips/s | p50 µs | p99 µs | server µs per call |");
    println!("|---|---|---|---|---|---|");
    let works = [Work::Floor, Work::Lease, Work::TenantLease];
    let mut best = [0.0f64; 3];
    let mut server = [0.0f64; 3];
    for &envs in &fleets {
        for (w, &work) in works.iter().enumerate() {
            redis.cli(&["CONFIG", "RESETSTAT"]).await;
            let m = drive(&url, work, envs, seconds).await;
            let cpu = server_usec_per_call(&redis).await;
            best[w] = best[w].max(m.calls_per_sec);
            server[w] = server[w].max(cpu);
            println!(
                "| {envs} | {} | {:.0} | {:.0} | {:.0} | {cpu:.1} |",
                work.name(),
                m.calls_per_sec,
                m.p50_us,
                m.p99_us
            );
        }
    }
    // An invocation costs an acquire, and a release if admitted: at Lambda's cap of 10 × N
    // invocations a second, between 10 × N (all shed) and 20 × N (all admitted) round trips.
    println!("\n| work | most round trips/s here | largest N here (20 × N/s) | server µs per call | largest N one server core carries (20 × N/s) |");
    println!("|---|---|---|---|---|");
    for (w, work) in works.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.0} |",
            work.name(),
            best[w],
            best[w] / 20.0,
            server[w],
            1e6 / server[w].max(0.1) / 20.0
        );
    }
}
