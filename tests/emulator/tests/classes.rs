//! Request classes against a real redis-server and several emulated environments: critical
//! requests are shed last, sheddable ones first, exempt ones never, and the status tells a
//! handler how close the fleet is.

use lambda_emulator::services::{RedisMode, RedisServer};
use lambda_emulator::{Builder, Environment, Runtime, RuntimeClient};
use serde_json::{json, Value};

/// A REST request for `method path` with `headers`.
fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let h: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": h,
        "requestContext": {"stage": "prod", "requestId": "r", "httpMethod": method}})
    .to_string()
}

/// An HTTP API 2.0 request: the path is `rawPath`, the method `requestContext.http.method`.
fn request_v2(method: &str, path: &str) -> String {
    json!({"version": "2.0", "routeKey": "$default", "rawPath": path, "headers": {},
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"}})
    .to_string()
}

const RULES: &[(&str, &str)] = &[
    ("ADMISSION_EXEMPT", "GET /health,header:stripe-signature"),
    (
        "ADMISSION_CRITICAL",
        "POST /checkout,header:x-priority=high",
    ),
    ("ADMISSION_SHEDDABLE", "GET /thumbnails/*"),
    // Limit 10: critical shed from 6 (the threshold), default from 4 (2 slots left to critical
    // requests), sheddable from 3.
    ("ADMISSION_LIMIT", "10"),
    ("ADMISSION_SHED_AT", "0.6"),
    ("ADMISSION_CRITICAL_RESERVE", "0.2"),
    ("ADMISSION_SHEDDABLE_AT", "0.3"),
];

async fn environment(redis: &RedisServer, pool: &str, extra: &[(&str, &str)]) -> Environment {
    let env = Builder::new(Runtime::None)
        .env("ADMISSION_COORDINATOR", &redis.url())
        .env("ADMISSION_POOL", pool)
        .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
        .env("ADMISSION_INIT_LEASE", "false")
        .env("ADMISSION_METRICS_INTERVAL", "3600")
        .envs(RULES.iter().chain(extra))
        .start()
        .await;
    env.wait_connected().await;
    env
}

#[tokio::test]
async fn each_class_is_shed_at_its_own_threshold() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let holder = environment(&redis, "classes", &[]).await;
    let mut asker = environment(&redis, "classes", &[]).await;
    let (h, a) = (
        RuntimeClient::new(&format!("127.0.0.1:{}", holder.port)),
        RuntimeClient::new(&format!("127.0.0.1:{}", asker.port)),
    );
    let mut held = holder.hold(&h, 3, &request("GET", "/orders", &[])).await;
    // 3 in flight: sheddable requests are shed, the others admitted.
    assert_eq!(
        asker
            .invoke_answered(&a, request("GET", "/thumbnails/1.png", &[]), None)
            .await,
        429
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request("GET", "/orders", &[]), None)
            .await,
        200
    );
    held.extend(holder.hold(&h, 1, &request("GET", "/orders", &[])).await);
    // 4: the default class is shed too; critical requests still get in, up to the threshold.
    assert_eq!(
        asker
            .invoke_answered(&a, request("GET", "/orders", &[]), None)
            .await,
        429
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request_v2("GET", "/orders"), None)
            .await,
        429
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request("POST", "/checkout", &[]), None)
            .await,
        200
    );
    assert_eq!(
        asker
            .invoke_answered(
                &a,
                request("GET", "/orders", &[("X-Priority", "high")]),
                None
            )
            .await,
        200
    );
    let status = asker.status().await;
    assert_eq!(status["load"]["shedding"]["sheddable"], true, "{status}");
    assert_eq!(status["load"]["shedding"]["default"], true, "{status}");
    held.extend(holder.hold(&h, 2, &request("POST", "/checkout", &[])).await);
    // 6: critical requests are shed too (the slots above are the sheds' room); exempt ones run.
    assert_eq!(
        asker
            .invoke_answered(&a, request("POST", "/checkout", &[]), None)
            .await,
        429
    );
    assert_eq!(
        asker
            .invoke_answered(&a, request("GET", "/health", &[]), None)
            .await,
        200
    );
    assert_eq!(
        asker
            .invoke_answered(
                &a,
                request("POST", "/webhook", &[("Stripe-Signature", "t=1")]),
                None
            )
            .await,
        200
    );
    let status = asker.status().await;
    assert!(
        status["load"]["utilisation"].as_f64().unwrap() >= 0.7,
        "{status}"
    );
    // Metrics per class, on the line for each.
    asker.shutdown().await;
    let lines = asker.metric_lines();
    let class = |c: &str| {
        lines
            .iter()
            .find(|l| l["Class"] == c)
            .map(|l| (l["Admitted"].as_u64().unwrap(), l["Shed"].as_u64().unwrap()))
    };
    assert_eq!(class("sheddable"), Some((0, 1)));
    assert_eq!(class("default"), Some((1, 2)));
    assert_eq!(class("critical"), Some((2, 1)));
    assert_eq!(class("exempt"), Some((2, 0)));
    let dims = &lines.iter().find(|l| l["Class"] == "critical").unwrap()["_aws"]
        ["CloudWatchMetrics"][0]["Dimensions"];
    assert_eq!(dims, &json!([["FunctionName", "Class"]]));
    drop(held);
}

#[tokio::test]
async fn observe_mode_counts_what_each_class_would_shed() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let holder = environment(&redis, "observe", &[("ADMISSION_MODE", "observe")]).await;
    let mut asker = environment(&redis, "observe", &[("ADMISSION_MODE", "observe")]).await;
    let (h, a) = (
        RuntimeClient::new(&format!("127.0.0.1:{}", holder.port)),
        RuntimeClient::new(&format!("127.0.0.1:{}", asker.port)),
    );
    let held = holder.hold(&h, 5, &request("GET", "/orders", &[])).await;
    for event in [
        request("GET", "/thumbnails/a", &[]),
        request("GET", "/orders", &[]),
        request("POST", "/checkout", &[]),
        request("GET", "/health", &[]),
    ] {
        assert_eq!(
            asker.invoke_answered(&a, event, None).await,
            200,
            "observe sheds nothing"
        );
    }
    asker.shutdown().await;
    let lines = asker.metric_lines();
    let would = |c: &str| {
        lines
            .iter()
            .find(|l| l["Class"] == c)
            .map(|l| l["WouldShed"].as_u64().unwrap())
    };
    // 5 held before each (the asker's own are answered at once): sheddable (3) and default (4)
    // would be shed, critical (6) and exempt would not.
    assert_eq!(would("sheddable"), Some(1));
    assert_eq!(would("default"), Some(1));
    assert_eq!(would("critical"), Some(0));
    assert_eq!(would("exempt"), Some(0));
    drop(held);
}

#[tokio::test]
async fn a_python_handler_degrades_when_the_fleet_sheds_its_optional_work() {
    let redis = RedisServer::start(RedisMode::Plain).await;
    let holder = environment(&redis, "hints", &[]).await;
    let h = RuntimeClient::new(&format!("127.0.0.1:{}", holder.port));
    let python = Builder::new(Runtime::Python {
        handler: "handler.degrading".into(),
    })
    .env("ADMISSION_COORDINATOR", &redis.url())
    .env("ADMISSION_POOL", "hints")
    .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "250")
    .envs(RULES)
    .start()
    .await;
    python.wait_connected().await;
    let answer = |out: lambda_emulator::Outcome| -> Value {
        let v = out.json();
        serde_json::from_str(v["body"].as_str().unwrap()).unwrap()
    };
    // A quiet fleet: the handler does everything.
    let calm = answer(python.invoke(request("GET", "/orders", &[])).await);
    assert_eq!(calm["underPressure"], false, "{calm}");
    assert_eq!(calm["recommendations"], json!(["a", "b"]));
    // Three invocations elsewhere in the fleet: four with this one, past the sheddable class's
    // threshold (3), and this default request still admitted (below 4). The handler sees it
    // before anything of its class is refused.
    let held = holder.hold(&h, 3, &request("GET", "/orders", &[])).await;
    let busy = answer(python.invoke(request("GET", "/orders", &[])).await);
    assert_eq!(busy["underPressure"], true, "{busy}");
    assert_eq!(busy["recommendations"], json!([]));
    drop(held);
}
