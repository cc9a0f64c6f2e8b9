//! Bad configuration fails init loudly, through the Extensions API, naming the variable.

use std::time::Duration;

use lambda_admission::config::VARIABLES;
use lambda_emulator::{binary, Options, Platform};
use tokio::process::Command;

/// Runs the extension with `vars` against a fresh platform; returns (exit success, platform).
async fn run_extension(vars: &[(&str, &str)]) -> (bool, std::sync::Arc<Platform>, String) {
    let platform = Platform::start(Options::default()).await;
    let mut cmd = Command::new(binary("lambda-admission"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", platform.address())
        .env("ADMISSION_PORT", lambda_emulator::free_port().to_string())
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
        .await
        .expect("an invalid configuration must end the extension")
        .expect("run");
    (
        out.status.success(),
        platform,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_invalid_variable_fails_init_with_its_name_and_value() {
    let bad: &[(&str, &str)] = &[
        ("ADMISSION_MODE", "shed-everything"),
        ("ADMISSION_LIMIT", "zero"),
        ("ADMISSION_LIMIT_MIN", "0"),
        ("ADMISSION_LIMIT_MAX", "none"),
        ("ADMISSION_ADAPTIVE", "pid"),
        ("ADMISSION_ADAPTIVE_WINDOW_MS", "10"),
        ("ADMISSION_SHED_AT", "1.5"),
        ("ADMISSION_PORT", "99999"),
        ("ADMISSION_UPSTREAM", "not-a-host-port"),
        ("ADMISSION_RETRY_AFTER_MAX", "-3"),
        ("ADMISSION_METRICS_INTERVAL", "soon"),
        ("ADMISSION_METRICS_NAMESPACE", "{bad}"),
        ("ADMISSION_COORDINATOR", "memcached://cache:11211"),
        ("ADMISSION_POOL", "a{b}"),
        ("ADMISSION_POOL_SHARDS", "0"),
        ("ADMISSION_COORDINATOR_TIMEOUT_MS", "0"),
        ("ADMISSION_COORDINATOR_BACKOFF_MS", "fast"),
        ("ADMISSION_REDIS_CA_FILE", "/no/such/ca.pem"),
        ("ADMISSION_REDIS_AUTH", "kerberos"),
        ("ADMISSION_REDIS_IAM_CACHE", "my_cache!"),
        ("ADMISSION_REDIS_IAM_SERVERLESS", "perhaps"),
        ("ADMISSION_REDIS_IAM_TOKEN_TTL", "3600"),
        ("ADMISSION_LIMIT_REFRESH", "never"),
        ("ADMISSION_RESPONSE_MODE", "chunked"),
        ("ADMISSION_INIT_LEASE", "maybe"),
        ("ADMISSION_EXEMPT", "health"),
        ("ADMISSION_CRITICAL", "post /checkout"),
        ("ADMISSION_SHEDDABLE", "header:"),
        ("ADMISSION_SHEDDABLE_AT", "0"),
        ("ADMISSION_CRITICAL_RESERVE", "2"),
        ("ADMISSION_TENANT", "customer"),
        ("ADMISSION_TENANTS_MAX", "0"),
        ("ADMISSION_TENANT_RESERVE", "-1"),
        ("ADMISSION_TENANT_OVER_AT", "0.5"),
        ("ADMISSION_CPU", "sometimes"),
        ("ADMISSION_CPU_SHED_AT", "1.2"),
        ("ADMISSION_CPU_INTERVAL_MS", "1"),
        ("ADMISSION_CPU_WINDOW_MS", "forever"),
        ("ADMISSION_CPU_CGROUP", "sys/fs/cgroup"),
    ];
    // Every documented variable is exercised here.
    for v in VARIABLES {
        assert!(
            bad.iter().any(|(n, _)| *n == v.name),
            "{} has no invalid-value case",
            v.name
        );
    }
    for (name, value) in bad {
        let (ok, platform, stderr) = run_extension(&[(name, value)]).await;
        assert!(!ok, "{name}={value} must fail");
        let errors = platform.errors();
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        let e = &errors[0];
        assert_eq!(e.path, "extension/init/error");
        assert_eq!(e.error_type, "Extension.ConfigInvalid");
        let body: serde_json::Value = serde_json::from_str(&e.body).expect("JSON body");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(name) && message.contains(value) && message.contains("expected"),
            "{message}"
        );
        assert!(stderr.contains(name), "the log says it too: {stderr}");
    }
}

#[tokio::test]
async fn every_invalid_variable_is_reported_in_one_init_error() {
    let (ok, platform, _) = run_extension(&[
        ("ADMISSION_MODE", "shed-everything"),
        ("ADMISSION_LIMIT", "zero"),
        ("ADMISSION_POOL", "a{b}"),
        ("ADMISSION_POOL_SHARDS", "0"),
        // Blank is unset, not invalid: templates write "" for "not set".
        ("ADMISSION_SHED_AT", ""),
    ])
    .await;
    assert!(!ok);
    let errors = platform.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let body: serde_json::Value = serde_json::from_str(&errors[0].body).expect("JSON body");
    let message = body["errorMessage"].as_str().unwrap();
    for name in ["ADMISSION_MODE", "ADMISSION_LIMIT", "ADMISSION_POOL"] {
        assert!(message.contains(name), "{name} missing from {message}");
    }
    assert!(!message.contains("ADMISSION_SHED_AT"), "{message}");
}

#[tokio::test]
async fn unknown_admission_variables_are_warnings_not_failures() {
    let platform = Platform::start(Options::default()).await;
    let mut child = Command::new(binary("lambda-admission"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", platform.address())
        .env("ADMISSION_PORT", lambda_emulator::free_port().to_string())
        .env("ADMISSION_LIMT", "5")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(platform.wait_registered(1, Duration::from_secs(5)).await);
    platform.shutdown("spindown", Duration::from_secs(2));
    let out = tokio::time::timeout(Duration::from_secs(2), async {
        let status = child.wait().await.unwrap();
        let mut err = String::new();
        use tokio::io::AsyncReadExt;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        (status, err)
    })
    .await
    .expect("exits at SHUTDOWN");
    assert!(out.0.success());
    assert!(
        out.1.contains("ADMISSION_LIMT") && out.1.contains("unknown"),
        "{}",
        out.1
    );
    assert!(platform.errors().is_empty());
}

#[tokio::test]
async fn extension_outside_lambda_exits_with_an_error() {
    let out = Command::new(binary("lambda-admission"))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_LAMBDA_RUNTIME_API"));
}
