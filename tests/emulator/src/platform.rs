//! One execution environment's view of Lambda: the Runtime API and the Extensions API on a
//! loopback port, driven by [`Platform::invoke`] and [`Platform::shutdown`].
//!
//! It follows Lambda where the proxy can tell the difference: events are handed out by
//! `invocation/next` with Lambda's headers, a request id can be answered once, buffered answers
//! are capped at 6 MB, streamed answers carry error trailers, Managed Instances refuse `INVOKE`
//! registration with 403, and several `next` calls may wait at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};

/// A response body of the emulated APIs: whole, or (a fault) broken off.
pub type Reply = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A body that sends `data` and then breaks off, as a connection lost mid-response does.
struct BrokenOff(Option<Bytes>);

impl hyper::body::Body for BrokenOff {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(data) => Ok(hyper::body::Frame::data(data)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected: the event breaks off",
            )),
        }))
    }
}

/// Lambda's cap on a buffered response.
pub const MAX_RESPONSE: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The function's answer, as posted.
    Response {
        body: Bytes,
        streamed: bool,
        trailers: HeaderMap,
    },
    /// `invocation/{id}/error`, or a stream that ended with error trailers.
    Error { error_type: String, body: Bytes },
    /// No answer before the deadline.
    Timeout,
}

impl Outcome {
    pub fn body(&self) -> &[u8] {
        match self {
            Outcome::Response { body, .. } | Outcome::Error { body, .. } => body,
            Outcome::Timeout => b"",
        }
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.body()).unwrap_or(serde_json::Value::Null)
    }
}

/// An `init/error` or `exit/error` as the platform received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedError {
    /// `runtime/init/error`, `extension/init/error` or `extension/exit/error`.
    pub path: String,
    pub error_type: String,
    pub body: String,
}

#[derive(Default)]
pub struct Options {
    pub managed_instances: bool,
    /// The environment's CPU, accounted as a kernel would ([`CpuModel`]); `None`: not modelled.
    pub cpu: Option<CpuModel>,
    /// Extra headers on every event (client context, Cognito identity).
    pub event_headers: Vec<(String, String)>,
}

/// An environment's vCPUs and the CPU its invocations spend. An invocation whose event asks for
/// `cpu=X` (a query parameter) keeps `X` vCPU busy from the moment the runtime receives it until
/// its answer arrives, as a handler computing would; the environment cannot use more than its
/// vCPUs (demand beyond them is not served: handlers are not slowed down, which no test relies
/// on). The test function itself only sleeps: one machine cannot give every emulated environment
/// its own vCPUs, so the platform keeps the account the kernel would keep and writes it where
/// the extension reads it, as cgroup v2 files in `dir` (`cpu.stat`'s `usage_usec`, `cpu.max`).
#[derive(Debug, Clone)]
pub struct CpuModel {
    pub vcpus: f64,
    pub dir: Option<std::path::PathBuf>,
    /// The window [`Platform::cpu_utilisation`] is measured over.
    pub window: Duration,
}

/// The CPU account of [`CpuModel`].
struct CpuMeter {
    vcpus: f64,
    /// vCPU asked by the invocations running now, per request id.
    running: HashMap<String, f64>,
    demand: f64,
    used_secs: f64,
    at: Instant,
    /// (when, CPU seconds used), oldest first, over the window.
    history: std::collections::VecDeque<(Instant, f64)>,
}

impl CpuMeter {
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.used_secs += self.demand.min(self.vcpus) * dt;
        self.at = now;
    }

    fn start(&mut self, id: &str, vcpu: f64, now: Instant) {
        if vcpu > 0.0 {
            self.advance(now);
            self.demand += vcpu;
            self.running.insert(id.to_string(), vcpu);
        }
    }

    fn stop(&mut self, id: &str, now: Instant) {
        if let Some(vcpu) = self.running.remove(id) {
            self.advance(now);
            self.demand = (self.demand - vcpu).max(0.0);
        }
    }

    /// Takes a sample; the utilisation over `window`.
    fn sample(&mut self, now: Instant, window: Duration) -> f64 {
        self.advance(now);
        self.history.push_back((now, self.used_secs));
        while self.history.len() > 2
            && self
                .history
                .get(1)
                .is_some_and(|h| now.duration_since(h.0) >= window)
        {
            self.history.pop_front();
        }
        match (self.history.front(), self.history.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0).as_secs_f64() / self.vcpus,
            _ => 0.0,
        }
    }
}

/// The vCPU share an event asks its handler to spend (`"cpu":"0.2"` among its query parameters).
fn cpu_asked(payload: &[u8]) -> f64 {
    const KEY: &[u8] = br#""cpu":""#;
    let Some(at) = payload.windows(KEY.len()).position(|w| w == KEY) else {
        return 0.0;
    };
    let rest = &payload[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == b'"').unwrap_or(0);
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

struct Event {
    id: String,
    payload: Bytes,
    deadline_ms: u64,
    /// Tenant-isolation mode: sent as `Lambda-Runtime-Aws-Tenant-Id`.
    tenant: Option<String>,
}

struct Extension {
    name: String,
    events: Vec<String>,
    queue: mpsc::UnboundedSender<Bytes>,
    inbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>>,
}

#[derive(Default)]
struct State {
    extensions: HashMap<String, Extension>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    errors: Vec<ReportedError>,
    /// When each chunk of a streamed response arrived, per request id.
    chunk_times: HashMap<String, Vec<Instant>>,
    /// When each event left for the runtime, and when its answer arrived.
    delivered_at: HashMap<String, Instant>,
    answered_at: HashMap<String, Instant>,
    /// The request ids answered with a 429 proxy response (shed).
    shed: std::collections::HashSet<String>,
    /// The runtime died: nothing more is handed out, and an invoke that still comes (routed
    /// before the fleet took the environment out of service) gets the exit error at once.
    dead: bool,
}

#[derive(Default)]
struct Slots {
    in_use: usize,
    /// On demand (one slot): when the slot was taken, and whether its answer was a shed 429.
    taken_at: Option<Instant>,
    answer_was_429: bool,
    /// How long slots were busy for the invocations answered with a 429, as Lambda counts it
    /// (invoke to the runtime's next `next`).
    shed_holds: Vec<Duration>,
    /// `next` calls waiting for an event: the runtime is ready.
    waiting: usize,
    /// Answers posted whose runtime has not called `next` since.
    answered: usize,
}

pub struct Platform {
    addr: SocketAddr,
    options: Options,
    state: Mutex<State>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    registered: Notify,
    /// Slots in use, as Lambda counts them: from the invoke until the runtime, having answered,
    /// calls `next` again.
    slots: Mutex<Slots>,
    faults: Mutex<Faults>,
    cpu: Option<Mutex<CpuMeter>>,
    /// The CPU's utilisation over the model's window, as `f64` bits.
    cpu_utilisation: AtomicU64,
}

/// Faults a test switches on: what a real Lambda does rarely, on demand.
#[derive(Default)]
struct Faults {
    /// Answer this many `invocation/{id}/response` posts with a status, recording nothing.
    refuse_responses: Option<(StatusCode, usize)>,
    /// Record `invocation/{id}/response`, then hold its 202 back this long (past the poster's
    /// patience, that is a lost acknowledgement).
    delay_acknowledgements: Option<Duration>,
    /// Answer the next `invocation/next` calls with these statuses instead of events.
    next_statuses: std::collections::VecDeque<StatusCode>,
    /// Break off the body of the next event handed out, half-way.
    break_next_event: bool,
    /// Answer this many posts of a 429 proxy response (a shed) with 500, recording nothing.
    refuse_sheds: usize,
}

impl Platform {
    pub async fn start(options: Options) -> Arc<Platform> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let cpu = options.cpu.as_ref().map(|m| {
            Mutex::new(CpuMeter {
                vcpus: m.vcpus.max(0.01),
                running: HashMap::new(),
                demand: 0.0,
                used_secs: 0.0,
                at: Instant::now(),
                history: Default::default(),
            })
        });
        let cpu_model = options.cpu.clone();
        let platform = Arc::new(Platform {
            addr,
            options,
            state: Mutex::new(State::default()),
            events_tx,
            events_rx: tokio::sync::Mutex::new(events_rx),
            registered: Notify::new(),
            slots: Mutex::new(Slots::default()),
            faults: Mutex::new(Faults::default()),
            cpu,
            cpu_utilisation: AtomicU64::new(0f64.to_bits()),
        });
        let p = platform.clone();
        crate::serve::spawn(listener, move |req| p.clone().handle(req));
        if let Some(model) = cpu_model {
            tokio::spawn(account_cpu(Arc::downgrade(&platform), model));
        }
        platform
    }

    /// The CPU's utilisation over the model's window (0 without a model).
    pub fn cpu_utilisation(&self) -> f64 {
        f64::from_bits(self.cpu_utilisation.load(Ordering::Relaxed))
    }

    fn cpu_start(&self, id: &str, payload: &[u8]) {
        if let Some(cpu) = &self.cpu {
            cpu.lock().start(id, cpu_asked(payload), Instant::now());
        }
    }

    fn cpu_stop(&self, id: &str) {
        if let Some(cpu) = &self.cpu {
            cpu.lock().stop(id, Instant::now());
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Invokes the function with `payload` and waits for its answer until `timeout`.
    pub async fn invoke(&self, payload: impl Into<Bytes>, timeout: Duration) -> Outcome {
        // Unique across every platform of the process, as request ids are across Lambda.
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("req-{n:06}-{}", std::process::id());
        self.invoke_as(&id, payload, timeout).await
    }

    pub async fn invoke_as(
        &self,
        id: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Outcome {
        self.invoke_event(id, None, payload, timeout).await
    }

    /// Invokes a function in tenant-isolation mode on behalf of `tenant` (as `--tenant-id`).
    pub async fn invoke_for_tenant(
        &self,
        id: &str,
        tenant: &str,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Outcome {
        self.invoke_event(id, Some(tenant), payload, timeout).await
    }

    async fn invoke_event(
        &self,
        id: &str,
        tenant: Option<&str>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Outcome {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state.lock();
            if state.dead {
                return runtime_exited();
            }
            state.waiting.insert(id.to_string(), tx);
        }
        let deadline_ms = unix_ms() + timeout.as_millis() as u64;
        let _ = self.events_tx.send(Event {
            id: id.to_string(),
            payload: payload.into(),
            deadline_ms,
            tenant: tenant.map(str::to_string),
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                self.state.lock().waiting.remove(id);
                self.cpu_stop(id);
                Outcome::Timeout
            }
        }
    }

    /// From now on, answers every `invocation/{id}/response` with `status` and records nothing
    /// (`None`: back to normal).
    pub fn refuse_responses(&self, status: Option<StatusCode>) {
        self.faults.lock().refuse_responses = status.map(|s| (s, usize::MAX));
    }

    /// Answers the next `times` `invocation/{id}/response` posts with `status`, recording nothing.
    pub fn refuse_responses_times(&self, status: StatusCode, times: usize) {
        self.faults.lock().refuse_responses = Some((status, times));
    }

    /// From now on, records every `invocation/{id}/response` and then holds its 202 back for
    /// `delay` (`None`: back to normal).
    pub fn delay_acknowledgements(&self, delay: Option<Duration>) {
        self.faults.lock().delay_acknowledgements = delay;
    }

    /// The next event handed out breaks off half-way through its body.
    pub fn break_next_event(&self) {
        self.faults.lock().break_next_event = true;
    }

    /// The next `invocation/next` call is answered with `status` instead of an event.
    pub fn fail_next(&self, status: StatusCode) {
        self.faults.lock().next_statuses.push_back(status);
    }

    /// Answers the next `times` posts of a shed (a 429 proxy response) with 500, recording
    /// nothing: Lambda refusing the extension's answer.
    pub fn refuse_sheds(&self, times: usize) {
        self.faults.lock().refuse_sheds = times;
    }

    /// The runtime process died: every invocation waiting for an answer gets Lambda's
    /// `Runtime.ExitError`, and so does every later invoke (the environment is being reset).
    pub fn runtime_died(&self) {
        let waiting: Vec<_> = {
            let mut state = self.state.lock();
            state.dead = true;
            state.waiting.drain().map(|(_, tx)| tx).collect()
        };
        for tx in waiting {
            let _ = tx.send(runtime_exited());
        }
        if let Some(cpu) = &self.cpu {
            let mut cpu = cpu.lock();
            cpu.advance(Instant::now());
            cpu.running.clear();
            cpu.demand = 0.0;
        }
        self.slots.lock().in_use = 0;
    }

    /// Events handed out by `invocation/next` so far.
    pub fn delivered(&self) -> usize {
        self.state.lock().delivered_at.len()
    }

    /// The request ids answered with a 429 proxy response.
    pub fn shed_ids(&self) -> Vec<String> {
        self.state.lock().shed.iter().cloned().collect()
    }

    /// Waits until `n` extensions have registered, or `timeout` passes.
    pub async fn wait_registered(&self, n: usize, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.registered.notified();
            if self.state.lock().extensions.len() >= n {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Sends SHUTDOWN to every extension registered for it.
    pub fn shutdown(&self, reason: &str, deadline: Duration) {
        let event = serde_json::json!({
            "eventType": "SHUTDOWN",
            "shutdownReason": reason,
            "deadlineMs": unix_ms() + deadline.as_millis() as u64,
        });
        let body = Bytes::from(event.to_string());
        for ext in self.state.lock().extensions.values() {
            if ext.events.iter().any(|e| e == "SHUTDOWN") {
                let _ = ext.queue.send(body.clone());
            }
        }
    }

    pub fn errors(&self) -> Vec<ReportedError> {
        self.state.lock().errors.clone()
    }

    pub fn extension_names(&self) -> Vec<(String, Vec<String>)> {
        self.state
            .lock()
            .extensions
            .values()
            .map(|e| (e.name.clone(), e.events.clone()))
            .collect()
    }

    /// When `id` was handed out by `next` and when its answer arrived, if both happened.
    pub fn timeline(&self, id: &str) -> Option<(Instant, Instant)> {
        let s = self.state.lock();
        Some((*s.delivered_at.get(id)?, *s.answered_at.get(id)?))
    }

    pub fn chunk_times(&self, id: &str) -> Vec<Instant> {
        self.state
            .lock()
            .chunk_times
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Reply> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::POST, "/2020-01-01/extension/register") => self.register(req).await,
            (Method::GET, "/2020-01-01/extension/event/next") => self.extension_next(req).await,
            (
                Method::POST,
                "/2020-01-01/extension/init/error" | "/2020-01-01/extension/exit/error",
            ) => {
                self.report(&path, req, "lambda-extension-function-error-type")
                    .await
            }
            (Method::POST, "/2018-06-01/runtime/init/error") => {
                self.report(&path, req, "lambda-runtime-function-error-type")
                    .await
            }
            (Method::GET, "/2018-06-01/runtime/invocation/next") => self.runtime_next().await,
            (Method::POST, p) if p.starts_with("/2018-06-01/runtime/invocation/") => {
                let rest = &p["/2018-06-01/runtime/invocation/".len()..];
                match rest.rsplit_once('/') {
                    Some((id, "response")) => self.respond(id.to_string(), req).await,
                    Some((id, "error")) => self.error(id.to_string(), req).await,
                    _ => reply(StatusCode::NOT_FOUND, "unknown path"),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "unknown path"),
        }
    }

    async fn register(&self, req: Request<Incoming>) -> Response<Reply> {
        let name = header(req.headers(), "lambda-extension-name");
        let body = body_of(req).await;
        let events: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("events").cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if self.options.managed_instances && events.iter().any(|e| e == "INVOKE") {
            return reply(
                StatusCode::FORBIDDEN,
                r#"{"errorType":"Extension.InvalidEventType","errorMessage":"INVOKE is not supported on Lambda Managed Instances"}"#,
            );
        }
        let id = format!("ext-{}", self.state.lock().extensions.len());
        let (queue, inbox) = mpsc::unbounded_channel();
        self.state.lock().extensions.insert(
            id.clone(),
            Extension {
                name,
                events,
                queue,
                inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            },
        );
        self.registered.notify_waiters();
        let mut r = reply(
            StatusCode::OK,
            r#"{"functionName":"test-function","functionVersion":"$LATEST","handler":"handler"}"#,
        );
        r.headers_mut()
            .insert("lambda-extension-identifier", id.parse().expect("id"));
        r
    }

    async fn extension_next(&self, req: Request<Incoming>) -> Response<Reply> {
        let id = header(req.headers(), "lambda-extension-identifier");
        let inbox = self
            .state
            .lock()
            .extensions
            .get(&id)
            .map(|e| e.inbox.clone());
        let Some(inbox) = inbox else {
            return reply(
                StatusCode::FORBIDDEN,
                r#"{"errorType":"Extension.InvalidExtensionId"}"#,
            );
        };
        let event = inbox.lock().await.recv().await.unwrap_or_default();
        reply(StatusCode::OK, event)
    }

    async fn report(
        &self,
        path: &str,
        req: Request<Incoming>,
        type_header: &str,
    ) -> Response<Reply> {
        let error_type = header(req.headers(), type_header);
        let body = body_of(req).await;
        self.state.lock().errors.push(ReportedError {
            path: path
                .trim_start_matches('/')
                .split_once('/')
                .map_or("", |(_, rest)| rest)
                .to_string(),
            error_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
    }

    /// Takes a slot if fewer than `max` are in use; the caller then invokes.
    pub fn reserve(&self, max: usize) -> bool {
        let mut s = self.slots.lock();
        let ok = s.in_use < max;
        if ok {
            s.in_use += 1;
            s.taken_at = Some(Instant::now());
        }
        ok
    }

    /// Slot-busy times of the invocations answered with a 429 since the last call.
    pub fn take_shed_holds(&self) -> Vec<Duration> {
        std::mem::take(&mut self.slots.lock().shed_holds)
    }

    pub fn slots_in_use(&self) -> usize {
        self.slots.lock().in_use
    }

    /// Waits until the runtime has asked for its first event (its init is done), as Lambda does
    /// before routing invokes to an environment.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.slots.lock().waiting > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    async fn runtime_next(&self) -> Response<Reply> {
        let injected = self.faults.lock().next_statuses.pop_front();
        if let Some(status) = injected {
            return reply(status, r#"{"errorType":"InjectedFault"}"#);
        }
        {
            // A `next` after an answer is what frees the environment for Lambda.
            let mut s = self.slots.lock();
            if s.answered > 0 {
                s.answered -= 1;
                s.in_use = s.in_use.saturating_sub(1);
                if let (Some(at), true) = (s.taken_at.take(), s.answer_was_429) {
                    s.shed_holds.push(at.elapsed());
                }
                s.answer_was_429 = false;
            }
            s.waiting += 1;
        }
        let event = self.events_rx.lock().await.recv().await;
        self.slots.lock().waiting -= 1;
        let Some(event) = event else {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "platform stopped");
        };
        if self.state.lock().dead {
            // Routed before the runtime died, already answered with its exit error: Lambda
            // hands nothing more to an environment it is resetting.
            return reply(StatusCode::INTERNAL_SERVER_ERROR, "environment reset");
        }
        self.state
            .lock()
            .delivered_at
            .insert(event.id.clone(), Instant::now());
        // An invoke that timed out before its event was handed out spends no CPU.
        if self.state.lock().waiting.contains_key(&event.id) {
            self.cpu_start(&event.id, &event.payload);
        }
        let broken = std::mem::take(&mut self.faults.lock().break_next_event);
        let mut r = if broken {
            let half = event.payload.slice(..event.payload.len() / 2);
            let mut r = Response::new(BrokenOff(Some(half)).boxed());
            r.headers_mut().insert(
                "content-length",
                event.payload.len().to_string().parse().expect("length"),
            );
            r
        } else {
            reply(StatusCode::OK, event.payload)
        };
        let h = r.headers_mut();
        h.insert("content-type", "application/json".parse().expect("ct"));
        h.insert(
            "lambda-runtime-aws-request-id",
            event.id.parse().expect("id"),
        );
        h.insert(
            "lambda-runtime-deadline-ms",
            event.deadline_ms.to_string().parse().expect("dl"),
        );
        h.insert(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:test-function"
                .parse()
                .expect("arn"),
        );
        h.insert(
            "lambda-runtime-trace-id",
            format!("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=x:{}", event.id)
                .parse()
                .expect("trace"),
        );
        if let Some(tenant) = event.tenant.as_deref().and_then(|t| t.parse().ok()) {
            h.insert("lambda-runtime-aws-tenant-id", tenant);
        }
        for (k, v) in &self.options.event_headers {
            if let (Ok(k), Ok(v)) = (k.parse::<http::HeaderName>(), v.parse()) {
                h.insert(k, v);
            }
        }
        r
    }

    async fn respond(&self, id: String, req: Request<Incoming>) -> Response<Reply> {
        {
            let mut faults = self.faults.lock();
            if let Some((status, left)) = faults.refuse_responses {
                faults.refuse_responses = (left > 1).then_some((status, left - 1));
                return reply(status, r#"{"errorType":"InjectedFault"}"#);
            }
        }
        let streamed =
            header(req.headers(), "lambda-runtime-function-response-mode") == "streaming";
        if !self.state.lock().waiting.contains_key(&id) {
            return reply(
                StatusCode::BAD_REQUEST,
                r#"{"errorType":"InvalidRequestID","errorMessage":"unknown or already answered request id"}"#,
            );
        }
        let mut body = req.into_body();
        let mut data = Vec::new();
        let mut trailers = HeaderMap::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return reply(StatusCode::BAD_REQUEST, "body read failed");
            };
            if let Some(chunk) = frame.data_ref() {
                if streamed {
                    self.state
                        .lock()
                        .chunk_times
                        .entry(id.clone())
                        .or_default()
                        .push(Instant::now());
                }
                data.extend_from_slice(chunk);
            } else if let Ok(t) = frame.into_trailers() {
                trailers = t;
            }
        }
        let outcome = if !streamed && data.len() > MAX_RESPONSE {
            Outcome::Error {
                error_type: "Function.ResponseSizeTooLarge".into(),
                body: Bytes::from_static(
                    b"Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                ),
            }
        } else if let Some(t) = trailers.get("lambda-runtime-function-error-type") {
            Outcome::Error {
                error_type: t.to_str().unwrap_or("").to_string(),
                body: Bytes::from(header(&trailers, "lambda-runtime-function-error-body")),
            }
        } else {
            Outcome::Response {
                body: Bytes::from(data),
                streamed,
                trailers,
            }
        };
        let shed = matches!(&outcome, Outcome::Response { body, .. }
            if body.windows(16).any(|w| w == br#""statusCode":429"#));
        if shed {
            let mut faults = self.faults.lock();
            if faults.refuse_sheds > 0 {
                faults.refuse_sheds -= 1;
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"errorType":"InjectedFault"}"#,
                );
            }
        }
        {
            let mut state = self.state.lock();
            state.answered_at.insert(id.clone(), Instant::now());
            if shed {
                state.shed.insert(id.clone());
            }
        }
        let too_large = matches!(&outcome, Outcome::Error { error_type, .. } if error_type == "Function.ResponseSizeTooLarge");
        if let Some(tx) = self.state.lock().waiting.remove(&id) {
            self.cpu_stop(&id);
            let _ = tx.send(outcome);
            let mut slots = self.slots.lock();
            slots.answered += 1;
            slots.answer_was_429 = shed;
        }
        if too_large {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"errorType":"RequestEntityTooLarge"}"#,
            );
        }
        let delay = self.faults.lock().delay_acknowledgements;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
    }

    async fn error(&self, id: String, req: Request<Incoming>) -> Response<Reply> {
        let error_type = header(req.headers(), "lambda-runtime-function-error-type");
        let body = body_of(req).await;
        match self.state.lock().waiting.remove(&id) {
            Some(tx) => {
                self.cpu_stop(&id);
                let _ = tx.send(Outcome::Error { error_type, body });
                self.slots.lock().answered += 1;
                reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
            }
            None => reply(
                StatusCode::BAD_REQUEST,
                r#"{"errorType":"InvalidRequestID"}"#,
            ),
        }
    }
}

/// Every 20 ms, while the platform lives: the CPU account advanced, its utilisation published
/// and, with a folder, written as cgroup v2 files (whole, by rename: a reader never sees half).
/// (`cpu.max` is written once, with the folder, by [`crate::Builder::cpu`].)
async fn account_cpu(platform: std::sync::Weak<Platform>, model: CpuModel) {
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(p) = platform.upgrade() else { return };
        let Some(cpu) = &p.cpu else { return };
        let (utilisation, used) = {
            let mut cpu = cpu.lock();
            (cpu.sample(Instant::now(), model.window), cpu.used_secs)
        };
        p.cpu_utilisation
            .store(utilisation.to_bits(), Ordering::Relaxed);
        if let Some(dir) = &model.dir {
            let usec = (used * 1e6) as u64;
            let tmp = dir.join("cpu.stat.tmp");
            let stat = format!("usage_usec {usec}\nuser_usec {usec}\nsystem_usec 0\n");
            if std::fs::write(&tmp, stat).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join("cpu.stat"));
            }
        }
    }
}

/// The whole request body; a body that breaks off counts as empty.
async fn body_of(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Reply> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// What Lambda answers for an invocation whose runtime process exited.
fn runtime_exited() -> Outcome {
    Outcome::Error {
        error_type: "Runtime.ExitError".into(),
        body: Bytes::from_static(br#"{"errorType":"Runtime.ExitError","errorMessage":"RequestId: Error: Runtime exited with error: signal: killed"}"#),
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
