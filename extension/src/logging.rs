//! Logs through `tracing`, shaped the way Lambda's own log settings ask.
//!
//! `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; default INFO) and
//! `AWS_LAMBDA_LOG_FORMAT` (Text or JSON) are the function's advanced logging controls. Logs go to
//! stderr; stdout carries the metric lines only.

use tracing::Level;

use crate::config::Strings;

pub const LOG_LEVEL: &str = "AWS_LAMBDA_LOG_LEVEL";
pub const LOG_FORMAT: &str = "AWS_LAMBDA_LOG_FORMAT";

pub fn level(env: &impl Strings) -> Level {
    match env
        .get(LOG_LEVEL)
        .map(|v| v.to_ascii_uppercase())
        .as_deref()
    {
        Some("TRACE") => Level::TRACE,
        Some("DEBUG") => Level::DEBUG,
        Some("WARN") => Level::WARN,
        Some("ERROR" | "FATAL") => Level::ERROR,
        _ => Level::INFO,
    }
}

pub fn init(env: &impl Strings) {
    let json = env
        .get(LOG_FORMAT)
        .is_some_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_max_level(level(env))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.without_time().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_lambdas_log_level() {
        let mut env = HashMap::new();
        assert_eq!(level(&env), Level::INFO);
        env.insert(LOG_LEVEL.to_string(), "debug".to_string());
        assert_eq!(level(&env), Level::DEBUG);
        env.insert(LOG_LEVEL.to_string(), "FATAL".to_string());
        assert_eq!(level(&env), Level::ERROR);
    }
}
