//! Configuration: every `ADMISSION_*` variable, parsed once at init.
//!
//! The names live here and nowhere else; the README's table is checked against [`VARIABLES`] by a
//! test. Values are read through [`Strings`], so tests pass a map and never touch the process
//! environment. An invalid value is an error naming the variable, the value and what is accepted:
//! a wrong setting must fail init loudly, never fall back to a default in silence.

use std::collections::HashMap;
use std::time::Duration;

pub const MODE: &str = "ADMISSION_MODE";
pub const LIMIT: &str = "ADMISSION_LIMIT";
pub const SHED_AT: &str = "ADMISSION_SHED_AT";
pub const PORT: &str = "ADMISSION_PORT";
pub const UPSTREAM: &str = "ADMISSION_UPSTREAM";
pub const RETRY_AFTER_MAX: &str = "ADMISSION_RETRY_AFTER_MAX";
pub const METRICS_INTERVAL: &str = "ADMISSION_METRICS_INTERVAL";
pub const METRICS_NAMESPACE: &str = "ADMISSION_METRICS_NAMESPACE";
pub const COORDINATOR: &str = "ADMISSION_COORDINATOR";
pub const POOL: &str = "ADMISSION_POOL";
pub const COORDINATOR_TIMEOUT_MS: &str = "ADMISSION_COORDINATOR_TIMEOUT_MS";
pub const COORDINATOR_BACKOFF_MS: &str = "ADMISSION_COORDINATOR_BACKOFF_MS";
pub const REDIS_CA_FILE: &str = "ADMISSION_REDIS_CA_FILE";
pub const LIMIT_REFRESH: &str = "ADMISSION_LIMIT_REFRESH";

/// Every variable this extension reads, with its default as the README states it.
pub const VARIABLES: &[(&str, &str)] = &[
    (MODE, "enforce"),
    (LIMIT, "unset"),
    (SHED_AT, "0.9"),
    (PORT, "9009"),
    (UPSTREAM, "$AWS_LAMBDA_RUNTIME_API"),
    (RETRY_AFTER_MAX, "30"),
    (METRICS_INTERVAL, "60"),
    (METRICS_NAMESPACE, "LambdaAdmission"),
    (COORDINATOR, "local"),
    (POOL, "$AWS_LAMBDA_FUNCTION_NAME"),
    (COORDINATOR_TIMEOUT_MS, "5"),
    (COORDINATOR_BACKOFF_MS, "5000"),
    (REDIS_CA_FILE, "unset"),
    (LIMIT_REFRESH, "60"),
];

// Variables the platform sets; read, never documented as ours.
pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
pub const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
pub const MANAGED_INSTANCES: &str = "lambda-managed-instances";

/// A source of configuration strings: the process environment in production, a map in tests.
pub trait Strings {
    fn get(&self, name: &str) -> Option<String>;
    /// Names of all variables present, to warn about unknown `ADMISSION_*` names.
    fn names(&self) -> Vec<String>;
}

/// The process environment.
pub struct Env;

impl Strings for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect()
    }
}

impl Strings for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {name}={value:?}: expected {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decide, count and shed.
    Enforce,
    /// Decide and count what would be shed; shed nothing.
    Observe,
    /// Forward everything untouched.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
            Mode::Off => "off",
        }
    }
}

/// Where the concurrency limit came from; reported next to the `Limit` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    Env,
    ManagedInstances,
    /// The function's reserved concurrency (`GetFunctionConcurrency`).
    Reserved,
    /// The account's unreserved pool (`GetAccountSettings`).
    Account,
}

impl LimitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Env => "env",
            LimitSource::ManagedInstances => "managed-instances",
            LimitSource::Reserved => "reserved",
            LimitSource::Account => "account",
        }
    }
}

/// Who counts the in-flight invocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorConfig {
    Local,
    /// A Redis or Valkey URL (`redis://` or `rediss://`), credentials included.
    Redis {
        url: String,
    },
}

/// How the shared coordinator is reached and when it is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// The pool's name: functions with the same pool share one in-flight count.
    pub pool: String,
    /// The budget for one round trip; past it the decision admits.
    pub timeout: Duration,
    /// How long the coordinator is skipped after repeated failures.
    pub backoff: Duration,
    /// PEM of the CA that signs the server's certificate, instead of the public roots.
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// The limit and its source; `None` admits everything.
    pub limit: Option<(u64, LimitSource)>,
    pub shed_at: f64,
    pub port: u16,
    /// `host:port` of the Runtime API this proxy forwards to.
    pub upstream: String,
    pub retry_after_max: u64,
    pub metrics_interval: Duration,
    pub metrics_namespace: String,
    pub function_name: String,
    pub managed_instances: bool,
    pub coordinator: CoordinatorConfig,
    pub shared: SharedConfig,
    /// How often a limit read from the Lambda API is read again while warm.
    pub limit_refresh: Duration,
    /// Unknown `ADMISSION_*` names, most likely typos: warned about, never fatal.
    pub unknown: Vec<String>,
}

impl Config {
    pub fn from_strings(env: &impl Strings) -> Result<Config, ConfigError> {
        let mode = match env.get(MODE).as_deref() {
            None | Some("enforce") => Mode::Enforce,
            Some("observe") => Mode::Observe,
            Some("off") => Mode::Off,
            Some(other) => return Err(invalid(MODE, other, "one of enforce, observe, off")),
        };
        let managed_instances = env.get(INITIALIZATION_TYPE).as_deref() == Some(MANAGED_INSTANCES);
        let limit = match env.get(LIMIT) {
            Some(v) => Some((
                parse_int(
                    LIMIT,
                    &v,
                    1,
                    u32::MAX as u64,
                    "an integer from 1 to 4294967295",
                )?,
                LimitSource::Env,
            )),
            // The platform's own value: a malformed one is not the user's mistake, so ignore it.
            None => env
                .get(MAX_CONCURRENCY)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n >= 1)
                .map(|n| (n, LimitSource::ManagedInstances)),
        };
        let shed_at = match env.get(SHED_AT) {
            None => 0.9,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(x) if x > 0.0 && x <= 1.0 => x,
                _ => {
                    return Err(invalid(
                        SHED_AT,
                        &v,
                        "a number greater than 0 and at most 1",
                    ))
                }
            },
        };
        let port = int(env, PORT, 9009, 1, 65535, "a TCP port from 1 to 65535")? as u16;
        let upstream = match env.get(UPSTREAM).or_else(|| env.get(RUNTIME_API)) {
            Some(v) if is_host_port(&v) => v,
            Some(v) => {
                return Err(invalid(
                    UPSTREAM,
                    &v,
                    "host:port of the Lambda Runtime API (defaults to AWS_LAMBDA_RUNTIME_API)",
                ))
            }
            None => return Err(invalid(
                UPSTREAM,
                "",
                "host:port of the Lambda Runtime API; neither it nor AWS_LAMBDA_RUNTIME_API is set",
            )),
        };
        let retry_after_max = int(env, RETRY_AFTER_MAX, 30, 1, 86_400, SECONDS)?;
        let metrics_interval =
            Duration::from_secs(int(env, METRICS_INTERVAL, 60, 1, 86_400, SECONDS)?);
        let metrics_namespace = match env.get(METRICS_NAMESPACE) {
            None => "LambdaAdmission".to_string(),
            Some(v) if is_namespace(&v) => v,
            Some(v) => return Err(invalid(
                METRICS_NAMESPACE,
                &v,
                "1 to 255 characters of letters, digits and . - _ / # : (a CloudWatch namespace)",
            )),
        };
        let coordinator = match env.get(COORDINATOR) {
            None => CoordinatorConfig::Local,
            Some(v) if v == "local" => CoordinatorConfig::Local,
            Some(v) if is_redis_url(&v) => CoordinatorConfig::Redis { url: v },
            Some(v) => {
                return Err(invalid(
                    COORDINATOR,
                    &redact(&v),
                    "local, redis://[user:password@]host[:port] or rediss://... (TLS)",
                ))
            }
        };
        let function_name = env.get(FUNCTION_NAME).unwrap_or_default();
        let pool = match env.get(POOL) {
            None => function_name.clone(),
            Some(v) if !v.is_empty() && v.len() <= 200 && !v.contains(['{', '}']) => v,
            Some(v) => return Err(invalid(POOL, &v, "1 to 200 characters without { or }")),
        };
        let timeout = Duration::from_millis(int(
            env,
            COORDINATOR_TIMEOUT_MS,
            5,
            1,
            10_000,
            "whole milliseconds from 1 to 10000",
        )?);
        let backoff = Duration::from_millis(int(
            env,
            COORDINATOR_BACKOFF_MS,
            5000,
            10,
            600_000,
            "whole milliseconds from 10 to 600000",
        )?);
        let ca_file = match env.get(REDIS_CA_FILE) {
            None => None,
            Some(v) if std::path::Path::new(&v).is_file() => Some(v),
            Some(v) => {
                return Err(invalid(
                    REDIS_CA_FILE,
                    &v,
                    "the path of a readable PEM file",
                ))
            }
        };
        let limit_refresh = Duration::from_secs(int(env, LIMIT_REFRESH, 60, 1, 86_400, SECONDS)?);
        let mut unknown: Vec<String> = env
            .names()
            .into_iter()
            .filter(|n| n.starts_with("ADMISSION_") && !VARIABLES.iter().any(|(v, _)| v == n))
            .collect();
        unknown.sort();
        Ok(Config {
            mode,
            limit,
            shed_at,
            port,
            upstream,
            retry_after_max,
            metrics_interval,
            metrics_namespace,
            function_name,
            managed_instances,
            coordinator,
            shared: SharedConfig {
                pool,
                timeout,
                backoff,
                ca_file,
            },
            limit_refresh,
            unknown,
        })
    }
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError {
        name,
        value: value.to_string(),
        expected,
    }
}

const SECONDS: &str = "whole seconds from 1 to 86400";

/// An integer setting: `default` when unset, else a value in `min..=max`.
fn int(
    env: &impl Strings,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(v) => parse_int(name, &v, min, max, expected),
    }
}

fn parse_int(
    name: &'static str,
    value: &str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, value, expected)),
    }
}

fn is_host_port(v: &str) -> bool {
    match v.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains('/')
                && port.parse::<u16>().map(|p| p > 0).unwrap_or(false)
        }
        None => false,
    }
}

fn is_redis_url(v: &str) -> bool {
    let rest = v
        .strip_prefix("redis://")
        .or_else(|| v.strip_prefix("rediss://"));
    let host = rest
        .map(|r| r.rsplit_once('@').map_or(r, |(_, h)| h))
        .map(|h| h.split(['/', '?']).next().unwrap_or(""));
    host.is_some_and(|h| !h.is_empty() && !h.starts_with(':'))
}

/// The URL with its password masked, for messages: never log a credential.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        };
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_string(),
    }
}

fn is_namespace(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && !v.starts_with(':')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry(RUNTIME_API.into())
            .or_insert_with(|| "127.0.0.1:9001".into());
        m
    }

    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        Config::from_strings(&env(pairs)).expect_err("config should be rejected")
    }

    #[test]
    fn defaults() {
        let c = Config::from_strings(&env(&[])).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.limit, None);
        assert_eq!(c.port, 9009);
        assert_eq!(c.upstream, "127.0.0.1:9001");
        assert_eq!(c.metrics_interval, Duration::from_secs(60));
        assert_eq!(c.metrics_namespace, "LambdaAdmission");
        assert_eq!(c.retry_after_max, 30);
        assert!(!c.managed_instances);
    }

    #[test]
    fn managed_instances_limit_comes_from_the_platform_unless_set() {
        let mi = [
            (INITIALIZATION_TYPE, MANAGED_INSTANCES),
            (MAX_CONCURRENCY, "32"),
        ];
        let c = Config::from_strings(&env(&mi)).unwrap();
        assert!(c.managed_instances);
        assert_eq!(c.limit, Some((32, LimitSource::ManagedInstances)));
        let c = Config::from_strings(&env(&[mi[0], mi[1], (LIMIT, "8")])).unwrap();
        assert_eq!(c.limit, Some((8, LimitSource::Env)));
        let c = Config::from_strings(&env(&[mi[0], (MAX_CONCURRENCY, "junk")])).unwrap();
        assert_eq!(c.limit, None);
    }

    #[test]
    fn upstream_override_wins() {
        let c = Config::from_strings(&env(&[(UPSTREAM, "127.0.0.1:9100")])).unwrap();
        assert_eq!(c.upstream, "127.0.0.1:9100");
    }

    #[test]
    fn every_invalid_value_names_the_variable_and_value() {
        let cases: &[(&str, &str)] = &[
            (MODE, "shed"),
            (MODE, "ENFORCE"),
            (LIMIT, "0"),
            (LIMIT, "-1"),
            (LIMIT, "ten"),
            (LIMIT, "1.5"),
            (LIMIT, "99999999999"),
            (SHED_AT, "0"),
            (SHED_AT, "1.2"),
            (SHED_AT, "NaN"),
            (SHED_AT, "90%"),
            (PORT, "0"),
            (PORT, "70000"),
            (PORT, "http"),
            (UPSTREAM, "localhost"),
            (UPSTREAM, "http://127.0.0.1:9001"),
            (UPSTREAM, "127.0.0.1:0"),
            (RETRY_AFTER_MAX, "0"),
            (RETRY_AFTER_MAX, "1m"),
            (METRICS_INTERVAL, "0"),
            (METRICS_INTERVAL, "5s"),
            (METRICS_NAMESPACE, ""),
            (METRICS_NAMESPACE, "bad{ns}"),
            (COORDINATOR, "memcached://host"),
            (COORDINATOR, "redis://"),
            (COORDINATOR, "Local"),
            (POOL, ""),
            (POOL, "a{b}"),
            (COORDINATOR_TIMEOUT_MS, "0"),
            (COORDINATOR_TIMEOUT_MS, "2s"),
            (COORDINATOR_BACKOFF_MS, "1"),
            (REDIS_CA_FILE, "/no/such/file.pem"),
            (LIMIT_REFRESH, "0"),
        ];
        for (name, value) in cases {
            let e = err(&[(name, value)]);
            assert_eq!(e.name, *name, "{name}={value}");
            assert_eq!(e.value, *value);
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains("expected"), "{msg}");
        }
    }

    #[test]
    fn coordinator_urls_are_accepted_and_never_echoed_with_their_password() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://host",
            "rediss://user:secret@my-cache.serverless.use1.cache.amazonaws.com:6379",
            "redis://:secret@10.0.0.1:6380/0",
        ] {
            let c = Config::from_strings(&env(&[(COORDINATOR, url)])).unwrap();
            assert_eq!(c.coordinator, CoordinatorConfig::Redis { url: url.into() });
        }
        let e = err(&[(COORDINATOR, "redis//user:secret@host")]);
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = err(&[(COORDINATOR, "memcache://user:secret@host")]);
        assert!(
            !e.to_string().contains("secret") && e.to_string().contains("user:***@host"),
            "{e}"
        );
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn shared_coordinator_defaults() {
        let c = Config::from_strings(&env(&[(FUNCTION_NAME, "orders")])).unwrap();
        assert_eq!(c.coordinator, CoordinatorConfig::Local);
        assert_eq!(c.shared.pool, "orders");
        assert_eq!(c.shared.timeout, Duration::from_millis(5));
        assert_eq!(c.shared.backoff, Duration::from_secs(5));
        assert_eq!(c.limit_refresh, Duration::from_secs(60));
        let c =
            Config::from_strings(&env(&[(FUNCTION_NAME, "orders"), (POOL, "unreserved")])).unwrap();
        assert_eq!(c.shared.pool, "unreserved");
    }

    #[test]
    fn missing_runtime_api_is_an_error() {
        let m: HashMap<String, String> = HashMap::new();
        let e = Config::from_strings(&m).unwrap_err();
        assert_eq!(e.name, UPSTREAM);
    }

    #[test]
    fn unknown_admission_variables_are_collected() {
        let c = Config::from_strings(&env(&[
            ("ADMISSION_LIMT", "5"),
            ("ADMISSION_MODE", "observe"),
            ("OTHER", "x"),
        ]))
        .unwrap();
        assert_eq!(c.unknown, vec!["ADMISSION_LIMT".to_string()]);
        assert_eq!(c.mode, Mode::Observe);
    }
}
