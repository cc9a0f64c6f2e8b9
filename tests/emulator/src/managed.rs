//! Lambda Managed Instances, as AWS documents them ("Scaling Lambda Managed Instances",
//! "Troubleshooting", "Monitoring"): no scaling on arrival and no cold starts; at least three
//! environments; a router that sends an invoke to an environment with a free slot; throttles when
//! every slot is busy and, to protect the invokes in flight, when an environment's CPU runs high;
//! and a scaler that works asynchronously on CPU utilisation and multi-concurrency saturation
//! against a target utilisation, scales out in steps (traffic that more than doubles within five
//! minutes may be throttled while it catches up) and scales down gradually.
//!
//! AWS publishes none of the thresholds or timings: each is a parameter here ([`Managed`]), and
//! [`Managed::documented`] is this emulator's choice, stated in docs/benchmarks.md. The scaler's
//! clock runs [`Managed::clock`] times faster than the AWS timings it stands for, to keep a
//! benchmark short.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::fleet::Fleet;

#[derive(Debug, Clone, Copy)]
pub struct Managed {
    /// vCPUs per execution environment.
    pub vcpus: f64,
    /// CPU protection: an environment whose utilisation over `protect_window` passes this takes
    /// no new invoke.
    pub protect_at: f64,
    pub protect_window: Duration,
    /// Environments at least (AWS: three, one per Availability Zone) and at most (the capacity
    /// provider's maximum vCPU count, in environments).
    pub min: usize,
    pub max: usize,
    /// The target resource utilisation: the scaler sizes the fleet so that the busier of CPU
    /// utilisation and slot utilisation sits here.
    pub target: f64,
    /// How often the scaler decides.
    pub period: Duration,
    /// From the scaler's decision to an environment taking invokes.
    pub launch_delay: Duration,
    /// The fleet at most doubles within this (what AWS's "more than doubles within 5 minutes"
    /// says it keeps pace with).
    pub doubling: Duration,
    /// Below target this long before one idle environment is removed (and this long between
    /// removals).
    pub scale_down_after: Duration,
    /// How much faster than AWS the timings above run.
    pub clock: f64,
}

impl Managed {
    /// This emulator's Managed Instances: 2 vCPUs an environment, CPU protection past 90 % over
    /// 1 s, target utilisation 60 %, and the scaler at five times AWS's pace: a decision every
    /// 4 s (20 s), an environment 6 s after it is asked for (30 s), doubling at most every 60 s
    /// (5 minutes), one environment removed per 60 s below target (5 minutes).
    pub fn documented(min: usize, max: usize) -> Managed {
        Managed {
            vcpus: 2.0,
            protect_at: 0.9,
            protect_window: Duration::from_secs(1),
            min,
            max: max.max(min),
            target: 0.6,
            period: Duration::from_secs(4),
            launch_delay: Duration::from_secs(6),
            doubling: Duration::from_secs(60),
            scale_down_after: Duration::from_secs(60),
            clock: 5.0,
        }
    }

    /// The environments the scaler wants for a fleet of `environments` at `utilisation`.
    pub fn desired(&self, environments: usize, utilisation: f64) -> usize {
        let wanted = (environments as f64 * utilisation / self.target).ceil() as usize;
        wanted.clamp(self.min, self.max)
    }
}

/// What the scaler averages over a period.
#[derive(Default)]
struct Period {
    samples: usize,
    slots: f64,
    cpu: f64,
}

/// How often the scaler samples utilisation between decisions.
const SAMPLE: Duration = Duration::from_millis(100);

/// The scaler's loop, for as long as the fleet lives.
pub(crate) async fn scale(fleet: Weak<Fleet>, managed: Managed) {
    let mut period = Period::default();
    let mut decided = Instant::now();
    let mut below_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(SAMPLE).await;
        let Some(fleet) = fleet.upgrade() else { return };
        let (slots, cpu) = fleet.utilisation();
        period.samples += 1;
        period.slots += slots;
        period.cpu += cpu;
        if decided.elapsed() < managed.period {
            continue;
        }
        decided = Instant::now();
        let n = period.samples.max(1) as f64;
        let utilisation = (period.slots / n).max(period.cpu / n);
        period = Period::default();
        let ready = fleet.started();
        let pending = fleet.launching.load(Ordering::Relaxed);
        let doubled = 2 * fleet.size_at(Instant::now().checked_sub(managed.doubling));
        let desired = managed
            .desired(ready, utilisation)
            .min(doubled.max(managed.min));
        if desired > ready + pending {
            below_since = None;
            for _ in 0..desired - ready - pending {
                launch(&fleet, managed.launch_delay);
            }
        } else if desired < ready && pending == 0 {
            let since = *below_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= managed.scale_down_after && ready > managed.min {
                fleet.scale_down().await;
                below_since = Some(Instant::now());
            }
        } else {
            below_since = None;
        }
    }
}

/// Starts an environment now; it takes invokes `delay` after this decision, or once its runtime
/// is ready if that is later.
fn launch(fleet: &Arc<Fleet>, delay: Duration) {
    fleet.launching.fetch_add(1, Ordering::Relaxed);
    let fleet = fleet.clone();
    tokio::spawn(async move {
        let ready_at = tokio::time::Instant::now() + delay;
        let env = fleet.start_environment().await;
        tokio::time::sleep_until(ready_at).await;
        fleet.add(env);
        fleet.launching.fetch_sub(1, Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaler_sizes_for_its_target_within_its_bounds() {
        let m = Managed::documented(3, 12);
        assert_eq!(m.desired(3, 0.3), 3, "never below three");
        assert_eq!(m.desired(3, 0.6), 3);
        assert_eq!(m.desired(3, 0.9), 5);
        assert_eq!(m.desired(3, 1.0), 5);
        assert_eq!(m.desired(10, 1.0), 12, "never above the maximum");
    }
}
