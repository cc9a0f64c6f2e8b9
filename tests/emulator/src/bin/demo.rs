//! The demo: an on-demand function behind API Gateway, pushed from half its capacity to ten
//! times it and back, without the layer and with it (Redis coordinator), side by side.
//!
//! Prints progress, the table, and writes an SVG plot of 2xx/429/500 per second.
//! `scripts/demo.sh` builds what it needs and starts redis-server first.

use std::path::PathBuf;

use lambda_emulator::load::LoadSpec;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{env_or, report, scenario, workspace, Runtime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env_or("DEMO_N", 30);
    let shed_at: f64 = env_or("DEMO_SHED_AT", 0.7);
    let seconds: f64 = env_or("DEMO_STEP_SECONDS", 5.0);
    let mut spec = LoadSpec::standard(seconds);
    spec.mean_ms = env_or("DEMO_MEAN_MS", 200.0);
    println!("lambda-admission demo: API Gateway (REST, proxy integration) → a function with reserved concurrency {n}");
    println!("handlers ~{} ms (lognormal), 1% genuine handler errors; load 0.5× → 2× → 5× → 10× → 0.5× of capacity, {seconds} s each", spec.mean_ms);
    println!(
        "layer: ADMISSION_COORDINATOR=redis, ADMISSION_LIMIT={n}, ADMISSION_SHED_AT={shed_at}\n"
    );
    let redis = RedisServer::start(RedisMode::Plain).await;
    let mut outcomes = Vec::new();
    for s in scenario::on_demand(
        n,
        shed_at,
        &redis.url(),
        Runtime::Rust { stream: false },
        true,
    ) {
        let mut progress = |name: &str, step: usize, rps: f64| {
            println!(
                "  {name}: step {}/{} at {rps:.0} requests/s",
                step + 1,
                spec.steps.len()
            );
        };
        println!("starting {} environments for {}", n, s.name);
        outcomes.push(scenario::run(&s, &spec, &mut progress).await);
    }
    println!("\n{}", report::table(&outcomes));
    let dir = workspace().join("target/demo");
    let _ = std::fs::create_dir_all(&dir);
    let path: PathBuf = dir.join("overload.svg");
    let refs: Vec<&scenario::Outcome> = outcomes.iter().collect();
    match report::plot(
        &path,
        &refs,
        "Responses per second: no layer vs lambda-admission (Redis)",
    ) {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => println!("plot not written: {e}"),
    }
}
