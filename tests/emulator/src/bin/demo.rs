//! The demo: an on-demand function behind API Gateway, pushed from half its capacity to ten
//! times it and back, without the layer and with it (Redis coordinator), side by side.
//!
//! Prints progress, the table, and writes an SVG plot of 2xx/429/500 per second.
//! `scripts/demo.sh` builds what it needs and starts redis-server first. The same scenarios and
//! code path as `fleet-bench`, two of them, smaller.

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{report, scenario, Runtime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = scenario::Settings::from_env("DEMO", 5.0);
    let (n, shed_at, spec) = (settings.n, settings.shed_at, &settings.spec);
    let seconds = settings.step_seconds();
    println!("lambda-admission demo: API Gateway (REST, proxy integration) → a function with reserved concurrency {n}");
    println!("handlers ~{} ms (lognormal), 1% genuine handler errors; load 0.5× → 2× → 5× → 10× → 0.5× of capacity, {seconds} s each", spec.mean_ms);
    println!(
        "layer: ADMISSION_COORDINATOR=redis, ADMISSION_LIMIT={n}, ADMISSION_SHED_AT={shed_at}\n"
    );
    let redis = RedisServer::start(RedisMode::Plain).await;
    let all = scenario::on_demand(n, shed_at, &redis.url(), Runtime::Rust { stream: false });
    let scenarios = scenario::only(all, &["no-layer", "layer-redis"]);
    let outcomes = scenario::run_all(&scenarios, spec).await;
    report::publish(
        &outcomes,
        "overload.svg",
        "Responses per second: no layer vs lambda-admission (Redis)",
    );
}
