//! The adaptive limit (`ADMISSION_LIMIT=adaptive`): a cap on admission that follows the
//! handlers' latency, for functions whose real bottleneck is what they call (a database, an API)
//! rather than Lambda's concurrency.
//!
//! Handler durations are collected in windows (`ADMISSION_ADAPTIVE_WINDOW_MS`): from the event's
//! delivery to the runtime's answer, admitted invocations only. A shed is answered by the proxy and
//! never becomes a sample (it would look like a fast, healthy downstream); neither does an
//! invocation the runtime answered with an error (a burst of genuine errors must not move the
//! limit either way), nor an environment's first invocation (a cold handler warming up its
//! connections is slow for reasons of its own). At the end of each window, [`step`] turns the
//! window into the next limit: a pure function of the limit before, the window's median, the
//! unloaded latency (the baseline), and how busy the fleet was. A window with fewer than
//! [`MIN_SAMPLES`] is carried into the next.
//!
//! The baseline is the lowest window median of the last [`BASELINE_SLOTS`] × [`SLOT_WINDOWS`]
//! windows (five minutes of one-second windows): long enough that a sustained overload, whose
//! windows are all slow, cannot raise it (the drift Gradient2 suffers from under queueing), short
//! enough that a downstream that got slower for good is relearnt within that time.
//!
//! Two controllers, chosen by measurement (docs/benchmarks.md, "Adaptive limit"):
//! - [`Gradient`] (the default; after Netflix's Gradient2 and Envoy's adaptive concurrency):
//!   with `g = clamp(1.1 × baseline ÷ median, 0.5, 1)`, the next limit is `limit + √limit` while
//!   `g` is 1 (nothing queues: back to the ceiling within a few windows once the downstream
//!   recovers), else `min(limit, 4 × peak in flight) × g + 1` (a limit far above what is in
//!   flight first comes down to where it binds). On a downstream of K workers it settles near
//!   `1.1 × K + 1`: the downstream stays busy with a short queue, where Gradient2's `√limit` queue
//!   doubles a small downstream's latency.
//! - [`Aimd`]: `min(limit, 4 × peak) × 0.8` when the median passes 1.5 × the baseline, `+1`
//!   while the limit binds and the median is under it.
//!
//! With a shared coordinator the windows are the fleet's: every environment adds its samples to
//! the window in Redis with the release it sends anyway, whichever release first finds a window
//! closed claims it, computes the next limit and publishes it (never over a newer state), and
//! every acquire reads it back. With the local coordinator (Managed Instances) each environment
//! runs its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::{AdaptiveConfig, AdaptiveController};
use crate::decision::limit::Limit;

/// The pool's notes (beside its key) holding the fleet's controller state and its limit.
pub const STATE_NOTE: &str = "adaptive:state";
pub const LIMIT_NOTE: &str = "adaptive:limit";

/// One admitted invocation's duration ([`Window::bucket`]), for window number `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub bucket: u32,
    pub window: u64,
}

/// A window of the fleet's that a release found closed and claimed: this environment computes the
/// next limit from it and the state as published (`None`: the fleet's first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub window: u64,
    pub summary: Window,
    pub state: Option<String>,
}

impl Window {
    /// A window as Redis keeps it: `HGETALL`'s flat list of `b<bucket>` and `peak` fields.
    pub fn from_fields(fields: &[String]) -> Window {
        let mut w = Window::default();
        for pair in fields.chunks_exact(2) {
            let Ok(n) = pair[1].parse::<u64>() else {
                continue;
            };
            if pair[0] == "peak" {
                w.peak_in_flight = n;
            } else if let Some(Ok(bucket)) = pair[0].strip_prefix('b').map(str::parse::<u32>) {
                *w.buckets.entry(bucket).or_default() += n;
            }
        }
        w
    }
}

/// Latency within this factor of the baseline counts as unloaded (the buckets are 9 % wide).
pub const TOLERANCE: f64 = 1.1;

/// Windows with fewer samples than this change nothing.
pub const MIN_SAMPLES: u64 = 10;
/// The baseline is kept per slot of this many windows ...
pub const SLOT_WINDOWS: u64 = 60;
/// ... over this many slots.
pub const BASELINE_SLOTS: usize = 5;

/// Buckets of durations per doubling: each about 9 % wide.
const BUCKETS_PER_DOUBLING: f64 = 8.0;

/// A window's handler durations, bucketed on a log scale ([`BUCKETS_PER_DOUBLING`]), and the most
/// invocations in flight when one of them ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub buckets: BTreeMap<u32, u64>,
    pub peak_in_flight: u64,
}

impl Window {
    /// The bucket of a duration: `floor(8 × log2(µs))`.
    pub fn bucket(d: Duration) -> u32 {
        let us = (d.as_micros() as f64).max(1.0);
        (us.log2() * BUCKETS_PER_DOUBLING).floor() as u32
    }

    pub fn add(&mut self, d: Duration, in_flight: u64) {
        *self.buckets.entry(Window::bucket(d)).or_default() += 1;
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
    }

    pub fn samples(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The duration (µs) below which `q` of the samples fall: the middle of its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (&bucket, &count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(2f64.powf((bucket as f64 + 0.5) / BUCKETS_PER_DOUBLING));
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

/// What carries from one window to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub limit: f64,
    /// The window this state was computed from.
    pub window: u64,
    /// The lowest window median (µs) per slot of [`SLOT_WINDOWS`] windows, slot `s` at index
    /// `s % BASELINE_SLOTS`, with the slot it belongs to.
    pub lows: [Option<(u64, f64)>; BASELINE_SLOTS],
    /// The last window's median and the baseline it was compared with, for the metrics.
    pub median_us: Option<f64>,
    pub baseline_us: Option<f64>,
}

impl State {
    /// A fleet's first state: no restriction until a window says otherwise.
    pub fn initial(bounds: Bounds) -> State {
        State {
            limit: bounds.max as f64,
            window: 0,
            lows: [None; BASELINE_SLOTS],
            median_us: None,
            baseline_us: None,
        }
    }

    /// The limit as a whole number of slots.
    pub fn cap(&self) -> u64 {
        self.limit.floor().max(1.0) as u64
    }

    fn baseline(&self, slot: u64) -> Option<f64> {
        self.lows
            .iter()
            .flatten()
            .filter(|(s, _)| slot.saturating_sub(*s) < BASELINE_SLOTS as u64)
            .map(|(_, us)| *us)
            .min_by(f64::total_cmp)
    }

    /// The state as the shared coordinator keeps it: `limit window slot:µs ...`.
    pub fn encode(&self) -> String {
        let mut s = format!("{:.3} {}", self.limit, self.window);
        for (slot, us) in self.lows.iter().flatten() {
            s.push_str(&format!(" {slot}:{us:.0}"));
        }
        s
    }

    /// [`State::encode`] read back; `None` if malformed (then the fleet starts afresh).
    pub fn decode(s: &str, bounds: Bounds) -> Option<State> {
        let mut parts = s.split_ascii_whitespace();
        let limit: f64 = parts.next()?.parse().ok()?;
        let window: u64 = parts.next()?.parse().ok()?;
        if !limit.is_finite() {
            return None;
        }
        let mut state = State::initial(bounds);
        state.limit = limit.clamp(bounds.min as f64, bounds.max as f64);
        state.window = window;
        // A malformed low is skipped: the rest of the state still holds.
        for (slot, us) in parts.filter_map(|p| {
            let (slot, us) = p.split_once(':')?;
            Some((slot.parse::<u64>().ok()?, us.parse::<f64>().ok()?))
        }) {
            if us.is_finite() && us > 0.0 {
                state.lows[(slot % BASELINE_SLOTS as u64) as usize] = Some((slot, us));
            }
        }
        Some(state)
    }
}

/// How the limit follows the latency: the next limit from the last, the window's median, the
/// baseline, and the most invocations in flight in the window.
pub trait Controller: Send + Sync {
    fn name(&self) -> &'static str;
    fn next(&self, limit: f64, median_us: f64, baseline_us: f64, peak: u64) -> f64;
}

/// The limit binds when the peak in flight reached half of it.
fn binding(limit: f64, peak: u64) -> bool {
    peak as f64 * 2.0 >= limit
}

/// Where a cut starts from: the limit, or four times the peak in flight if that is lower. A limit
/// far above what is in flight must come within reach of binding before it can protect anything;
/// four times leaves room for bursts at light load, where a noisy window may cut.
fn in_reach(limit: f64, peak: u64) -> f64 {
    limit.min((peak as f64 * 4.0).max(1.0))
}

/// With `g = clamp(1.1 × baseline ÷ median, 0.5, 1)`: `limit + √limit` when `g` is 1, else
/// `min(limit, 4 × peak in flight) × g + 1`.
pub struct Gradient;

impl Controller for Gradient {
    fn name(&self) -> &'static str {
        "gradient"
    }

    fn next(&self, limit: f64, median_us: f64, baseline_us: f64, peak: u64) -> f64 {
        let gradient = (TOLERANCE * baseline_us / median_us).clamp(0.5, 1.0);
        if gradient >= 1.0 {
            // Nothing queues: back to the ceiling within a few windows.
            limit + limit.sqrt()
        } else {
            // A queue of one (Gradient2's √limit would double a small downstream's latency).
            in_reach(limit, peak) * gradient + 1.0
        }
    }
}

/// `min(limit, 4 × peak in flight) × 0.8` past 1.5 × the baseline, `+1` below it while binding.
pub struct Aimd;

impl Controller for Aimd {
    fn name(&self) -> &'static str {
        "aimd"
    }

    fn next(&self, limit: f64, median_us: f64, baseline_us: f64, peak: u64) -> f64 {
        if median_us > 1.5 * baseline_us {
            (in_reach(limit, peak) * 0.8).min(limit - 1.0)
        } else if binding(limit, peak) {
            limit + 1.0
        } else {
            limit
        }
    }
}

/// The controller named by `ADMISSION_ADAPTIVE`.
pub fn controller(name: AdaptiveController) -> Box<dyn Controller> {
    match name {
        AdaptiveController::Gradient => Box::new(Gradient),
        AdaptiveController::Aimd => Box::new(Aimd),
    }
}

/// The state after window number `index`. Always within `bounds`.
pub fn step(
    controller: &dyn Controller,
    state: &State,
    window: &Window,
    index: u64,
    bounds: Bounds,
) -> State {
    let mut next = state.clone();
    next.window = index.max(state.window);
    next.limit = state.limit.clamp(bounds.min as f64, bounds.max as f64);
    next.median_us = None;
    next.baseline_us = None;
    let Some(median) = window
        .quantile(0.5)
        .filter(|_| window.samples() >= MIN_SAMPLES)
    else {
        return next;
    };
    let slot = index / SLOT_WINDOWS;
    let at = (slot % BASELINE_SLOTS as u64) as usize;
    next.lows[at] = match next.lows[at] {
        Some((s, low)) if s == slot => Some((slot, low.min(median))),
        _ => Some((slot, median)),
    };
    let baseline = next.baseline(slot).unwrap_or(median);
    let proposed = controller.next(next.limit, median, baseline, window.peak_in_flight);
    next.limit = if proposed.is_finite() {
        proposed.clamp(bounds.min as f64, bounds.max as f64)
    } else {
        next.limit
    };
    next.median_us = Some(median);
    next.baseline_us = Some(baseline);
    next
}

/// The adaptive limit in one environment: the limit in force, and with the local coordinator
/// the controller itself.
pub struct Adaptive {
    controller: Box<dyn Controller>,
    min: u64,
    max: Option<u64>,
    window_ms: u64,
    /// With the local coordinator: the window being filled (its number) and the state.
    local: Mutex<(u64, Window, Option<State>)>,
    /// The limit in force; 0: none yet (the ceiling applies).
    cap: AtomicU64,
    /// This environment has answered an invocation: its first is no sample.
    warm: AtomicBool,
}

impl Adaptive {
    pub fn new(config: &AdaptiveConfig) -> Adaptive {
        Adaptive {
            controller: controller(config.controller),
            min: config.min,
            max: config.max,
            window_ms: (config.window.as_millis() as u64).max(1),
            local: Mutex::new((0, Window::default(), None)),
            cap: AtomicU64::new(0),
            warm: AtomicBool::new(false),
        }
    }

    /// `[ADMISSION_LIMIT_MIN, the lower of ADMISSION_LIMIT_MAX and the platform's limit]`.
    pub fn bounds(&self, platform: Option<Limit>) -> Bounds {
        let max = match (self.max, platform.map(|l| l.value)) {
            (Some(ceiling), Some(platform)) => ceiling.min(platform),
            (ceiling, platform) => ceiling.or(platform).unwrap_or(u32::MAX as u64),
        };
        Bounds {
            min: self.min.min(max),
            max,
        }
    }

    /// The limit in force, if one was computed yet.
    pub fn cap(&self) -> Option<u64> {
        Some(self.cap.load(Ordering::Relaxed)).filter(|&c| c > 0)
    }

    pub fn set_cap(&self, cap: u64) {
        self.cap.store(cap.max(1), Ordering::Relaxed);
    }

    /// No limit published (the fleet's state expired): the ceiling applies until one is.
    pub fn clear_cap(&self) {
        self.cap.store(0, Ordering::Relaxed);
    }

    /// An invocation that ran `ran` and ended at `unix_ms`, as a sample: none for an error or
    /// this environment's first invocation.
    pub fn sample(&self, ran: Duration, errored: bool, unix_ms: u64) -> Option<(Duration, Sample)> {
        let first = !self.warm.swap(true, Ordering::Relaxed);
        (!errored && !first).then(|| {
            let sample = Sample {
                bucket: Window::bucket(ran),
                window: unix_ms / self.window_ms,
            };
            (ran, sample)
        })
    }

    /// With the local coordinator: adds a sample; if it is the first of a new window, the
    /// window before is closed and the new state returned.
    pub fn add_local(
        &self,
        ran: Duration,
        sample: Sample,
        in_flight: u64,
        bounds: Bounds,
    ) -> Option<State> {
        let mut local = self.local.lock();
        let (index, window, state) = &mut *local;
        let mut computed = None;
        // A sample of an earlier window (releases racing) goes into the current one.
        if sample.window > *index {
            // A thin window is carried into the next rather than dropped: with few, slow
            // invocations the signal must still add up.
            if window.samples() >= MIN_SAMPLES && *index > 0 {
                let closed = std::mem::take(window);
                let before = state.take().unwrap_or_else(|| State::initial(bounds));
                let next = step(self.controller.as_ref(), &before, &closed, *index, bounds);
                self.set_cap(next.cap());
                computed = Some(next.clone());
                *state = Some(next);
            }
            *index = sample.window;
        }
        window.add(ran, in_flight);
        computed
    }

    /// The fleet's next state from a window this environment claimed; `None` if the published
    /// state is already as new (a claimer that came late).
    pub fn fleet_step(&self, closed: &Closed, bounds: Bounds) -> Option<State> {
        let before = closed
            .state
            .as_deref()
            .and_then(|s| State::decode(s, bounds))
            .unwrap_or_else(|| State::initial(bounds));
        if before.window >= closed.window && closed.state.is_some() {
            return None;
        }
        Some(step(
            self.controller.as_ref(),
            &before,
            &closed.summary,
            closed.window,
            bounds,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BOUNDS: Bounds = Bounds { min: 2, max: 60 };

    fn window(median_ms: f64, n: u64, peak: u64) -> Window {
        let mut w = Window::default();
        for i in 0..n {
            // A spread around the median: ±10 %.
            let f = 0.9 + 0.2 * (i as f64 / n.max(1) as f64);
            w.add(Duration::from_secs_f64(median_ms * f / 1000.0), peak);
        }
        w
    }

    /// A downstream of `k` workers at `service_ms`: the median latency with `in_flight`
    /// requests on it.
    fn downstream(in_flight: f64, k: f64, service_ms: f64) -> f64 {
        service_ms * (in_flight / k).max(1.0)
    }

    fn controllers() -> Vec<Box<dyn Controller>> {
        vec![Box::new(Gradient), Box::new(Aimd)]
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let w = window(100.0, 100, 5);
        let median = w.quantile(0.5).unwrap();
        assert!((85_000.0..115_000.0).contains(&median), "{median}");
        assert_eq!(Window::default().quantile(0.5), None);
        assert_eq!(w.samples(), 100);
        assert_eq!(w.peak_in_flight, 5);
    }

    #[test]
    fn a_state_survives_its_encoding() {
        let mut s = State::initial(BOUNDS);
        s = step(&Gradient, &s, &window(100.0, 50, 60), 7, BOUNDS);
        let back = State::decode(&s.encode(), BOUNDS).unwrap();
        assert!((back.limit - s.limit).abs() < 0.01);
        assert_eq!(back.window, 7);
        assert_eq!(back.lows[0].map(|l| l.0), Some(0));
        assert_eq!(State::decode("garbage", BOUNDS), None);
        assert_eq!(State::decode("NaN 3", BOUNDS), None);
        // A limit stored under other bounds is brought within these.
        assert_eq!(State::decode("1000 3", BOUNDS).unwrap().limit, 60.0);
    }

    #[test]
    fn each_controller_settles_near_the_downstreams_capacity_and_keeps_its_latency() {
        for c in controllers() {
            let mut s = State::initial(BOUNDS);
            // Unloaded first: the baseline is learnt at 100 ms.
            s = step(c.as_ref(), &s, &window(100.0, 50, 5), 0, BOUNDS);
            // Then more demand than 20 workers can serve: in flight is whatever the limit allows.
            let mut limits = Vec::new();
            for i in 1..120 {
                let median = downstream(s.limit.floor(), 20.0, 100.0);
                s = step(c.as_ref(), &s, &window(median, 200, s.cap()), i, BOUNDS);
                limits.push(s.limit);
            }
            let settled = &limits[60..];
            let (lo, hi) = settled
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
            assert!(lo >= 18.0 && hi <= 35.0, "{}: {lo}..{hi}", c.name());
        }
    }

    #[test]
    fn errors_and_sheds_make_no_window_and_a_thin_window_changes_nothing() {
        for c in controllers() {
            let s = State::initial(BOUNDS);
            let thin = step(
                c.as_ref(),
                &s,
                &window(10_000.0, MIN_SAMPLES - 1, 60),
                3,
                BOUNDS,
            );
            assert_eq!(thin.limit, s.limit, "{}", c.name());
            assert_eq!(thin.lows, s.lows);
        }
    }

    #[test]
    fn a_limit_far_above_what_is_in_flight_comes_down_to_where_it_binds() {
        // A ceiling of 1,000 (the account's pool) with 40 in flight on a slowed downstream.
        let bounds = Bounds { min: 1, max: 1000 };
        let mut s = State::initial(bounds);
        s = step(&Gradient, &s, &window(100.0, 100, 40), 0, bounds);
        for i in 1..4 {
            s = step(&Gradient, &s, &window(300.0, 100, 40), i, bounds);
        }
        assert!(s.limit < 40.0, "{}", s.limit);
    }

    #[test]
    fn thin_windows_are_carried_and_a_late_claim_changes_nothing() {
        let config = AdaptiveConfig {
            controller: AdaptiveController::Gradient,
            min: 1,
            max: Some(50),
            window: Duration::from_millis(100),
        };
        let a = Adaptive::new(&config);
        let bounds = a.bounds(None);
        assert_eq!(bounds.max, 50);
        let at = |window: u64| Sample { bucket: 0, window };
        // Three windows of 4 samples: none alone is enough, together they are.
        let mut computed = None;
        for w in 1..=4u64 {
            for _ in 0..4 {
                computed = computed.or(a.add_local(Duration::from_millis(10), at(w), 1, bounds));
            }
        }
        let computed = computed.expect("a window closed");
        assert!(
            computed.median_us.is_some(),
            "12 samples carried over thin windows make a step: {computed:?}"
        );
        assert_eq!(a.cap(), Some(50));
        let fresh = Closed {
            window: 9,
            summary: window(10.0, 50, 1),
            state: Some(State::initial(bounds).encode()),
        };
        assert!(a.fleet_step(&fresh, bounds).is_some());
        let mut newer = State::initial(bounds);
        newer.window = 9;
        let late = Closed {
            state: Some(newer.encode()),
            ..fresh
        };
        assert_eq!(
            a.fleet_step(&late, bounds),
            None,
            "the published state is as new"
        );
        // The ceiling caps the platform's limit and the platform's caps the ceiling.
        let platform = |v| Some(Limit::new(v, crate::decision::limit::LimitSource::Reserved));
        assert_eq!(a.bounds(platform(20)).max, 20);
        assert_eq!(a.bounds(platform(200)).max, 50);
        // A malformed low does not lose the rest of the state.
        let decoded = State::decode("12.5 7 x:y 3:900", bounds).unwrap();
        assert_eq!((decoded.limit, decoded.window), (12.5, 7));
        assert_eq!(decoded.lows[3], Some((3, 900.0)));
    }

    proptest! {
        #[test]
        fn the_limit_never_leaves_its_bounds(
            min in 1u64..50,
            span in 0u64..200,
            windows in proptest::collection::vec((1.0f64..10_000.0, 0u64..500, 0u64..400), 1..80),
            aimd in any::<bool>(),
        ) {
            let bounds = Bounds { min, max: min + span };
            let c: Box<dyn Controller> = if aimd { Box::new(Aimd) } else { Box::new(Gradient) };
            let mut s = State::initial(bounds);
            for (i, (median_ms, n, peak)) in windows.into_iter().enumerate() {
                s = step(c.as_ref(), &s, &window(median_ms, n, peak), i as u64, bounds);
                prop_assert!(s.limit >= min as f64 && s.limit <= bounds.max as f64, "{}", s.limit);
                prop_assert!(s.cap() >= min.max(1) && s.cap() <= bounds.max);
            }
        }

        #[test]
        fn the_limit_recovers_once_the_downstream_does(
            slow_windows in 1usize..60,
            factor in 2.0f64..20.0,
            aimd in any::<bool>(),
        ) {
            let c: Box<dyn Controller> = if aimd { Box::new(Aimd) } else { Box::new(Gradient) };
            let mut s = State::initial(BOUNDS);
            let mut i = 0;
            s = step(c.as_ref(), &s, &window(50.0, 100, 60), i, BOUNDS);
            // The downstream slows down by `factor`, whatever is in flight: the limit falls.
            for _ in 0..slow_windows {
                i += 1;
                s = step(c.as_ref(), &s, &window(50.0 * factor, 100, s.cap()), i, BOUNDS);
            }
            prop_assert!(s.limit < BOUNDS.max as f64);
            // It recovers: back at 50 ms with demand for everything, the limit returns to the
            // maximum, within the stated number of windows from the minimum (gradient 16, AIMD 60).
            let within = if aimd { 60 } else { 16 };
            for _ in 0..within {
                i += 1;
                s = step(c.as_ref(), &s, &window(50.0, 100, s.cap()), i, BOUNDS);
            }
            prop_assert_eq!(s.cap(), BOUNDS.max, "{} after {} windows", c.name(), within);
        }
    }
}
