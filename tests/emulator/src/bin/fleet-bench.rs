//! The overload benchmark (not a test): every scenario side by side in one run, on-demand and
//! Managed Instances, through the API Gateway front door. Results go to docs/benchmarks.md.
//!
//! `FLEET_N` (default 30) environments, `FLEET_SHED_AT` (0.7), `FLEET_MEAN_MS` (200) handler
//! duration, `FLEET_STEP_SECONDS` (10) per load step.

use lambda_emulator::load::LoadSpec;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{env_or, report, scenario, workspace, Runtime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env_or("FLEET_N", 30);
    let seconds: f64 = env_or("FLEET_STEP_SECONDS", 10.0);
    let shed_at: f64 = env_or("FLEET_SHED_AT", 0.7);
    let mut spec = LoadSpec::standard(seconds);
    spec.mean_ms = env_or("FLEET_MEAN_MS", 200.0);
    println!("fleet benchmark: N={n}, ADMISSION_SHED_AT={shed_at}, {seconds} s per step, handlers ~{} ms lognormal σ={}, {}% errors", spec.mean_ms, spec.sigma, spec.error_share * 100.0);
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut scenarios = scenario::on_demand(
        n,
        shed_at,
        &redis.url(),
        Runtime::Rust { stream: false },
        false,
    );
    scenarios.extend(scenario::managed_instances(3, n / 3, shed_at));
    // FLEET_ONLY=e runs the scenarios whose name contains "(e)".
    if let Ok(only) = std::env::var("FLEET_ONLY") {
        scenarios.retain(|s| s.name.contains(&format!("({only})")));
    }
    let mut outcomes = Vec::new();
    for s in &scenarios {
        let mut progress = |name: &str, step: usize, rps: f64| {
            eprintln!(
                "  {name}: step {}/{} at {rps:.0}/s",
                step + 1,
                spec.steps.len()
            )
        };
        outcomes.push(scenario::run(s, &spec, &mut progress).await);
    }
    println!("\n{}", report::table(&outcomes));
    for o in &outcomes {
        if let Some(t) = o.threshold {
            let overload: Vec<_> = o.steps.iter().filter(|s| s.multiple > 1.0).collect();
            let goodput_rps: f64 = overload.iter().map(|s| s.ok as f64 / seconds).sum::<f64>()
                / overload.len().max(1) as f64;
            let target = t as f64 / (spec.mean_ms / 1000.0);
            println!("{}: goodput during overload {:.0}/s = {:.0}% of floor(N × shed_at) / mean duration ({target:.0}/s)", o.name, goodput_rps, 100.0 * goodput_rps / target);
        }
    }
    let path = workspace().join("target/demo/fleet-bench.svg");
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&workspace()));
    let refs: Vec<&scenario::Outcome> = outcomes.iter().collect();
    if report::plot(&path, &refs, "Responses per second by scenario").is_ok() {
        println!("plot: {}", path.display());
    }
}
