//! The demo: an on-demand function behind API Gateway, pushed from half its capacity to ten
//! times it and back, on the complete emulated platform (Lambda's invoke-rate cap, cold starts),
//! without the layer and with the recipe (the layer counting in Redis, and API Gateway's stage
//! throttle at the recommended rate), side by side.
//!
//! Prints progress, the table, and writes an SVG plot of 2xx/429/500 per second.
//! `scripts/demo.sh` builds what it needs and starts redis-server first. The same scenarios and
//! code path as `fleet-bench`, two of them.
//!
//! `demo --template PATH [--parameter NAME=VALUE ...]` runs the recipe a CloudFormation template
//! deploys (the CDK example's `cdk synth` output, say) instead of the built-in one: its reserved
//! concurrency, `ADMISSION_*` variables and stage throttle.

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{report, scenario, Runtime};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = scenario::Settings::from_env("DEMO", 5.0);
    let template = scenario::template_from_args();
    let n = template
        .as_ref()
        .map_or(settings.n, |t| t.reserved_concurrency);
    let spec = &settings.spec;
    let seconds = settings.step_seconds();
    let stage = scenario::recommended_stage_throttle(n);
    println!("lambda-admission demo: API Gateway (REST, proxy integration) → a function with reserved concurrency {n}");
    println!("handlers ~{} ms (lognormal), 1% genuine handler errors; load 0.5× → 2× → 5× → 10× → 0.5× of capacity, {seconds} s each", spec.mean_ms);
    println!(
        "Lambda as it is: at most 10 × {n} = {} invokes a second, sheds included",
        10 * n
    );
    if template.is_none() {
        println!(
            "recipe: ADMISSION_COORDINATOR=redis, ADMISSION_LIMIT={n}, and API Gateway's stage throttle at {} requests/s, burst {}\n",
            stage.rate, stage.burst
        );
    }
    let redis = RedisServer::start(RedisMode::Plain).await;
    let runtime = Runtime::Rust { stream: false };
    let scenarios = match &template {
        Some(recipe) => scenario::from_template(recipe, &redis.url(), runtime),
        None => scenario::only(
            scenario::throttles(n, &redis.url(), runtime, None),
            &["no-layer", "recipe"],
        ),
    };
    let outcomes = scenario::run_all(&scenarios, spec).await;
    report::publish(
        &outcomes,
        "overload.svg",
        "Responses per second: no layer vs the recipe (lambda-admission + stage throttle)",
    );
}
