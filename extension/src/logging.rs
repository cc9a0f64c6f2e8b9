//! Logs through `tracing`, shaped the way Lambda's own log settings ask.
//!
//! `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR, FATAL; default INFO) and
//! `AWS_LAMBDA_LOG_FORMAT` (Text or JSON) are the function's advanced logging controls. Logs go to
//! stderr; stdout carries the metric lines only.
//!
//! The level applies to this extension's own logs. The crates it uses log at INFO at most: the
//! AWS SDK's signer logs canonical requests at TRACE, and those carry the session token.

use tracing::level_filters::LevelFilter;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// Which logs pass: this extension's at `level`, every other crate's at INFO at most.
pub fn targets(level: Level) -> Targets {
    let ours = LevelFilter::from_level(level);
    Targets::new()
        .with_target("lambda_admission", ours)
        .with_default(ours.min(LevelFilter::INFO))
}

pub fn init(env: &impl Strings) {
    let json = env
        .get(LOG_FORMAT)
        .is_some_and(|v| v.eq_ignore_ascii_case("json"));
    let level = level(env);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(targets(level))
            .try_init()
    } else {
        builder
            .without_time()
            .finish()
            .with(targets(level))
            .try_init()
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

    #[test]
    fn other_crates_log_at_info_at_most() {
        let t = targets(Level::TRACE);
        assert!(t.would_enable("lambda_admission::coordinator", &Level::TRACE));
        assert!(!t.would_enable("aws_sigv4::http_request::sign", &Level::TRACE));
        assert!(!t.would_enable("aws_sigv4::http_request::sign", &Level::DEBUG));
        assert!(t.would_enable("aws_config", &Level::INFO));
        let quiet = targets(Level::WARN);
        assert!(!quiet.would_enable("aws_config", &Level::INFO));
        assert!(!quiet.would_enable("lambda_admission", &Level::INFO));
    }
}
