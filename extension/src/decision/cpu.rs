//! CPU pressure as an admission signal: the most invocations this environment may run at once
//! before its CPU passes `ADMISSION_CPU_SHED_AT`.
//!
//! Managed Instances reject new invokes when an environment's CPU runs high, to protect those in
//! flight: behind API Gateway, a 500. Utilisation alone arrives too late to shed on (it is
//! measured over a window, while admitted invocations spend their CPU later), so the sampler
//! turns it into a count the decision can compare with what is in flight, as Little's law does:
//! every interval it reads the CPU time used and the invocations in flight, learns the CPU an idle
//! environment uses (`base`) and what each invocation adds (`per`, in vCPU), and publishes
//! `cap = floor((shed_at × vCPUs − base) / per)`. A function light on CPU gets a cap far above its
//! slots; one heavy on CPU gets one below them, before any invocation has been refused.
//!
//! The sampler runs on its own task every `ADMISSION_CPU_INTERVAL_MS`: two small file reads. The
//! decision reads one atomic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::platform::cpu::Source;

/// Weight of the newest interval in the learnt `base` and `per`.
const WEIGHT: f64 = 0.2;
/// No cap is published while none is known.
const NO_CAP: u64 = u64::MAX;

/// What the decision reads, written by the sampler.
pub struct CpuPressure {
    source: String,
    vcpus: f64,
    shed_at: f64,
    cap: AtomicU64,
    /// Utilisation over the window, as `f64` bits.
    utilisation: AtomicU64,
    /// The highest utilisation and the lowest cap since the metrics last took them.
    period: parking_lot::Mutex<(f64, u64)>,
    /// What one invocation adds, in vCPU, as `f64` bits (for the status).
    per_invocation: AtomicU64,
}

impl CpuPressure {
    pub fn new(source: &Source, vcpus: f64, shed_at: f64) -> CpuPressure {
        CpuPressure {
            source: source.describe(),
            vcpus,
            shed_at,
            cap: AtomicU64::new(NO_CAP),
            utilisation: AtomicU64::new(0f64.to_bits()),
            period: parking_lot::Mutex::new((0.0, NO_CAP)),
            per_invocation: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The most invocations the CPU allows in flight at once here; `None`: no bound known.
    pub fn cap(&self) -> Option<u64> {
        Some(self.cap.load(Ordering::Relaxed)).filter(|&c| c != NO_CAP)
    }

    pub fn utilisation(&self) -> f64 {
        f64::from_bits(self.utilisation.load(Ordering::Relaxed))
    }

    /// Publishes `estimate` as the sampler would (benchmarks and tests drive the decision with a
    /// cap of their choosing).
    pub fn publish_for_test(&self, estimate: Estimate) {
        self.publish(estimate);
    }

    fn publish(&self, estimate: Estimate) {
        let cap = estimate.cap.unwrap_or(NO_CAP);
        self.cap.store(cap, Ordering::Relaxed);
        self.utilisation
            .store(estimate.utilisation.to_bits(), Ordering::Relaxed);
        self.per_invocation
            .store(estimate.per_invocation.to_bits(), Ordering::Relaxed);
        let mut p = self.period.lock();
        *p = (p.0.max(estimate.utilisation), p.1.min(cap));
    }

    /// The highest utilisation and the lowest cap since the last call, for the metrics.
    pub fn take_period(&self) -> (f64, Option<u64>) {
        let current = (self.utilisation(), self.cap.load(Ordering::Relaxed));
        let (u, cap) = std::mem::replace(&mut *self.period.lock(), current);
        (u, Some(cap).filter(|&c| c != NO_CAP))
    }

    pub fn status(&self) -> serde_json::Value {
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "source": self.source,
            "vcpus": round(self.vcpus),
            "utilisation": round(self.utilisation()),
            "perInvocation": round(f64::from_bits(self.per_invocation.load(Ordering::Relaxed))),
            "shedAt": self.shed_at,
            "cap": self.cap(),
        })
    }
}

/// One published estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// CPU used over the window, as a share of the environment's vCPUs.
    pub utilisation: f64,
    /// vCPU one invocation in flight adds.
    pub per_invocation: f64,
    pub cap: Option<u64>,
}

/// What the sampler has learnt from the samples so far.
pub struct Estimator {
    vcpus: f64,
    shed_at: f64,
    window: Duration,
    /// (when, CPU seconds used, in flight), oldest first, spanning the window.
    samples: VecDeque<(Instant, f64, u64)>,
    /// vCPU the environment uses with nothing in flight, and per invocation in flight.
    base: f64,
    per: Option<f64>,
}

impl Estimator {
    pub fn new(vcpus: f64, shed_at: f64, window: Duration) -> Estimator {
        Estimator {
            vcpus: vcpus.max(0.01),
            shed_at,
            window,
            samples: VecDeque::new(),
            base: 0.0,
            per: None,
        }
    }

    /// Takes a sample: `used` CPU seconds so far, `in_flight` invocations now.
    pub fn add(&mut self, now: Instant, used: f64, in_flight: u64) -> Estimate {
        if let Some(&(at, before, was)) = self.samples.back() {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.0 {
                self.learn((used - before).max(0.0) / dt, was, in_flight);
            }
        }
        self.samples.push_back((now, used, in_flight));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|s| now.duration_since(s.0) >= self.window)
        {
            self.samples.pop_front();
        }
        self.estimate()
    }

    /// One interval: the CPU rate (vCPU) while `from` → `to` invocations were in flight.
    fn learn(&mut self, rate: f64, from: u64, to: u64) {
        let n = (from + to) as f64 / 2.0;
        if from == 0 && to == 0 {
            self.base += WEIGHT * (rate - self.base);
        } else if n >= 1.0 {
            let per = (rate - self.base).max(0.0) / n;
            self.per = Some(self.per.map_or(per, |p| p + WEIGHT * (per - p)));
        }
    }

    fn estimate(&self) -> Estimate {
        let utilisation = match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                (b.1 - a.1).max(0.0) / (b.0 - a.0).as_secs_f64() / self.vcpus
            }
            _ => 0.0,
        };
        let per = self.per.unwrap_or(0.0);
        let room = self.shed_at * self.vcpus - self.base;
        // Under a thousandth of a vCPU an invocation: the CPU is no bound worth publishing.
        let cap = (per > 0.001).then(|| (room / per).floor().max(1.0) as u64);
        Estimate {
            utilisation,
            per_invocation: per,
            cap,
        }
    }
}

/// Samples `source` every `interval` for as long as the extension runs, publishing into
/// `pressure`; `in_flight` reads this environment's count. A source that stops answering leaves
/// the last estimate's cap off (admitting as if the CPU were no bound), and says so once.
pub async fn sample(
    source: Source,
    pressure: std::sync::Arc<CpuPressure>,
    mut estimator: Estimator,
    interval: Duration,
    in_flight: impl Fn() -> u64,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match source.used_secs() {
            Some(used) => {
                failing = false;
                pressure.publish(estimator.add(Instant::now(), used, in_flight()));
            }
            None if !failing => {
                failing = true;
                pressure.cap.store(NO_CAP, Ordering::Relaxed);
                tracing::warn!(
                    source = %source.describe(),
                    "the CPU use can no longer be read: CPU pressure sheds nothing until it can"
                );
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(100);

    /// Feeds `steps` intervals of 100 ms at `rate` vCPU with `n` in flight.
    fn feed(
        e: &mut Estimator,
        t: &mut Instant,
        used: &mut f64,
        steps: usize,
        rate: f64,
        n: u64,
    ) -> Estimate {
        let mut last = e.add(*t, *used, n);
        for _ in 0..steps {
            *t += MS;
            *used += rate * MS.as_secs_f64();
            last = e.add(*t, *used, n);
        }
        last
    }

    #[test]
    fn the_cap_is_the_count_that_spends_shed_at_of_the_cpu() {
        // Two vCPUs, 0.1 vCPU idle, 0.2 per invocation: at 80 %, (1.6 − 0.1) / 0.2 = 7.
        let mut e = Estimator::new(2.0, 0.8, Duration::from_secs(1));
        let (mut t, mut used) = (Instant::now(), 0.0);
        feed(&mut e, &mut t, &mut used, 30, 0.1, 0);
        let calm = feed(&mut e, &mut t, &mut used, 30, 0.1 + 4.0 * 0.2, 4);
        assert_eq!(calm.cap, Some(7), "{calm:?}");
        assert!((calm.utilisation - 0.45).abs() < 0.01, "{calm:?}");
        assert!((calm.per_invocation - 0.2).abs() < 0.01);
        // Known before any overload, and still known after the load goes.
        let idle = feed(&mut e, &mut t, &mut used, 30, 0.1, 0);
        assert_eq!(idle.cap, Some(7));
    }

    #[test]
    fn a_function_light_on_cpu_gets_no_cap_worth_the_name() {
        let mut e = Estimator::new(2.0, 0.8, Duration::from_secs(1));
        let (mut t, mut used) = (Instant::now(), 0.0);
        feed(&mut e, &mut t, &mut used, 20, 0.05, 0);
        let busy = feed(&mut e, &mut t, &mut used, 20, 0.05 + 32.0 * 0.0005, 32);
        assert_eq!(busy.cap, None, "{busy:?}");
        let busy = feed(&mut e, &mut t, &mut used, 20, 0.05 + 32.0 * 0.01, 32);
        assert!(busy.cap.unwrap() > 100, "{busy:?}");
    }

    #[test]
    fn the_utilisation_covers_the_window_only() {
        let mut e = Estimator::new(1.0, 0.8, Duration::from_secs(1));
        let (mut t, mut used) = (Instant::now(), 0.0);
        feed(&mut e, &mut t, &mut used, 50, 1.0, 5);
        let after = feed(&mut e, &mut t, &mut used, 10, 0.0, 0);
        assert!(after.utilisation < 0.01, "{after:?}");
        // A counter that goes back (a new cgroup) is no negative use.
        let back = e.add(t + MS, 0.0, 0);
        assert!(back.utilisation >= 0.0);
    }

    #[test]
    fn the_pressure_publishes_and_reports_the_period() {
        let p = CpuPressure::new(&Source::ProcStat, 2.0, 0.8);
        assert_eq!(p.cap(), None);
        p.publish(Estimate {
            utilisation: 0.7,
            per_invocation: 0.2,
            cap: Some(7),
        });
        p.publish(Estimate {
            utilisation: 0.3,
            per_invocation: 0.2,
            cap: Some(9),
        });
        assert_eq!(p.cap(), Some(9));
        assert_eq!(p.take_period(), (0.7, Some(7)));
        assert_eq!(
            p.take_period(),
            (0.3, Some(9)),
            "the next period starts at the current values"
        );
        assert_eq!(p.status()["source"], "proc-stat");
        assert_eq!(p.status()["cap"], 9);
    }
}
