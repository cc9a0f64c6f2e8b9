//! The extension's life: bind, register, validate, proxy, flush metrics, shut down.
//!
//! Order matters. The proxy's port is bound before registering, because Lambda starts the runtime
//! (and its wrapper, which probes the port) only once every extension has registered. Nothing slow
//! runs before registration. A configuration error is reported through `init/error`, naming the
//! variable; anything else that breaks leaves the function running unprotected, and says so.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::config::{self, Config, CoordinatorConfig, Mode, Strings};
use crate::coordinator::Coordinator;
use crate::lifecycle::{Event, Extension};
use crate::limits::LambdaLimits;
use crate::proxy::{http_client, Proxy};

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
        match Extension::register(http_client(), &runtime_api, name, &["SHUTDOWN"]).await {
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

    let admission = match config.mode {
        Mode::Off => None,
        _ => match Coordinator::from_config(&config) {
            Ok(coordinator) => Some(Arc::new(Admission::new(&config, coordinator))),
            Err(e) => {
                let message = format!("invalid {}: {e}", config::COORDINATOR);
                return fail_init(&extension, &message).await;
            }
        },
    };
    if let Some(admission) = &admission {
        if config.limit.is_none() && config.coordinator != CoordinatorConfig::Local {
            // The SDK's configuration loads in the background: registration is already done.
            tracing::info!(
                "ADMISSION_LIMIT unset: reading the limit from the Lambda API; admitting until it is known"
            );
            let admission = admission.clone();
            let (name, refresh) = (config.function_name.clone(), config.limit_refresh);
            tokio::spawn(async move {
                let limits = LambdaLimits::from_env(&name).await;
                limits.watch(admission, refresh).await;
            });
        }
    }
    match (listener, Proxy::new(&config.upstream, admission.clone())) {
        (Some(listener), Ok(proxy)) => {
            tokio::spawn(Arc::new(proxy).serve(listener));
        }
        (None, _) => {} // bind() said why.
        (_, Err(e)) => {
            tracing::error!(error = %e, "proxy not started; the function runs unprotected")
        }
    }
    if let Some(admission) = &admission {
        let admission = admission.clone();
        let period = config.metrics_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticks.tick().await;
                admission.emit_metrics();
            }
        });
    }

    let mut failures = 0u32;
    loop {
        match extension.next_event().await {
            Ok(Event::Shutdown {
                shutdown_reason, ..
            }) => {
                tracing::info!(reason = %shutdown_reason, "shutting down");
                if let Some(admission) = &admission {
                    admission.emit_metrics();
                }
                return ExitCode::SUCCESS;
            }
            Ok(Event::Invoke { .. }) => failures = 0,
            Err(e) => {
                // The proxy keeps serving meanwhile; only the wait for SHUTDOWN is retried.
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
    for name in &config.unknown {
        tracing::warn!(variable = %name, "unknown ADMISSION_* variable ignored (a typo?)");
    }
    match config.limit {
        Some((limit, source)) => tracing::info!(
            mode = config.mode.as_str(),
            limit,
            source = source.as_str(),
            shed_at = config.shed_at,
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
    if !config.managed_instances
        && config.mode != Mode::Off
        && config.coordinator == CoordinatorConfig::Local
    {
        tracing::info!(
            "on-demand function with the local coordinator: this environment runs one invocation \
             at a time and cannot see the fleet's load, so it will rarely shed; set \
             ADMISSION_COORDINATOR to a Redis URL for fleet-wide limits"
        );
    }
}
