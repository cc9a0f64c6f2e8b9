//! Configurations that protect nothing, said loudly: a WARN line at init and once per metrics
//! period, and an entry in the status's `warnings`.
//!
//! A configuration error fails init; these are valid settings under which the layer runs and
//! sheds nothing (or cannot shed in time), which a user would otherwise learn from the 500s it
//! was meant to prevent. Each warning names the variable to change. This module reads the
//! configuration and the limit's state; nothing here decides anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::config::{self, Config, CoordinatorConfig, Mode};

pub const LOCAL_ON_DEMAND: &str = "local-coordinator-on-demand";
pub const NO_HEADROOM: &str = "no-headroom";
pub const LIMIT_UNREADABLE: &str = "limit-unreadable";
pub const UNKNOWN_VARIABLE: &str = "unknown-variable";
pub const RUNTIME_BYPASSES: &str = "runtime-bypasses-proxy";

/// The variable that points the runtime at the proxy.
const EXEC_WRAPPER: &str = "AWS_LAMBDA_EXEC_WRAPPER";

/// Every warning's code and the variable it names: the README's table follows it.
pub const CODES: &[(&str, &str)] = &[
    (LOCAL_ON_DEMAND, config::COORDINATOR),
    (NO_HEADROOM, config::SHED_AT),
    (LIMIT_UNREADABLE, config::LIMIT),
    (UNKNOWN_VARIABLE, "the variable's name"),
    (RUNTIME_BYPASSES, EXEC_WRAPPER),
];

/// One configuration that protects nothing, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// A stable name for tests and alarms: `local-coordinator-on-demand`, ...
    pub code: &'static str,
    /// The variable to change.
    pub variable: String,
    pub message: String,
}

impl Warning {
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "variable": self.variable, "message": self.message})
    }
}

/// The warnings the configuration implies, known at init.
pub fn of(config: &Config) -> Vec<Warning> {
    let mut found: Vec<Warning> = config
        .unknown
        .iter()
        .map(|name| Warning {
            code: UNKNOWN_VARIABLE,
            variable: name.clone(),
            message: format!("{name} is not a lambda-admission variable and is ignored (a typo?)"),
        })
        .collect();
    if config.mode == Mode::Off {
        return found;
    }
    let on_demand_local =
        !config.managed_instances && config.coordinator == CoordinatorConfig::Local;
    match config.limit.map(|l| l.value) {
        Some(limit) if on_demand_local && limit > 1 => found.push(Warning {
            code: LOCAL_ON_DEMAND,
            variable: config::COORDINATOR.into(),
            message: format!(
                "on-demand function with the local coordinator and a limit of {limit}: each \
                 environment runs one invocation at a time and counts only its own, so nothing \
                 is ever shed; set {} to a Redis or Valkey URL (the fleet's count)",
                config::COORDINATOR
            ),
        }),
        None if on_demand_local => found.push(Warning {
            code: LOCAL_ON_DEMAND,
            variable: config::COORDINATOR.into(),
            message: format!(
                "on-demand function with the local coordinator and no limit: every event is \
                 admitted; set {} to a Redis or Valkey URL, and {} or the function's reserved \
                 concurrency",
                config::COORDINATOR,
                config::LIMIT
            ),
        }),
        _ => {}
    }
    if config.shed_at.is_some_and(|share| share >= 1.0) {
        found.push(Warning {
            code: NO_HEADROOM,
            variable: config::SHED_AT.into(),
            message: format!(
                "{}=1 admits until the function is full, leaving no slot for the 429s: once \
                 full, Lambda throttles them into 500s; unset it (the headroom the sheds need) \
                 or lower it",
                config::SHED_AT
            ),
        });
    }
    found
}

/// The warnings in force: those of the configuration, and one while the limit cannot be read.
#[derive(Debug, Clone, Default)]
pub struct Warnings {
    fixed: Arc<Vec<Warning>>,
    /// Why the Lambda API could not be read while no limit is known; `None`: it could, or it is
    /// not asked.
    limit_unreadable: Arc<Mutex<Option<String>>>,
    /// The runtime never asked the proxy for an event by the end of Lambda's init phase: it talks
    /// to the Runtime API itself.
    runtime_bypasses: Arc<AtomicBool>,
}

impl Warnings {
    pub fn new(config: &Config) -> Warnings {
        Warnings {
            fixed: Arc::new(of(config)),
            limit_unreadable: Arc::default(),
            runtime_bypasses: Arc::default(),
        }
    }

    /// The Lambda API could not be read (`Some(why)`) while no limit is known, or it was
    /// (`None`).
    pub fn set_limit_unreadable(&self, why: Option<String>) {
        *self.limit_unreadable.lock() = why;
    }

    /// Whether the runtime goes around the proxy (no `next` by the end of the init phase).
    pub fn set_runtime_bypasses(&self, bypasses: bool) {
        self.runtime_bypasses.store(bypasses, Ordering::Relaxed);
    }

    pub fn current(&self) -> Vec<Warning> {
        let mut all = (*self.fixed).clone();
        if self.runtime_bypasses.load(Ordering::Relaxed) {
            all.push(Warning {
                code: RUNTIME_BYPASSES,
                variable: EXEC_WRAPPER.into(),
                message: format!(
                    "the runtime has not asked this proxy for an event since init: it talks to \
                     Lambda's Runtime API itself, so nothing is admitted or shed; set \
                     {EXEC_WRAPPER}=/opt/lambda-admission-wrapper (on provided.* runtimes, start \
                     the function through the wrapper in its bootstrap), and check that no other \
                     layer's wrapper takes its place"
                ),
            });
        }
        if let Some(why) = self.limit_unreadable.lock().clone() {
            all.push(Warning {
                code: LIMIT_UNREADABLE,
                variable: config::LIMIT.into(),
                message: format!(
                    "the concurrency limit cannot be read from the Lambda API ({why}), so every \
                     event is admitted; grant lambda:GetFunctionConcurrency and \
                     lambda:GetAccountSettings, or set {}",
                    config::LIMIT
                ),
            });
        }
        all
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.current().iter().map(Warning::to_json).collect())
    }

    /// One WARN line per warning.
    pub fn log(&self) {
        for w in self.current() {
            tracing::warn!(variable = %w.variable, code = w.code, "{}", w.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:1".into());
        Config::from_strings(&env).unwrap()
    }

    fn codes(pairs: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        of(&config(pairs))
            .into_iter()
            .map(|w| (w.code, w.variable))
            .collect()
    }

    #[test]
    fn a_limit_with_the_local_coordinator_on_demand_names_the_coordinator() {
        assert_eq!(
            codes(&[("ADMISSION_LIMIT", "100")]),
            vec![(
                "local-coordinator-on-demand",
                "ADMISSION_COORDINATOR".into()
            )]
        );
        assert_eq!(
            codes(&[]),
            vec![(
                "local-coordinator-on-demand",
                "ADMISSION_COORDINATOR".into()
            )],
            "no limit at all protects nothing either"
        );
    }

    #[test]
    fn settings_that_protect_say_nothing() {
        // One environment: its own count is the fleet's.
        assert!(codes(&[("ADMISSION_LIMIT", "1")]).is_empty());
        assert!(codes(&[
            ("ADMISSION_LIMIT", "100"),
            ("ADMISSION_COORDINATOR", "redis://127.0.0.1:6379")
        ])
        .is_empty());
        // Managed Instances: one environment runs many invocations and counts them.
        assert!(codes(&[
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances"),
            ("ADMISSION_LIMIT", "64")
        ])
        .is_empty());
        // Off is a choice, not a mistake.
        assert!(codes(&[("ADMISSION_MODE", "off"), ("ADMISSION_LIMIT", "100")]).is_empty());
    }

    #[test]
    fn no_headroom_and_unknown_variables_are_named() {
        let found = codes(&[
            ("ADMISSION_LIMIT", "100"),
            ("ADMISSION_COORDINATOR", "redis://127.0.0.1:6379"),
            ("ADMISSION_SHED_AT", "1"),
            ("ADMISSION_LIMT", "5"),
        ]);
        assert_eq!(
            found,
            vec![
                ("unknown-variable", "ADMISSION_LIMT".into()),
                ("no-headroom", "ADMISSION_SHED_AT".into()),
            ]
        );
        assert!(codes(&[
            ("ADMISSION_COORDINATOR", "redis://127.0.0.1:6379"),
            ("ADMISSION_SHED_AT", "0.9"),
        ])
        .is_empty());
    }

    #[test]
    fn an_unreadable_limit_is_a_warning_until_it_is_read() {
        let w = Warnings::new(&config(&[(
            "ADMISSION_COORDINATOR",
            "redis://127.0.0.1:6379",
        )]));
        assert!(w.current().is_empty());
        w.set_limit_unreadable(Some("AccessDeniedException".into()));
        let json = w.to_json();
        assert_eq!(json[0]["code"], "limit-unreadable");
        assert_eq!(json[0]["variable"], "ADMISSION_LIMIT");
        assert!(json[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("AccessDeniedException")));
        w.set_limit_unreadable(None);
        assert!(w.current().is_empty());
    }
}
