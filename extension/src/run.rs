//! The extension's life: bind, register, validate, proxy, flush metrics, shut down.
//!
//! Order matters. The proxy's port is bound before registering, because Lambda starts the runtime
//! (and its wrapper, which probes the port) only once every extension has registered. Nothing slow
//! runs before registration. A configuration error is reported through `init/error`, naming every
//! invalid variable; anything else that breaks leaves the function running unprotected, and says so.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{self, Config, CoordinatorConfig, Mode, Strings};
use crate::decision::admission::Admission;
use crate::decision::cpu::{self, CpuPressure, Estimator};
use crate::decision::limit::{self, LimitSender};
use crate::platform::cpu::Source;
use crate::platform::extensions_api::{Event, Extension};
use crate::platform::limit_reader::LambdaApi;
use crate::runtime_api::proxy::Proxy;
use crate::warnings::Warnings;
use crate::{coordinator, http, runtime_api};

pub const CONFIG_ERROR_TYPE: &str = "Extension.ConfigInvalid";

/// Runs the extension registered as `name` until SHUTDOWN.
pub async fn run(env: &impl Strings, name: &str) -> ExitCode {
    // rustls's one crypto provider (ring); installing it cannot fail in a way that matters here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(runtime_api) = env.get(config::RUNTIME_API) else {
        tracing::error!("AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda");
        return ExitCode::FAILURE;
    };
    let config = Config::from_strings(env);
    let listener = match &config {
        Ok(c) => bind(c.port).await,
        Err(_) => None,
    };
    let extension =
        match Extension::register(http::client(), &runtime_api, name, &["SHUTDOWN"]).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "registration with the Extensions API failed");
                return ExitCode::FAILURE;
            }
        };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail_init(&extension, &e.to_string()).await,
    };
    describe(&config);
    let Started {
        admission,
        concurrency,
    } = match start_admission(&config) {
        Ok(started) => started,
        Err(message) => return fail_init(&extension, &message).await,
    };
    match (
        listener,
        Proxy::new(&config, admission.clone(), concurrency),
    ) {
        (Some(listener), Ok(proxy)) => {
            tokio::spawn(runtime_api::serve(Arc::new(proxy), listener));
        }
        (None, _) => {} // bind() said why.
        (_, Err(e)) => {
            tracing::error!(error = %e, "proxy not started; the function runs unprotected")
        }
    }
    if let Some(admission) = &admission {
        tokio::spawn(emit_metrics_every(
            admission.clone(),
            config.metrics_interval,
        ));
        tokio::spawn(notice_a_runtime_going_around(admission.clone()));
    }
    wait_for_shutdown(&extension, admission.as_deref()).await
}

/// The decision (`None` in `off` mode) and, on Managed Instances without `ADMISSION_LIMIT`, the
/// channel through which the proxy publishes the runtime's concurrency as the limit.
pub struct Started {
    pub admission: Option<Arc<Admission>>,
    pub concurrency: Option<LimitSender>,
}

/// The decision, its limit and its coordinator. Sources that learn the limit after init start
/// here, in the background.
pub fn start_admission(config: &Config) -> Result<Started, String> {
    if config.mode == Mode::Off {
        return Ok(Started {
            admission: None,
            concurrency: None,
        });
    }
    let coordinator = coordinator::from_config(config)
        .map_err(|e| format!("invalid {}: {e}", config::COORDINATOR))?;
    let (limit_tx, limit_rx) = limit::channel(config.limit);
    let mut admission = Admission::new(config, limit_rx, coordinator.clone());
    let cpu = config.cpu.as_ref().and_then(cpu_pressure);
    if let Some((pressure, _)) = &cpu {
        admission = admission.with_cpu(pressure.clone());
    }
    let unknown = config.limit.is_none() || config.adaptive.is_some();
    let shared = config.coordinator != CoordinatorConfig::Local;
    let (mut concurrency, mut limit_tx) = (None, Some(limit_tx));
    // Managed Instances with a shared count (one key): each environment publishes its
    // concurrency with its leases, and the limit is the pool's sum the count returns.
    if unknown && shared && config.managed_instances && config.shared.shards == 1 {
        let (own_tx, own_rx) = limit::channel(None);
        if let Some(pool) = limit_tx.take() {
            admission = admission.with_pool(own_rx, pool);
        }
        concurrency = Some(own_tx);
        tracing::info!(
            "Managed Instances with a shared count: the limit is the concurrency of the pool's environments, summed in the count"
        );
    }
    let admission = Arc::new(admission);
    if let (Some(cpu), Some(settings)) = (cpu, &config.cpu) {
        spawn_cpu_sampler(cpu, settings, admission.clone());
    }
    // With the adaptive limit, a ceiling set stands in for the platform's limit until the Lambda
    // API answers: it is read all the same.
    if let (true, Some(limit_tx)) = (unknown, limit_tx) {
        if shared {
            tracing::info!(
                "ADMISSION_LIMIT unset: reading the limit from the Lambda API; admitting until it is known"
            );
            tokio::spawn(publish_lambda_api_limit(
                config.clone(),
                limit_tx,
                coordinator,
                admission.warnings().clone(),
            ));
        } else if config.managed_instances {
            concurrency = Some(limit_tx);
        }
    }
    if config.init_lease {
        admission.hold_while_initialising();
    }
    Ok(Started {
        admission: Some(admission),
        concurrency,
    })
}

/// Samples the CPU for as long as the extension runs.
fn spawn_cpu_sampler(
    (pressure, source): (Arc<CpuPressure>, Source),
    settings: &config::CpuConfig,
    admission: Arc<Admission>,
) {
    let estimator = Estimator::new(source.vcpus(), settings.shed_at, settings.window);
    tokio::spawn(cpu::sample(
        source,
        pressure,
        estimator,
        settings.interval,
        move || admission.in_flight(),
    ));
}

/// CPU pressure's reading side and its source, found at init; `None` (said in the log) when the
/// environment exposes no CPU use: admission goes on without it.
fn cpu_pressure(settings: &config::CpuConfig) -> Option<(Arc<CpuPressure>, Source)> {
    let Some(source) = Source::find(settings.cgroup.as_deref()) else {
        tracing::warn!(
            cgroup = ?settings.cgroup,
            "ADMISSION_CPU is on but no CPU use is readable (no cgroup cpu.stat or cpuacct.usage, \
             no /proc/stat): CPU pressure sheds nothing"
        );
        return None;
    };
    let vcpus = source.vcpus();
    tracing::info!(
        source = %source.describe(),
        vcpus,
        shed_at = settings.shed_at,
        "CPU pressure on"
    );
    let pressure = CpuPressure::new(&source, vcpus, settings.shed_at);
    Some((Arc::new(pressure), source))
}

async fn publish_lambda_api_limit(
    config: Config,
    limit: LimitSender,
    shared: Option<Arc<dyn coordinator::Coordinator>>,
    warnings: Warnings,
) {
    // The SDK's configuration loads here, in the background: registration is already done.
    let api = LambdaApi::from_env(&config.function_name).await;
    api.publish(limit, config.limit_refresh, shared, warnings)
        .await;
}

/// A runtime that has not asked the proxy for an event by the end of Lambda's init phase talks to
/// the Runtime API itself (no wrapper, or another in its place): said once, and with the warnings.
async fn notice_a_runtime_going_around(admission: Arc<Admission>) {
    tokio::time::sleep(Admission::INIT_TIMEOUT).await;
    if !admission.runtime_seen() {
        admission.warnings().set_runtime_bypasses(true);
        admission.warnings().log();
    }
}

/// The metric lines, and the warnings again: a setting that protects nothing is repeated where
/// a reader of any recent stretch of the log will see it.
async fn emit_metrics_every(admission: Arc<Admission>, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticks.tick().await;
        admission.emit_metrics();
        admission.warnings().log();
    }
}

/// Waits for SHUTDOWN; the proxy serves meanwhile, whatever happens to this wait.
async fn wait_for_shutdown(extension: &Extension, admission: Option<&Admission>) -> ExitCode {
    let mut failures = 0u32;
    loop {
        match extension.next_event().await {
            Ok(Event::Shutdown {
                shutdown_reason, ..
            }) => {
                tracing::info!(reason = %shutdown_reason, "shutting down");
                if let Some(admission) = admission {
                    admission.emit_metrics();
                    admission.release_all().await;
                }
                return ExitCode::SUCCESS;
            }
            Ok(Event::Invoke { .. }) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "waiting for the next extension event failed");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(20)))).await;
            }
        }
    }
}

/// Fails the function's init through the Extensions API, saying why.
async fn fail_init(extension: &Extension, why: &str) -> ExitCode {
    let message = format!("lambda-admission: {why}");
    tracing::error!("{message}");
    if let Err(e) = extension.init_error(CONFIG_ERROR_TYPE, &message).await {
        tracing::error!(error = %e, "could not report the init error");
    }
    ExitCode::FAILURE
}

async fn bind(port: u16) -> Option<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen; the function runs unprotected (the wrapper leaves the runtime on the Runtime API)");
            None
        }
    }
}

fn describe(config: &Config) {
    if config.mode == Mode::Off {
        // Nothing is decided: no limit is in effect, as the status says.
        tracing::info!(
            mode = config.mode.as_str(),
            port = config.port,
            "admission control off: every event is forwarded undecided"
        );
        Warnings::new(config).log();
        return;
    }
    match config.limit {
        Some(limit) => tracing::info!(
            mode = config.mode.as_str(),
            limit = limit.value,
            source = limit.source.as_str(),
            shed_at = ?config.shed_at,
            port = config.port,
            "admission control ready"
        ),
        None if config.coordinator == CoordinatorConfig::Local => tracing::info!(
            mode = config.mode.as_str(),
            port = config.port,
            "no concurrency limit known (set ADMISSION_LIMIT): every event is admitted"
        ),
        None => {}
    }
    Warnings::new(config).log();
}
