//! The limit read from the Lambda API: moto in server mode answers `GetFunctionConcurrency`;
//! moto has no `GetAccountSettings`, so a small stub in front of it answers that one call (and,
//! for one test, denies everything as IAM would).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lambda_emulator::services::{Moto, RedisMode, RedisServer};
use lambda_emulator::{Builder, Environment, Runtime, RuntimeClient};
use parking_lot::Mutex;

#[derive(Clone, Copy, PartialEq)]
enum Stub {
    /// Forward to moto; answer GetAccountSettings with this many unreserved executions.
    Forward { unreserved: u32 },
    /// 403 AccessDeniedException for every call.
    Deny,
}

/// Starts the stub in front of `moto`; returns its endpoint, the switch that sets its mode, and
/// the number of `GetFunctionConcurrency` calls it has seen.
async fn stub(moto: &Moto, mode: Stub) -> (String, Arc<Mutex<Stub>>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let mode = Arc::new(Mutex::new(mode));
    let (moto_endpoint, switch) = (moto.endpoint(), mode.clone());
    let client: Client<HttpConnector, BoxBody<Bytes, hyper::Error>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    lambda_emulator::serve::spawn(
        listener,
        move |mut req: http::Request<hyper::body::Incoming>| {
            let (client, moto_endpoint, mode) =
                (client.clone(), moto_endpoint.clone(), *mode.lock());
            if req.uri().path().ends_with("/concurrency") {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                let reply = |status: u16, error: Option<&str>, body: String| {
                    let mut r = http::Response::new(
                        Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed(),
                    );
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    if let Some(e) = error {
                        r.headers_mut()
                            .insert("x-amzn-errortype", e.parse().unwrap());
                    }
                    r
                };
                match mode {
                    Stub::Deny => reply(403, Some("AccessDeniedException"), r#"{"Message":"User is not authorized to perform: lambda:GetFunctionConcurrency"}"#.into()),
                    Stub::Forward { unreserved } if req.uri().path().starts_with("/2016-08-19/account-settings") => reply(
                        200,
                        None,
                        format!(r#"{{"AccountLimit":{{"TotalCodeSize":80530636800,"CodeSizeUnzipped":262144000,"CodeSizeZipped":52428800,"ConcurrentExecutions":1000,"UnreservedConcurrentExecutions":{unreserved}}},"AccountUsage":{{"TotalCodeSize":0,"FunctionCount":1}}}}"#),
                    ),
                    Stub::Forward { .. } => {
                        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
                        *req.uri_mut() = format!("{moto_endpoint}{pq}").parse().unwrap();
                        match client.request(req.map(BodyExt::boxed)).await {
                            Ok(r) => r.map(BodyExt::boxed),
                            Err(e) => reply(502, None, e.to_string()),
                        }
                    }
                }
            }
        },
    );
    (endpoint, switch, calls)
}

/// An environment whose limit comes from the Lambda API at `endpoint`.
async fn env(redis: &RedisServer, endpoint: &str, function: &str) -> Environment {
    Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_LIMIT_REFRESH", "1")
        .env("ADMISSION_METRICS_INTERVAL", "1")
        .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_ENDPOINT_URL_LAMBDA", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .start()
        .await
}

fn event() -> &'static str {
    r#"{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"}}"#
}

/// Invokes and answers one event, so that a metric line is written.
async fn one_invocation(env: &Environment) {
    invocations_at_once(env, 1).await;
}

/// Holds `n` invocations in flight at once, then answers them: all must be admitted.
async fn invocations_at_once(env: &Environment, n: usize) {
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    let held = env.hold(&runtime, n, event()).await;
    assert_eq!(env.status().await["inFlight"], n as u64);
    for (id, task) in held {
        runtime.respond(&id, "\"ok\"").await;
        assert_eq!(task.await.unwrap().body(), b"\"ok\"");
    }
}

#[tokio::test]
async fn reserved_concurrency_is_the_limit_and_a_change_is_picked_up_while_warm() {
    let (moto, redis) = (
        Moto::start().await,
        RedisServer::start(RedisMode::Plain).await,
    );
    moto.lambda(&["create", "orders"]).await;
    moto.lambda(&["reserve", "orders", "7"]).await;
    let (endpoint, _, _) = stub(&moto, Stub::Forward { unreserved: 900 }).await;
    let env = env(&redis, &endpoint, "orders").await;
    let log = &env.extension_stderr;
    assert!(
        log.wait_for("limit=7", Duration::from_secs(15)).await,
        "{}",
        log.text()
    );
    assert!(
        log.text().contains(r#"source="reserved""#),
        "{}",
        log.text()
    );
    one_invocation(&env).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = env.metric_lines();
    assert!(
        m.iter()
            .any(|m| m["Limit"] == 7 && m["LimitSource"] == "reserved"),
        "{m:?}"
    );

    moto.lambda(&["reserve", "orders", "9"]).await;
    assert!(
        log.wait_for("limit=9", Duration::from_secs(5)).await,
        "{}",
        log.text()
    );
}

#[tokio::test]
async fn without_a_reservation_the_accounts_unreserved_pool_is_the_limit() {
    let (moto, redis) = (
        Moto::start().await,
        RedisServer::start(RedisMode::Plain).await,
    );
    moto.lambda(&["create", "reports"]).await;
    let (endpoint, _, _) = stub(&moto, Stub::Forward { unreserved: 850 }).await;
    let env = env(&redis, &endpoint, "reports").await;
    let log = &env.extension_stderr;
    assert!(
        log.wait_for("limit=850", Duration::from_secs(15)).await,
        "{}",
        log.text()
    );
    assert!(log.text().contains(r#"source="account""#), "{}", log.text());
}

#[tokio::test]
async fn access_denied_admits_everything_and_says_why() {
    let (moto, redis) = (
        Moto::start().await,
        RedisServer::start(RedisMode::Plain).await,
    );
    let (endpoint, switch, _) = stub(&moto, Stub::Deny).await;
    let env = env(&redis, &endpoint, "locked").await;
    let log = &env.extension_stderr;
    assert!(
        log.wait_for("cannot read the concurrency limit", Duration::from_secs(15))
            .await,
        "{}",
        log.text()
    );
    assert!(log.text().contains("AccessDenied"), "{}", log.text());
    assert!(
        log.text().contains("lambda:GetFunctionConcurrency"),
        "the log names the permission"
    );
    // No limit known: far more than any limit is admitted at once.
    invocations_at_once(&env, 12).await;
    let status = env.status().await;
    assert_eq!(status["limit"], serde_json::Value::Null);
    // The status says it too, naming the variable that would fix it.
    assert_eq!(
        status["warnings"][0]["code"], "limit-unreadable",
        "{status}"
    );
    assert_eq!(status["warnings"][0]["variable"], "ADMISSION_LIMIT");
    // Permission granted later: the limit is picked up on the next refresh.
    moto.lambda(&["create", "locked"]).await;
    moto.lambda(&["reserve", "locked", "3"]).await;
    *switch.lock() = Stub::Forward { unreserved: 900 };
    let known = env
        .wait_status(Duration::from_secs(5), |s| s["limit"] == 3)
        .await;
    // A limit of 3: the sheds' headroom (3 spare slots at 0.1 % blocking) leaves 1 admitted.
    assert!(known.is_ok_and(|s| s["limitSource"] == "reserved"
        && s["threshold"] == 1
        && s["warnings"] == serde_json::json!([])));
}

#[tokio::test]
async fn an_unreachable_lambda_api_admits_everything_and_says_why() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let closed = format!("http://127.0.0.1:{}", lambda_emulator::free_port());
    let env = env(&redis, &closed, "offline").await;
    let log = &env.extension_stderr;
    assert!(
        log.wait_for("cannot read the concurrency limit", Duration::from_secs(20))
            .await,
        "{}",
        log.text()
    );
    assert!(log
        .text()
        .contains("admitting every event until a limit is known"));
    invocations_at_once(&env, 12).await;
}

#[tokio::test]
async fn a_fleet_reads_the_limit_once_and_shares_it_through_the_coordinator() {
    let (moto, redis) = (
        Moto::start().await,
        RedisServer::start(RedisMode::Plain).await,
    );
    moto.lambda(&["create", "shared"]).await;
    moto.lambda(&["reserve", "shared", "7"]).await;
    let (endpoint, _, calls) = stub(&moto, Stub::Forward { unreserved: 900 }).await;
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let env = Builder::new(Runtime::None)
            .env("ADMISSION_COORDINATOR", &redis.url())
            .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
            .env("AWS_LAMBDA_FUNCTION_NAME", "shared")
            .env("AWS_ENDPOINT_URL_LAMBDA", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .start()
            .await;
        fleet.push(env);
    }
    for env in &fleet {
        let known = env
            .wait_status(Duration::from_secs(15), |s| s["limit"] == 7)
            .await;
        assert!(
            known.is_ok_and(|s| s["limitSource"] == "reserved"),
            "{}",
            env.extension_stderr.text()
        );
    }
    // One environment read the Lambda API; the others took its reading from Redis.
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "GetFunctionConcurrency calls"
    );
    assert!(redis
        .cli(&["GET", "lambda-admission:{shared}:limit"])
        .await
        .contains("7 reserved"));
}
