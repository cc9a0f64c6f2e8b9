//! The overload benchmark (not a test): every scenario side by side in one run, on-demand and
//! Managed Instances, through the API Gateway front door. Results go to docs/benchmarks.md.
//!
//! `FLEET_N` (default 30) environments, `FLEET_SHED_AT` (0.7), `FLEET_MEAN_MS` (200) handler
//! duration, `FLEET_STEP_SECONDS` (10) per load step.

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{report, scenario, Runtime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = scenario::Settings::from_env("FLEET", 10.0);
    let (n, shed_at, spec) = (settings.n, settings.shed_at, &settings.spec);
    let seconds = settings.step_seconds();
    println!("fleet benchmark: N={n}, ADMISSION_SHED_AT={shed_at}, {seconds} s per step, handlers ~{} ms lognormal σ={}, {}% errors", spec.mean_ms, spec.sigma, spec.error_share * 100.0);
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut scenarios =
        scenario::on_demand(n, shed_at, &redis.url(), Runtime::Rust { stream: false });
    scenarios.extend(scenario::managed_instances(3, n / 3, shed_at));
    // FLEET_ONLY=no-layer,layer-redis runs those scenarios only.
    let only = std::env::var("FLEET_ONLY").unwrap_or_default();
    let ids: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let scenarios = scenario::only(scenarios, &ids);
    let outcomes = scenario::run_all(&scenarios, spec).await;
    report::publish(
        &outcomes,
        "fleet-bench.svg",
        "Responses per second by scenario",
    );
    for o in &outcomes {
        if let Some(t) = o.threshold {
            let overload: Vec<_> = o.steps.iter().filter(|s| s.multiple > 1.0).collect();
            let goodput_rps: f64 = overload.iter().map(|s| s.ok as f64 / seconds).sum::<f64>()
                / overload.len().max(1) as f64;
            let target = t as f64 / (spec.mean_ms / 1000.0);
            println!("{}: goodput during overload {:.0}/s = {:.0}% of floor(N × shed_at) / mean duration ({target:.0}/s)", o.name, goodput_rps, 100.0 * goodput_rps / target);
        }
    }
}
