//! The proxy in-process, against the emulated Runtime API: the paths that are hard to reach
//! through a real runtime (a shed answer Lambda refuses, an upstream that is gone, the order of
//! a release and the runtime's 202).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use lambda_admission::config::Config;
use lambda_admission::proxy::{Proxy, HEALTH, HEALTH_BODY};
use lambda_admission::run::start_admission;
use lambda_emulator::{http_get, status, Options, Outcome, Platform, RuntimeClient};
use serde_json::{json, Value};

const REST: &str = r#"{"httpMethod":"GET","path":"/","requestContext":{"stage":"p"}}"#;
const SQS: &str = r#"{"Records":[{"eventSource":"aws:sqs","body":"m"}]}"#;

/// A proxy served in this process on 127.0.0.1:0, forwarding to `upstream`; returns its port.
async fn proxy(upstream: &str, vars: &[(&str, &str)]) -> u16 {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), upstream.into());
    env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), "in-process".into());
    let config = Config::from_strings(&env).unwrap();
    let admission = start_admission(&config).unwrap();
    let proxy = Arc::new(Proxy::new(&config.upstream, admission).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(proxy.serve(listener));
    port
}

fn invoke(platform: &Arc<Platform>, event: &'static str) -> tokio::task::JoinHandle<Outcome> {
    let p = platform.clone();
    tokio::spawn(async move { p.invoke(event, Duration::from_secs(10)).await })
}

/// Takes one event through the proxy and leaves it unanswered.
async fn hold(
    platform: &Arc<Platform>,
    runtime: &RuntimeClient,
) -> (String, tokio::task::JoinHandle<Outcome>) {
    let task = invoke(platform, REST);
    (runtime.next().await.id, task)
}

#[tokio::test]
async fn a_shed_event_is_answered_upstream_and_the_next_event_fetched() {
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[("ADMISSION_LIMIT", "1")]).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let (_held, _) = hold(&platform, &runtime).await;
    let waiting = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    let shed = invoke(&platform, REST).await.unwrap();
    assert_eq!(shed.json()["statusCode"], 429, "{shed:?}");
    assert!(
        !waiting.is_finished(),
        "the shed event never reached the runtime"
    );
    // The same `next` call gets the event after it.
    let sqs = invoke(&platform, SQS);
    let next = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting next gets the next event")
        .unwrap();
    assert_eq!(next.body, SQS.as_bytes());
    runtime.respond(&next.id, "\"done\"").await;
    assert_eq!(sqs.await.unwrap().body(), b"\"done\"");
    assert_eq!(status(port).await["shed"], 1);
}

#[tokio::test]
async fn a_shed_answer_lambda_refuses_sends_the_event_to_the_runtime() {
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[("ADMISSION_LIMIT", "1")]).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let (_held, _) = hold(&platform, &runtime).await;
    platform.refuse_responses(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let client = invoke(&platform, REST);
    let event = runtime.next().await;
    assert_eq!(
        event.body,
        REST.as_bytes(),
        "failed open: the runtime has the event"
    );
    platform.refuse_responses(None);
    let s = status(port).await;
    assert_eq!((&s["inFlight"], &s["shed"]), (&json!(2), &json!(0)), "{s}");
    runtime.respond(&event.id, "\"served\"").await;
    assert_eq!(client.await.unwrap().body(), b"\"served\"");
}

#[tokio::test]
async fn the_lease_is_returned_before_the_runtime_sees_its_202() {
    let platform = Platform::start(Options::default()).await;
    let port = proxy(
        &platform.address(),
        &[("ADMISSION_LIMIT", "1"), ("ADMISSION_SHED_AT", "1")],
    )
    .await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let (mut id, mut client) = hold(&platform, &runtime).await;
    for i in 0..50 {
        // The next event is already waiting at Lambda when the runtime answers: its `next`,
        // sent the moment the 202 arrives, must find the only slot free.
        let queued = invoke(&platform, REST);
        tokio::time::sleep(Duration::from_millis(2)).await;
        let answered = if i % 2 == 0 {
            runtime.respond(&id, "\"ok\"").await
        } else {
            runtime.error(&id, "Handler.Failed", "{}").await
        };
        assert_eq!(answered, 202);
        let next = runtime.next().await;
        assert!(client.await.unwrap() != Outcome::Timeout);
        (id, client) = (next.id, queued);
    }
    assert_eq!(
        status(port).await["shed"],
        0,
        "no event found the slot still taken"
    );
}

#[tokio::test]
async fn an_unreachable_runtime_api_gives_the_runtime_a_json_502() {
    let gone = format!("127.0.0.1:{}", lambda_emulator::free_port());
    let port = proxy(&gone, &[("ADMISSION_LIMIT", "5")]).await;
    let (code, body) = http_get(port, "/2018-06-01/runtime/invocation/next").await;
    assert_eq!(code, 502);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "Extension.ProxyUpstreamError");
    assert!(v["errorMessage"].as_str().unwrap().contains("unreachable"));
}

#[tokio::test]
async fn off_mode_forwards_everything_undecided() {
    let platform = Platform::start(Options::default()).await;
    let vars = [("ADMISSION_LIMIT", "1"), ("ADMISSION_MODE", "off")];
    let port = proxy(&platform.address(), &vars).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(hold(&platform, &runtime).await);
    }
    let s = status(port).await;
    assert_eq!((&s["mode"], &s["inFlight"]), (&json!("off"), &json!(0)));
    for (id, client) in held {
        runtime.respond(&id, "\"ok\"").await;
        assert_eq!(client.await.unwrap().body(), b"\"ok\"");
    }
}

#[tokio::test]
async fn the_health_route_names_the_proxy() {
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[]).await;
    assert_eq!(http_get(port, HEALTH).await, (200, HEALTH_BODY.to_string()));
    let s = status(port).await;
    assert_eq!(
        (&s["limit"], &s["coordinator"]),
        (&Value::Null, &json!("local"))
    );
}
