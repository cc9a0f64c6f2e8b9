//! The extension's benchmark: figures measured side by side in one run, not a test.
//!
//! - Added latency per admitted invocation: the Rust `lambda_runtime` test function invoked
//!   directly, through a minimal pass-through hop (the floor: what one loopback hop costs with no
//!   logic), and through lambda-admission. Configurations are interleaved round by round so that
//!   machine noise falls on all of them alike. Measured twice: invoking an idle environment (1 ms
//!   after its previous answer, the runtime already waiting in `next`), and back to back.
//! - The shed path: from the event leaving Lambda to the 429 arriving back, as Lambda sees it.
//! - Extension start → registered, resident memory, decision latency (from the metric line), and
//!   the layer zips' sizes.
//!
//! Run with `scripts/bench.sh` (release build). `BENCH_ROUNDS` and `BENCH_PER_ROUND` scale it;
//! `BENCH_BASELINE=<folder holding another build's lambda-admission and lambda-admission-wrapper>`
//! measures that build in the same run.

use std::time::{Duration, Instant};

use lambda_emulator::stats::{percentile, percentile_of};
use lambda_emulator::{
    binary, env_or, workspace, Builder, Environment, Options, Outcome, Platform, Runtime,
    RuntimeApi, RuntimeClient,
};

fn pct(sorted: &[Duration], q: f64) -> Duration {
    percentile(sorted, q).unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    percentile_of(v, 0.5).unwrap_or_default()
}

struct Series {
    name: &'static str,
    samples: Vec<Duration>,
    round_p50: Vec<f64>,
    round_p99: Vec<f64>,
}

/// `n` invocations one after the other, each `gap` after the previous answer.
async fn run_round(env: &Environment, n: usize, event: &str, gap: Duration) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let t = Instant::now();
        let r = env
            .platform
            .invoke(event.to_string(), Duration::from_secs(10))
            .await;
        out.push(t.elapsed());
        assert!(
            matches!(r, Outcome::Response { .. }),
            "benchmark invocation failed: {r:?}"
        );
    }
    out
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn latency(
    envs: &[(&'static str, &Environment)],
    rounds: usize,
    per_round: usize,
    event: &str,
    title: &str,
    gap: Duration,
) {
    let mut series: Vec<Series> = envs
        .iter()
        .map(|(name, _)| Series {
            name,
            samples: Vec::new(),
            round_p50: Vec::new(),
            round_p99: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..envs.len() {
            let i = (round + k) % envs.len(); // rotate the order every round
            let mut samples = run_round(envs[i].1, per_round, event, gap).await;
            samples.sort();
            series[i].round_p50.push(us(pct(&samples, 0.5)));
            series[i].round_p99.push(us(pct(&samples, 0.99)));
            series[i].samples.extend(samples);
        }
        eprint!("\rround {}/{rounds}", round + 1);
    }
    eprintln!();
    println!("\n### {title}");
    println!("| path | p50 | p99 | median of round p50s | median of round p99s |");
    println!("|---|---|---|---|---|");
    let mut medians = Vec::new();
    for s in &mut series {
        s.samples.sort();
        let (m50, m99) = (median(&mut s.round_p50), median(&mut s.round_p99));
        medians.push((s.name, (m50, m99)));
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.name,
            us(pct(&s.samples, 0.5)),
            us(pct(&s.samples, 0.99)),
            m50,
            m99
        );
    }
    let (d, f, l) = (medians[0].1, medians[1].1, medians[2].1);
    println!("\n| added by (medians of rounds) | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| a bare hop (floor − direct) | {:.0} | {:.0} |",
        f.0 - d.0,
        f.1 - d.1
    );
    println!(
        "| lambda-admission (layer − direct) | {:.0} | {:.0} |",
        l.0 - d.0,
        l.1 - d.1
    );
    println!(
        "| lambda-admission's own code (layer − floor) | {:.0} | {:.0} |",
        l.0 - f.0,
        l.1 - f.1
    );
    println!("| ratio layer / direct (p50) | {:.2} | |", l.0 / d.0);
    for (name, (m50, m99)) in &medians[3..] {
        println!(
            "| {name} − lambda-admission | {:.0} | {:.0} |",
            m50 - l.0,
            m99 - l.1
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = env_or::<usize>("BENCH_ROUNDS", 7);
    let per_round = env_or::<usize>("BENCH_PER_ROUND", 400);
    let event = lambda_emulator::bench_event();
    println!(
        "lambda-admission benchmark: {rounds} rounds x {per_round} invocations per configuration"
    );
    println!("extension: {}", binary("lambda-admission").display());

    // --- Added latency per admitted invocation --------------------------------------------
    let rust = Runtime::Rust { stream: false };
    let direct = Builder::new(rust.clone()).without_layer().start().await;
    let floor = Builder::new(rust.clone())
        .runtime_api(RuntimeApi::FloorProxy)
        .start()
        .await;
    let layer = Builder::new(rust.clone())
        .env("ADMISSION_LIMIT", "1000")
        .env("ADMISSION_METRICS_INTERVAL", "86400")
        .start()
        .await;
    // The same build with class rules (a header rule among them): what matching costs.
    const RULES: &[(&str, &str)] = &[
        ("ADMISSION_LIMIT", "1000"),
        ("ADMISSION_METRICS_INTERVAL", "86400"),
        ("ADMISSION_EXEMPT", "GET /health,header:stripe-signature"),
        (
            "ADMISSION_CRITICAL",
            "POST /checkout,POST /orders/*/pay,header:x-priority=high",
        ),
        (
            "ADMISSION_SHEDDABLE",
            "GET /thumbnails/*,GET /recommendations/*",
        ),
    ];
    let classes = Builder::new(rust.clone()).envs(RULES).start().await;
    // Class rules and fair shares per tenant (by source address): what counting tenants costs.
    let tenants = Builder::new(rust.clone())
        .envs(RULES)
        .env("ADMISSION_TENANT", "sourceip")
        .start()
        .await;
    // BENCH_BASELINE=<folder with lambda-admission and lambda-admission-wrapper>: another build
    // of the layer, measured in the same run.
    let baseline = match std::env::var_os("BENCH_BASELINE") {
        Some(path) => {
            println!("baseline: {}", std::path::Path::new(&path).display());
            Some(
                Builder::new(rust.clone())
                    .layer_from(path.into())
                    .env("ADMISSION_LIMIT", "1000")
                    .env("ADMISSION_METRICS_INTERVAL", "86400")
                    .start()
                    .await,
            )
        }
        None => None,
    };
    let mut envs = vec![
        ("direct (no layer)", &direct),
        ("floor (bare hop)", &floor),
        ("lambda-admission", &layer),
        ("lambda-admission, class rules", &classes),
        ("lambda-admission, rules and tenants", &tenants),
    ];
    if let Some(b) = &baseline {
        envs.push(("baseline build", b));
    }
    for (_, env) in &envs {
        run_round(env, 200, &event, Duration::ZERO).await; // warm-up: connections, caches
    }
    // A request that finds its environment idle, waiting in `next` (1 ms after the previous
    // answer): what a client sees. Then back to back, where the hop also delays the runtime's
    // next `next`, so the environment is ready later: what a saturated environment sees.
    println!("\n## Invocation latency, platform invoke → answer (one at a time), µs");
    for (title, gap) in [
        (
            "idle environment (invoked 1 ms after its previous answer)",
            Duration::from_millis(1),
        ),
        (
            "back to back (invoked as soon as the previous answer arrives)",
            Duration::ZERO,
        ),
    ] {
        latency(&envs, rounds, per_round, &event, title, gap).await;
    }

    let ext_pid = layer.extension.as_ref().and_then(|c| c.id()).unwrap_or(0);
    let (rss, hwm) = rss_kib(ext_pid);

    // --- Decision latency, from the extension's own metric line ---------------------------
    let (mut layer, mut classes, mut tenants) = (layer, classes, tenants);
    layer.shutdown().await;
    classes.shutdown().await;
    tenants.shutdown().await;
    for (name, env) in [
        ("no rules", &layer),
        ("class rules", &classes),
        ("rules and tenants", &tenants),
    ] {
        if let Some(m) = env.metric_lines().first() {
            println!(
                "\nDecision latency inside the extension ({name}; its EMF line): p50 {} µs, p99 {} µs, max {} µs over {} decisions",
                m["DecisionLatencyP50"], m["DecisionLatencyP99"], m["DecisionLatencyMax"], m["Admitted"]
            );
        }
    }
    println!(
        "Extension memory after {} invocations: RSS {} KiB, peak RSS {} KiB",
        2 * rounds * per_round + 200,
        rss,
        hwm
    );

    // --- The shed path ----------------------------------------------------------------------
    let shed_env = Builder::new(Runtime::None)
        .env("ADMISSION_LIMIT", "1")
        .start()
        .await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", shed_env.port));
    let p = shed_env.platform.clone();
    let ev = event.clone();
    let _held =
        tokio::spawn(async move { p.invoke_as("held", ev, Duration::from_secs(600)).await });
    let _first = runtime.next().await;
    let waiting = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.next().await })
    };
    let n = rounds * per_round / 2;
    let (mut inside, mut client) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let id = format!("shed-{i}");
        let t = Instant::now();
        let out = shed_env
            .platform
            .invoke_as(&id, event.clone(), Duration::from_secs(10))
            .await;
        client.push(t.elapsed());
        assert_eq!(out.json()["statusCode"], 429, "expected a shed answer");
        if let Some((sent, answered)) = shed_env.platform.timeline(&id) {
            inside.push(answered - sent);
        }
    }
    waiting.abort();
    inside.sort();
    client.sort();
    println!("\n## Shed path over {n} events, µs");
    println!("| measured | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| event leaves Lambda → 429 posted back | {:.0} | {:.0} |",
        us(pct(&inside, 0.5)),
        us(pct(&inside, 0.99))
    );
    println!(
        "| invoke → 429 (client view) | {:.0} | {:.0} |",
        us(pct(&client, 0.5)),
        us(pct(&client, 0.99))
    );

    // --- Start → registered -----------------------------------------------------------------
    let mut starts = Vec::new();
    for _ in 0..20 {
        let platform = Platform::start(Options::default()).await;
        let t = Instant::now();
        let mut child = tokio::process::Command::new(binary("lambda-admission"))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", platform.address())
            .env("ADMISSION_PORT", lambda_emulator::free_port().to_string())
            .env("ADMISSION_LIMIT", "10")
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        assert!(platform.wait_registered(1, Duration::from_secs(5)).await);
        starts.push(t.elapsed());
        let _ = child.kill().await;
    }
    starts.sort();
    println!(
        "\nExtension start → registered (process spawn included), 20 starts: p50 {:.2} ms, max {:.2} ms",
        us(pct(&starts, 0.5)) / 1000.0,
        us(pct(&starts, 1.0)) / 1000.0
    );

    // --- Layer size -------------------------------------------------------------------------
    for arch in ["x86_64", "arm64"] {
        let zip = workspace().join(format!("dist/lambda-admission-{arch}.zip"));
        match std::fs::metadata(&zip) {
            Ok(m) => println!(
                "Layer zip {arch}: {} bytes ({:.2} MB)",
                m.len(),
                m.len() as f64 / 1e6
            ),
            Err(_) => println!("Layer zip {arch}: not built (layer-build/build.sh {arch})"),
        }
    }
}
