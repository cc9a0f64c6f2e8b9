//! A local Lambda for lambda-admission: one execution environment with real processes in it.
//!
//! # Layout
//! - [`fleet`]: N environments behind one invoke, throttling past N, and API Gateway's front door.
//! - [`load`]: open-loop Poisson load through the front door, and its figures.
//! - [`scenario`], [`report`]: fleets and loads run side by side, tabled and plotted.
//! - [`template`]: a CloudFormation template (what `cdk synth` writes, or SAM's) read as the
//!   recipe it deploys, for the `template` scenario.
//! - [`platform`]: the Runtime and Extensions APIs of one environment, on a loopback port.
//! - [`services`]: real services on loopback: `redis-server` (plain, TLS, cluster) and moto.
//! - [`runtime_client`]: a hand-driven runtime, for holding invocations in flight.
//! - [`environment`]: a platform plus the real extension binary and a real runtime process
//!   (`awslambdaric` running a Python handler, or the Rust `test-function`), started in Lambda's
//!   order: extensions register, then the runtime starts, through the layer's wrapper.
//! - [`serve`]: the one hyper server loop every emulated service uses; [`stats`]: percentiles;
//!   [`forwarder`]: a TCP forwarder whose target changes (a failover).
//! - [`faults`]: faults injected around the real extension, reduced to the reliability table;
//!   [`soak`]: a fleet under retrying load while faults strike at random, and what must hold.
//!
//! Binaries are found in the workspace's target directory: build them first
//! (`cargo build --workspace --bins`); `scripts/test.sh` does.

pub mod clients;
pub mod downstream;
pub mod environment;
pub mod faults;
pub mod fleet;
pub mod forwarder;
pub mod load;
pub mod managed;
pub mod platform;
pub mod report;
pub mod runtime_client;
pub mod scenario;
pub mod serve;
pub mod services;
pub mod soak;
pub mod stats;
pub mod template;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use environment::{hand_driven, Builder, Cgroups, Environment, Output, Runtime, RuntimeApi};
pub use platform::{Options, Outcome, Platform, ReportedError};
pub use runtime_client::RuntimeClient;

/// The workspace root (this crate lives in `tests/emulator`).
pub fn workspace() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    path.canonicalize().unwrap_or(path)
}

/// A binary of this workspace, from the target directory the running test was built into, or
/// from `LAMBDA_EMULATOR_<NAME>` (e.g. `LAMBDA_EMULATOR_LAMBDA_ADMISSION` for the musl build).
pub fn binary(name: &str) -> PathBuf {
    let var = format!("LAMBDA_EMULATOR_{}", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/test-xxxx (a test) or target/<profile>/bench (a binary)
    let mut profile = exe.parent().expect("target dir");
    if profile.ends_with("deps") {
        profile = profile.parent().expect("target dir");
    }
    let path = profile.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A setting of a benchmark or the demo from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends `signal` (`STOP`, `CONT`, ...) to a process: `STOP` and `CONT` are how Lambda freezes
/// and thaws an execution environment between invocations.
pub fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -{signal} {pid}");
}

/// The benchmarks' event: a ~400-byte API Gateway REST request whose handler answers at once
/// (`op: sleep, ms: 0` for the Rust test function; the echo handlers return it).
pub fn bench_event() -> String {
    serde_json::json!({"op": "sleep", "ms": 0, "resource": "/{proxy+}", "path": "/bench", "httpMethod": "GET",
        "headers": {"accept": "*/*", "user-agent": "bench"}, "multiValueHeaders": {"accept": ["*/*"]},
        "requestContext": {"stage": "prod", "requestId": "r", "resourcePath": "/{proxy+}",
            "identity": {"sourceIp": "203.0.113.7", "apiKey": null}},
        "body": null, "isBase64Encoded": false})
    .to_string()
}

/// A free loopback port for a proxy, never the same twice in one test process.
///
/// Taken below the kernel's ephemeral range, so no `bind(0)` elsewhere in the tests can be handed
/// the same port between this check and the extension's own bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 500) * 20;
    loop {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The request id an event's head carries (`Lambda-Runtime-Aws-Request-Id`), as read off the wire.
pub fn request_id_in(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("lambda-runtime-aws-request-id: ")
            .map(|id| id.trim().to_string())
    })
}

/// Reads from `s` until `until` is in what came (5 s at most); everything read.
pub async fn read_until(s: &mut tokio::net::TcpStream, until: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains(until) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {until:?} in {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {until:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `GET path` on 127.0.0.1:`port`, as the wrapper and handlers ask: the status code and body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the proxy listens");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply))
        .await
        .expect("answered in time")
        .expect("read");
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The status of the proxy on `port`.
pub async fn status(port: u16) -> serde_json::Value {
    let (code, body) = http_get(port, "/lambda-admission/v1/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
}
