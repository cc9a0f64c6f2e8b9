//! A scenario: a fleet configuration, a front door and a load, run and reduced to figures.

use std::sync::Arc;

use crate::clients::Client;
use crate::fleet::{ApiGateway, Fleet, FleetConfig, Layer, PlatformLimits, StageThrottle};
use crate::load::{self, LoadSpec, StepFigures};
use crate::Runtime;

#[derive(Clone)]
pub struct Scenario {
    /// A stable id (`no-layer`, `layer-redis`, ...): what filters and summaries key on.
    pub id: &'static str,
    /// What a reader of the table sees.
    pub name: String,
    pub fleet: FleetConfig,
    /// API Gateway's `DEFAULT_5XX` remapped to 429.
    pub remap_5xx_to_429: bool,
    /// API Gateway's stage throttle in front.
    pub stage_throttle: Option<StageThrottle>,
}

impl Scenario {
    /// This scenario under another id and name, with more `ADMISSION_*` variables and a pool of
    /// its own.
    pub fn variant(
        mut self,
        id: &'static str,
        name: &str,
        extension_env: Vec<(&'static str, &'static str)>,
    ) -> Scenario {
        self.id = id;
        self.name = name.to_string();
        self.fleet.pool = format!("{id}-{}", std::process::id());
        self.fleet.extension_env = extension_env;
        self
    }
}

pub struct Outcome {
    pub id: &'static str,
    pub name: String,
    pub capacity: usize,
    /// The in-flight count below which the layer admits, when it has a fleet-wide limit.
    pub threshold: Option<usize>,
    pub steps: Vec<StepFigures>,
    pub recovery_seconds: Option<f64>,
    /// (second, 2xx, 429, 500) for plotting.
    pub per_second: Vec<(usize, usize, usize, usize)>,
    /// The 99th percentile latency (ms) of each second's 2xx responses.
    pub p99_per_second: Vec<f64>,
    /// Every 2xx response: when it was sent (s from the start) and its latency (ms).
    pub ok_latencies: Vec<(f64, f64)>,
    /// Managed Instances that scale: seconds from the end of the first step until the fleet
    /// first reached the size it ended the run at (`None`: a fleet that does not scale).
    pub scale_out_seconds: Option<f64>,
    /// The environments taking invokes, each time their number changed (s from the start).
    pub sizes: Vec<(f64, usize)>,
}

impl Outcome {
    /// The 99th percentile latency (ms) of the 2xx responses sent between `from` and `to` s.
    pub fn p99_between(&self, from: f64, to: f64) -> f64 {
        let mut l: Vec<f64> = self
            .ok_latencies
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, ms)| *ms)
            .collect();
        crate::stats::percentile_of(&mut l, 0.99).unwrap_or(0.0)
    }
}

/// Starts the fleet, runs `spec` against it, and reduces the run to figures. `progress` hears of
/// each step (scenario name, step, offered requests per second).
pub async fn run(
    scenario: &Scenario,
    spec: &LoadSpec,
    progress: &mut dyn FnMut(&str, usize, f64),
) -> Outcome {
    let fleet = Arc::new(Fleet::start(&scenario.fleet).await);
    fleet.start_scaler();
    let capacity = fleet.capacity();
    let gateway = Arc::new(ApiGateway::new(
        scenario.remap_5xx_to_429,
        scenario.stage_throttle,
    ));
    let name = scenario.name.clone();
    let run = load::run(fleet.clone(), gateway, spec, |step, rps| {
        progress(&name, step, rps)
    })
    .await;
    let seconds = spec.steps.iter().map(|s| s.seconds).sum::<f64>().ceil() as usize;
    let threshold = match scenario.fleet.layer {
        Layer::None => None,
        _ => scenario
            .fleet
            .shed_at
            .map(|share| ((capacity as f64 * share).floor() as usize).max(1)),
    };
    let sizes: Vec<(f64, usize)> = fleet
        .sizes()
        .iter()
        .map(|(at, n)| (at.saturating_duration_since(run.started).as_secs_f64(), *n))
        .collect();
    let scales = scenario.fleet.managed.is_some_and(|m| m.max > m.min);
    let first_step = spec.steps.first().map_or(0.0, |s| s.seconds);
    Outcome {
        scale_out_seconds: scales.then(|| scale_out_seconds(&sizes, first_step)),
        sizes,
        id: scenario.id,
        name: scenario.name.clone(),
        capacity,
        threshold,
        steps: load::figures(&run, spec, capacity),
        recovery_seconds: load::recovery_seconds(&run, spec),
        per_second: load::per_second(&run, seconds),
        p99_per_second: load::p99_per_second(&run, seconds),
        ok_latencies: run
            .records
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| (r.at, r.latency.as_secs_f64() * 1000.0))
            .collect(),
    }
}

/// Seconds from `from` until the fleet first reached the size it ended at (0 if it was that
/// large already).
pub fn scale_out_seconds(sizes: &[(f64, usize)], from: f64) -> f64 {
    let settled = sizes.last().map_or(0, |s| s.1);
    sizes
        .iter()
        .find(|(_, n)| *n >= settled)
        .map_or(0.0, |(at, _)| (at - from).max(0.0))
}

/// The size of a run, from `<PREFIX>_N` (environments, default 30), `<PREFIX>_SHED_AT` (0.7, for
/// the scenarios that set a share), `<PREFIX>_STEP_SECONDS` and `<PREFIX>_MEAN_MS` (handler
/// duration, 200).
pub struct Settings {
    pub n: usize,
    pub shed_at: f64,
    pub spec: LoadSpec,
}

impl Settings {
    pub fn from_env(prefix: &str, step_seconds: f64) -> Settings {
        let var = |name: &str| format!("{prefix}_{name}");
        let mut spec = LoadSpec::standard(crate::env_or(&var("STEP_SECONDS"), step_seconds));
        spec.mean_ms = crate::env_or(&var("MEAN_MS"), 200.0);
        Settings {
            n: crate::env_or(&var("N"), 30),
            shed_at: crate::env_or(&var("SHED_AT"), 0.7),
            spec,
        }
    }

    pub fn step_seconds(&self) -> f64 {
        self.spec.steps.first().map_or(0.0, |s| s.seconds)
    }
}

/// Runs `scenarios` one after the other, reporting each step on stderr.
pub async fn run_all(scenarios: &[Scenario], spec: &LoadSpec) -> Vec<Outcome> {
    run_all_observed(scenarios, spec, &mut |_| {}).await
}

/// [`run_all`], and `on_step` hears of each step (its index) as it starts.
pub async fn run_all_observed(
    scenarios: &[Scenario],
    spec: &LoadSpec,
    on_step: &mut dyn FnMut(usize),
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for s in scenarios {
        eprintln!(
            "starting {} environments for {}",
            s.fleet.environments, s.name
        );
        let mut progress = |name: &str, step: usize, rps: f64| {
            on_step(step);
            eprintln!(
                "  {name}: step {}/{} at {rps:.0} requests/s",
                step + 1,
                spec.steps.len()
            )
        };
        outcomes.push(run(s, spec, &mut progress).await);
    }
    outcomes
}

/// Keeps the scenarios whose id is in `ids` (all of them when `ids` is empty).
pub fn only(scenarios: Vec<Scenario>, ids: &[&str]) -> Vec<Scenario> {
    scenarios
        .into_iter()
        .filter(|s| ids.is_empty() || ids.contains(&s.id))
        .collect()
}

/// The on-demand scenarios side by side: no layer, the `DEFAULT_5XX`→429 workaround, the layer
/// with the local coordinator (a per-environment limit only), the layer with Redis.
pub fn on_demand(n: usize, shed_at: f64, redis_url: &str, runtime: Runtime) -> Vec<Scenario> {
    let fleet = |layer: Layer, pool: &str| FleetConfig {
        environments: n,
        per_environment: 1,
        runtime: runtime.clone(),
        layer,
        shed_at: Some(shed_at),
        pool: pool.to_string(),
        // Concurrency only, as before the throttles work: the rate cap and cold starts are
        // options of the fleet, tested, and not yet on in these scenarios.
        platform: PlatformLimits::concurrency_only(),
        extension_env: Vec::new(),
        runtime_env: Vec::new(),
        managed: None,
    };
    vec![
        Scenario {
            id: "no-layer",
            name: "(a) no layer".into(),
            fleet: fleet(Layer::None, "a"),
            remap_5xx_to_429: false,
            stage_throttle: None,
        },
        Scenario {
            id: "remap-5xx",
            name: "(b) no layer, DEFAULT_5XX remapped to 429".into(),
            fleet: fleet(Layer::None, "b"),
            remap_5xx_to_429: true,
            stage_throttle: None,
        },
        Scenario {
            id: "layer-local",
            name: "(c) layer, local coordinator (per-environment limit)".into(),
            fleet: fleet(Layer::Local, "c"),
            remap_5xx_to_429: false,
            stage_throttle: None,
        },
        Scenario {
            id: "layer-redis",
            name: "(d) layer, Redis coordinator".into(),
            fleet: fleet(
                Layer::Redis(redis_url.to_string()),
                &format!("d-{}", std::process::id()),
            ),
            remap_5xx_to_429: false,
            stage_throttle: None,
        },
    ]
}

/// Invocations one Managed Instances environment runs at once in the benchmark's scenarios.
pub const MANAGED_CONCURRENCY: usize = 32;

/// A Managed Instances fleet of `k` slots per environment, `min` to `max` environments, behind
/// API Gateway without a stage throttle, with the layer as Managed Instances run it (local
/// coordinator, the limit from `AWS_LAMBDA_MAX_CONCURRENCY`, its own headroom, CPU pressure on
/// by default) or without.
fn managed_pair(
    ids: [&'static str; 2],
    what: &str,
    k: usize,
    (min, max): (usize, usize),
) -> Vec<Scenario> {
    let fleet = |layer: Layer| FleetConfig {
        environments: max,
        per_environment: k,
        runtime: Runtime::Rust { stream: false },
        layer,
        shed_at: None,
        pool: "e".into(),
        platform: PlatformLimits::concurrency_only(),
        extension_env: Vec::new(),
        runtime_env: Vec::new(),
        managed: Some(crate::managed::Managed::documented(min, max)),
    };
    let scenario = |id, layer: Layer, with: &str| Scenario {
        id,
        name: format!("Managed Instances, {what}, {with}"),
        fleet: fleet(layer),
        remap_5xx_to_429: false,
        stage_throttle: None,
    };
    vec![
        scenario(ids[0], Layer::None, "no layer"),
        scenario(ids[1], Layer::Local, "layer"),
    ]
}

/// `mi-no-layer`, `mi-layer`: three environments of `k` slots at the capacity provider's
/// maximum (the scaler cannot add any), handlers light on CPU: the slots bind.
pub fn managed_instances(k: usize) -> Vec<Scenario> {
    managed_pair(["mi-no-layer", "mi-layer"], "3 environments", k, (3, 3))
}

/// `mi-ramp-no-layer`, `mi-ramp-layer`: from three environments, up to `max`, as the scaler
/// decides.
pub fn managed_ramp(k: usize, max: usize) -> Vec<Scenario> {
    managed_pair(
        ["mi-ramp-no-layer", "mi-ramp-layer"],
        &format!("3 to {max} environments"),
        k,
        (3, max),
    )
}

/// `mi-cpu-no-layer`, `mi-cpu-layer`: three environments, handlers heavy on CPU: CPU protection
/// binds before the slots do.
pub fn managed_cpu(k: usize) -> Vec<Scenario> {
    managed_pair(
        ["mi-cpu-no-layer", "mi-cpu-layer"],
        "3 environments, CPU-heavy handlers",
        k,
        (3, 3),
    )
}

/// Managed Instances' load steps: as on demand (0.5× → 2× → 5× → 10× → 0.5×), handlers of ~1 s.
pub fn managed_load(seconds: f64) -> LoadSpec {
    let mut spec = LoadSpec::standard(seconds);
    spec.mean_ms = 1000.0;
    spec
}

/// The ramp: 0.5× of three environments' capacity (the fleet settled at its minimum) for two
/// steps, then up to 2× within six steps (four times the load within a minute at 10 s steps),
/// held for six more.
pub fn managed_ramp_load(seconds: f64) -> LoadSpec {
    let mut spec = managed_load(seconds);
    let ramp = (1..=6).map(|i| 0.5 * 4f64.powf(i as f64 / 6.0));
    spec.steps = std::iter::once(0.5)
        .chain(ramp)
        .chain(std::iter::repeat_n(2.0, 6))
        .map(|multiple| crate::load::Step {
            multiple: (multiple * 100.0).round() / 100.0,
            seconds,
        })
        .collect();
    spec.steps[0].seconds = 2.0 * seconds;
    spec
}

/// CPU-heavy handlers (0.1 vCPU each while they run, ~1 s: CPU protection at 90 % of 2 vCPUs
/// binds at 18 of an environment's 32 slots): 0.25× → 3× → 0.25× of the slots' capacity.
pub fn managed_cpu_load(seconds: f64) -> LoadSpec {
    let mut spec = managed_load(seconds);
    spec.cpu = 0.1;
    spec.steps = [0.25, 3.0, 0.25]
        .iter()
        .map(|&multiple| crate::load::Step { multiple, seconds })
        .collect();
    spec
}

/// The complete platform (Lambda's rate cap, cold starts, scale-up) behind API Gateway, side by
/// side: no layer; the `DEFAULT_5XX`→429 workaround; API Gateway's stage throttle alone at the
/// recommended rate; the layer alone (Redis, its own headroom); and the recipe, both. `warm`
/// environments are started before the load (`None`: all), the others start cold: then the
/// spike scenarios (no layer, the recipe, the recipe without init leases).
pub fn throttles(
    n: usize,
    redis_url: &str,
    runtime: Runtime,
    warm: Option<usize>,
) -> Vec<Scenario> {
    let mut platform = PlatformLimits::lambda();
    platform.warm = warm;
    platform.init_delay = std::time::Duration::from_millis(300);
    let fleet = |layer: Layer, id: &str| FleetConfig {
        environments: n,
        per_environment: 1,
        runtime: runtime.clone(),
        layer,
        shed_at: None,
        pool: format!("{id}-{}", std::process::id()),
        platform,
        extension_env: Vec::new(),
        runtime_env: Vec::new(),
        managed: None,
    };
    let redis = || Layer::Redis(redis_url.to_string());
    let stage = Some(recommended_stage_throttle(n));
    let scenario = |id: &'static str, name: &str, layer: Layer, remap, stage_throttle| Scenario {
        id,
        name: name.to_string(),
        fleet: fleet(layer, id),
        remap_5xx_to_429: remap,
        stage_throttle,
    };
    match warm {
        None => vec![
            scenario("no-layer", "no layer", Layer::None, false, None),
            scenario(
                "remap-5xx",
                "no layer, DEFAULT_5XX → 429",
                Layer::None,
                true,
                None,
            ),
            scenario(
                "gateway-only",
                "stage throttle only",
                Layer::None,
                false,
                stage,
            ),
            scenario("layer", "layer (Redis) only", redis(), false, None),
            scenario(
                "recipe",
                "recipe: layer + stage throttle",
                redis(),
                false,
                stage,
            ),
        ],
        Some(_) => vec![
            scenario(
                "spike-no-layer",
                "spike, no layer",
                Layer::None,
                false,
                None,
            ),
            scenario("spike-recipe", "spike, recipe", redis(), false, stage),
            scenario("spike-recipe", "", redis(), false, stage).variant(
                "spike-recipe-no-init-lease",
                "spike, recipe without init leases",
                vec![("ADMISSION_INIT_LEASE", "false")],
            ),
        ],
    }
}

/// A scenario's id, name and `ADMISSION_*` variables.
type Variant<'a> = (&'static str, &'a str, Vec<(&'static str, &'static str)>);

/// The recipe on the complete platform, once per variant.
fn recipe_variants(
    n: usize,
    redis_url: &str,
    runtime: Runtime,
    variants: Vec<Variant<'_>>,
) -> Vec<Scenario> {
    let Some(recipe) = throttles(n, redis_url, runtime, None)
        .into_iter()
        .find(|s| s.id == "recipe")
    else {
        return Vec::new();
    };
    variants
        .into_iter()
        .map(|(id, name, vars)| recipe.clone().variant(id, name, vars))
        .collect()
}

/// Request classes on the complete platform, the recipe in front: without rules, and with the
/// load's critical path (`GET /checkout`) made critical.
pub fn classes(n: usize, redis_url: &str, runtime: Runtime) -> Vec<Scenario> {
    recipe_variants(
        n,
        redis_url,
        runtime,
        vec![
            ("classes-off", "recipe, no class rules", Vec::new()),
            (
                "classes",
                "recipe, GET /checkout critical",
                vec![("ADMISSION_CRITICAL", "GET /checkout")],
            ),
        ],
    )
}

/// Fair shares on the complete platform, the recipe in front: without and with
/// `ADMISSION_TENANT=header:x-tenant` (the load names each request's tenant in that header),
/// a tenant over its share from twice its share (the default) and from its share.
pub fn tenants(n: usize, redis_url: &str, runtime: Runtime) -> Vec<Scenario> {
    let tenant = ("ADMISSION_TENANT", "header:x-tenant");
    recipe_variants(
        n,
        redis_url,
        runtime,
        vec![
            ("tenants-off", "recipe, no fair shares", Vec::new()),
            ("tenants", "recipe, fair shares per x-tenant", vec![tenant]),
            (
                "tenants-over-at-1",
                "recipe, fair shares, over at 1 share",
                vec![tenant, ("ADMISSION_TENANT_OVER_AT", "1")],
            ),
        ],
    )
}

/// The adaptive limit's scenarios: `n` environments (the platform's limit) whose handlers call a
/// downstream of `workers` workers, on the complete platform: no layer (the stage throttle
/// alone); the recipe with the static limit `n`; the recipe with a threshold hand-tuned to the
/// downstream (`workers + 2`); the recipe with `ADMISSION_LIMIT=adaptive` (ceiling `n`), with each
/// controller.
pub fn downstream(n: usize, redis_url: &str, runtime: Runtime, workers: usize) -> Vec<Scenario> {
    let scenarios = throttles(n, redis_url, runtime, None);
    let find = |id: &str| scenarios.iter().find(|s| s.id == id).cloned();
    let (Some(gateway), Some(recipe)) = (find("gateway-only"), find("recipe")) else {
        return Vec::new();
    };
    // The scenarios' variables live as long as the benchmark.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let tuned = workers + 2;
    let ceiling = leak(n.to_string());
    let adaptive = |controller: &'static str| {
        vec![
            ("ADMISSION_LIMIT", "adaptive"),
            ("ADMISSION_LIMIT_MAX", ceiling),
            ("ADMISSION_ADAPTIVE", controller),
        ]
    };
    let mut short_windows = adaptive("gradient");
    short_windows.push(("ADMISSION_ADAPTIVE_WINDOW_MS", "500"));
    vec![
        gateway.variant(
            "downstream-no-layer",
            "no layer (stage throttle)",
            Vec::new(),
        ),
        recipe.clone().variant(
            "downstream-static",
            &format!("recipe, static limit {n}"),
            Vec::new(),
        ),
        recipe.clone().variant(
            "downstream-tuned",
            &format!("recipe, threshold hand-tuned to {tuned}"),
            vec![(
                "ADMISSION_SHED_AT",
                leak(format!("{}", (tuned as f64 + 0.5) / n as f64)),
            )],
        ),
        recipe.clone().variant(
            "downstream-adaptive",
            "recipe, adaptive (gradient)",
            adaptive("gradient"),
        ),
        recipe.clone().variant(
            "downstream-adaptive-500ms",
            "recipe, adaptive (gradient, 500 ms windows)",
            short_windows,
        ),
        recipe.variant(
            "downstream-adaptive-aimd",
            "recipe, adaptive (AIMD)",
            adaptive("aimd"),
        ),
    ]
}

/// API Gateway's stage throttle as the README's recipe sets it for reserved concurrency `n`:
/// 8 × n requests a second (a fifth under Lambda's cap), burst n, `THROTTLED` with
/// `Retry-After: 1`.
pub fn recommended_stage_throttle(n: usize) -> StageThrottle {
    StageThrottle {
        rate: lambda_admission::decision::metrics::recommended_stage_rate(n as u64) as f64,
        burst: n as f64,
        retry_after: Some(1),
    }
}

/// `no-layer` and `recipe` (as [`throttles`] makes them) for clients that retry as `client`
/// does: `<client>-no-layer`, `<client>-recipe`.
pub fn clients(n: usize, redis_url: &str, runtime: Runtime, client: Client) -> Vec<Scenario> {
    let id = |recipe: bool| -> &'static str {
        match (client, recipe) {
            (Client::Once, false) => "once-no-layer",
            (Client::Once, true) => "once-recipe",
            (Client::Urllib3, false) => "urllib3-no-layer",
            (Client::Urllib3, true) => "urllib3-recipe",
            (Client::SdkStandard, false) => "sdk-standard-no-layer",
            (Client::SdkStandard, true) => "sdk-standard-recipe",
            (Client::Naive, false) => "naive-no-layer",
            (Client::Naive, true) => "naive-recipe",
        }
    };
    throttles(n, redis_url, runtime, None)
        .into_iter()
        .filter(|s| s.id == "no-layer" || s.id == "recipe")
        .map(|mut s| {
            let recipe = s.id == "recipe";
            s.id = id(recipe);
            s.name = format!("{}, {} clients", s.name, client.id());
            s.fleet.pool = format!("{}-{}", s.id, std::process::id());
            s
        })
        .collect()
}

/// What retrying clients meet: 0.5× → 3× → 0.5× of capacity, then a spike to 5× and back.
pub fn clients_load(mean_ms: f64, seconds: f64, client: Client) -> LoadSpec {
    let mut spec = LoadSpec::standard(seconds);
    spec.mean_ms = mean_ms;
    spec.client = client;
    spec.steps = [0.5, 3.0, 0.5, 5.0, 0.5]
        .iter()
        .map(|&multiple| crate::load::Step { multiple, seconds })
        .collect();
    spec
}

/// A spike from a quiet fleet: 0.2× → 5× → 0.5× of capacity.
pub fn spike_load(mean_ms: f64, seconds: f64) -> LoadSpec {
    let mut spec = LoadSpec::standard(seconds);
    spec.mean_ms = mean_ms;
    spec.steps = [0.2, 5.0, 0.5]
        .iter()
        .map(|&multiple| crate::load::Step { multiple, seconds })
        .collect();
    spec
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `target/fleet/summary.json`: every scenario's steps, as machines read them.
pub fn summary(outcomes: &[Outcome], machine: &str) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let steps: Vec<serde_json::Value> = o
                .steps
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "load": s.multiple,
                        "requests": s.requests,
                        "status": {"200": s.ok, "429": s.too_many, "500": s.server_errors, "502": s.bad_gateway},
                        "layer429": s.too_many - s.gateway_too_many,
                        "gateway429": s.gateway_too_many,
                        "retryAfter429": s.too_many_with_retry_after,
                        "rateThrottled": s.rate_throttled,
                        "concurrencyThrottled": s.concurrency_throttled,
                        "throttles": {
                            "concurrency": s.concurrency_throttled,
                            "rate": s.rate_throttled,
                            "cpu": s.cpu_throttled,
                        },
                        "environments": s.environments,
                        "goodput": (s.goodput_share * 1000.0).round() / 1000.0,
                        "p99_ms": (s.p99_ms * 10.0).round() / 10.0,
                        "downstreamShare": s.downstream_share.map(|d| (d * 1000.0).round() / 1000.0),
                        "attemptsPerRequest": round3(s.clients.attempts_per_request),
                        "eventualSuccess": round3(s.clients.eventual_success),
                        "timeToSuccessP50Ms": (s.clients.time_to_success_p50_ms * 10.0).round() / 10.0,
                        "timeToSuccessP99Ms": (s.clients.time_to_success_p99_ms * 10.0).round() / 10.0,
                        "gaveUp": s.clients.gave_up,
                        "lastServedAfterStepSeconds": s.clients.last_served_after_step_s.map(round3),
                        "largestRetryAfterSeconds": s.clients.largest_retry_after_s,
                        "retriesAtRetryAfter": s.clients.retries_at_retry_after,
                        "retryAfterServed": s.clients.retry_after_served.map(round3),
                    })
                })
                .collect();
            let mut scenario = serde_json::json!({"id": o.id, "steps": steps});
            if let Some(seconds) = o.scale_out_seconds {
                scenario["scaleOutSeconds"] = serde_json::json!(round3(seconds));
            }
            scenario
        })
        .collect();
    serde_json::json!({"machine": machine, "scenarios": scenarios})
}

/// What a template deploys, run as it is (`fleet-bench --template`, the demo): the fleet is the
/// function's reserved concurrency, the extension gets the template's `ADMISSION_*` variables and
/// nothing else (the coordinator's endpoint aside: the emulator's Redis), API Gateway the
/// template's stage throttle and `THROTTLED` response; on the complete platform, as `recipe`.
/// Beside it, `no-layer`: the same function without the layer or the throttle.
pub fn from_template(
    recipe: &crate::template::TemplateRecipe,
    redis_url: &str,
    runtime: Runtime,
) -> Vec<Scenario> {
    use crate::template::Coordinator;
    let n = recipe.reserved_concurrency;
    let scenarios = throttles(n, redis_url, runtime, None);
    let find = |id: &str| scenarios.iter().find(|s| s.id == id).cloned();
    let (Some(no_layer), Some(mut deployed)) = (find("no-layer"), find("recipe")) else {
        return Vec::new();
    };
    // The scenario's variables live as long as the benchmark.
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    deployed.id = "template";
    deployed.name = format!("template: {} as deployed", recipe.function);
    deployed.fleet.pool = format!("template-{}", std::process::id());
    deployed.fleet.layer = Layer::Template(match recipe.coordinator {
        Coordinator::Local => None,
        Coordinator::Shared { .. } => Some(redis_url.to_string()),
    });
    deployed.fleet.extension_env = recipe
        .variables
        .iter()
        .map(|(k, v)| (leak(k), leak(v)))
        .collect();
    deployed.stage_throttle = recipe.stage;
    vec![no_layer, deployed]
}

/// `--template PATH` and any `--parameter NAME=VALUE` on the command line: the template to run
/// and its parameter values. Exits with the reason when the template cannot be run as written.
pub fn template_from_args() -> Option<crate::template::TemplateRecipe> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &'static str| {
        args.iter()
            .zip(args.iter().skip(1))
            .filter(move |(a, _)| *a == flag)
            .map(|(_, v)| v.clone())
    };
    let path = value("--template").next()?;
    let parameters: Vec<(String, String)> = value("--parameter")
        .filter_map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    match crate::template::read(std::path::Path::new(&path), &parameters) {
        Ok(recipe) => {
            let coordinator = match recipe.coordinator {
                crate::template::Coordinator::Local => "local",
                crate::template::Coordinator::Shared { iam: true } => {
                    "shared, IAM auth (here: the emulator's Redis, without IAM)"
                }
                crate::template::Coordinator::Shared { iam: false } => {
                    "shared (here: the emulator's Redis)"
                }
            };
            let stage = recipe.stage.map_or("none".to_string(), |s| {
                format!(
                    "{} requests/s, burst {}, THROTTLED Retry-After {:?}",
                    s.rate, s.burst, s.retry_after
                )
            });
            println!(
                "template {path}: {} with reserved concurrency {}, coordinator {coordinator}, \
                 stage throttle {stage}",
                recipe.function, recipe.reserved_concurrency,
            );
            for (k, v) in &recipe.variables {
                println!("  {k}={v}");
            }
            Some(recipe)
        }
        Err(e) => {
            eprintln!("cannot run {path}: {e}");
            std::process::exit(2);
        }
    }
}
