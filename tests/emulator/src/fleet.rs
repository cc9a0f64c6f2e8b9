//! A function's fleet: up to N execution environments behind one invoke, and the API Gateway
//! front door in front of it.
//!
//! [`Fleet`] behaves like Lambda with reserved concurrency N, throttling on all three axes
//! ([`PlatformLimits`]), in Lambda's order: the invoke rate (10 × N synchronous invokes a second,
//! a token bucket: sheds count too), then concurrency: an invoke goes to the least busy
//! environment with a free slot (one on demand, K on Managed Instances); when none is free, a new
//! environment starts cold if fewer than N exist and the scale-up rate allows (initialising, it
//! counts as busy from that invoke), else the invoke is throttled before any code runs. Each
//! environment runs the real extension (or none) and a real runtime process.
//!
//! [`ApiGateway`] behaves like API Gateway REST with the Lambda proxy integration: its stage
//! throttle (a token bucket, optional) answers `429 {"message":"Too Many Requests"}` before
//! Lambda is asked; a Lambda throttle is a 500 `{"message":"Internal server error"}`, a function
//! error or malformed answer a 502, a proxy response the HTTP response it describes. Optionally
//! its `DEFAULT_5XX` gateway responses are remapped to 429, the common workaround.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::managed::Managed;
use crate::{Builder, Environment, Outcome, Runtime};

/// What stands between the platform and the runtime in each environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    None,
    /// The extension with the local coordinator, limited per environment.
    Local,
    /// The extension counting the fleet in Redis at this URL.
    Redis(String),
    /// The extension with a template's variables alone (`FleetConfig::extension_env`), and the
    /// emulator's Redis where the template names a shared coordinator.
    Template(Option<String>),
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Execution environments: the reserved concurrency on demand.
    pub environments: usize,
    /// Invocations one environment runs at once: 1 on demand, K on Managed Instances.
    pub per_environment: usize,
    pub runtime: Runtime,
    pub layer: Layer,
    /// `ADMISSION_SHED_AT` for the layer; `None`: the extension's own headroom.
    pub shed_at: Option<f64>,
    /// `ADMISSION_POOL`, so fleets sharing a Redis do not share a count.
    pub pool: String,
    /// The platform's throttles, in the order Lambda applies them.
    pub platform: PlatformLimits,
    /// More `ADMISSION_*` variables for the extension.
    pub extension_env: Vec<(&'static str, &'static str)>,
    /// Variables for the runtime process only (the test function's `TEST_FUNCTION_*`).
    pub runtime_env: Vec<(String, String)>,
    /// Managed Instances as documented (the scaler, CPU protection; `environments` is then the
    /// most the scaler may run); `None`: Lambda on demand, or Managed Instances of a fixed size.
    pub managed: Option<Managed>,
}

/// How Lambda throttles besides concurrency. [`PlatformLimits::lambda`] is Lambda as it is;
/// [`PlatformLimits::concurrency_only`] the old emulator (every environment warm, no rate cap).
#[derive(Debug, Clone, Copy)]
pub struct PlatformLimits {
    /// Synchronous invokes per second per unit of concurrency (Lambda: 10); `None`: no cap.
    pub invokes_per_second_per_slot: Option<f64>,
    /// Environments started before the load; the others start cold when an invoke finds no idle
    /// one (`None`: all warm).
    pub warm: Option<usize>,
    /// Init time a cold environment adds on top of starting its processes (heavy imports).
    pub init_delay: Duration,
    /// Cold starts per second at most (Lambda: 1,000 environments per 10 s per function).
    pub scale_up_per_second: f64,
}

impl PlatformLimits {
    pub fn lambda() -> PlatformLimits {
        PlatformLimits {
            invokes_per_second_per_slot: Some(10.0),
            warm: None,
            init_delay: Duration::ZERO,
            scale_up_per_second: 100.0,
        }
    }

    pub fn concurrency_only() -> PlatformLimits {
        PlatformLimits {
            invokes_per_second_per_slot: None,
            warm: None,
            init_delay: Duration::ZERO,
            scale_up_per_second: f64::INFINITY,
        }
    }
}

/// Why Lambda refused an invoke, as its throttle body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Every slot busy (or initialising).
    Concurrency,
    /// More than 10 × the limit invokes in a second.
    Rate,
    /// Managed Instances: every environment with a free slot runs its CPU past the protection
    /// point.
    Cpu,
}

impl Throttle {
    pub fn reason(self) -> &'static str {
        match self {
            Throttle::Concurrency => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Throttle::Rate => "ReservedFunctionInvocationRateLimitExceeded",
            Throttle::Cpu => "ExecutionEnvironmentHighCPUUtilization",
        }
    }

    /// Its name in `target/fleet/summary.json`.
    pub fn id(self) -> &'static str {
        match self {
            Throttle::Concurrency => "concurrency",
            Throttle::Rate => "rate",
            Throttle::Cpu => "cpu",
        }
    }
}

/// An invoke as the front door sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Invoke {
    /// Lambda refused it (HTTP 429 `TooManyRequestsException`) before any code ran.
    Throttled(Throttle),
    Done(Outcome),
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Fleet {
    config: FleetConfig,
    envs: Mutex<Vec<Arc<Environment>>>,
    /// Environments initialising: busy, as Lambda counts them, from the invoke that started them.
    starting: AtomicUsize,
    invoke_rate: Option<Mutex<TokenBucket>>,
    scale_up: Mutex<TokenBucket>,
    /// Serialises slot choice; the highest number of busy slots seen since `take_peak`.
    peak: Mutex<usize>,
    /// Managed Instances: environments the scaler is launching.
    pub(crate) launching: AtomicUsize,
    /// The environments taking invokes, each time their number changed.
    sizes: Mutex<Vec<(Instant, usize)>>,
}

impl Fleet {
    pub async fn start(config: &FleetConfig) -> Fleet {
        let warm = match config.managed {
            Some(m) => m.min,
            None => config.platform.warm.unwrap_or(config.environments),
        }
        .min(config.environments);
        let mut envs = Vec::new();
        for _ in 0..warm {
            envs.push(Arc::new(environment(config).start().await));
        }
        for e in &envs {
            ready(config, e, true).await;
        }
        let limit = (config.environments * config.per_environment) as f64;
        let scale = config.platform.scale_up_per_second;
        let size = envs.len();
        Fleet {
            config: config.clone(),
            envs: Mutex::new(envs),
            starting: AtomicUsize::new(0),
            invoke_rate: config
                .platform
                .invokes_per_second_per_slot
                .map(|r| Mutex::new(TokenBucket::new(r * limit, r * limit))),
            scale_up: Mutex::new(TokenBucket::new(scale, scale.max(1.0))),
            peak: Mutex::new(0),
            launching: AtomicUsize::new(0),
            sizes: Mutex::new(vec![(Instant::now(), size)]),
        }
    }

    /// Managed Instances: starts the scaler, which runs as long as the fleet.
    pub fn start_scaler(self: &Arc<Self>) {
        if let Some(managed) = self.config.managed {
            tokio::spawn(crate::managed::scale(Arc::downgrade(self), managed));
        }
    }

    /// Slot utilisation (busy slots over all slots) and the environments' mean CPU utilisation.
    pub fn utilisation(&self) -> (f64, f64) {
        let envs = self.envs.lock();
        let n = envs.len().max(1) as f64;
        let slots = busy(&envs) as f64 / (n * self.config.per_environment as f64);
        let cpu = envs
            .iter()
            .map(|e| e.platform.cpu_utilisation())
            .sum::<f64>()
            / n;
        (slots, cpu)
    }

    /// An environment started and ready, not yet taking invokes.
    pub(crate) async fn start_environment(&self) -> Arc<Environment> {
        let env = Arc::new(environment(&self.config).start().await);
        ready(&self.config, &env, false).await;
        env
    }

    /// Invokes may go to `env` from now on.
    pub(crate) fn add(&self, env: Arc<Environment>) {
        let _routing = self.peak.lock();
        let mut envs = self.envs.lock();
        envs.push(env);
        self.sizes.lock().push((Instant::now(), envs.len()));
    }

    /// Removes an idle environment, as the scaler scaling down does: SHUTDOWN, then its
    /// processes go. Nothing if every environment is busy.
    pub(crate) async fn scale_down(&self) {
        let retired = {
            let _routing = self.peak.lock();
            let mut envs = self.envs.lock();
            let idle = envs.iter().position(|e| e.platform.slots_in_use() == 0);
            let retired = idle.map(|i| envs.remove(i));
            if retired.is_some() {
                self.sizes.lock().push((Instant::now(), envs.len()));
            }
            retired
        };
        if let Some(env) = retired {
            env.platform.shutdown("spindown", Duration::from_secs(2));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The environments taking invokes at `at` (`None`: the first count).
    pub fn size_at(&self, at: Option<Instant>) -> usize {
        let sizes = self.sizes.lock();
        let first = sizes.first().map_or(0, |s| s.1);
        let Some(at) = at else { return first };
        sizes
            .iter()
            .take_while(|(when, _)| *when <= at)
            .last()
            .map_or(first, |s| s.1)
    }

    /// Every change in the number of environments taking invokes: when, and the number.
    pub fn sizes(&self) -> Vec<(Instant, usize)> {
        self.sizes.lock().clone()
    }

    /// Invokes synchronously, throttling as Lambda does: past the invoke rate, then when no slot
    /// is free and no environment may start. A slot is busy, as Lambda counts it, from the invoke
    /// (including a cold start) until the runtime has answered and asked for the next event.
    pub async fn invoke(&self, payload: String, timeout: Duration) -> Invoke {
        let now = Instant::now();
        if let Some(rate) = &self.invoke_rate {
            if !rate.lock().take(now) {
                return Invoke::Throttled(Throttle::Rate);
            }
        }
        if let Some(managed) = self.config.managed {
            return self.invoke_managed(&managed, payload, timeout).await;
        }
        let route = {
            let mut peak = self.peak.lock();
            let envs = self.envs.lock();
            // The least busy environment: a load balancer's choice (on demand, any idle one).
            let least = envs.iter().min_by_key(|e| e.platform.slots_in_use());
            let free = least
                .filter(|e| e.platform.reserve(self.config.per_environment))
                .cloned();
            let cold = free.is_none()
                && envs.len() + self.starting.load(Ordering::Relaxed) < self.config.environments
                && self.scale_up.lock().take(now);
            if cold {
                self.starting.fetch_add(1, Ordering::Relaxed);
            }
            if free.is_some() || cold {
                *peak = (*peak).max(busy(&envs) + self.starting.load(Ordering::Relaxed));
            }
            match (free, cold) {
                (Some(env), _) => Route::Warm(env),
                (None, true) => Route::Cold,
                (None, false) => Route::Throttled,
            }
        };
        match route {
            Route::Warm(env) => Invoke::Done(env.platform.invoke(payload, timeout).await),
            Route::Cold => self.cold_invoke(payload, timeout).await,
            Route::Throttled => Invoke::Throttled(Throttle::Concurrency),
        }
    }

    /// Managed Instances' router: the least busy environment with a free slot whose CPU is
    /// under the protection point. No environment is ever started for an invoke: without one,
    /// the invoke is throttled (high CPU if some environment had a free slot, else concurrency).
    async fn invoke_managed(
        &self,
        managed: &Managed,
        payload: String,
        timeout: Duration,
    ) -> Invoke {
        let k = self.config.per_environment;
        let routed = {
            let mut peak = self.peak.lock();
            let envs = self.envs.lock();
            let open = |e: &&Arc<Environment>| e.platform.slots_in_use() < k;
            let cool = |e: &&Arc<Environment>| e.platform.cpu_utilisation() <= managed.protect_at;
            let chosen = envs
                .iter()
                .filter(open)
                .filter(cool)
                .min_by_key(|e| e.platform.slots_in_use())
                .filter(|e| e.platform.reserve(k))
                .cloned();
            if chosen.is_some() {
                *peak = (*peak).max(busy(&envs));
            }
            chosen.ok_or(if envs.iter().any(|e| open(&e)) {
                Throttle::Cpu
            } else {
                Throttle::Concurrency
            })
        };
        match routed {
            Ok(env) => Invoke::Done(env.platform.invoke(payload, timeout).await),
            Err(reason) => Invoke::Throttled(reason),
        }
    }

    /// Starts an environment for this invoke (counted busy meanwhile), then runs it there.
    async fn cold_invoke(&self, payload: String, timeout: Duration) -> Invoke {
        let delay = self.config.platform.init_delay;
        let mut builder = environment(&self.config);
        // The Rust test function does its init work before its first `next`, as a runtime
        // does; other runtimes' environments wait here instead, after it.
        let in_runtime = matches!(self.config.runtime, Runtime::Rust { .. });
        if in_runtime && !delay.is_zero() {
            builder = builder.runtime_env("TEST_FUNCTION_INIT_MS", &delay.as_millis().to_string());
        }
        let env = Arc::new(builder.start().await);
        ready(&self.config, &env, false).await;
        if !in_runtime {
            tokio::time::sleep(delay).await;
        }
        env.platform.reserve(self.config.per_environment);
        self.envs.lock().push(env.clone());
        self.starting.fetch_sub(1, Ordering::Relaxed);
        Invoke::Done(env.platform.invoke(payload, timeout).await)
    }

    /// The highest number of busy slots since the last call.
    pub fn take_peak(&self) -> usize {
        let mut peak = self.peak.lock();
        let now = busy(&self.envs.lock()) + self.starting.load(Ordering::Relaxed);
        std::mem::replace(&mut *peak, now)
    }

    /// The slots the load's multiples are of: every environment's (Managed Instances: the
    /// minimum fleet's, three environments).
    pub fn capacity(&self) -> usize {
        let environments = self
            .config
            .managed
            .map_or(self.config.environments, |m| m.min);
        environments * self.config.per_environment
    }

    /// How long shed invocations kept their slot busy, as Lambda counts it, since the last call
    /// (one-slot environments).
    pub fn take_shed_holds(&self) -> Vec<Duration> {
        self.envs
            .lock()
            .iter()
            .flat_map(|e| e.platform.take_shed_holds())
            .collect()
    }

    /// Environments started so far, warm or cold.
    pub fn started(&self) -> usize {
        self.envs.lock().len()
    }

    /// The environments invokes may go to now.
    pub fn environments(&self) -> Vec<Arc<Environment>> {
        self.envs.lock().clone()
    }

    /// Takes an environment out of service: no invoke goes to it from now on, and the next invoke
    /// that finds no free slot may start another in its place. Lambda does this to an idle
    /// environment it reclaims (`busy: false`) and to one whose runtime crashed (`busy: true`,
    /// one with an invocation in flight). `spare` is never taken. `None` if none qualifies.
    pub fn retire(&self, busy: bool, spare: &Arc<Environment>) -> Option<Arc<Environment>> {
        let _routing = self.peak.lock();
        let mut envs = self.envs.lock();
        let i = envs
            .iter()
            .position(|e| !Arc::ptr_eq(e, spare) && (e.platform.slots_in_use() > 0) == busy)?;
        Some(envs.remove(i))
    }
}

/// Where an invoke goes.
enum Route {
    Warm(Arc<Environment>),
    Cold,
    Throttled,
}

fn busy(envs: &[Arc<Environment>]) -> usize {
    envs.iter().map(|e| e.platform.slots_in_use()).sum()
}

/// One environment of the fleet, configured but not started.
fn environment(config: &FleetConfig) -> Builder {
    let limit = config.environments * config.per_environment;
    let mut b = Builder::new(config.runtime.clone());
    if config.per_environment > 1 {
        b = b.managed_instances(config.per_environment as u32);
    }
    if let Some(m) = config.managed {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("emulated-cgroup-{}-{n}", std::process::id()));
        b = b.cpu(crate::platform::CpuModel {
            vcpus: m.vcpus,
            dir: Some(dir),
            window: m.protect_window,
        });
    }
    if let (Some(shed_at), false) = (config.shed_at, config.layer == Layer::None) {
        b = b.env("ADMISSION_SHED_AT", &shed_at.to_string());
    }
    b = match &config.layer {
        Layer::None => b.without_layer(),
        // On Managed Instances the limit is the runtime's concurrency; on demand, the
        // function's limit, which one environment alone never approaches.
        Layer::Local if config.per_environment > 1 => b,
        Layer::Local => b.env("ADMISSION_LIMIT", &limit.to_string()),
        Layer::Redis(url) => b
            .env("ADMISSION_LIMIT", &limit.to_string())
            .env("ADMISSION_COORDINATOR", url)
            .env("ADMISSION_POOL", &config.pool)
            .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "50"),
        Layer::Template(None) => b,
        Layer::Template(Some(url)) => b
            .env("ADMISSION_COORDINATOR", url)
            .env("ADMISSION_POOL", &config.pool),
    };
    b = b.envs(&config.extension_env);
    for (k, v) in &config.runtime_env {
        b = b.runtime_env(k, v);
    }
    b.env("ADMISSION_METRICS_INTERVAL", "3600")
}

/// Waits until the runtime asks for its first event (Lambda routes no invoke before) and, with
/// Redis, until the extension is connected (10 s at most). A fleet starting must connect; an
/// environment started for an invoke goes ahead without (Lambda knows nothing of Redis, and an
/// extension that found Redis down tries again on its next decision).
async fn ready(config: &FleetConfig, e: &Environment, must_connect: bool) {
    assert!(
        e.platform.wait_ready(Duration::from_secs(20)).await,
        "a runtime did not start: {}",
        e.runtime_stderr.text()
    );
    if matches!(config.layer, Layer::Redis(_) | Layer::Template(Some(_))) {
        let connected = e
            .wait_status(Duration::from_secs(10), |s| {
                s["coordinatorConnected"] == true
            })
            .await;
        assert!(
            connected.is_ok() || !must_connect,
            "an environment did not reach Redis: {}",
            e.extension_stderr.text()
        );
    }
}

/// An HTTP response as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// API Gateway's stage (or method) throttle: `rate` requests a second, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageThrottle {
    pub rate: f64,
    pub burst: f64,
    /// A `THROTTLED` gateway response that adds a static `Retry-After` (seconds).
    pub retry_after: Option<u64>,
}

pub struct ApiGateway {
    /// The workaround: gateway-generated 5xx responses (`DEFAULT_5XX`) become 429.
    pub remap_5xx_to_429: bool,
    throttle: Option<(StageThrottle, Mutex<TokenBucket>)>,
}

impl ApiGateway {
    pub fn new(remap_5xx_to_429: bool, throttle: Option<StageThrottle>) -> ApiGateway {
        ApiGateway {
            remap_5xx_to_429,
            throttle: throttle.map(|t| (t, Mutex::new(TokenBucket::new(t.rate, t.burst)))),
        }
    }

    /// The stage throttle's answer when it refuses the request; `None`: on to Lambda.
    pub fn throttle(&self) -> Option<HttpResponse> {
        let (throttle, bucket) = self.throttle.as_ref()?;
        if bucket.lock().take(Instant::now()) {
            return None;
        }
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "x-amzn-ErrorType".to_string(),
                "TooManyRequestsException".to_string(),
            ),
        ];
        if let Some(seconds) = throttle.retry_after {
            headers.push(("retry-after".into(), seconds.to_string()));
        }
        Some(HttpResponse {
            status: 429,
            headers,
            body: json!({"message": "Too Many Requests"}).to_string(),
        })
    }

    /// The REST proxy-integration event for `GET path?query`.
    pub fn event(path: &str, query: &[(&str, &str)]) -> String {
        ApiGateway::event_with(path, query, &[])
    }

    /// [`ApiGateway::event`] with these request headers besides `accept` and `host`.
    pub fn event_with(path: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> String {
        let q: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut single = json!({"accept": "*/*", "host": "api.example.com"});
        let mut multi = json!({"accept": ["*/*"], "host": ["api.example.com"]});
        for (k, v) in headers {
            single[*k] = json!(v);
            multi[*k] = json!([v]);
        }
        json!({
            "resource": "/{proxy+}", "path": path, "httpMethod": "GET",
            "headers": single,
            "multiValueHeaders": multi,
            "queryStringParameters": q, "multiValueQueryStringParameters": null,
            "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "GET", "stage": "prod",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "path": format!("/prod{path}")},
            "body": null, "isBase64Encoded": false,
        })
        .to_string()
    }

    /// What the client receives for `invoke`.
    pub fn respond(&self, invoke: &Invoke) -> HttpResponse {
        match invoke {
            Invoke::Throttled(_) => {
                self.gateway_error(500, "Internal server error", "InternalServerErrorException")
            }
            Invoke::Done(Outcome::Error { .. }) => {
                self.gateway_error(502, "Internal server error", "InternalServerErrorException")
            }
            Invoke::Done(Outcome::Timeout) => {
                self.gateway_error(504, "Endpoint request timed out", "IntegrationTimeout")
            }
            Invoke::Done(Outcome::Response { body, .. }) => match proxy_response(body) {
                Some(r) => r,
                None => {
                    self.gateway_error(502, "Internal server error", "InternalServerErrorException")
                }
            },
        }
    }

    fn gateway_error(&self, status: u16, message: &str, error_type: &str) -> HttpResponse {
        let status = if self.remap_5xx_to_429 && status >= 500 {
            429
        } else {
            status
        };
        HttpResponse {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-amzn-ErrorType".into(), error_type.into()),
            ],
            body: json!({"message": message}).to_string(),
        }
    }
}

/// A Lambda proxy response, or `None` if malformed (API Gateway answers 502 then).
fn proxy_response(body: &[u8]) -> Option<HttpResponse> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let status = v
        .get("statusCode")?
        .as_u64()
        .filter(|s| (100..600).contains(s))? as u16;
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = v.get("headers").and_then(Value::as_object) {
        headers.extend(
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))),
        );
    }
    // multiValueHeaders win over headers of the same name.
    if let Some(h) = v.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vals) in h {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            for val in vals
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                headers.push((k.clone(), val.to_string()));
            }
        }
    }
    let body = match v.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return None,
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn done(body: &str) -> Invoke {
        Invoke::Done(Outcome::Response {
            body: Bytes::from(body.to_string()),
            streamed: false,
            trailers: Default::default(),
        })
    }

    #[test]
    fn api_gateway_maps_lambda_outcomes_like_rest_proxy_integration() {
        let gw = ApiGateway::new(false, None);
        let r = gw.respond(&Invoke::Throttled(Throttle::Concurrency));
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, r#"{"message":"Internal server error"}"#)
        );
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InternalServerErrorException")
        );
        let r = gw.respond(&done(r#"{"statusCode":201,"headers":{"a":"1","b":"2"},"multiValueHeaders":{"b":["3","4"]},"body":"hi"}"#));
        assert_eq!((r.status, r.body.as_str()), (201, "hi"));
        assert_eq!(
            r.headers,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("b".into(), "4".into())
            ]
        );
        assert_eq!(gw.respond(&done("not json")).status, 502);
        assert_eq!(gw.respond(&done(r#"{"body":"no status"}"#)).status, 502);
        let err = Invoke::Done(Outcome::Error {
            error_type: "Unhandled".into(),
            body: Bytes::new(),
        });
        assert_eq!(gw.respond(&err).status, 502);
    }

    #[test]
    fn the_stage_throttle_is_a_token_bucket_answering_a_proper_429() {
        let gw = ApiGateway::new(
            false,
            Some(StageThrottle {
                rate: 0.001,
                burst: 3.0,
                retry_after: Some(2),
            }),
        );
        let passed = (0..10).filter(|_| gw.throttle().is_none()).count();
        assert_eq!(passed, 3, "the burst, then nothing at this rate");
        let r = gw.throttle().unwrap();
        assert_eq!(
            (r.status, r.body.as_str()),
            (429, r#"{"message":"Too Many Requests"}"#)
        );
        assert_eq!(r.header("retry-after"), Some("2"));
        assert!(ApiGateway::new(false, None).throttle().is_none());
    }

    #[test]
    fn a_token_bucket_refills_at_its_rate_up_to_its_burst() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0);
        b.at = start;
        assert_eq!((0..8).filter(|_| b.take(start)).count(), 5);
        let later = start + Duration::from_millis(300);
        assert_eq!(
            (0..8).filter(|_| b.take(later)).count(),
            3,
            "10/s for 0.3 s"
        );
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            (0..8).filter(|_| b.take(much_later)).count(),
            5,
            "never past the burst"
        );
    }

    #[test]
    fn the_workaround_turns_every_gateway_5xx_into_429() {
        let gw = ApiGateway::new(true, None);
        assert_eq!(gw.respond(&Invoke::Throttled(Throttle::Rate)).status, 429);
        let err = Invoke::Done(Outcome::Error {
            error_type: "Unhandled".into(),
            body: Bytes::new(),
        });
        assert_eq!(
            gw.respond(&err).status,
            429,
            "a genuine error becomes a 429 too"
        );
        assert_eq!(
            gw.respond(&Invoke::Throttled(Throttle::Concurrency))
                .header("retry-after"),
            None
        );
        // A 500 the function itself returns is not a gateway response: untouched.
        assert_eq!(
            gw.respond(&done(r#"{"statusCode":500,"body":"x"}"#)).status,
            500
        );
    }
}
