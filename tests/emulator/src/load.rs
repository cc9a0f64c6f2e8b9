//! Open-loop load through the front door, and the figures it produces.
//!
//! Arrivals are Poisson at a set rate that does not slow down when the function does (a closed
//! loop would wait for answers and hide the overload). Handler durations are lognormal around a
//! mean; a small share of requests ask the handler to fail, so that genuine errors can be told
//! apart from overload in the results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clients::{Client, Quota};
use crate::fleet::{ApiGateway, Fleet, Invoke, Throttle};
use crate::stats::percentile;
use crate::Outcome;

#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Offered load as a multiple of the fleet's capacity (concurrency / mean duration).
    pub multiple: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub steps: Vec<Step>,
    pub mean_ms: f64,
    /// σ of the duration's logarithm.
    pub sigma: f64,
    /// Share of requests whose handler fails on purpose.
    pub error_share: f64,
    /// Share of requests sent to [`CRITICAL_PATH`] instead of `/orders`.
    pub critical_share: f64,
    /// Tenants' relative demands: each request goes to tenant `i` with probability
    /// `tenants[i] / sum`, named in the header [`TENANT_HEADER`] as `tenant-<i>`. Empty: none.
    pub tenants: Vec<f64>,
    pub seed: u64,
    /// Handlers call the emulator's downstream on this port instead of sleeping, and the steps'
    /// multiples are of this capacity (requests a second) instead of the fleet's.
    pub downstream: Option<(u16, f64)>,
    /// How clients retry ([`Client::Once`]: they do not).
    pub client: Client,
    /// The function's timeout: each invoke's deadline, and how long the front door waits.
    pub timeout: Duration,
    /// vCPU each handler keeps busy while it runs (the event's `cpu` query parameter: the
    /// platform's CPU model accounts it); 0: none.
    pub cpu: f64,
}

/// How long a client keeps trying: a request not served within it counts as not served.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The header that names a request's tenant (`ADMISSION_TENANT=header:x-tenant`).
pub const TENANT_HEADER: &str = "x-tenant";

/// The path of the load's critical requests (a rule such as `GET /checkout` makes them so).
pub const CRITICAL_PATH: &str = "/checkout";

impl LoadSpec {
    /// What the steps' multiples are of: the downstream's capacity when handlers call one, else
    /// the fleet's (`capacity` slots over the mean duration).
    pub fn capacity_rps(&self, capacity: usize) -> f64 {
        match self.downstream {
            Some((_, rps)) => rps,
            None => capacity as f64 / (self.mean_ms / 1000.0),
        }
    }

    /// 0.5× → 2× → 5× → 10× → 0.5× of capacity, `seconds` each, ~100 ms handlers, 1 % errors.
    pub fn standard(seconds: f64) -> LoadSpec {
        LoadSpec {
            steps: [0.5, 2.0, 5.0, 10.0, 0.5]
                .iter()
                .map(|&multiple| Step { multiple, seconds })
                .collect(),
            mean_ms: 100.0,
            sigma: 0.5,
            error_share: 0.01,
            critical_share: 0.0,
            tenants: Vec::new(),
            seed: 7,
            downstream: None,
            client: Client::Once,
            timeout: Duration::from_secs(30),
            cpu: 0.0,
        }
    }
}

/// One request as the client saw it, plus what really happened.
#[derive(Debug, Clone)]
pub struct Record {
    /// Seconds from the start of the run to sending it.
    pub at: f64,
    pub step: usize,
    pub status: u16,
    pub latency: Duration,
    pub retry_after: bool,
    /// API Gateway's stage throttle answered it.
    pub gateway_throttled: bool,
    /// Lambda throttled it, and why.
    pub throttle: Option<Throttle>,
    /// The request asked its handler to fail.
    pub designed_error: bool,
    /// The handler ran and failed.
    pub errored: bool,
    /// Sent to [`CRITICAL_PATH`].
    pub critical: bool,
    /// The tenant it was sent for (an index into [`LoadSpec::tenants`]).
    pub tenant: Option<usize>,
    /// A retry sent when the previous answer's `Retry-After` said to.
    pub after_retry_after: bool,
    /// The request id the function's answer named (`x-request-id`), if it named one.
    pub request_id: Option<String>,
}

/// One request as its client lived it, from the first attempt to the last.
#[derive(Debug, Clone)]
pub struct Request {
    /// The step its first attempt was sent in.
    pub step: usize,
    pub attempts: u32,
    /// From the first attempt to the 2xx, if one came within [`PATIENCE`].
    pub served_after: Option<Duration>,
    /// When it was served, in seconds from the start of the run.
    pub served_at: Option<f64>,
    /// It asked its handler to fail: no attempt could succeed.
    pub designed_error: bool,
    /// The largest `Retry-After` its attempts were given, in seconds.
    pub largest_retry_after: Option<f64>,
}

pub struct Run {
    /// Every attempt.
    pub records: Vec<Record>,
    pub requests: Vec<Request>,
    /// Peak busy slots in the fleet, per step.
    pub peaks: Vec<usize>,
    /// How long each shed invocation kept its slot busy, as Lambda counts it, per step.
    pub shed_holds: Vec<Vec<Duration>>,
    /// The environments taking invokes at the end of each step.
    pub environments: Vec<usize>,
    /// When the load started.
    pub started: Instant,
}

/// Drives `spec` through `gateway` into `fleet`; `progress` hears of each step as it starts.
pub async fn run(
    fleet: Arc<Fleet>,
    gateway: Arc<ApiGateway>,
    spec: &LoadSpec,
    mut progress: impl FnMut(usize, f64),
) -> Run {
    let capacity_rps = spec.capacity_rps(fleet.capacity());
    let downstream = spec.downstream.map(|(port, _)| port.to_string());
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mu = spec.mean_ms.ln() - spec.sigma * spec.sigma / 2.0;
    let tenant_total: f64 = spec.tenants.iter().sum();
    let start = Instant::now();
    let step_ends: Arc<Vec<f64>> = Arc::new(
        spec.steps
            .iter()
            .scan(0.0, |end, step| {
                *end += step.seconds;
                Some(*end)
            })
            .collect(),
    );
    let quota = Arc::new(Quota::default());
    // The clients' own draws (their backoff jitter), apart from the arrivals': a seed gives the
    // same arrivals, durations and errors whatever the clients do.
    let mut retry_seeds = fastrand::Rng::with_seed(spec.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut tasks = Vec::new();
    let mut peaks = Vec::new();
    let mut shed_holds = Vec::new();
    let mut environments = Vec::new();
    let cpu = (spec.cpu > 0.0).then(|| spec.cpu.to_string());
    let mut t = 0.0f64;
    for (i, step) in spec.steps.iter().enumerate() {
        progress(i, step.multiple * capacity_rps);
        fleet.take_peak();
        let rate = step.multiple * capacity_rps;
        let end = t + step.seconds;
        loop {
            t += -(1.0 - rng.f64()).ln() / rate;
            if t >= end {
                t = end;
                break;
            }
            let due = start + Duration::from_secs_f64(t);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            let designed_error = rng.f64() < spec.error_share;
            let critical = rng.f64() < spec.critical_share;
            let tenant = pick(&spec.tenants, tenant_total, rng.f64());
            let ms = (mu + spec.sigma * normal(&mut rng)).exp().round().max(1.0) as u64;
            let ms = ms.to_string();
            let mut query: Vec<(&str, &str)> = match (designed_error, downstream.as_deref()) {
                (true, _) => vec![("op", "error")],
                (false, Some(port)) => vec![("op", "downstream"), ("port", port)],
                (false, None) => vec![("op", "sleep"), ("ms", &ms)],
            };
            if let (Some(cpu), false) = (cpu.as_deref(), designed_error) {
                query.push(("cpu", cpu));
            }
            let path = if critical { CRITICAL_PATH } else { "/orders" };
            let name = tenant.map(|t| format!("tenant-{t}"));
            let headers: Vec<(&str, &str)> = name
                .as_deref()
                .map(|t| vec![(TENANT_HEADER, t)])
                .unwrap_or_default();
            let request = Attempts {
                fleet: fleet.clone(),
                gateway: gateway.clone(),
                event: ApiGateway::event_with(path, &query, &headers),
                step: i,
                at: t,
                start,
                step_ends: step_ends.clone(),
                designed_error,
                critical,
                tenant,
                client: spec.client,
                timeout: spec.timeout,
                quota: quota.clone(),
                rng: fastrand::Rng::with_seed(retry_seeds.u64(..)),
            };
            tasks.push(tokio::spawn(request.run()));
        }
        let remaining =
            (start + Duration::from_secs_f64(end)).saturating_duration_since(Instant::now());
        tokio::time::sleep(remaining).await;
        peaks.push(fleet.take_peak());
        shed_holds.push(fleet.take_shed_holds());
        environments.push(fleet.started());
    }
    let mut records = Vec::with_capacity(tasks.len());
    let mut requests = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok((attempts, request)) = task.await {
            records.extend(attempts);
            requests.push(request);
        }
    }
    Run {
        records,
        requests,
        peaks,
        shed_holds,
        environments,
        started: start,
    }
}

/// One request through its client: attempts until a 2xx, or until the client stops.
struct Attempts {
    fleet: Arc<Fleet>,
    gateway: Arc<ApiGateway>,
    event: String,
    /// The first attempt's step, and when it was sent (seconds from `start`).
    step: usize,
    at: f64,
    start: Instant,
    /// When each step ends, in seconds from `start`: a retry counts in the step it is sent in.
    step_ends: Arc<Vec<f64>>,
    designed_error: bool,
    critical: bool,
    tenant: Option<usize>,
    client: Client,
    timeout: Duration,
    quota: Arc<Quota>,
    rng: fastrand::Rng,
}

impl Attempts {
    async fn run(mut self) -> (Vec<Record>, Request) {
        let first = Instant::now();
        let mut records = Vec::new();
        let mut after_retry_after = false;
        let mut served = None;
        let mut largest_retry_after: Option<f64> = None;
        loop {
            let (record, retry_after) = self.send(records.is_empty(), after_retry_after).await;
            largest_retry_after = largest_retry_after
                .into_iter()
                .chain(retry_after)
                .reduce(f64::max);
            let status = record.status;
            records.push(record);
            let attempts = records.len() as u32;
            if (200..300).contains(&status) {
                self.client.succeeded(attempts, &self.quota);
                served = Some(first.elapsed()).filter(|d| *d <= PATIENCE);
                break;
            }
            let quota = &self.quota;
            match self
                .client
                .retry(attempts, status, retry_after, quota, &mut self.rng)
            {
                Some(wait) if first.elapsed() + wait < PATIENCE => {
                    after_retry_after =
                        retry_after.is_some() && self.client.honours_retry_after(status);
                    tokio::time::sleep(wait).await;
                }
                _ => break,
            }
        }
        let request = Request {
            step: self.step,
            attempts: records.len() as u32,
            served_after: served,
            served_at: served.map(|_| self.start.elapsed().as_secs_f64()),
            designed_error: self.designed_error,
            largest_retry_after,
        };
        (records, request)
    }

    /// One attempt through the gateway; its record, and the `Retry-After` it carried (s).
    async fn send(&self, first: bool, after_retry_after: bool) -> (Record, Option<f64>) {
        let at = if first {
            self.at
        } else {
            self.start.elapsed().as_secs_f64()
        };
        let step = if first {
            self.step
        } else {
            let last = self.step_ends.len() - 1;
            self.step_ends
                .iter()
                .position(|end| at < *end)
                .unwrap_or(last)
        };
        let sent = Instant::now();
        let (response, invoke) = match self.gateway.throttle() {
            Some(response) => (response, None),
            None => {
                let invoke = self.fleet.invoke(self.event.clone(), self.timeout).await;
                (self.gateway.respond(&invoke), Some(invoke))
            }
        };
        let retry_after = response
            .header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok());
        let record = Record {
            at,
            step,
            status: response.status,
            latency: sent.elapsed(),
            retry_after: retry_after.is_some(),
            gateway_throttled: invoke.is_none(),
            throttle: match &invoke {
                Some(Invoke::Throttled(t)) => Some(*t),
                _ => None,
            },
            designed_error: self.designed_error,
            errored: matches!(invoke, Some(Invoke::Done(Outcome::Error { .. }))),
            critical: self.critical,
            tenant: self.tenant,
            after_retry_after,
            request_id: response.header("x-request-id").map(str::to_string),
        };
        (record, retry_after)
    }
}

/// The tenant whose cumulative weight `u × total` falls in; `None` without tenants.
fn pick(weights: &[f64], total: f64, u: f64) -> Option<usize> {
    if weights.is_empty() || total <= 0.0 {
        return None;
    }
    let mut left = u * total;
    for (i, w) in weights.iter().enumerate() {
        if left < *w {
            return Some(i);
        }
        left -= w;
    }
    Some(weights.len() - 1)
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u1, u2) = (1.0 - rng.f64(), rng.f64());
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The figures of one step.
#[derive(Debug, Clone, Default)]
pub struct StepFigures {
    pub multiple: f64,
    pub requests: usize,
    pub ok: usize,
    pub too_many: usize,
    pub too_many_with_retry_after: usize,
    /// 429s from API Gateway's stage throttle (also in `too_many`).
    pub gateway_too_many: usize,
    /// Lambda throttles (500s to the client), by reason.
    pub rate_throttled: usize,
    pub concurrency_throttled: usize,
    /// Managed Instances' CPU protection.
    pub cpu_throttled: usize,
    /// The environments taking invokes at the step's end.
    pub environments: usize,
    pub server_errors: usize,
    pub bad_gateway: usize,
    /// 2xx per second over the step, as a share of capacity.
    pub goodput_share: f64,
    /// The same as a share of the downstream's capacity, when handlers call one.
    pub downstream_share: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Client-side latency of the 429s: how long a shed request took.
    pub shed_p50_ms: f64,
    pub shed_p99_ms: f64,
    /// Handlers that failed but whose clients saw something other than an error (5xx).
    pub errors_misreported: usize,
    pub genuine_errors: usize,
    pub peak_busy: usize,
    /// Mean and 99th percentile of how long a shed kept its slot busy (Lambda's view), ms.
    pub shed_hold_mean_ms: f64,
    pub shed_hold_p99_ms: f64,
    /// Requests to [`CRITICAL_PATH`], and how many of them got a 2xx.
    pub critical: usize,
    pub critical_ok: usize,
    /// Per tenant ([`LoadSpec::tenants`]): requests that did not ask their handler to fail,
    /// and how many of them got a 2xx.
    pub tenants: Vec<(usize, usize)>,
    /// What the clients whose first attempt came in this step lived: see [`Clients`].
    pub clients: Clients,
}

/// The requests first sent in a step, as their clients saw them (designed errors aside: no
/// attempt of theirs can succeed).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// First attempts.
    pub requests: usize,
    /// Attempts per request, retries included.
    pub attempts_per_request: f64,
    /// Share served (a 2xx) within [`PATIENCE`].
    pub eventual_success: f64,
    /// From the first attempt to the 2xx, of those served, ms.
    pub time_to_success_p50_ms: f64,
    pub time_to_success_p99_ms: f64,
    /// Requests whose client stopped without a 2xx.
    pub gave_up: usize,
    /// The last of them served, in seconds after the step ended (negative: before).
    pub last_served_after_step_s: Option<f64>,
    /// The largest `Retry-After` any of them was given, in seconds.
    pub largest_retry_after_s: Option<f64>,
    /// Retries sent in this step when a `Retry-After` said to, and the share of them served.
    pub retries_at_retry_after: usize,
    pub retry_after_served: Option<f64>,
}

fn clients(run: &Run, step: usize, step_end: f64) -> Clients {
    let mine: Vec<&Request> = run
        .requests
        .iter()
        .filter(|r| r.step == step && !r.designed_error)
        .collect();
    let mut served: Vec<Duration> = mine.iter().filter_map(|r| r.served_after).collect();
    served.sort();
    let ms = |q: f64| percentile(&served, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let timed: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| r.step == step && r.after_retry_after && !r.designed_error)
        .collect();
    let n = mine.len().max(1) as f64;
    Clients {
        requests: mine.len(),
        attempts_per_request: mine.iter().map(|r| f64::from(r.attempts)).sum::<f64>() / n,
        eventual_success: served.len() as f64 / n,
        time_to_success_p50_ms: ms(0.5),
        time_to_success_p99_ms: ms(0.99),
        gave_up: mine.len() - served.len(),
        last_served_after_step_s: mine
            .iter()
            .filter_map(|r| r.served_at)
            .reduce(f64::max)
            .map(|at| at - step_end),
        largest_retry_after_s: mine
            .iter()
            .filter_map(|r| r.largest_retry_after)
            .reduce(f64::max),
        retries_at_retry_after: timed.len(),
        retry_after_served: (!timed.is_empty()).then(|| {
            timed
                .iter()
                .filter(|r| (200..300).contains(&r.status))
                .count() as f64
                / timed.len() as f64
        }),
    }
}

pub fn figures(run: &Run, spec: &LoadSpec, capacity: usize) -> Vec<StepFigures> {
    let capacity_rps = spec.capacity_rps(capacity);
    spec.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let rs: Vec<&Record> = run.records.iter().filter(|r| r.step == i).collect();
            let mut shed: Vec<Duration> = rs
                .iter()
                .filter(|r| r.status == 429)
                .map(|r| r.latency)
                .collect();
            shed.sort();
            let mut ok_latency: Vec<Duration> = rs
                .iter()
                .filter(|r| (200..300).contains(&r.status))
                .map(|r| r.latency)
                .collect();
            ok_latency.sort();
            let ms = |sorted: &[Duration], q: f64| {
                percentile(sorted, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
            };
            let ok = ok_latency.len();
            StepFigures {
                multiple: step.multiple,
                requests: rs.len(),
                ok,
                too_many: rs.iter().filter(|r| r.status == 429).count(),
                too_many_with_retry_after: rs
                    .iter()
                    .filter(|r| r.status == 429 && r.retry_after)
                    .count(),
                gateway_too_many: rs.iter().filter(|r| r.gateway_throttled).count(),
                rate_throttled: rs
                    .iter()
                    .filter(|r| r.throttle == Some(Throttle::Rate))
                    .count(),
                concurrency_throttled: rs
                    .iter()
                    .filter(|r| r.throttle == Some(Throttle::Concurrency))
                    .count(),
                cpu_throttled: rs
                    .iter()
                    .filter(|r| r.throttle == Some(Throttle::Cpu))
                    .count(),
                environments: run.environments.get(i).copied().unwrap_or(0),
                server_errors: rs.iter().filter(|r| r.status == 500).count(),
                bad_gateway: rs.iter().filter(|r| r.status == 502).count(),
                goodput_share: ok as f64 / step.seconds / capacity_rps,
                downstream_share: spec
                    .downstream
                    .map(|(_, rps)| ok as f64 / step.seconds / rps),
                p50_ms: ms(&ok_latency, 0.5),
                p99_ms: ms(&ok_latency, 0.99),
                shed_p50_ms: ms(&shed, 0.5),
                shed_p99_ms: ms(&shed, 0.99),
                errors_misreported: rs.iter().filter(|r| r.errored && r.status < 500).count(),
                genuine_errors: rs.iter().filter(|r| r.errored).count(),
                peak_busy: run.peaks.get(i).copied().unwrap_or(0),
                shed_hold_mean_ms: run.shed_holds.get(i).map_or(0.0, |h| {
                    h.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0
                        / h.len().max(1) as f64
                }),
                shed_hold_p99_ms: run.shed_holds.get(i).map_or(0.0, |h| {
                    let mut h = h.clone();
                    h.sort();
                    ms(&h, 0.99)
                }),
                critical: rs.iter().filter(|r| r.critical).count(),
                critical_ok: rs
                    .iter()
                    .filter(|r| r.critical && (200..300).contains(&r.status))
                    .count(),
                tenants: (0..spec.tenants.len())
                    .map(|t| {
                        let mine = rs
                            .iter()
                            .filter(|r| r.tenant == Some(t) && !r.designed_error);
                        let ok = mine
                            .clone()
                            .filter(|r| (200..300).contains(&r.status))
                            .count();
                        (mine.count(), ok)
                    })
                    .collect(),
                clients: clients(
                    run,
                    i,
                    spec.steps[..=i].iter().map(|s| s.seconds).sum::<f64>(),
                ),
            }
        })
        .collect()
}

/// Seconds into the last step until refusals (429s and 500s) are back to what the first, calm
/// step saw: from then on no second has more than twice the calm rate, plus one. `None`: not
/// within the step.
pub fn recovery_seconds(run: &Run, spec: &LoadSpec) -> Option<f64> {
    let last = spec.steps.len() - 1;
    let last_start: f64 = spec.steps[..last].iter().map(|s| s.seconds).sum();
    let refused = |r: &&Record| r.status == 429 || r.status == 500;
    let calm = run
        .records
        .iter()
        .filter(|r| r.step == 0)
        .filter(refused)
        .count() as f64
        / spec.steps[0].seconds;
    let allowed = (2.0 * calm).ceil() as usize + 1;
    let seconds = spec.steps[last].seconds.ceil() as usize;
    let mut per_second = vec![0usize; seconds.max(1)];
    for r in run
        .records
        .iter()
        .filter(|r| r.step == last)
        .filter(refused)
    {
        per_second[((r.at - last_start) as usize).min(seconds.max(1) - 1)] += 1;
    }
    let recovered_from = per_second
        .iter()
        .rposition(|&n| n > allowed)
        .map_or(0, |i| i + 1);
    (recovered_from < seconds).then_some(recovered_from as f64)
}

/// Counts per whole second: (second, 2xx, 429, 500).
/// The 99th percentile latency (ms) of the 2xx responses sent in each second (0 without any).
pub fn p99_per_second(run: &Run, seconds: usize) -> Vec<f64> {
    let mut by_second: Vec<Vec<Duration>> = vec![Vec::new(); seconds];
    for r in run
        .records
        .iter()
        .filter(|r| (200..300).contains(&r.status))
    {
        if let Some(s) = by_second.get_mut(r.at as usize) {
            s.push(r.latency);
        }
    }
    by_second
        .into_iter()
        .map(|mut l| {
            crate::stats::percentile_of(&mut l, 0.99).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        })
        .collect()
}

pub fn per_second(run: &Run, seconds: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize, usize)> = (0..seconds).map(|s| (s, 0, 0, 0)).collect();
    for r in &run.records {
        let s = (r.at as usize).min(seconds.saturating_sub(1));
        match r.status {
            200..=299 => out[s].1 += 1,
            429 => out[s].2 += 1,
            500 => out[s].3 += 1,
            _ => {}
        }
    }
    out
}
