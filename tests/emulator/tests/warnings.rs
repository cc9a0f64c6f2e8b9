//! A configuration that protects nothing is loud: a WARN line at init and once per metrics
//! period, and an entry in the status's `warnings` naming the variable to change.

use std::time::Duration;

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{Builder, Runtime};

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
    // At init, then once per metrics period (1 s here), whether or not anything was decided.
    let log = &env.extension_stderr;
    assert!(
        log.wait_for("local-coordinator-on-demand", Duration::from_secs(5))
            .await
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let n = count(&log.text(), "ADMISSION_COORDINATOR");
    assert!((3..=5).contains(&n), "{n} warnings in:\n{}", log.text());
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
