//! The overload benchmark (not a test): on the complete emulated platform (Lambda's invoke-rate
//! cap, cold starts, scale-up) behind API Gateway, every scenario side by side in one run, for
//! each handler profile: `no-layer`, `remap-5xx`, `gateway-only`, `layer`, `recipe`, then a spike
//! from a partly warm fleet (`spike-no-layer`, `spike-recipe`, `spike-recipe-no-init-lease`), and
//! request classes (`classes-off`, `classes`: a share of the load critical) and fair shares
//! (`tenants-off`, `tenants`: one tenant at ten times its share among nine), and clients that
//! retry (`<client>-no-layer`, `<client>-recipe` for `urllib3`, `sdk-standard`, `naive`: see
//! `lambda_emulator::clients`). Prints the tables and writes `target/fleet/summary.json`.
//! Results go to docs/benchmarks.md.
//!
//! `fleet-bench --quick`: N=20, 3 s steps, the 200 ms profile, `urllib3` and `naive` clients (a
//! few minutes). The full run:
//! `FLEET_N` (default 30) environments, `FLEET_STEP_SECONDS` (10) per step, profiles 50 ms,
//! 200 ms and 1 s (`FLEET_PROFILES=50,200` for some). `FLEET_ONLY=<ids>` keeps some scenarios.
//!
//! Both runs end with Managed Instances on the platform as documented (`lambda_emulator::managed`),
//! each without and with the layer, environments of 32 slots and 2 vCPUs: `mi-no-layer` /
//! `mi-layer` (three environments at the capacity provider's maximum, the on-demand load steps,
//! ~1 s handlers), `mi-ramp-no-layer` / `mi-ramp-layer` (from three environments, up to
//! `FLEET_MI_MAX` (16), the load ×4 within six steps), `mi-cpu-no-layer` / `mi-cpu-layer`
//! (handlers spending 0.1 vCPU: CPU protection binds before the slots).
//!
//! `fleet-bench --template PATH [--parameter NAME=VALUE ...]` runs what a CloudFormation template
//! deploys instead (what `cdk synth` writes; SAM's resources too, as JSON): scenario `template`,
//! the function at its reserved concurrency with the template's `ADMISSION_*` variables, stage
//! throttle and `THROTTLED` response, beside `no-layer`, with `recipe`'s load steps. With
//! `--check` it exits 1 unless, in the overload steps (2× and up), every 429 carries
//! `Retry-After` and platform throttles (500s) stay within 1 % of requests; it prints whether
//! the target of none at all was met. CI runs it on the CDK example's synthesized template.

use lambda_emulator::clients::Client;
use lambda_emulator::downstream::{Downstream, DownstreamSpec};
use lambda_emulator::load::LoadSpec;
use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{env_or, report, scenario, workspace, Runtime};

/// Round trips the extensions made to `redis` since its last `CONFIG RESETSTAT`.
async fn redis_calls(redis: &RedisServer) -> u64 {
    redis.command_stats(&["evalsha", "eval", "zrem"]).await.0 as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = if quick { 20 } else { env_or("FLEET_N", 30) };
    let seconds: f64 = if quick {
        3.0
    } else {
        env_or("FLEET_STEP_SECONDS", 10.0)
    };
    let profiles: Vec<f64> = if quick {
        vec![200.0]
    } else {
        std::env::var("FLEET_PROFILES")
            .ok()
            .map(|p| {
                p.split(',')
                    .filter_map(|ms| ms.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_else(|| vec![50.0, 200.0, 1000.0])
    };
    let only = std::env::var("FLEET_ONLY").unwrap_or_default();
    let ids: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let template = scenario::template_from_args();
    let redis = std::sync::Arc::new(RedisServer::start(RedisMode::Plain).await);
    let runtime = Runtime::Rust { stream: false };
    if let Some(recipe) = template {
        let n = recipe.reserved_concurrency;
        let mut all = Vec::new();
        for &mean_ms in &profiles {
            let mut spec = LoadSpec::standard(seconds);
            spec.mean_ms = mean_ms;
            println!(
                "\n## The template's recipe, N={n}, handlers of ~{mean_ms} ms: load 0.5× → 2× → \
                 5× → 10× → 0.5× of capacity"
            );
            let scenarios = scenario::only(
                scenario::from_template(&recipe, &redis.url(), runtime.clone()),
                &ids,
            );
            let outcomes = scenario::run_all(&scenarios, &spec).await;
            report::publish(
                &outcomes,
                &format!("template-{mean_ms}ms.svg"),
                "Responses per second: no layer vs the template as deployed",
            );
            all.extend(outcomes);
        }
        write_summary(&all);
        if std::env::args().any(|a| a == "--check") && !template_targets_met(&all) {
            std::process::exit(1);
        }
        return;
    }
    println!(
        "fleet benchmark: N={n}, {seconds} s per step, the complete platform (10 × N invokes/s, \
         cold starts with 300 ms init), stage throttle {} req/s burst {n} where used",
        scenario::recommended_stage_throttle(n).rate
    );
    let mut all = Vec::new();
    for &mean_ms in &profiles {
        let mut spec = LoadSpec::standard(seconds);
        spec.mean_ms = mean_ms;
        println!("\n## Handlers of ~{mean_ms} ms: load 0.5× → 2× → 5× → 10× → 0.5× of capacity");
        let steady = scenario::only(
            scenario::throttles(n, &redis.url(), runtime.clone(), None),
            &ids,
        );
        let mut outcomes = Vec::new();
        let mut trips = Vec::new();
        for s in &steady {
            redis.cli(&["CONFIG", "RESETSTAT"]).await;
            // Redis' command count as each step starts, read by a task the step start spawns.
            let marks = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
            let mut on_step = |step: usize| {
                let (marks, redis) = (marks.clone(), redis.clone());
                tokio::spawn(async move {
                    let calls = redis_calls(&redis).await;
                    marks.lock().push((step, calls));
                });
            };
            let outcome =
                scenario::run_all_observed(std::slice::from_ref(s), &spec, &mut on_step).await;
            let mut marks = marks.lock().clone();
            marks.push((spec.steps.len(), redis_calls(&redis).await));
            marks.sort();
            // Invocations that reached an environment: not refused by the gateway or Lambda.
            let invoked: Vec<usize> = outcome[0]
                .steps
                .iter()
                .map(|st| {
                    st.requests - st.gateway_too_many - st.rate_throttled - st.concurrency_throttled
                })
                .collect();
            let per_step: Vec<(f64, u64, usize, f64, f64)> = marks
                .windows(2)
                .zip(&outcome[0].steps)
                .zip(&invoked)
                .map(|((w, st), &inv)| {
                    let calls = w[1].1.saturating_sub(w[0].1);
                    (
                        st.multiple,
                        calls,
                        inv,
                        st.shed_hold_mean_ms,
                        st.shed_hold_p99_ms,
                    )
                })
                .collect();
            if marks.last().is_some_and(|m| m.1 > 0) {
                trips.push((s.id, per_step));
            }
            outcomes.extend(outcome);
        }
        report::publish(
            &outcomes,
            &format!("fleet-{mean_ms}ms.svg"),
            "Responses per second",
        );
        if !trips.is_empty() {
            println!(
                "\nRedis round trips per invocation that reached the function, and how long a \
                 shed kept its slot busy as Lambda counts it (invoke to the next `next`), per step:\n"
            );
            println!("| scenario | step | round trips | invocations | per invocation | shed slot time mean / p99 ms |");
            println!("|---|---|---|---|---|---|");
            for (id, per_step) in trips {
                let (calls, invoked) = per_step
                    .iter()
                    .fold((0, 0), |(c, i), (_, sc, si, _, _)| (c + sc, i + si));
                for (load, c, i, hold, hold_p99) in per_step {
                    println!(
                        "| {id} | {load}× | {c} | {i} | {:.2} | {hold:.2} / {hold_p99:.2} |",
                        c as f64 / i.max(1) as f64
                    );
                }
                println!(
                    "| {id} | all | {calls} | {invoked} | {:.2} | |",
                    calls as f64 / invoked.max(1) as f64
                );
            }
        }
        all.extend(outcomes);
        let spiky = scenario::only(
            scenario::throttles(n, &redis.url(), runtime.clone(), Some(n / 4)),
            &ids,
        );
        if !spiky.is_empty() {
            println!(
                "\n## Handlers of ~{mean_ms} ms: a spike 0.2× → 5× → 0.5× from a fleet {}/{n} warm",
                n / 4
            );
            let spike = scenario::spike_load(mean_ms, seconds);
            let outcomes = scenario::run_all(&spiky, &spike).await;
            report::publish(
                &outcomes,
                &format!("spike-{mean_ms}ms.svg"),
                "Responses per second",
            );
            all.extend(outcomes);
        }
    }
    let clients: &[Client] = if quick {
        &[Client::Urllib3, Client::Naive]
    } else {
        &[Client::Urllib3, Client::SdkStandard, Client::Naive]
    };
    for &client in clients {
        let scenarios = scenario::only(
            scenario::clients(n, &redis.url(), runtime.clone(), client),
            &ids,
        );
        if scenarios.is_empty() {
            continue;
        }
        println!(
            "\n## Clients that retry as {} does, handlers of ~200 ms: load 0.5× → 3× → 0.5× → \
             5× → 0.5× of capacity in first attempts, retries on top",
            client.id()
        );
        let outcomes =
            scenario::run_all(&scenarios, &scenario::clients_load(200.0, seconds, client)).await;
        println!("{}", clients_table(&outcomes));
        all.extend(outcomes);
    }
    let classes = scenario::only(scenario::classes(n, &redis.url(), runtime.clone()), &ids);
    if !classes.is_empty() {
        let shares: &[f64] = if quick { &[0.2] } else { &[0.1, 0.2] };
        for &share in shares {
            let mut spec = scenario::spike_load(1000.0, seconds);
            spec.steps = [0.5, 5.0, 0.5]
                .iter()
                .map(|&multiple| lambda_emulator::load::Step { multiple, seconds })
                .collect();
            spec.critical_share = share;
            println!(
                "\n## Classes: {:.0} % of requests critical (GET /checkout), handlers of ~1 s, \
                 load 0.5× → 5× → 0.5×",
                share * 100.0
            );
            let outcomes = scenario::run_all(&classes, &spec).await;
            println!("\n| scenario | load | critical requests | critical 2xx | other requests | other 2xx | 500 |");
            println!("|---|---|---|---|---|---|---|");
            for o in &outcomes {
                for st in &o.steps {
                    let others = st.requests - st.critical;
                    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
                    println!(
                        "| {} | {}× | {} | {:.1} % | {} | {:.1} % | {} |",
                        o.name,
                        st.multiple,
                        st.critical,
                        pct(st.critical_ok, st.critical),
                        others,
                        pct(st.ok - st.critical_ok, others),
                        st.server_errors
                    );
                }
            }
        }
    }
    let tenants = scenario::only(scenario::tenants(n, &redis.url(), runtime.clone()), &ids);
    if !tenants.is_empty() {
        // Ten tenants whose fair share is a tenth of capacity each: tenant-0 sends ten times
        // its share; the nine others their whole share, then half of it.
        let others: &[f64] = if quick { &[1.0] } else { &[1.0, 0.5] };
        for &other in others {
            let mut spec = scenario::spike_load(1000.0, seconds);
            let total = 1.0 + 0.9 * other;
            spec.steps = [0.5, total, 0.5]
                .iter()
                .map(|&multiple| lambda_emulator::load::Step {
                    multiple,
                    seconds: seconds * 2.0,
                })
                .collect();
            spec.tenants = std::iter::once(10.0)
                .chain(std::iter::repeat_n(other, 9))
                .collect();
            println!(
                "\n## Fair shares: tenant-0 at 10× its share (a tenth of capacity), nine tenants \
                 at {:.0} % of theirs, handlers of ~1 s, load 0.5× → {total}× → 0.5×",
                other * 100.0
            );
            let outcomes = scenario::run_all(&tenants, &spec).await;
            println!("\n(requests that did not ask their handler to fail)");
            println!("\n| scenario | load | tenant-0 requests | tenant-0 2xx | others' requests | others' 2xx | worst other's 2xx | 500 |");
            println!("|---|---|---|---|---|---|---|---|");
            for o in &outcomes {
                for st in &o.steps {
                    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
                    let (noisy, rest) = st.tenants.split_first().unwrap_or((&(0, 0), &[]));
                    let requests: usize = rest.iter().map(|t| t.0).sum();
                    let ok: usize = rest.iter().map(|t| t.1).sum();
                    let worst = rest
                        .iter()
                        .map(|&(r, k)| pct(k, r))
                        .fold(100.0f64, f64::min);
                    println!(
                        "| {} | {}× | {} | {:.1} % | {} | {:.1} % | {:.1} % | {} |",
                        o.name,
                        st.multiple,
                        noisy.0,
                        pct(noisy.1, noisy.0),
                        requests,
                        pct(ok, requests),
                        worst,
                        st.server_errors
                    );
                }
            }
        }
    }
    // The adaptive limit: handlers calling a downstream of finite capacity.
    let (dn, workers): (usize, usize) = if quick {
        (30, 10)
    } else {
        (
            env_or("FLEET_DOWNSTREAM_N", 60),
            env_or("FLEET_DOWNSTREAM_WORKERS", 20),
        )
    };
    let downstream = scenario::only(
        scenario::downstream(dn, &redis.url(), runtime.clone(), workers),
        &ids,
    );
    if !downstream.is_empty() {
        let service = std::time::Duration::from_millis(100);
        let server = Downstream::start(DownstreamSpec {
            workers,
            service,
            collapse_at: None,
            collapse_factor: 1.0,
        })
        .await;
        let step_seconds: f64 = if quick {
            8.0
        } else {
            env_or("FLEET_DOWNSTREAM_STEP_SECONDS", 20.0)
        };
        let mut spec = LoadSpec::standard(step_seconds);
        spec.steps = [0.5, 3.0, 0.5]
            .iter()
            .map(|&multiple| lambda_emulator::load::Step {
                multiple,
                seconds: step_seconds,
            })
            .collect();
        spec.downstream = Some((server.port, server.spec.capacity_rps()));
        println!(
            "\n## Adaptive limit: N={dn}, handlers calling a downstream of {workers} workers at \
             {} ms ({:.0} requests/s), load 0.5× → 3× → 0.5× of the downstream's capacity, \
             {step_seconds} s per step",
            service.as_millis(),
            server.spec.capacity_rps()
        );
        let outcomes = scenario::run_all(&downstream, &spec).await;
        println!("\n| scenario | load | requests | 2xx | 429 | 500 | downstream share | 2xx p50 ms | 2xx p99 ms |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for o in &outcomes {
            for st in &o.steps {
                println!(
                    "| {} | {}× | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} |",
                    o.name,
                    st.multiple,
                    st.requests,
                    st.ok,
                    st.too_many,
                    st.server_errors,
                    st.downstream_share.unwrap_or(0.0),
                    st.p50_ms,
                    st.p99_ms
                );
            }
        }
        // Convergence: from the step's start, the first second after which every second's 2xx
        // p99 stays within 2 × the unloaded p99 (the first step's).
        println!("\n| scenario | unloaded p99 ms | overload: within 2× after (s) | overload p99 after its first 3 s (ms) | overload 500s in its first 3 s / after | back at 0.5×: within 2× after (s) |");
        println!("|---|---|---|---|---|---|");
        for o in &outcomes {
            let unloaded = o.steps.first().map_or(0.0, |s| s.p99_ms);
            let settle = |step: usize| {
                let from = (step_seconds * step as f64) as usize;
                let to = (step_seconds * (step + 1) as f64) as usize;
                let seconds = o.p99_per_second.get(from..to.min(o.p99_per_second.len()))?;
                let last_bad = seconds.iter().rposition(|&p| p > 2.0 * unloaded);
                match last_bad {
                    None => Some(0),
                    Some(i) if i + 1 < seconds.len() => Some(i + 1),
                    Some(_) => None,
                }
            };
            let show = |s: Option<usize>| s.map_or("never".to_string(), |s| s.to_string());
            let settled = o.p99_between(step_seconds + 3.0, 2.0 * step_seconds);
            let errors = |from: f64, to: f64| -> usize {
                o.per_second
                    .iter()
                    .filter(|(s, ..)| (from..to).contains(&(*s as f64)))
                    .map(|&(_, _, _, e)| e)
                    .sum()
            };
            println!(
                "| {} | {unloaded:.0} | {} | {settled:.0} | {} / {} | {} |",
                o.name,
                show(settle(1)),
                errors(step_seconds, step_seconds + 3.0),
                errors(step_seconds + 3.0, 2.0 * step_seconds),
                show(settle(2))
            );
        }
        all.extend(outcomes);
    }
    all.extend(managed_instances(&ids, seconds).await);
    write_summary(&all);
}

/// Managed Instances on the platform as documented (`lambda_emulator::managed`): the slots
/// binding, a ramp the scaler has to follow, CPU protection binding; each without and with the
/// layer, with their tables.
async fn managed_instances(ids: &[&str], seconds: f64) -> Vec<scenario::Outcome> {
    let k = scenario::MANAGED_CONCURRENCY;
    let max = env_or("FLEET_MI_MAX", 16);
    let groups = [
        (
            scenario::managed_instances(k),
            scenario::managed_load(seconds),
            format!("3 environments of {k} slots (at the capacity provider's maximum), handlers of ~1 s: load 0.5× → 2× → 5× → 10× → 0.5×"),
        ),
        (
            scenario::managed_ramp(k, max),
            scenario::managed_ramp_load(seconds),
            format!("from 3 environments of {k} slots, up to {max}: load 0.5× of three environments, then ×4 within six steps, held"),
        ),
        (
            scenario::managed_cpu(k),
            scenario::managed_cpu_load(seconds),
            format!("3 environments of {k} slots, handlers of ~1 s spending 0.1 vCPU of 2 (CPU protection past 90 % binds at ~18 in flight): load 0.25× → 3× → 0.25× of the slots"),
        ),
    ];
    let mut all = Vec::new();
    for (scenarios, spec, title) in groups {
        let scenarios = scenario::only(scenarios, ids);
        if scenarios.is_empty() {
            continue;
        }
        println!("\n## Managed Instances: {title}");
        let outcomes = scenario::run_all(&scenarios, &spec).await;
        println!("{}", managed_table(&outcomes));
        if let Some(first) = outcomes.first() {
            report::publish(
                &outcomes,
                &format!("{}.svg", first.id.trim_end_matches("-no-layer")),
                "Responses per second",
            );
        }
        all.extend(outcomes);
    }
    all
}

/// Per step: what the clients got, the platform's throttles by reason, goodput, environments.
fn managed_table(outcomes: &[scenario::Outcome]) -> String {
    let mut out = String::from(
        "\n| scenario | load | requests | 2xx | 429 (Retry-After) | 500 | throttles: slots / CPU | \
         goodput | environments at the end |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        for st in &o.steps {
            out.push_str(&format!(
                "| {} | {}× | {} | {} | {} ({}) | {} | {} / {} | {:.1} % | {} |\n",
                o.id,
                st.multiple,
                st.requests,
                st.ok,
                st.too_many,
                st.too_many_with_retry_after,
                st.server_errors,
                st.concurrency_throttled,
                st.cpu_throttled,
                st.goodput_share * 100.0,
                st.environments,
            ));
        }
        if let Some(seconds) = o.scale_out_seconds {
            let settled = o.sizes.last().map_or(0, |s| s.1);
            out.push_str(&format!(
                "| {} | scale-out: {settled} environments reached {seconds:.1} s after the ramp began | | | | | | | |\n",
                o.id
            ));
        }
    }
    out
}

/// The `template` scenario's overload steps against the recipe's targets: every 429 with
/// `Retry-After` (the layer's, and the gateway's through its `THROTTLED` response); no platform
/// 500s (the target, reported per step). The gate on 500s is looser, at most 1 % of the overload
/// steps' requests together, against half or more without the layer: on this 2-core machine the
/// step from calm to 2× costs a few now and then (the calm threshold admits up to `limit − 1`
/// until the fleet's first refusal; 8 of 5,134 in the worst of 15 runs, docs/benchmarks.md).
fn template_targets_met(all: &[scenario::Outcome]) -> bool {
    // Nothing run is nothing proven (a FLEET_ONLY without `template`, a template run empty).
    let mut met = all
        .iter()
        .any(|o| o.id == "template" && o.steps.iter().any(|s| s.multiple >= 2.0 && s.requests > 0));
    if !met {
        println!("check: the template scenario ran no overload step");
    }
    for o in all.iter().filter(|o| o.id == "template") {
        let (mut requests, mut failed) = (0, 0);
        for s in o.steps.iter().filter(|s| s.multiple >= 2.0) {
            let platform_500s = s.rate_throttled + s.concurrency_throttled;
            let without_retry_after = s.too_many - s.too_many_with_retry_after;
            println!(
                "check {}×: {platform_500s} platform 500s of {} requests (target 0: {}), \
                 {without_retry_after} 429s without Retry-After",
                s.multiple,
                s.requests,
                if platform_500s == 0 { "met" } else { "missed" }
            );
            met &= without_retry_after == 0;
            requests += s.requests;
            failed += platform_500s;
        }
        let within = failed as f64 <= 0.01 * requests as f64;
        println!(
            "check overload: {failed} platform 500s of {requests} requests ({})",
            if within { "within 1 %" } else { "OVER 1 %" }
        );
        met &= within;
    }
    println!("check: {}", if met { "passed" } else { "FAILED" });
    met
}

/// `target/fleet/summary.json`, with the machine it ran on.
fn write_summary(all: &[scenario::Outcome]) {
    let machine = format!(
        "{} vCPU, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_default()
    );
    let path = workspace().join("target/fleet/summary.json");
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let summary = scenario::summary(all, &machine);
    match std::fs::write(&path, format!("{summary:#}")) {
        Ok(()) => println!("\nsummary: {}", path.display()),
        Err(e) => println!("\nsummary not written: {e}"),
    }
}

/// What the clients lived, per step of their first attempts.
fn clients_table(outcomes: &[scenario::Outcome]) -> String {
    let mut out = String::from(
        "\n| scenario | load | first attempts | attempts sent ÷ first attempts | attempts per request | \
         eventual success | time to success p50 / p99 ms | gave up | 500s | retries at Retry-After, served | \
         last served, s after the step (largest Retry-After, s) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        for st in &o.steps {
            let c = &st.clients;
            out.push_str(&format!(
                "| {} | {}× | {} | {:.2} | {:.2} | {:.1} % | {:.0} / {:.0} | {} | {} | {} | {} |\n",
                o.id,
                st.multiple,
                c.requests,
                st.requests as f64 / c.requests.max(1) as f64,
                c.attempts_per_request,
                c.eventual_success * 100.0,
                c.time_to_success_p50_ms,
                c.time_to_success_p99_ms,
                c.gave_up,
                st.server_errors,
                c.retry_after_served.map_or("—".to_string(), |s| {
                    format!("{} ({:.0} %)", c.retries_at_retry_after, s * 100.0)
                }),
                c.last_served_after_step_s
                    .map_or("—".to_string(), |s| format!("{s:.1}"))
                    + &c.largest_retry_after_s
                        .map_or(String::new(), |r| format!(" ({r:.0})")),
            ));
        }
    }
    out
}
