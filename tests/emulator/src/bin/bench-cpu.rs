//! What CPU pressure (`ADMISSION_CPU`) costs (not a test), side by side in one run:
//!
//! - the sampler: one sample (the CPU source read as the extension finds it on this machine, and
//!   the estimate updated), timed over many, as a share of one vCPU at the default interval;
//! - the decision: an admitted event decided and released, with CPU pressure off, and on with a
//!   cap published that does not bind (the admitted path reads it and goes on).
//!
//! `cargo run --release -p lambda-emulator --bin bench-cpu`. Medians of 7 rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_admission::config::Config;
use lambda_admission::decision::admission::{Admission, Decision};
use lambda_admission::decision::cpu::{CpuPressure, Estimator};
use lambda_admission::decision::limit;
use lambda_admission::lease::{unix_ms, Deadline};
use lambda_admission::platform::cpu::Source;

const EVENT: &[u8] = br#"{"httpMethod":"GET","path":"/orders","headers":{"accept":"*/*"},"requestContext":{"stage":"prod"}}"#;
const ROUNDS: usize = 7;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn admission(cpu: bool) -> Admission {
    let mut env: HashMap<String, String> = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("ADMISSION_LIMIT", "64"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert(
        "ADMISSION_CPU".into(),
        if cpu { "on" } else { "off" }.into(),
    );
    let config = Config::from_strings(&env).expect("config");
    let (_, limit) = limit::channel(config.limit);
    let a = Admission::new(&config, limit, None);
    if !cpu {
        return a;
    }
    // A cap learnt from one sample pair, well above what is in flight here: it never binds.
    let pressure = Arc::new(CpuPressure::new(&Source::ProcStat, 2.0, 0.8));
    let mut e = Estimator::new(2.0, 0.8, Duration::from_secs(1));
    let t = Instant::now();
    e.add(t, 0.0, 1);
    pressure.publish_for_test(e.add(t + Duration::from_millis(100), 0.001, 1));
    a.with_cpu(pressure)
}

/// Nanoseconds per admitted decision and release.
async fn decision_ns(a: &Admission, n: usize) -> f64 {
    let deadline = Deadline::from_unix_ms(Some(unix_ms() + 60_000));
    let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
    let started = Instant::now();
    for id in &ids {
        let d = a.decide(id, deadline, EVENT, None).await;
        assert_eq!(d, Decision::Admit);
        a.release(id, false).await;
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let source = Source::find(None).expect("a CPU source on this machine");
    let interval = Duration::from_millis(100);
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let mut e = Estimator::new(source.vcpus(), 0.8, Duration::from_secs(1));
        let n = 2000;
        let started = Instant::now();
        for i in 0..n {
            let used = source.used_secs().unwrap_or(0.0);
            std::hint::black_box(e.add(Instant::now(), used, i % 7));
        }
        samples.push(started.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    let us = median(samples);
    println!(
        "CPU source: {} ({} vCPUs)\n\nsampler: {us:.1} µs a sample; at one sample every {} ms: \
         {:.3} % of one vCPU",
        source.describe(),
        source.vcpus(),
        interval.as_millis(),
        us / (interval.as_secs_f64() * 1e6) * 100.0
    );
    let (off, on) = (admission(false), admission(true));
    assert!(on.status()["cpu"]["cap"].as_u64().is_some_and(|c| c > 64));
    let n = 50_000;
    decision_ns(&off, n).await;
    decision_ns(&on, n).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(decision_ns(&off, n).await);
        b.push(decision_ns(&on, n).await);
    }
    let (a, b) = (median(a), median(b));
    println!(
        "\n| admitted decision + release | ns |\n|---|---|\n| CPU pressure off | {a:.0} |\n\
         | CPU pressure on, cap not binding | {b:.0} |\n| on ÷ off | {:.3} |",
        b / a
    );
}
