//! Counts of what was admitted and shed, written as CloudWatch Embedded Metric Format lines.
//!
//! Counters are aggregated over `ADMISSION_METRICS_INTERVAL` and flushed as one JSON line on
//! stdout, which Lambda sends to CloudWatch Logs where EMF becomes metrics. Never one line per
//! invocation: the cost of a line must not grow with traffic. Nothing here sees a payload.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::decision::classes::Class;
use crate::decision::limit::Limit;

pub const ADMITTED: &str = "Admitted";
pub const SHED: &str = "Shed";
pub const WOULD_SHED: &str = "WouldShed";
pub const FAIL_OPEN: &str = "FailOpen";
pub const SHED_UNCONFIRMED: &str = "ShedUnconfirmed";
pub const IN_FLIGHT_MAX: &str = "InFlightMax";
pub const LIMIT: &str = "Limit";
pub const DECISION_LATENCY: [&str; 3] = [
    "DecisionLatencyP50",
    "DecisionLatencyP99",
    "DecisionLatencyMax",
];
pub const FLEET_IN_FLIGHT: &str = "FleetInFlight";
pub const COORDINATOR_LATENCY: [&str; 3] = [
    "CoordinatorLatencyP50",
    "CoordinatorLatencyP99",
    "CoordinatorLatencyMax",
];
pub const COORDINATOR_ERRORS: &str = "CoordinatorErrors";
pub const INVOKE_RATE: &str = "InvokeRate";
pub const INVOKE_RATE_LIMIT: &str = "InvokeRateLimit";
pub const TENANTS_IN_FLIGHT_MAX: &str = "TenantsInFlightMax";
pub const ADAPTIVE_LIMIT: [&str; 3] = ["AdaptiveLimit", "AdaptiveLimitMin", "AdaptiveLimitMax"];
pub const ADAPTIVE_LATENCY: &str = "AdaptiveLatency";
pub const ADAPTIVE_BASELINE: &str = "AdaptiveBaseline";
pub const CPU_UTILIZATION: &str = "CpuUtilization";
pub const CPU_LIMIT: &str = "CpuLimit";
pub const CPU_SHED: &str = "CpuShed";

/// Past this share of that cap, the log says which API Gateway throttle to set: more than the
/// recommended stage throttle lets through (8 × N a second, 9 × N in a second with a full burst),
/// so that a fleet behind it, busy at its rate, is not warned about.
const RATE_WARNING_SHARE: f64 = 0.95;

const COUNT: &str = "Count";
const MICROSECONDS: &str = "Microseconds";
const PER_SECOND: &str = "Count/Second";
const PERCENT: &str = "Percent";

/// Every metric with its unit: the one list the lines and the README's table follow.
pub const METRICS: &[(&str, &str)] = &[
    (ADMITTED, COUNT),
    (SHED, COUNT),
    (WOULD_SHED, COUNT),
    (FAIL_OPEN, COUNT),
    (SHED_UNCONFIRMED, COUNT),
    (IN_FLIGHT_MAX, COUNT),
    (LIMIT, COUNT),
    (DECISION_LATENCY[0], MICROSECONDS),
    (DECISION_LATENCY[1], MICROSECONDS),
    (DECISION_LATENCY[2], MICROSECONDS),
    (FLEET_IN_FLIGHT, COUNT),
    (COORDINATOR_LATENCY[0], MICROSECONDS),
    (COORDINATOR_LATENCY[1], MICROSECONDS),
    (COORDINATOR_LATENCY[2], MICROSECONDS),
    (COORDINATOR_ERRORS, COUNT),
    (INVOKE_RATE, PER_SECOND),
    (INVOKE_RATE_LIMIT, PER_SECOND),
    (TENANTS_IN_FLIGHT_MAX, COUNT),
    (ADAPTIVE_LIMIT[0], COUNT),
    (ADAPTIVE_LIMIT[1], COUNT),
    (ADAPTIVE_LIMIT[2], COUNT),
    (ADAPTIVE_LATENCY, MICROSECONDS),
    (ADAPTIVE_BASELINE, MICROSECONDS),
    (CPU_UTILIZATION, PERCENT),
    (CPU_LIMIT, COUNT),
    (CPU_SHED, COUNT),
];

/// Decision latencies kept per period: enough for a stable p99, bounded whatever the traffic.
const LATENCY_SAMPLES: usize = 1024;

pub struct Metrics {
    namespace: String,
    function_name: String,
    mode: &'static str,
    /// Class rules are configured: a line per class with activity, dimension `Class`.
    by_class: bool,
    period: Mutex<Period>,
    totals: Mutex<Totals>,
}

/// Counts since the extension started, for the status endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub admitted: u64,
    pub shed: u64,
}

#[derive(Default)]
struct Period {
    admitted: u64,
    shed: u64,
    would_shed: u64,
    fail_open: u64,
    shed_unconfirmed: u64,
    decisions: u64,
    /// A uniform sample of this period's decision latencies (reservoir sampling).
    latencies: Latencies,
    /// Shared coordinator only: round trips that answered, their latencies, the fleet's count.
    coordinator: Latencies,
    coordinator_errors: u64,
    fleet_in_flight_max: Option<u64>,
    /// This environment's invocations in its busiest second of the period.
    rate: PerSecond,
    /// The fleet's, as the shared coordinator counted them.
    fleet_rate_max: Option<u64>,
    /// Admitted, shed and would-shed HTTP requests per class ([`Class::index`]).
    classes: [[u64; 3]; 4],
    /// Fair shares on: the most tenants with leases in flight any decision saw.
    tenants_max: Option<u64>,
    /// The adaptive limit: (last, min, max) of the values in force this period.
    adaptive: Option<(u64, u64, u64)>,
    /// The window median and baseline (µs) the last limit computed here followed.
    adaptive_signal: Option<(f64, f64)>,
    /// CPU pressure on: the highest utilisation sampled, the lowest cap, and the sheds it made.
    cpu: Option<(f64, Option<u64>)>,
    cpu_shed: u64,
}

/// Events per wall-clock second, and the busiest second seen.
#[derive(Default)]
struct PerSecond {
    second: u64,
    count: u64,
    max: u64,
}

impl PerSecond {
    fn add(&mut self, unix_second: u64) {
        if unix_second != self.second {
            self.second = unix_second;
            self.count = 0;
        }
        self.count += 1;
        self.max = self.max.max(self.count);
    }
}

#[derive(Default)]
struct Latencies {
    sample: Vec<Duration>,
    seen: u64,
    max: Duration,
}

impl Latencies {
    fn add(&mut self, d: Duration) {
        self.seen += 1;
        self.max = self.max.max(d);
        if self.sample.len() < LATENCY_SAMPLES {
            self.sample.push(d);
        } else {
            let i = fastrand::u64(0..self.seen) as usize;
            if i < LATENCY_SAMPLES {
                self.sample[i] = d;
            }
        }
    }

    /// p50, p99 and max in microseconds.
    fn summary(&mut self) -> [f64; 3] {
        self.sample.sort_unstable();
        let pct = |q: f64| -> f64 {
            let i = ((self.sample.len() as f64 - 1.0) * q).round() as usize;
            self.sample.get(i).map_or(0.0, micros)
        };
        [pct(0.5), pct(0.99), micros(&self.max)]
    }
}

/// What one decision contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Admitted,
    Shed,
    WouldShed,
    /// Admitted because something of ours failed (a shed answer that could not be posted).
    FailOpen,
}

impl Metrics {
    pub fn new(
        namespace: &str,
        function_name: &str,
        mode: &'static str,
        by_class: bool,
    ) -> Metrics {
        Metrics {
            namespace: namespace.to_string(),
            function_name: function_name.to_string(),
            mode,
            by_class,
            period: Mutex::new(Period::default()),
            totals: Mutex::new(Totals::default()),
        }
    }

    pub fn totals(&self) -> Totals {
        *self.totals.lock()
    }

    /// One decision; `class` for HTTP requests.
    pub fn record(&self, outcome: Outcome, class: Option<Class>, latency: Duration) {
        let mut p = self.period.lock();
        if let Some(class) = class {
            let counts = &mut p.classes[class.index()];
            match outcome {
                Outcome::Admitted | Outcome::FailOpen => counts[0] += 1,
                Outcome::Shed => counts[1] += 1,
                Outcome::WouldShed => {
                    counts[0] += 1;
                    counts[2] += 1;
                }
            }
        }
        match outcome {
            Outcome::Admitted => p.admitted += 1,
            Outcome::Shed => p.shed += 1,
            Outcome::WouldShed => {
                p.would_shed += 1;
                p.admitted += 1;
            }
            Outcome::FailOpen => {
                p.fail_open += 1;
                p.admitted += 1;
            }
        }
        p.decisions += 1;
        p.latencies.add(latency);
        p.rate.add(crate::lease::unix_ms() / 1000);
        drop(p);
        let mut t = self.totals.lock();
        match outcome {
            Outcome::Shed => t.shed += 1,
            _ => t.admitted += 1,
        }
    }

    /// The shared coordinator answered in `latency`, with the fleet's in-flight count and its
    /// invocations in the current second.
    pub fn coordinator_answered(
        &self,
        latency: Duration,
        fleet_in_flight: u64,
        fleet_rate: Option<u64>,
    ) {
        let mut p = self.period.lock();
        p.coordinator.add(latency);
        p.fleet_in_flight_max = Some(p.fleet_in_flight_max.unwrap_or(0).max(fleet_in_flight));
        if let Some(rate) = fleet_rate {
            p.fleet_rate_max = Some(p.fleet_rate_max.unwrap_or(0).max(rate));
        }
    }

    /// A decision saw `tenants` tenants with leases in flight (fleet-wide with a shared count).
    pub fn tenants_in_flight(&self, tenants: u64) {
        let mut p = self.period.lock();
        p.tenants_max = Some(p.tenants_max.unwrap_or(0).max(tenants));
    }

    /// The adaptive limit in force is `limit` (also in observe mode, where it is not applied).
    pub fn adaptive_limit(&self, limit: u64) {
        let mut p = self.period.lock();
        p.adaptive = Some(match p.adaptive {
            Some((_, lo, hi)) => (limit, lo.min(limit), hi.max(limit)),
            None => (limit, limit, limit),
        });
    }

    /// This environment computed a limit from a window with this median and baseline (µs).
    pub fn adaptive_signal(&self, median_us: f64, baseline_us: f64) {
        self.period.lock().adaptive_signal = Some((median_us, baseline_us));
    }

    /// The shared coordinator gave no answer: its round trip failed or overran the budget, or
    /// it was skipped while known to be down. Each is also a `FailOpen`: an outage counts every
    /// decision it cost, not only the round trips that found it.
    pub fn coordinator_failed(&self) {
        self.period.lock().coordinator_errors += 1;
    }

    /// A shed answer that could not be posted: the event went to the runtime after all.
    pub fn shed_failed(&self) {
        let mut p = self.period.lock();
        p.shed = p.shed.saturating_sub(1);
        p.admitted += 1;
        p.fail_open += 1;
        drop(p);
        let mut t = self.totals.lock();
        t.shed = t.shed.saturating_sub(1);
        t.admitted += 1;
    }

    /// A shed made because this environment's CPU was the bound.
    pub fn cpu_shed(&self) {
        self.period.lock().cpu_shed += 1;
    }

    /// CPU pressure's period: its highest utilisation, its lowest cap (`None`: none known).
    pub fn cpu_sampled(&self, utilisation: f64, cap: Option<u64>) {
        self.period.lock().cpu = Some((utilisation, cap));
    }

    /// A shed answer Lambda did not confirm (timed out or refused): still counted as shed.
    pub fn shed_unconfirmed(&self) {
        self.period.lock().shed_unconfirmed += 1;
    }

    /// Ends the period: its EMF line, or `None` if nothing was decided (the class lines, if
    /// any, are dropped: see [`Metrics::flush_all`]).
    pub fn flush(&self, in_flight_max: u64, limit: Option<Limit>) -> Option<String> {
        self.flush_all(in_flight_max, limit).into_iter().next()
    }

    /// Ends the period: its EMF line, then with class rules one line per class that saw
    /// requests (`Admitted`, `Shed`, `WouldShed` with the dimension `Class`); none if nothing
    /// was decided.
    pub fn flush_all(&self, in_flight_max: u64, limit: Option<Limit>) -> Vec<String> {
        let p = std::mem::take(&mut *self.period.lock());
        if p.decisions == 0 {
            return Vec::new();
        }
        let classes = p.classes;
        let mut lines = vec![self.main_line(p, in_flight_max, limit)];
        if self.by_class {
            for class in Class::ALL {
                let [admitted, shed, would_shed] = classes[class.index()];
                if admitted + shed == 0 {
                    continue;
                }
                let mut line = Line::default();
                line.put(ADMITTED, json!(admitted));
                line.put(SHED, json!(shed));
                line.put(WOULD_SHED, json!(would_shed));
                line.fields.insert("Class".into(), json!(class.as_str()));
                lines.push(self.finish(line, &["FunctionName", "Class"]));
            }
        }
        lines
    }

    fn main_line(&self, mut p: Period, in_flight_max: u64, limit: Option<Limit>) -> String {
        let mut line = Line::default();
        line.put(ADMITTED, json!(p.admitted));
        line.put(SHED, json!(p.shed));
        line.put(WOULD_SHED, json!(p.would_shed));
        line.put(FAIL_OPEN, json!(p.fail_open));
        if p.shed_unconfirmed > 0 {
            line.put(SHED_UNCONFIRMED, json!(p.shed_unconfirmed));
        }
        line.put(IN_FLIGHT_MAX, json!(in_flight_max));
        for (name, value) in DECISION_LATENCY.iter().zip(p.latencies.summary()) {
            line.put(name, json!(value));
        }
        if p.coordinator.seen > 0 || p.coordinator_errors > 0 {
            line.put(COORDINATOR_ERRORS, json!(p.coordinator_errors));
            for (name, value) in COORDINATOR_LATENCY.iter().zip(p.coordinator.summary()) {
                line.put(name, json!(value));
            }
        }
        if let Some(fleet) = p.fleet_in_flight_max {
            line.put(FLEET_IN_FLIGHT, json!(fleet));
        }
        self.put_signals(&mut line, &p);
        // The fleet's count misses sheds decided without a round trip (the "full" memo): this
        // environment's own count is a floor for it.
        let rate = p.fleet_rate_max.unwrap_or(0).max(p.rate.max);
        line.put(INVOKE_RATE, json!(rate));
        if let Some(limit) = limit {
            let cap = limit.invoke_rate_cap();
            line.put(INVOKE_RATE_LIMIT, json!(cap));
            if rate as f64 > RATE_WARNING_SHARE * cap as f64 {
                tracing::warn!(
                    invoke_rate = rate,
                    invoke_rate_limit = cap,
                    recommended_stage_rate = recommended_stage_rate(limit.value),
                    "invocations near Lambda's cap of 10 per second per unit of concurrency: above \
                     it Lambda throttles every request into a 500, shed or not; set API Gateway's \
                     stage throttle (rate limit) to at most the recommended rate"
                );
            }
            line.put(LIMIT, json!(limit.value));
            line.fields
                .insert("LimitSource".into(), json!(limit.source.as_str()));
        }
        self.finish(line, &["FunctionName"])
    }

    /// The optional signals' metrics: fair shares, the adaptive limit, CPU pressure.
    fn put_signals(&self, line: &mut Line, p: &Period) {
        if let Some(tenants) = p.tenants_max {
            line.put(TENANTS_IN_FLIGHT_MAX, json!(tenants));
        }
        if let Some((last, lo, hi)) = p.adaptive {
            for (name, value) in ADAPTIVE_LIMIT.iter().zip([last, lo, hi]) {
                line.put(name, json!(value));
            }
        }
        if let Some((median, baseline)) = p.adaptive_signal {
            line.put(ADAPTIVE_LATENCY, json!(median.round()));
            line.put(ADAPTIVE_BASELINE, json!(baseline.round()));
        }
        if let Some((utilisation, cap)) = p.cpu {
            line.put(
                CPU_UTILIZATION,
                json!((utilisation * 1000.0).round() / 10.0),
            );
            if let Some(cap) = cap {
                line.put(CPU_LIMIT, json!(cap));
            }
            line.put(CPU_SHED, json!(p.cpu_shed));
        }
    }

    /// The line with its dimensions and the EMF directive that declares its metrics.
    fn finish(&self, mut line: Line, dimensions: &[&str]) -> String {
        line.fields
            .insert("FunctionName".into(), json!(self.function_name));
        line.fields.insert("Mode".into(), json!(self.mode));
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        line.fields.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": line.declared,
                }],
            }),
        );
        Value::Object(line.fields).to_string()
    }

    /// Flushes the period to stdout, where Lambda collects it for CloudWatch.
    pub fn emit(&self, in_flight_max: u64, limit: Option<Limit>) {
        let lines = self.flush_all(in_flight_max, limit);
        if !lines.is_empty() {
            let mut out = std::io::stdout().lock();
            // A closed stdout must not take the proxy down with it.
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
    }
}

/// The API Gateway stage rate that keeps arrivals under Lambda's invoke-rate cap for a limit of
/// `n`, with a fifth to spare: 8 × n requests a second.
pub fn recommended_stage_rate(n: u64) -> u64 {
    n.saturating_mul(crate::decision::limit::INVOKES_PER_SECOND_PER_SLOT) * 4 / 5
}

/// One EMF line being built: its fields, and the metrics it declares.
#[derive(Default)]
struct Line {
    fields: Map<String, Value>,
    declared: Vec<Value>,
}

impl Line {
    fn put(&mut self, name: &str, value: Value) {
        let unit = METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(COUNT, |(_, u)| u);
        self.declared.push(json!({"Name": name, "Unit": unit}));
        self.fields.insert(name.to_string(), value);
    }
}

fn micros(d: &Duration) -> f64 {
    (d.as_nanos() as f64 / 1000.0 * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_period_writes_nothing() {
        let m = Metrics::new("NS", "fn", "enforce", false);
        assert_eq!(m.flush(0, None), None);
    }

    #[test]
    fn one_line_aggregates_the_period() {
        let m = Metrics::new("NS", "my-fn", "observe", false);
        for i in 0..10 {
            m.record(Outcome::Admitted, None, Duration::from_micros(i + 1));
        }
        m.record(Outcome::Shed, None, Duration::from_micros(100));
        m.record(Outcome::Shed, None, Duration::from_micros(100));
        m.shed_failed();
        m.record(Outcome::WouldShed, None, Duration::from_micros(5));
        let line = m
            .flush(
                3,
                Some(Limit::new(10, crate::decision::limit::LimitSource::Env)),
            )
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["FunctionName"], "my-fn");
        assert_eq!(v["Admitted"], 12);
        assert_eq!(v["Shed"], 1);
        assert_eq!(v["FailOpen"], 1);
        assert_eq!(v["WouldShed"], 1);
        assert_eq!(v["InFlightMax"], 3);
        assert_eq!(v["Limit"], 10);
        assert_eq!(v["LimitSource"], "env");
        assert_eq!(v["DecisionLatencyMax"], 100.0);
        assert!(v["DecisionLatencyP50"].as_f64().unwrap() <= 10.0);
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "NS");
        assert_eq!(cw["Dimensions"], json!([["FunctionName"]]));
        let names: Vec<&str> = cw["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for n in [
            "Admitted",
            "Shed",
            "WouldShed",
            "InFlightMax",
            "Limit",
            "DecisionLatencyP99",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
            assert!(v.get(n).is_some(), "{n} has no value");
        }
        assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(m.flush(0, None), None, "the period was reset");
        assert_eq!(
            m.totals(),
            Totals {
                admitted: 12,
                shed: 1
            },
            "totals outlive the period"
        );
        // Every metric of the line is declared with its unit, and every declared one has a value.
        for declared in cw["Metrics"].as_array().unwrap() {
            let name = declared["Name"].as_str().unwrap();
            let unit = METRICS.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(declared["Unit"], unit);
        }
    }

    #[test]
    fn coordinator_figures_appear_only_with_a_shared_coordinator() {
        let m = Metrics::new("NS", "f", "enforce", false);
        m.record(Outcome::Admitted, None, Duration::from_micros(3));
        let v: Value = serde_json::from_str(&m.flush(1, None).unwrap()).unwrap();
        assert!(v.get("FleetInFlight").is_none() && v.get("CoordinatorErrors").is_none());
        m.record(Outcome::Admitted, None, Duration::from_micros(300));
        m.coordinator_answered(Duration::from_micros(250), 17, Some(40));
        m.coordinator_answered(Duration::from_micros(150), 12, Some(55));
        m.record(Outcome::FailOpen, None, Duration::from_micros(5000));
        m.coordinator_failed();
        m.record(Outcome::FailOpen, None, Duration::from_micros(5));
        m.coordinator_failed();
        let v: Value = serde_json::from_str(&m.flush(1, None).unwrap()).unwrap();
        assert_eq!(v["FleetInFlight"], 17);
        assert_eq!(v["InvokeRate"], 55, "the fleet's busiest second");
        assert_eq!(
            v["CoordinatorErrors"], 2,
            "a round trip that failed and a decision made while the coordinator was skipped"
        );
        assert_eq!(v["FailOpen"], 2);
        assert_eq!(v["CoordinatorLatencyMax"], 250.0);
        let names = v["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(names.contains("FleetInFlight") && names.contains("CoordinatorLatencyP99"));
    }

    #[test]
    fn invoke_rate_is_the_busiest_second_next_to_lambdas_cap() {
        let m = Metrics::new("NS", "f", "enforce", false);
        for _ in 0..7 {
            m.record(Outcome::Shed, None, Duration::from_micros(1));
        }
        let limit = Limit::new(3, crate::decision::limit::LimitSource::Env);
        let v: Value = serde_json::from_str(&m.flush(0, Some(limit)).unwrap()).unwrap();
        // All seven in this second (or, across a second's edge, at least four in one of them).
        assert!((4..=7).contains(&v["InvokeRate"].as_u64().unwrap()), "{v}");
        assert_eq!(v["InvokeRateLimit"], 30);
        assert_eq!(recommended_stage_rate(100), 800);
    }

    #[test]
    fn latency_sample_stays_bounded() {
        let m = Metrics::new("NS", "f", "enforce", false);
        for i in 0..10_000u64 {
            m.record(Outcome::Admitted, None, Duration::from_nanos(i));
        }
        assert_eq!(m.period.lock().latencies.sample.len(), LATENCY_SAMPLES);
        let v: Value = serde_json::from_str(&m.flush(1, None).unwrap()).unwrap();
        assert_eq!(v["Admitted"], 10_000);
        assert!(v.get("Limit").is_none());
    }
}
