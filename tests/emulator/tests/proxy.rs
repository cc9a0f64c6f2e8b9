//! The proxy in-process, against the emulated Runtime API: the paths that are hard to reach
//! through a real runtime (a shed answer Lambda refuses, an upstream that is gone, the order of
//! a release and the runtime's 202).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use lambda_admission::config::Config;
use lambda_admission::run::start_admission;
use lambda_admission::runtime_api::proxy::{Proxy, HEALTH, HEALTH_BODY};
use lambda_emulator::{http_get, read_until, status, Options, Outcome, Platform, RuntimeClient};
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
    let started = start_admission(&config).unwrap();
    let proxy = Arc::new(Proxy::new(&config, started.admission, started.concurrency).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(lambda_admission::runtime_api::serve(proxy, listener));
    port
}

fn invoke(platform: &Arc<Platform>, event: &'static str) -> tokio::task::JoinHandle<Outcome> {
    let p = platform.clone();
    tokio::spawn(async move { p.invoke(event, Duration::from_secs(10)).await })
}

/// The request id in an event's head, as read off the wire.
fn request_id(event: &str) -> String {
    lambda_emulator::request_id_in(event).expect("the event carries its id")
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

/// A runtime holding the only slot, and a `next` call waiting for whatever comes after it.
async fn full(
    platform: &Arc<Platform>,
    vars: &[(&str, &str)],
) -> (
    u16,
    RuntimeClient,
    tokio::task::JoinHandle<lambda_emulator::runtime_client::Event>,
) {
    let mut vars = vars.to_vec();
    vars.push(("ADMISSION_LIMIT", "1"));
    let port = proxy(&platform.address(), &vars).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let _held = hold(platform, &runtime).await;
    let waiting = {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    (port, runtime, waiting)
}

#[tokio::test]
async fn a_shed_answer_lambda_refuses_is_not_also_run() {
    let platform = Platform::start(Options::default()).await;
    let (port, runtime, waiting) = full(&platform, &[]).await;
    platform.refuse_responses(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let p = platform.clone();
    let client =
        tokio::spawn(async move { p.invoke_as("refused", REST, Duration::from_secs(1)).await });
    // At most once: Lambda may have recorded the 429, so the event is not handed over too.
    assert_eq!(client.await.unwrap(), Outcome::Timeout);
    assert!(
        !waiting.is_finished(),
        "the refused event reached the runtime"
    );
    platform.refuse_responses(None);
    let s = status(port).await;
    assert_eq!((&s["inFlight"], &s["shed"]), (&json!(1), &json!(1)), "{s}");
    // The runtime's `next` still gets what comes next.
    let sqs = invoke(&platform, SQS);
    let next = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the next event")
        .unwrap();
    assert_eq!(next.body, SQS.as_bytes());
    runtime.respond(&next.id, "\"ok\"").await;
    assert_eq!(sqs.await.unwrap().body(), b"\"ok\"");
}

/// Posts a streamed HTTP integration answer for `id`, as a `RESPONSE_STREAM` function does.
async fn answer_streamed(port: u16, id: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: x\r\n\
         Lambda-Runtime-Function-Response-Mode: streaming\r\n\
         Content-Type: application/vnd.awslambda.http-integration-response\r\n\
         Transfer-Encoding: chunked\r\n\r\n1c\r\n{{\"statusCode\":200}}\0\0\0\0\0\0\0\0hi\r\n0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = [0u8; 64];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 202"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
}

#[tokio::test]
async fn a_streaming_runtime_gets_its_429s_streamed() {
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[("ADMISSION_LIMIT", "1")]).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    let waiting_next = |runtime: &RuntimeClient| {
        let r = runtime.clone();
        tokio::spawn(async move { r.next().await })
    };
    // Buffered until the runtime shows how it answers.
    let (held, client) = hold(&platform, &runtime).await;
    let waiting = waiting_next(&runtime);
    let first = invoke(&platform, REST).await.unwrap();
    assert!(
        matches!(
            first,
            Outcome::Response {
                streamed: false,
                ..
            }
        ),
        "{first:?}"
    );
    // The runtime streams its HTTP answer (a RESPONSE_STREAM Function URL)...
    answer_streamed(port, &held).await;
    assert!(matches!(
        client.await.unwrap(),
        Outcome::Response { streamed: true, .. }
    ));
    let next = invoke(&platform, REST);
    let event = waiting.await.unwrap();
    // ... so the next 429 is streamed too: a prelude, eight NUL bytes, the body.
    let _waiting = waiting_next(&runtime);
    let Outcome::Response { body, streamed, .. } = invoke(&platform, REST).await.unwrap() else {
        panic!("no answer")
    };
    assert!(streamed);
    let at = body
        .windows(8)
        .position(|w| w == [0u8; 8])
        .expect("the prelude's end");
    let prelude: Value = serde_json::from_slice(&body[..at]).unwrap();
    assert_eq!(prelude["statusCode"], 429);
    assert!(prelude["headers"]["retry-after"].is_string());
    let rest: Value = serde_json::from_slice(&body[at + 8..]).unwrap();
    assert_eq!(rest["message"], "Too Many Requests");
    answer_streamed(port, &event.id).await;
    assert!(matches!(
        next.await.unwrap(),
        Outcome::Response { streamed: true, .. }
    ));
}

#[tokio::test]
async fn the_streaming_setting_streams_from_the_first_429() {
    let platform = Platform::start(Options::default()).await;
    let (_port, _runtime, _waiting) =
        full(&platform, &[("ADMISSION_RESPONSE_MODE", "streaming")]).await;
    let out = invoke(&platform, REST).await.unwrap();
    assert!(
        matches!(out, Outcome::Response { streamed: true, .. }),
        "{out:?}"
    );
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

#[tokio::test]
async fn requests_off_the_hot_path_are_served_as_before_on_the_same_connection() {
    use tokio::io::AsyncWriteExt;
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[("ADMISSION_LIMIT", "5")]).await;
    // An answer sent with `Expect: 100-continue` (the runtime waits for the go-ahead).
    let client = invoke(&platform, REST);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let event = read_until(&mut s, REST).await;
    let id = request_id(&event);
    let head = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    assert!(read_until(&mut s, "\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 100"));
    s.write_all(b"\"ok\"").await.unwrap();
    assert!(read_until(&mut s, "\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 202"));
    assert_eq!(client.await.unwrap().body(), b"\"ok\"");
    assert_eq!(status(port).await["inFlight"], 0, "the lease went back");
    // The proxy's own route, then a malformed request, on the same connection.
    s.write_all(b"GET /lambda-admission/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_until(&mut s, HEALTH_BODY)
        .await
        .starts_with("HTTP/1.1 200"));
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    assert!(read_until(&mut s, "\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 400"));
    // A head larger than Lambda takes is refused as hyper refuses it.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let huge = format!(
        "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(3 * 1024 * 1024)
    );
    let _ = s.write_all(huge.as_bytes()).await;
    assert!(read_until(&mut s, "\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 431"));
}

/// A Runtime API of a few lines: it answers each `next` with the next of `events` in chunked
/// encoding, takes answers, and closes every connection after one exchange without saying so.
/// Returns its address, the answers it took, and how many connections it saw.
async fn chunked_closing_runtime_api(
    events: Vec<&'static str>,
) -> (
    String,
    Arc<parking_lot::Mutex<Vec<String>>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let answers = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (taken, seen) = (answers.clone(), connections.clone());
    let events = Arc::new(parking_lot::Mutex::new(events.into_iter()));
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (events, taken) = (events.clone(), taken.clone());
            n += 1;
            let id = format!("chunked-{n}");
            tokio::spawn(async move {
                let head = read_until(&mut s, "\r\n\r\n").await;
                if head.starts_with("GET /2018-06-01/runtime/invocation/next") {
                    let Some(event) = events.lock().next() else {
                        return;
                    };
                    let (a, b) = event.split_at(event.len() / 2);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: 99999999999999\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        a.len(),
                        b.len()
                    );
                    s.write_all(reply.as_bytes()).await.unwrap();
                } else {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let body_start = head.find("\r\n\r\n").unwrap() + 4;
                    let mut whole = head.clone().into_bytes();
                    while whole.len() < body_start + length {
                        use tokio::io::AsyncReadExt;
                        let mut buf = [0u8; 4096];
                        let n = s.read(&mut buf).await.unwrap();
                        assert!(n > 0, "the body came whole");
                        whole.extend_from_slice(&buf[..n]);
                    }
                    let whole = String::from_utf8(whole).unwrap();
                    taken.lock().push(whole[body_start..].to_string());
                    s.write_all(
                        b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n",
                    )
                    .await
                    .unwrap();
                }
                // Closed without a word, as an idle keep-alive connection may be.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    (address, answers, connections)
}

#[tokio::test]
async fn chunked_events_and_connections_lambda_closes_are_taken_in_stride() {
    let (api, answers, connections) = chunked_closing_runtime_api(vec![REST, SQS]).await;
    let port = proxy(&api, &[("ADMISSION_LIMIT", "5")]).await;
    let runtime = RuntimeClient::new(&format!("127.0.0.1:{port}"));
    for (i, expected) in [REST, SQS].into_iter().enumerate() {
        let event = runtime.next().await;
        assert_eq!(
            event.body,
            expected.as_bytes(),
            "the event, unchunked, whole"
        );
        // The connection the event came on is closed by now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            runtime.respond(&event.id, format!("\"answer {i}\"")).await,
            202
        );
        assert_eq!(
            answers.lock().last().cloned(),
            Some(format!("\"answer {i}\""))
        );
        assert_eq!(status(port).await["inFlight"], 0);
    }
    assert!(
        connections.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "one per exchange"
    );
}

/// One HTTP/1 message read from a raw connection: its head, and its body (`Content-Length` or
/// chunked, decoded). What came after it stays in `buf` for the next.
async fn read_message(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    async fn more(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-message: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(s, buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    buf.drain(..end);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let mut body = Vec::new();
    if let Some(n) = length {
        while buf.len() < n {
            more(s, buf).await;
        }
        body.extend(buf.drain(..n));
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                more(s, buf).await;
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                more(s, buf).await;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break; // no trailers from Lambda or the proxy
            }
        }
    }
    (head, body)
}

/// Writes `bytes` in up to four pieces cut at random, each its own write.
async fn write_cut(s: &mut tokio::net::TcpStream, bytes: &[u8], rng: &mut fastrand::Rng) {
    use tokio::io::AsyncWriteExt;
    let mut cuts: Vec<usize> = (0..rng.usize(0..4))
        .map(|_| rng.usize(0..=bytes.len()))
        .collect();
    cuts.extend([0, bytes.len()]);
    cuts.sort_unstable();
    cuts.dedup();
    for w in cuts.windows(2) {
        s.write_all(&bytes[w[0]..w[1]]).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A runtime's answer to `id`, framed by its length or chunked (which hands the connection to
/// hyper from that request on).
fn runtime_answer(id: &str, body: &[u8], rng: &mut fastrand::Rng) -> Vec<u8> {
    let path = format!("/2018-06-01/runtime/invocation/{id}/response");
    if rng.u8(0..4) > 0 {
        let mut m = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        m.extend_from_slice(body);
        return m;
    }
    let mut m = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for chunk in body.chunks(rng.usize(1..=body.len().max(1))) {
        m.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        m.extend_from_slice(chunk);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"0\r\n\r\n");
    m
}

/// The runtime's side of the proxy, adversarially: requests written in pieces cut anywhere, an
/// answer pipelined with the next `next` in one stream, answers of 0 B to 200 KB framed by length
/// or chunked (the connection then goes to hyper mid-stream with what was read), heads larger than
/// a read, one connection for many invocations or a new one each. Every client gets exactly its
/// answer, and no lease is left. `PROXY_CUTS_SEED` replays a run; `PROXY_CUTS_CASES` (40).
#[tokio::test]
async fn runtime_requests_cut_and_pipelined_anywhere_are_served_as_sent() {
    let seed = lambda_emulator::env_or("PROXY_CUTS_SEED", fastrand::u64(..));
    eprintln!("PROXY_CUTS_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let platform = Platform::start(Options::default()).await;
    let port = proxy(&platform.address(), &[("ADMISSION_LIMIT", "5")]).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    for case in 0..lambda_emulator::env_or("PROXY_CUTS_CASES", 40) {
        let mut s = connect().await.unwrap();
        let mut buf = Vec::new();
        // An answer not yet written: it goes out with the next `next`, in one stream; its client
        // and the body it must get.
        let mut pending: Option<Vec<u8>> = None;
        let mut owed = None;
        for n in 0..3 {
            let event = json!({"case": case, "n": n}).to_string();
            let sent = event.clone();
            let p = platform.clone();
            let client = tokio::spawn(async move { p.invoke(sent, Duration::from_secs(10)).await });
            let padding = if rng.bool() {
                "x".repeat(rng.usize(0..40_000))
            } else {
                String::new()
            };
            let mut bytes = pending.take().unwrap_or_default();
            let answers_before = usize::from(!bytes.is_empty());
            bytes.extend_from_slice(
                format!("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\n\r\n")
                    .as_bytes(),
            );
            write_cut(&mut s, &bytes, &mut rng).await;
            for _ in 0..answers_before {
                let (head, _) = read_message(&mut s, &mut buf).await;
                assert!(head.starts_with("http/1.1 202"), "seed {seed}: {head}");
                let (client, body): (tokio::task::JoinHandle<Outcome>, Vec<u8>) =
                    owed.take().unwrap();
                let outcome = client.await.unwrap();
                assert_eq!(outcome.body(), &body[..], "seed {seed}: a pipelined answer");
            }
            let (head, got) = read_message(&mut s, &mut buf).await;
            assert_eq!(got, event.as_bytes(), "seed {seed}: {head}");
            let id = lambda_emulator::request_id_in(&head).expect("the event carries its id");
            let size = [0, 10, 1000, 200_000][rng.usize(0..4)];
            let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let answer = runtime_answer(&id, &body, &mut rng);
            if n < 2 && rng.bool() {
                pending = Some(answer);
                owed = Some((client, body));
                continue;
            }
            write_cut(&mut s, &answer, &mut rng).await;
            let (head, _) = read_message(&mut s, &mut buf).await;
            assert!(head.starts_with("http/1.1 202"), "seed {seed}: {head}");
            let outcome = client.await.unwrap();
            assert_eq!(outcome.body(), &body[..], "seed {seed}, case {case}, n {n}");
            if rng.u8(0..4) == 0 {
                s = connect().await.unwrap();
                buf.clear();
            }
        }
        assert!(pending.is_none());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status(port).await["inFlight"], 0, "seed {seed}");
}

/// An HTTP/1.0 `next` and an answer whose sender shuts its side of the connection after the
/// body, through the real binary's forwarder: each is answered whole, as Lambda answers them.
#[tokio::test]
async fn http_1_0_and_half_closed_requests_are_answered_whole() {
    use tokio::io::AsyncWriteExt;
    let (env, _runtime) = lambda_emulator::hand_driven(&[("ADMISSION_LIMIT", "5")]).await;
    let client = invoke(&env.platform, REST);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    s.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let event = read_until(&mut s, REST).await;
    assert!(event.starts_with("HTTP/1."), "{event}");
    let id = request_id(&event);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    let answer = format!(
        "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n\"ok\""
    );
    s.write_all(answer.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(read_until(&mut s, "\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 202"));
    assert_eq!(client.await.unwrap().body(), b"\"ok\"");
}
