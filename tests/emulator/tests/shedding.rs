//! Admission through the real extension binary: limits, front doors, modes, metrics.
//!
//! A hand-driven runtime holds invocations in flight, the way a Managed Instances runtime holds
//! several `next` calls at once, so the tests decide exactly how many are busy.

use std::time::Duration;

use lambda_emulator::{hand_driven, Builder, Environment, Outcome, Runtime, RuntimeClient};
use serde_json::{json, Value};

fn rest_event(path: &str) -> String {
    json!({"resource": "/{proxy+}", "path": path, "httpMethod": "GET", "headers": {"accept": "*/*"},
        "multiValueHeaders": {"accept": ["*/*"]}, "queryStringParameters": null,
        "requestContext": {"stage": "prod", "requestId": "gw-1", "resourcePath": "/{proxy+}"},
        "body": null, "isBase64Encoded": false})
    .to_string()
}

fn v2_event() -> String {
    json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {"accept": "*/*"}, "requestContext": {"http": {"method": "GET", "path": "/"},
        "stage": "$default", "requestId": "r"}, "isBase64Encoded": false})
    .to_string()
}

fn alb_event(multi: bool) -> String {
    let mut e = json!({"httpMethod": "GET", "path": "/", "body": "", "isBase64Encoded": false,
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1"}}});
    if multi {
        e["multiValueHeaders"] = json!({"accept": ["*/*"]});
    } else {
        e["headers"] = json!({"accept": "*/*"});
    }
    e.to_string()
}

/// Fills `n` slots: invokes `n` events and takes them through the proxy without answering.
async fn hold(
    env: &Environment,
    runtime: &RuntimeClient,
    n: usize,
) -> Vec<(String, tokio::task::JoinHandle<Outcome>)> {
    env.hold(runtime, n, &rest_event("/held")).await
}

/// A `next` call left waiting: while the slots are full, the proxy sheds every event it fetches
/// for this call and keeps it waiting. (Never aborted: an abandoned `next` would still take an
/// event from Lambda.)
fn waiting_next(
    runtime: &RuntimeClient,
) -> tokio::task::JoinHandle<lambda_emulator::runtime_client::Event> {
    let runtime = runtime.clone();
    tokio::spawn(async move { runtime.next().await })
}

fn assert_retry_after(headers: &Value, multi: bool) -> u64 {
    let get = |k: &str| -> String {
        if multi {
            headers[k][0].as_str().unwrap().to_string()
        } else {
            headers[k].as_str().unwrap().to_string()
        }
    };
    assert_eq!(get("x-amzn-ErrorType"), "TooManyRequestsException");
    assert_eq!(get("content-type"), "application/json");
    let ra: u64 = get("retry-after").parse().unwrap();
    assert!((1..=30).contains(&ra), "Retry-After {ra}");
    ra
}

fn assert_body(v: &Value, retry_after: u64) {
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"message": "Too Many Requests", "retryAfterSeconds": retry_after})
    );
    assert_eq!(v["isBase64Encoded"], false);
    assert_eq!(v["statusCode"], 429);
}

#[tokio::test]
async fn sheds_each_front_door_with_its_own_shape() {
    let (env, runtime) =
        hand_driven(&[("ADMISSION_LIMIT", "2"), ("ADMISSION_SHED_AT", "0.5")]).await;
    let _held = hold(&env, &runtime, 1).await;
    let _waiting = waiting_next(&runtime);

    let v = env.invoke(rest_event("/shed")).await.json();
    let ra = assert_retry_after(&v["headers"], false);
    assert_eq!(assert_retry_after(&v["multiValueHeaders"], true), ra);
    assert_body(&v, ra);
    assert_eq!(
        keys(&v),
        [
            "body",
            "headers",
            "isBase64Encoded",
            "multiValueHeaders",
            "statusCode"
        ]
    );

    let v = env.invoke(v2_event()).await.json();
    let ra = assert_retry_after(&v["headers"], false);
    assert_body(&v, ra);
    assert_eq!(
        keys(&v),
        [
            "body",
            "cookies",
            "headers",
            "isBase64Encoded",
            "statusCode"
        ]
    );

    let v = env.invoke(alb_event(false)).await.json();
    let ra = assert_retry_after(&v["headers"], false);
    assert_body(&v, ra);
    assert_eq!(v["statusDescription"], "429 Too Many Requests");
    assert_eq!(
        keys(&v),
        [
            "body",
            "headers",
            "isBase64Encoded",
            "statusCode",
            "statusDescription"
        ]
    );

    let v = env.invoke(alb_event(true)).await.json();
    let ra = assert_retry_after(&v["multiValueHeaders"], true);
    assert_body(&v, ra);
    assert_eq!(
        keys(&v),
        [
            "body",
            "isBase64Encoded",
            "multiValueHeaders",
            "statusCode",
            "statusDescription"
        ]
    );
    // The shed events were answered by the proxy: the waiting `next` is still waiting.
    assert!(!_waiting.is_finished());
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn events_that_are_not_http_are_never_shed() {
    let (env, runtime) = hand_driven(&[("ADMISSION_LIMIT", "1")]).await;
    let _held = hold(&env, &runtime, 1).await;
    for event in [
        json!({"Records": [{"eventSource": "aws:sqs", "body": "m"}]}).to_string(),
        json!({"source": "aws.events", "detail": {}}).to_string(),
        json!({"requestContext": {"connectionId": "c", "eventType": "MESSAGE"}, "body": "x"})
            .to_string(),
        "not json at all {".to_string(),
    ] {
        let platform = env.platform.clone();
        let e = event.clone();
        let invoke = tokio::spawn(async move { platform.invoke(e, Duration::from_secs(10)).await });
        let got = runtime.next().await;
        assert_eq!(got.body, event.as_bytes(), "delivered unchanged");
        runtime.respond(&got.id, "\"done\"").await;
        assert_eq!(invoke.await.unwrap().body(), b"\"done\"");
    }
}

#[tokio::test]
async fn concurrent_next_calls_are_admitted_up_to_the_threshold() {
    // Managed Instances style: the runtime holds several `next` calls open at once.
    let (env, runtime) = hand_driven(&[("ADMISSION_LIMIT", "4"), ("ADMISSION_SHED_AT", "1")]).await;
    let mut nexts = Vec::new();
    for _ in 0..5 {
        let runtime = runtime.clone();
        nexts.push(tokio::spawn(async move { runtime.next().await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut invokes = Vec::new();
    for i in 0..12 {
        let platform = env.platform.clone();
        invokes.push(tokio::spawn(async move {
            platform
                .invoke(rest_event(&format!("/{i}")), Duration::from_secs(10))
                .await
        }));
    }
    // Four events reach the runtime; the fifth `next` sheds everything after them.
    let mut admitted = Vec::new();
    for n in nexts.iter_mut() {
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(1500), n).await {
            admitted.push(e);
        }
    }
    assert_eq!(admitted.len(), 4, "exactly the threshold is admitted");
    for e in &admitted {
        assert_eq!(
            runtime
                .respond(&e.id, r#"{"statusCode":200,"body":"ok"}"#)
                .await,
            202
        );
    }
    let mut statuses = Vec::new();
    for i in invokes {
        statuses.push(i.await.unwrap().json()["statusCode"].as_u64().unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 4);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 8);
}

#[tokio::test]
async fn observe_mode_sheds_nothing_and_counts_what_it_would_have() {
    let (mut env, runtime) =
        hand_driven(&[("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", "observe")]).await;
    let _held = hold(&env, &runtime, 3).await;
    let status = env.status().await;
    assert_eq!(
        (&status["mode"], &status["inFlight"], &status["threshold"]),
        (&json!("observe"), &json!(3), &json!(1))
    );
    assert!(env.shutdown().await.is_some_and(|s| s.success()));
    let m = env.metric_lines();
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (
            m[0]["Admitted"].as_u64(),
            m[0]["WouldShed"].as_u64(),
            m[0]["Shed"].as_u64()
        ),
        (Some(3), Some(2), Some(0))
    );
    assert_eq!(m[0]["Mode"], "observe");
    assert_eq!(
        m[0]["InFlightMax"], 3,
        "one lease per event, however decided"
    );
}

#[tokio::test]
async fn off_mode_is_a_plain_pass_through() {
    let (mut env, runtime) =
        hand_driven(&[("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", "off")]).await;
    // Three HTTP events over a limit of one all reach the runtime: nothing is decided.
    let held = hold(&env, &runtime, 3).await;
    let status = env.status().await;
    assert_eq!(
        (&status["mode"], &status["limit"], &status["inFlight"]),
        (&json!("off"), &Value::Null, &json!(0))
    );
    // The init log says so too, and names no limit.
    let log = env.extension_stderr.text();
    assert!(
        log.contains("admission control off") && !log.contains("limit=1"),
        "{log}"
    );
    for (id, task) in held {
        assert_eq!(runtime.respond(&id, "\"ok\"").await, 202);
        assert_eq!(task.await.unwrap().body(), b"\"ok\"");
    }
    assert!(env.shutdown().await.is_some_and(|s| s.success()));
}

#[tokio::test]
async fn shutdown_flushes_the_metrics_of_the_last_period() {
    let (mut env, runtime) = hand_driven(&[
        ("ADMISSION_LIMIT", "2"),
        ("ADMISSION_SHED_AT", "0.5"),
        ("ADMISSION_METRICS_NAMESPACE", "Test/Admission"),
    ])
    .await;
    let _held = hold(&env, &runtime, 1).await;
    let _waiting = waiting_next(&runtime);
    for _ in 0..3 {
        let out = env.invoke(rest_event("/x")).await;
        assert_eq!(out.json()["statusCode"], 429);
    }
    let started = std::time::Instant::now();
    assert!(env.shutdown().await.is_some_and(|s| s.success()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within the shutdown deadline"
    );
    let m = env.metric_lines();
    assert_eq!(m.len(), 1, "{m:?}");
    let m = &m[0];
    assert_eq!(m["Admitted"], 1);
    assert_eq!(m["Shed"], 3);
    assert_eq!(m["Limit"], 2);
    assert_eq!(m["LimitSource"], "env");
    assert_eq!(m["FunctionName"], "test-function");
    assert_eq!(
        m["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Test/Admission"
    );
    // No payload in any log line.
    let all = format!(
        "{}{}",
        env.extension_stdout.text(),
        env.extension_stderr.text()
    );
    assert!(
        !all.contains("/held") && !all.contains("queryStringParameters"),
        "{all}"
    );
}

#[tokio::test]
async fn metrics_are_written_every_interval_while_warm() {
    let (env, runtime) = hand_driven(&[("ADMISSION_METRICS_INTERVAL", "1")]).await;
    let held = hold(&env, &runtime, 1).await;
    runtime.respond(&held[0].0, "{}").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = env.metric_lines();
    assert_eq!(
        m.len(),
        1,
        "one line for the busy period, none for quiet ones: {m:?}"
    );
    assert_eq!(m[0]["Admitted"], 1);
    assert!(m[0].get("Limit").is_none(), "no limit known");
}

#[tokio::test]
async fn managed_instances_register_shutdown_only_and_take_the_runtimes_concurrency() {
    let env = Builder::new(Runtime::None)
        .managed_instances(4)
        .start()
        .await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{}", env.port));
    assert_eq!(
        env.platform.extension_names(),
        vec![("lambda-admission".to_string(), vec!["SHUTDOWN".to_string()])]
    );
    // The extension cannot see AWS_LAMBDA_MAX_CONCURRENCY: no limit until the wrapper, which
    // runs in the runtime's environment, says it with its probe (played here by the test).
    assert_eq!(env.status().await["limit"], Value::Null);
    let (code, _) =
        lambda_emulator::http_get(env.port, "/lambda-admission/health?max-concurrency=4").await;
    assert_eq!(code, 200);
    let s = env.status().await;
    assert_eq!(
        (&s["limit"], &s["limitSource"]),
        (&json!(4), &json!("managed-instances"))
    );
    // Threshold floor(4 × 0.9) = 3.
    let _held = hold(&env, &runtime, 3).await;
    let _waiting = waiting_next(&runtime);
    let out = env.invoke(v2_event()).await;
    assert_eq!(out.json()["statusCode"], 429);
    assert!(
        !env.extension_stderr.text().contains("cannot see the fleet"),
        "no on-demand warning on Managed Instances"
    );
}

#[tokio::test]
async fn managed_instances_answer_the_excess_over_the_runtimes_concurrency_with_429s() {
    // A real runtime serving four invocations at once, started through the wrapper; no
    // ADMISSION_LIMIT anywhere.
    let env = Builder::new(Runtime::Rust { stream: false })
        .managed_instances(4)
        .start()
        .await;
    let ready = env
        .wait_status(Duration::from_secs(10), |s| s["limit"] == 4)
        .await;
    assert!(ready.is_ok(), "{ready:?} {}", env.runtime_stderr.text());
    let slow = json!({"httpMethod": "GET", "path": "/", "requestContext": {"stage": "p"},
        "queryStringParameters": {"op": "sleep", "ms": "800"}})
    .to_string();
    let mut invokes = Vec::new();
    for _ in 0..8 {
        let p = env.platform.clone();
        let e = slow.clone();
        invokes.push(tokio::spawn(async move {
            p.invoke(e, Duration::from_secs(10)).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = Vec::new();
    for i in invokes {
        statuses.push(i.await.unwrap().json()["statusCode"].as_u64().unwrap_or(0));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429, 429, 429, 429],
        "3 = floor(4 × 0.9) run"
    );
}

/// `Retry-After` follows the overload's age: a client refused at its start is told about a
/// second (100 ms handlers, a small overload), one refused 3 s into it at least 3 s, so that its
/// retry comes after the overload rather than into it.
#[tokio::test]
async fn retry_after_grows_with_the_overloads_age() {
    let (env, runtime) = hand_driven(&[("ADMISSION_LIMIT", "1")]).await;
    // Short invocations first: the moving average of durations falls near zero.
    for _ in 0..20 {
        let served = env
            .invoke_answered(&runtime, rest_event("/quick"), None)
            .await;
        assert_eq!(served, 200);
    }
    let _held = hold(&env, &runtime, 1).await;
    let _next = waiting_next(&runtime);
    let shed = |env: &Environment| {
        let platform = env.platform.clone();
        async move {
            let out = platform
                .invoke(rest_event("/shed"), Duration::from_secs(5))
                .await;
            let v = out.json();
            assert_eq!(v["statusCode"], 429, "{v}");
            assert_retry_after(&v["headers"], false)
        }
    };
    let first = shed(&env).await;
    let started = std::time::Instant::now();
    let mut last = first;
    while started.elapsed() < Duration::from_secs(3) {
        last = shed(&env).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(first <= 2, "at the overload's start: {first}");
    assert!(last >= 3, "3 s into the overload: {last}");
}
