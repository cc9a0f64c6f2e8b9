//! What the admission reports: the metrics of each period and the status.

use std::time::Instant;

use serde_json::json;

use super::{Admission, FLEET_LOAD_FRESH};
use crate::decision::adaptive::Adaptive;
use crate::decision::classes::Class;

impl Admission {
    /// Writes the metrics of the period that just ended, if anything was decided in it.
    pub fn emit_metrics(&self) {
        self.ledger.count(Instant::now());
        if let Some(cpu) = &self.cpu {
            let (utilisation, cap) = cpu.take_period();
            self.metrics.cpu_sampled(utilisation, cap);
        }
        self.metrics.emit(self.ledger.take_max(), self.limit());
    }

    /// What a handler or a test may read at `/lambda-admission/v1/status`.
    pub fn status(&self) -> serde_json::Value {
        let limit = self.limit();
        json!({
            "mode": self.mode.as_str(),
            "limit": limit.map(|l| l.value),
            "limitSource": limit.map(|l| l.source.as_str()),
            "threshold": self.threshold(),
            "inFlight": self.ledger.count(Instant::now()),
            "coordinator": self.coordinator.as_ref().map_or("local", |c| c.kind()),
            "coordinatorConnected": self.coordinator.as_ref().is_none_or(|c| c.connected()),
            "unreturnedLeases": self.coordinator.as_ref().map_or(0, |c| c.unreturned()),
            "admitted": self.metrics.totals().admitted,
            "shed": self.metrics.totals().shed,
            "load": self.load_hints(),
            "adaptiveLimit": self.adaptive.as_ref().and_then(Adaptive::cap),
            "cpu": self.cpu.as_ref().map(|c| c.status()),
            "warnings": self.warnings.to_json(),
        })
    }

    /// For handlers that degrade before anything is refused: how full the fleet is (as of this
    /// environment's last decision with a shared count, else this environment's own count), and
    /// which classes that count sheds.
    fn load_hints(&self) -> serde_json::Value {
        let now = Instant::now();
        let fleet = *self.fleet_in_flight.lock();
        let in_flight = fleet
            .filter(|(at, _)| now.saturating_duration_since(*at) < FLEET_LOAD_FRESH)
            .map_or_else(|| self.ledger.count(now), |(_, n)| n);
        let Some(limit) = self.limit() else {
            return json!({
                "utilisation": null,
                "inFlight": in_flight,
                "shedding": {"default": false, "sheddable": false},
            });
        };
        let sheds = |class| {
            self.class_thresholds(limit, class)
                .0
                .is_some_and(|t| in_flight >= t)
        };
        let utilisation = in_flight as f64 / limit.value.max(1) as f64;
        json!({
            "utilisation": (utilisation * 1000.0).round() / 1000.0,
            "inFlight": in_flight,
            "shedding": {
                "default": sheds(Class::Default),
                "sheddable": sheds(Class::Sheddable),
            },
        })
    }
}
