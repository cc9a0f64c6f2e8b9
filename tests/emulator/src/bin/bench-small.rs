//! The proxy's cost where users pay it: small functions. A benchmark, not a test.
//!
//! Lambda gives a function CPU in proportion to its memory (1,769 MB is one vCPU), and the
//! extension shares that quota with the runtime. Each environment here (extension or floor, and
//! the runtime) runs inside a control group whose CPU quota matches a memory size, and per
//! configuration, side by side in one run, with rounds interleaved:
//! - the CPU per invocation of the extension (or the floor in its place) and of the runtime, read
//!   from the cpu accounting controller (nanoseconds) over invocations 50 ms apart;
//! - the latency of those spaced invocations (platform invoke → answer): mean, p50, p99;
//! - invocations per second back to back, where the quota binds.
//!
//! The environments not being measured are frozen (the freezer controller), as Lambda freezes an
//! idle environment: AWS's runtime clients take CPU while they wait (Node.js's ~3 % of a vCPU here),
//! which would otherwise load the machine and each environment's own quota.
//!
//! Paths: `direct` (no layer), `blocking-floor` (the smallest proxy: blocking sockets, a thread per
//! connection), `hyper-floor` (a minimal tokio + hyper pass-through), `layer` (lambda-admission,
//! local coordinator), `off` (the layer with `ADMISSION_MODE=off`: carried, not decided), and
//! `baseline` (another build of the layer, `SMALL_BASELINE=<folder>`).
//! Runtimes: AWS's Python (`awslambdaric`) and Node.js (`aws-lambda-ric`) clients, and Rust's
//! `lambda_runtime`, each with a handler that returns at once.
//!
//! Needs root and the cpu controller (cgroup v1 `cpu` + `cpuacct`, or v2). Run with
//! `scripts/bench-small.sh`. `SMALL_MEMORY` (MB, default `128,512,1769`), `SMALL_RUNTIMES`
//! (`python,node,rust`), `SMALL_PATHS`, `SMALL_ROUNDS` (3), `SMALL_SPACED` (invocations per round,
//! 60), `SMALL_GAP_MS` (50), `SMALL_B2B_MS` (2000) shape it. `SMALL_EVENT_BYTES` (default `0`:
//! the ~400 B API Gateway event) lists event sizes: the same event with its `body` padded to that
//! many bytes (Python's and Node's `echo` handlers return the event, so their answer is as large;
//! Rust's answers a few bytes).
//!
//! `SMALL_COLD=N` measures cold starts instead: per memory size, runtime and path (`direct` and
//! `layer` of `SMALL_PATHS`), N environments started one after the other, interleaved between the
//! paths, each timed from its start (the extension's spawn and registration, the wrapper's probe,
//! the runtime's init) to its first invocation's answer; p50 and p99, and what the layer adds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lambda_emulator::stats::{percentile, percentile_of};
use lambda_emulator::{
    binary, env_or, Builder, Cgroups, Environment, Outcome, Runtime, RuntimeApi,
};

/// CFS period; the quota is this × memory / 1,769 MB.
const PERIOD_US: u64 = 100_000;
const GROUP: &str = "lambda-admission-bench";

/// The cgroup layout of this machine.
#[derive(Clone, Copy)]
enum Hierarchy {
    /// v1 with `cpu` and `cpuacct` mounted apart (or together: then both are one folder).
    V1,
    V2,
}

impl Hierarchy {
    fn detect() -> Hierarchy {
        if Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
            Hierarchy::V1
        } else if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            Hierarchy::V2
        } else {
            panic!(
                "no cpu controller found under /sys/fs/cgroup: this benchmark needs one (and root)"
            )
        }
    }
}

/// One environment's groups: a quota over both processes, CPU accounting for each, and a freezer
/// (v1; v2 freezes the quota group).
struct Groups {
    hierarchy: Hierarchy,
    quota: PathBuf,
    extension: PathBuf,
    runtime: PathBuf,
    freezer: Option<PathBuf>,
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("cannot write {value:?} to {}: {e}", path.display()));
}

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e} (root needed)", path.display()));
}

/// Removes a group tree left by an earlier run (groups are removed leaves first).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Groups {
    fn create(hierarchy: Hierarchy, name: &str, memory_mb: u64) -> Groups {
        let quota_us = (PERIOD_US * memory_mb / 1769).max(1000);
        match hierarchy {
            Hierarchy::V1 => {
                let quota = Path::new("/sys/fs/cgroup/cpu").join(GROUP).join(name);
                mkdir(&quota);
                write(&quota.join("cpu.cfs_period_us"), &PERIOD_US.to_string());
                write(&quota.join("cpu.cfs_quota_us"), &quota_us.to_string());
                // Mounted together, the accounting groups sit under the quota group.
                let acct = Path::new("/sys/fs/cgroup/cpuacct");
                let same = std::fs::canonicalize(acct).ok()
                    == std::fs::canonicalize("/sys/fs/cgroup/cpu").ok();
                let base = if same {
                    quota.clone()
                } else {
                    acct.join(GROUP).join(name)
                };
                let (extension, runtime) = (base.join("extension"), base.join("runtime"));
                mkdir(&extension);
                mkdir(&runtime);
                let freezer = Path::new("/sys/fs/cgroup/freezer")
                    .exists()
                    .then(|| Path::new("/sys/fs/cgroup/freezer").join(GROUP).join(name));
                if let Some(f) = &freezer {
                    mkdir(f);
                }
                Groups {
                    hierarchy,
                    quota,
                    extension,
                    runtime,
                    freezer,
                }
            }
            Hierarchy::V2 => {
                let root = Path::new("/sys/fs/cgroup");
                let top = root.join(GROUP);
                let quota = top.join(name);
                mkdir(&quota);
                for dir in [root, top.as_path(), quota.as_path()] {
                    write(&dir.join("cgroup.subtree_control"), "+cpu");
                }
                write(&quota.join("cpu.max"), &format!("{quota_us} {PERIOD_US}"));
                let (extension, runtime) = (quota.join("extension"), quota.join("runtime"));
                mkdir(&extension);
                mkdir(&runtime);
                Groups {
                    hierarchy,
                    quota,
                    extension,
                    runtime,
                    freezer: None,
                }
            }
        }
    }

    /// Frozen, as Lambda freezes an environment between invocations: an idle runtime (AWS's
    /// clients poll while they wait) takes no CPU from the one being measured.
    fn freeze(&self, frozen: bool) {
        match (self.hierarchy, &self.freezer) {
            (Hierarchy::V1, Some(f)) => write(
                &f.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            (Hierarchy::V2, _) => write(
                &self.quota.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
            (Hierarchy::V1, None) => {}
        }
        if !frozen {
            // Thawed processes are runnable at once; give them a moment to settle.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cgroups(&self) -> Cgroups {
        let join = |leaf: &Path| {
            let mut groups = match self.hierarchy {
                Hierarchy::V1 if !leaf.starts_with(&self.quota) => {
                    vec![self.quota.clone(), leaf.to_path_buf()]
                }
                _ => vec![leaf.to_path_buf()],
            };
            groups.extend(self.freezer.clone());
            groups
        };
        Cgroups {
            extension: join(&self.extension),
            runtime: join(&self.runtime),
        }
    }

    /// CPU used so far by the group's processes, in nanoseconds.
    fn usage_ns(&self, leaf: &Path) -> u64 {
        match self.hierarchy {
            Hierarchy::V1 => std::fs::read_to_string(leaf.join("cpuacct.usage"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            Hierarchy::V2 => std::fs::read_to_string(leaf.join("cpu.stat"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .map_or(0, |us| us * 1000),
        }
    }

    fn usage(&self) -> (u64, u64) {
        (self.usage_ns(&self.extension), self.usage_ns(&self.runtime))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hop {
    Direct,
    BlockingFloor,
    HyperFloor,
    Layer,
    Off,
    Baseline,
}

impl Hop {
    fn parse(s: &str) -> Hop {
        match s {
            "direct" => Hop::Direct,
            "blocking-floor" => Hop::BlockingFloor,
            "hyper-floor" => Hop::HyperFloor,
            "layer" => Hop::Layer,
            "off" => Hop::Off,
            "baseline" => Hop::Baseline,
            other => panic!("unknown path {other:?} in SMALL_PATHS"),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Hop::Direct => "direct (no layer)",
            Hop::BlockingFloor => "floor: blocking proxy",
            Hop::HyperFloor => "floor: hyper hop",
            Hop::Layer => "lambda-admission",
            Hop::Off => "lambda-admission, mode off",
            Hop::Baseline => "baseline build",
        }
    }
}

fn runtime(name: &str) -> Runtime {
    match name {
        "python" => Runtime::Python {
            handler: "handler.echo".into(),
        },
        "node" => Runtime::Node {
            handler: "handler.echo".into(),
        },
        "rust" => Runtime::Rust { stream: false },
        other => panic!("unknown runtime {other:?} in SMALL_RUNTIMES"),
    }
}

struct Config {
    memory: u64,
    /// The event's size in bytes (`0`: the small event).
    size: usize,
    runtime: String,
    hop: Hop,
    env: Environment,
    groups: Groups,
    /// Spaced latencies of every round.
    latencies: Vec<Duration>,
    round_means: Vec<f64>,
    extension_cpu: Vec<f64>,
    runtime_cpu: Vec<f64>,
    extension_cpu_b2b: Vec<f64>,
    runtime_cpu_b2b: Vec<f64>,
    rates: Vec<f64>,
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

async fn invoke(env: &Environment, event: &str) {
    invoke_within(env, event, Duration::from_secs(10)).await;
}

async fn invoke_within(env: &Environment, event: &str, timeout: Duration) {
    let r = env.platform.invoke(event.to_string(), timeout).await;
    assert!(
        matches!(r, Outcome::Response { .. }),
        "benchmark invocation failed: {r:?}\n{}\n{}",
        env.runtime_stderr.text(),
        env.extension_stderr.text()
    );
}

async fn spaced(c: &mut Config, n: usize, gap: Duration, event: &str) {
    let (e0, r0) = c.groups.usage();
    let mut sum = 0.0;
    for _ in 0..n {
        tokio::time::sleep(gap).await;
        let t = Instant::now();
        invoke(&c.env, event).await;
        let took = t.elapsed();
        sum += took.as_secs_f64();
        c.latencies.push(took);
    }
    let (e1, r1) = c.groups.usage();
    c.round_means.push(sum * 1000.0 / n as f64);
    c.extension_cpu
        .push(e1.saturating_sub(e0) as f64 / 1000.0 / n as f64);
    c.runtime_cpu
        .push(r1.saturating_sub(r0) as f64 / 1000.0 / n as f64);
}

async fn back_to_back(c: &mut Config, length: Duration, event: &str) {
    let (e0, r0) = c.groups.usage();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < length {
        invoke(&c.env, event).await;
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let (e1, r1) = c.groups.usage();
    c.rates.push(n as f64 / secs);
    c.extension_cpu_b2b
        .push(e1.saturating_sub(e0) as f64 / 1000.0 / n.max(1) as f64);
    c.runtime_cpu_b2b
        .push(r1.saturating_sub(r0) as f64 / 1000.0 / n.max(1) as f64);
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    percentile_of(&mut v, 0.5).unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Cold starts: `n` per memory size, runtime and path, interleaved, each a new environment in
/// new groups, timed from its start to its first answer.
async fn cold_starts(
    hierarchy: Hierarchy,
    memories: &[u64],
    runtimes: &[String],
    hops: &[Hop],
    n: usize,
) {
    let hops: Vec<Hop> = hops
        .iter()
        .copied()
        .filter(|h| matches!(h, Hop::Direct | Hop::Layer))
        .collect();
    let event = lambda_emulator::bench_event();
    println!("## Cold starts under a memory-sized quota");
    println!(
        "{n} per configuration, interleaved; from the environment's start to its first answer."
    );
    println!("extension: {}", binary("lambda-admission").display());
    println!("\n| memory | runtime | path | p50 ms | p99 ms | mean ms | added by the layer, p50 / p99 ms | of which to the extension's registration, p50 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for &memory in memories {
        for rt in runtimes {
            let mut took: Vec<Vec<Duration>> = vec![Vec::new(); hops.len()];
            let mut up: Vec<Vec<Duration>> = vec![Vec::new(); hops.len()];
            for i in 0..n {
                for (k, &hop) in hops.iter().enumerate() {
                    let name = format!("cold-{memory}-{rt}-{k}-{i}");
                    let groups = Groups::create(hierarchy, &name, memory);
                    let mut builder = Builder::new(runtime(rt)).cgroups(groups.cgroups());
                    builder = match hop {
                        Hop::Direct => builder.without_layer(),
                        _ => builder
                            .env("ADMISSION_LIMIT", "1000")
                            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory.to_string()),
                    };
                    let started = Instant::now();
                    let env = builder.start().await;
                    up[k].push(started.elapsed());
                    invoke_within(&env, &event, Duration::from_secs(120)).await;
                    took[k].push(started.elapsed());
                    drop(env);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    remove_tree(&groups.quota);
                    eprint!("\r{memory} MB {rt}: {}/{n}   ", i + 1);
                }
            }
            let direct = hops.iter().position(|h| *h == Hop::Direct);
            for (k, &hop) in hops.iter().enumerate() {
                took[k].sort();
                up[k].sort();
                let p = |q: f64| ms(percentile(&took[k], q).unwrap_or_default());
                let mean =
                    took[k].iter().map(|d| ms(*d)).sum::<f64>() / took[k].len().max(1) as f64;
                let median = |d: &[Duration]| ms(percentile(d, 0.5).unwrap_or_default());
                let (added, registered) = match direct {
                    Some(d) if d != k => {
                        let mut base = took[d].clone();
                        base.sort();
                        let q = |q: f64| ms(percentile(&base, q).unwrap_or_default());
                        let mut base_up = up[d].clone();
                        base_up.sort();
                        (
                            format!("{:+.1} / {:+.1}", p(0.5) - q(0.5), p(0.99) - q(0.99)),
                            format!("{:+.1}", median(&up[k]) - median(&base_up)),
                        )
                    }
                    _ => ("—".into(), "—".into()),
                };
                println!(
                    "| {memory} MB | {rt} | {} | {:.1} | {:.1} | {mean:.1} | {added} | {registered} |",
                    hop.name(),
                    p(0.5),
                    p(0.99)
                );
            }
        }
    }
    eprintln!();
}

/// The benchmark's API Gateway event, its body padded to `size` bytes (`0`: as it is).
fn event_of(size: usize) -> String {
    let small = lambda_emulator::bench_event();
    if size == 0 {
        return small;
    }
    let mut event: serde_json::Value = serde_json::from_str(&small).expect("the bench event");
    let pad = size.saturating_sub(small.len());
    event["body"] = serde_json::Value::String("x".repeat(pad));
    event.to_string()
}

fn size_name(size: usize) -> String {
    match size {
        0 => "~400 B".into(),
        s if s >= 1 << 20 => format!("{:.0} MiB", s as f64 / (1 << 20) as f64),
        s => format!("{s} B"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let memories: Vec<u64> = list("SMALL_MEMORY", "128,512,1769")
        .iter()
        .map(|m| m.parse().expect("SMALL_MEMORY: sizes in MB"))
        .collect();
    let runtimes = list("SMALL_RUNTIMES", "python,node,rust");
    let baseline = std::env::var_os("SMALL_BASELINE").map(PathBuf::from);
    let default_paths = if baseline.is_some() {
        "direct,blocking-floor,hyper-floor,layer,baseline"
    } else {
        "direct,blocking-floor,hyper-floor,layer"
    };
    let hops: Vec<Hop> = list("SMALL_PATHS", default_paths)
        .iter()
        .map(|h| Hop::parse(h))
        .collect();
    let rounds = env_or::<usize>("SMALL_ROUNDS", 3);
    let per_round = env_or::<usize>("SMALL_SPACED", 60);
    let gap = Duration::from_millis(env_or::<u64>("SMALL_GAP_MS", 50));
    let b2b = Duration::from_millis(env_or::<u64>("SMALL_B2B_MS", 2000));
    let sizes: Vec<usize> = list("SMALL_EVENT_BYTES", "0")
        .iter()
        .map(|m| m.parse().expect("SMALL_EVENT_BYTES: sizes in bytes"))
        .collect();
    let hierarchy = Hierarchy::detect();
    if let Ok(n) = std::env::var("SMALL_COLD") {
        let n: usize = n.parse().expect("SMALL_COLD: a number of cold starts");
        cold_starts(hierarchy, &memories, &runtimes, &hops, n).await;
        return;
    }
    for root in [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup",
    ] {
        remove_tree(&Path::new(root).join(GROUP));
    }

    println!("## Small functions: the proxy's CPU under a memory-sized quota");
    println!(
        "{rounds} rounds, interleaved; per round and configuration {per_round} invocations {} ms apart, then {} s back to back. \
         Quota: {PERIOD_US} µs period × memory / 1,769 MB.",
        gap.as_millis(),
        b2b.as_secs_f64()
    );
    println!("extension: {}", binary("lambda-admission").display());
    if let Some(b) = &baseline {
        println!("baseline: {}", b.display());
    }

    let mut configs = Vec::new();
    for &memory in &memories {
        for rt in &runtimes {
            for (&hop, &size) in hops.iter().flat_map(|h| sizes.iter().map(move |s| (h, s))) {
                let event = event_of(size);
                let name = format!("{memory}-{rt}-{}", configs.len());
                let groups = Groups::create(hierarchy, &name, memory);
                let mut builder = Builder::new(runtime(rt)).cgroups(groups.cgroups());
                builder = match hop {
                    Hop::Direct => builder.without_layer(),
                    Hop::BlockingFloor => builder.runtime_api(RuntimeApi::BlockingFloor),
                    Hop::HyperFloor => builder.runtime_api(RuntimeApi::FloorProxy),
                    Hop::Layer => builder,
                    Hop::Off => builder.env("ADMISSION_MODE", "off"),
                    Hop::Baseline => builder.layer_from(baseline.clone().expect("SMALL_BASELINE")),
                };
                if matches!(hop, Hop::Layer | Hop::Off | Hop::Baseline) {
                    builder = builder
                        .env("ADMISSION_LIMIT", "1000")
                        .env("ADMISSION_METRICS_INTERVAL", "60")
                        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory.to_string());
                }
                let env = builder.start().await;
                // A cold start under a small quota takes seconds (Python imports its client).
                invoke_within(&env, &event, Duration::from_secs(120)).await;
                for _ in 0..50 {
                    invoke(&env, &event).await; // warm-up: connections, caches
                }
                groups.freeze(true);
                configs.push(Config {
                    memory,
                    size,
                    runtime: rt.clone(),
                    hop,
                    env,
                    groups,
                    latencies: Vec::new(),
                    round_means: Vec::new(),
                    extension_cpu: Vec::new(),
                    runtime_cpu: Vec::new(),
                    extension_cpu_b2b: Vec::new(),
                    runtime_cpu_b2b: Vec::new(),
                    rates: Vec::new(),
                });
            }
        }
    }
    for round in 0..rounds {
        let n = configs.len();
        for k in 0..n {
            let c = &mut configs[(round * 7 + k) % n];
            let event = event_of(c.size);
            c.groups.freeze(false);
            spaced(c, per_round, gap, &event).await;
            back_to_back(c, b2b, &event).await;
            c.groups.freeze(true);
            eprint!(
                "\rround {}/{rounds}, configuration {}/{n}   ",
                round + 1,
                k + 1
            );
        }
    }
    eprintln!();

    for &memory in &memories {
        let quota = (PERIOD_US * memory / 1769).max(1000);
        println!(
            "\n### {memory} MB ({:.1} % of a vCPU: {quota} µs per {PERIOD_US} µs)",
            quota as f64 * 100.0 / PERIOD_US as f64
        );
        println!("| runtime | event | path | extension CPU µs/inv | runtime CPU µs/inv | spaced mean ms | median of round means | p50 | p99 | back to back inv/s | vs direct |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (rt, &size) in runtimes
            .iter()
            .flat_map(|r| sizes.iter().map(move |s| (r, s)))
        {
            let of = |hop: Hop| {
                configs.iter().find(|c| {
                    c.memory == memory && &c.runtime == rt && c.hop == hop && c.size == size
                })
            };
            let direct_rate = of(Hop::Direct).map(|c| median(&c.rates));
            for c in configs
                .iter_mut()
                .filter(|c| c.memory == memory && &c.runtime == rt && c.size == size)
            {
                c.latencies.sort();
                let mean = c.latencies.iter().map(|d| ms(*d)).sum::<f64>()
                    / c.latencies.len().max(1) as f64;
                let rate = median(&c.rates);
                let ext = if c.hop == Hop::Direct {
                    "—".to_string()
                } else {
                    format!(
                        "{:.0} (b2b {:.0})",
                        median(&c.extension_cpu),
                        median(&c.extension_cpu_b2b)
                    )
                };
                println!(
                    "| {rt} | {} | {} | {ext} | {:.0} (b2b {:.0}) | {mean:.3} | {:.3} | {:.3} | {:.3} | {rate:.0} | {} |",
                    size_name(size),
                    c.hop.name(),
                    median(&c.runtime_cpu),
                    median(&c.runtime_cpu_b2b),
                    median(&c.round_means),
                    ms(percentile(&c.latencies, 0.5).unwrap_or_default()),
                    ms(percentile(&c.latencies, 0.99).unwrap_or_default()),
                    direct_rate.map_or("—".into(), |d| format!("{:.0} %", rate * 100.0 / d)),
                );
            }
        }
    }

    println!("\n### Against the targets (medians of rounds)");
    println!("| memory | runtime | event | extension CPU / blocking floor | / hyper floor | / mode off | / baseline | mean latency added, ms | back to back vs direct |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &memory in &memories {
        for (rt, &size) in runtimes
            .iter()
            .flat_map(|r| sizes.iter().map(move |s| (r, s)))
        {
            let of = |hop: Hop| {
                configs.iter().find(|c| {
                    c.memory == memory && &c.runtime == rt && c.hop == hop && c.size == size
                })
            };
            let Some(layer) = of(Hop::Layer) else {
                continue;
            };
            let ratio = |other: Option<&Config>| {
                other.map_or("—".into(), |o| {
                    format!(
                        "{:.2}×",
                        median(&layer.extension_cpu) / median(&o.extension_cpu)
                    )
                })
            };
            let added = of(Hop::Direct).map_or("—".into(), |d| {
                format!(
                    "{:+.3}",
                    median(&layer.round_means) - median(&d.round_means)
                )
            });
            let rate = of(Hop::Direct).map_or("—".into(), |d| {
                format!("{:.0} %", median(&layer.rates) * 100.0 / median(&d.rates))
            });
            println!(
                "| {memory} MB | {rt} | {} | {} | {} | {} | {} | {added} | {rate} |",
                size_name(size),
                ratio(of(Hop::BlockingFloor)),
                ratio(of(Hop::HyperFloor)),
                ratio(of(Hop::Off)),
                ratio(of(Hop::Baseline)),
            );
        }
    }

    for c in &configs {
        c.groups.freeze(false);
    }
    drop(configs);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for root in [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup",
    ] {
        remove_tree(&Path::new(root).join(GROUP));
    }
}
