//! A configuration that protects nothing is loud: a WARN line at init and once per metrics
//! period, and an entry in the status's `warnings` naming the variable to change.

use std::time::Duration;

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{Builder, Runtime, RuntimeApi};

fn count(log: &str, needle: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(needle))
        .count()
}

#[tokio::test]
async fn a_limit_with_the_local_coordinator_on_demand_is_a_warning_every_period() {
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_LIMIT", "100")
        .env("ADMISSION_METRICS_INTERVAL", "1")
        .start()
        .await;
    let status = env.status().await;
    let warnings = status["warnings"].as_array().expect("a list").clone();
    assert_eq!(warnings.len(), 1, "{status}");
    assert_eq!(warnings[0]["code"], "local-coordinator-on-demand");
    assert_eq!(warnings[0]["variable"], "ADMISSION_COORDINATOR");
    // At init, then once per metrics period (1 s here), whether or not anything was decided:
    // three lines within a few seconds, and not many more than one a second.
    let log = &env.extension_stderr;
    let started = std::time::Instant::now();
    let mut n = 0;
    while n < 3 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = count(&log.text(), "ADMISSION_COORDINATOR");
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(n >= 3, "{n} warnings in {seconds:.1} s:\n{}", log.text());
    assert!(
        n as f64 <= seconds + 2.0,
        "{n} warnings in {seconds:.1} s: more than once a period:\n{}",
        log.text()
    );
}

#[tokio::test]
async fn a_shared_coordinator_has_no_warnings() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_LIMIT", "100")
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_METRICS_INTERVAL", "1")
        .start()
        .await;
    env.wait_connected().await;
    assert_eq!(env.status().await["warnings"], serde_json::json!([]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(&env.extension_stderr.text(), "code="),
        0,
        "{}",
        env.extension_stderr.text()
    );
}

#[tokio::test]
async fn off_mode_still_names_an_unknown_variable() {
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_MODE", "off")
        .env("ADMISSION_LIMIT", "100")
        .env("ADMISSION_SHEDAT", "0.5")
        .start()
        .await;
    let status = env.status().await;
    assert_eq!(status["mode"], "off");
    assert_eq!(
        status["warnings"],
        serde_json::json!([{
            "code": "unknown-variable",
            "variable": "ADMISSION_SHEDAT",
            "message": "ADMISSION_SHEDAT is not a lambda-admission variable and is ignored (a typo?)"
        }])
    );
}

#[tokio::test]
async fn a_runtime_that_goes_around_the_proxy_is_named_after_init() {
    // The extension runs, the runtime starts without the wrapper (AWS_LAMBDA_EXEC_WRAPPER unset).
    let bypassed = Builder::new(Runtime::Rust { stream: false })
        .runtime_api(RuntimeApi::ExtensionBypassed)
        .env("ADMISSION_LIMIT", "100")
        .env("ADMISSION_COORDINATOR", "redis://127.0.0.1:1")
        .start()
        .await;
    // And the same through the wrapper, for comparison.
    let wrapped = Builder::new(Runtime::Rust { stream: false })
        .env("ADMISSION_LIMIT", "100")
        .env("ADMISSION_COORDINATOR", "redis://127.0.0.1:1")
        .start()
        .await;
    let wrapped_started = tokio::time::Instant::now();
    let named = |s: &serde_json::Value| {
        s["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["code"] == "runtime-bypasses-proxy"))
    };
    assert!(!named(&bypassed.status().await), "not before init is over");
    let status = bypassed
        .wait_status(Duration::from_secs(15), |s| named(s))
        .await
        .expect("named once Lambda's init phase is over");
    let w = status["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "runtime-bypasses-proxy")
        .unwrap()
        .clone();
    assert_eq!(w["variable"], "AWS_LAMBDA_EXEC_WRAPPER");
    assert!(bypassed
        .extension_stderr
        .text()
        .contains("runtime-bypasses-proxy"));
    // Past the wrapped environment's init phase too: its runtime asked, nothing to say.
    tokio::time::sleep_until(wrapped_started + Duration::from_millis(10_500)).await;
    assert!(
        !named(&wrapped.status().await),
        "{}",
        wrapped.status().await
    );
}
