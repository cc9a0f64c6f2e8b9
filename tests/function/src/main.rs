//! A Rust Lambda function for lambda-admission's tests, on the real `lambda_runtime` client.
//!
//! The event says what to do: `{"op": "echo" | "context" | "blob" | "sleep" | "error", ...}`.
//! An API Gateway event is answered with a proxy response after `?ms=N` milliseconds, fails
//! with `?op=error`, or with `?op=downstream&port=P` calls the emulator's downstream first. With `AWS_LAMBDA_MAX_CONCURRENCY` set it serves that many invocations at once
//! (Managed Instances). `TEST_FUNCTION_INIT_MS` delays its init; `TEST_FUNCTION_RUNS` names a file
//! where it records every request id it runs. An API Gateway answer carries its request id in
//! `x-request-id`. With `TEST_FUNCTION_STREAM=1` it streams instead: `{"chunks": ["a", "b"], "fail": false}`.

use std::time::Duration;

use lambda_runtime::streaming::Response;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

async fn buffered(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    ran(&ctx.request_id);
    // An API Gateway request: `?op=sleep&ms=120` or `?op=error`, answered as a proxy response.
    if let Some(query) = payload
        .get("queryStringParameters")
        .and_then(Value::as_object)
    {
        let ms: u64 = query
            .get("ms")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if query.get("op").and_then(Value::as_str) == Some("error") {
            return Err("the handler failed on purpose".into());
        }
        if query.get("op").and_then(Value::as_str) == Some("downstream") {
            let port: u16 = query
                .get("port")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let status = match call_downstream(port).await {
                Ok(()) => 200,
                Err(_) => 503,
            };
            return Ok(
                json!({"statusCode": status, "headers": {"content-type": "text/plain"}, "body": "downstream"}),
            );
        }
        pause(ms).await;
        return Ok(
            json!({"statusCode": 200, "headers": {"content-type": "text/plain", "x-request-id": ctx.request_id}, "body": format!("slept {ms} ms")}),
        );
    }
    match payload.get("op").and_then(Value::as_str).unwrap_or("echo") {
        "context" => Ok(json!({
            "requestId": ctx.request_id,
            "deadline": ctx.deadline,
            "invokedFunctionArn": ctx.invoked_function_arn,
            "xrayTraceId": ctx.xray_trace_id,
            "clientContext": ctx.client_context.map(|c| json!({"custom": c.custom, "env": c.environment})),
            "identity": ctx.identity.map(|i| json!({"identityId": i.identity_id, "identityPoolId": i.identity_pool_id})),
        })),
        "blob" => {
            let size = payload.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
            Ok(Value::String(blob(size)))
        }
        "sleep" => {
            let ms = payload.get("ms").and_then(Value::as_u64).unwrap_or(0);
            pause(ms).await;
            Ok(json!({"statusCode": 200, "body": format!("slept {ms}")}))
        }
        "error" => Err("the handler failed on purpose".into()),
        _ => Ok(payload),
    }
}

/// With `TEST_FUNCTION_RUNS` set, appends the request id of every invocation the handler runs to
/// that file (one line, one append: environments may share the file), so that a test can tell
/// which invocations ran and whether any ran twice.
fn ran(request_id: &str) {
    use std::io::Write;
    static RUNS: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let file = RUNS.get_or_init(|| {
        let path = std::env::var_os("TEST_FUNCTION_RUNS")?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    if let Some(mut file) = file.as_ref() {
        let _ = file.write_all(format!("{request_id}\n").as_bytes());
    }
}

/// Deterministic text the tests can rebuild: `abc...zabc...`.
pub fn blob(size: usize) -> String {
    (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<String, Error>>>;

async fn streamed(event: LambdaEvent<Value>) -> Result<Response<Chunks>, Error> {
    let chunks: Vec<String> = event
        .payload
        .get("chunks")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let fail = event
        .payload
        .get("fail")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // A mid-stream error is reported by lambda_runtime as error trailers after the chunks.
    let mut items: Vec<Result<String, Error>> = chunks.into_iter().map(Ok).collect();
    if fail {
        items.push(Err("the stream failed on purpose".into()));
    }
    Ok(Response::from(futures_util::stream::iter(items)))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Init work before the first `next` (heavy imports, connections): `TEST_FUNCTION_INIT_MS`.
    if let Some(ms) = std::env::var("TEST_FUNCTION_INIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        pause(ms).await;
    }
    if std::env::var("TEST_FUNCTION_STREAM").as_deref() == Ok("1") {
        lambda_runtime::run(service_fn(streamed)).await
    } else if std::env::var("AWS_LAMBDA_MAX_CONCURRENCY").is_ok() {
        // Managed Instances: several invocations at once in this one process.
        lambda_runtime::run_concurrent(service_fn(buffered)).await
    } else {
        lambda_runtime::run(service_fn(buffered)).await
    }
}

/// Sleeps `ms` milliseconds; zero returns at once (tokio's timer would round it up to its next
/// 1 ms tick, which would blur latency measurements).
/// One request to the emulator's downstream on `port`, waited for to the end.
async fn call_downstream(port: u16) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: downstream\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("the downstream did not answer 200"))
    }
}

async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
