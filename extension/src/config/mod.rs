//! Configuration: every `ADMISSION_*` variable, parsed once at init.
//!
//! [`VARIABLES`] is the one table of names and defaults: an unset variable is parsed from its
//! default string by the same parser as a set one, and the README's table is checked against it
//! by a test. Values are read through [`Strings`], so tests pass a map and never touch the process
//! environment. A blank value counts as unset (templates write `""` for "not set"). Every invalid
//! value is reported, all at once, naming the variable, the value and what is accepted: a wrong
//! setting must fail init loudly, never fall back to a default in silence.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

mod read;
pub mod rules;

use read::Reader;
use rules::{Rules, TenantKey};

pub const MODE: &str = "ADMISSION_MODE";
pub const LIMIT: &str = "ADMISSION_LIMIT";
pub const LIMIT_MIN: &str = "ADMISSION_LIMIT_MIN";
pub const LIMIT_MAX: &str = "ADMISSION_LIMIT_MAX";
pub const ADAPTIVE: &str = "ADMISSION_ADAPTIVE";
pub const ADAPTIVE_WINDOW_MS: &str = "ADMISSION_ADAPTIVE_WINDOW_MS";
pub const SHED_AT: &str = "ADMISSION_SHED_AT";
pub const PORT: &str = "ADMISSION_PORT";
pub const UPSTREAM: &str = "ADMISSION_UPSTREAM";
pub const RETRY_AFTER_MAX: &str = "ADMISSION_RETRY_AFTER_MAX";
pub const METRICS_INTERVAL: &str = "ADMISSION_METRICS_INTERVAL";
pub const METRICS_NAMESPACE: &str = "ADMISSION_METRICS_NAMESPACE";
pub const COORDINATOR: &str = "ADMISSION_COORDINATOR";
pub const POOL: &str = "ADMISSION_POOL";
pub const POOL_SHARDS: &str = "ADMISSION_POOL_SHARDS";
pub const COORDINATOR_TIMEOUT_MS: &str = "ADMISSION_COORDINATOR_TIMEOUT_MS";
pub const COORDINATOR_BACKOFF_MS: &str = "ADMISSION_COORDINATOR_BACKOFF_MS";
pub const REDIS_CA_FILE: &str = "ADMISSION_REDIS_CA_FILE";
pub const REDIS_AUTH: &str = "ADMISSION_REDIS_AUTH";
pub const REDIS_IAM_CACHE: &str = "ADMISSION_REDIS_IAM_CACHE";
pub const REDIS_IAM_SERVERLESS: &str = "ADMISSION_REDIS_IAM_SERVERLESS";
pub const REDIS_IAM_TOKEN_TTL: &str = "ADMISSION_REDIS_IAM_TOKEN_TTL";
pub const LIMIT_REFRESH: &str = "ADMISSION_LIMIT_REFRESH";
pub const RESPONSE_MODE: &str = "ADMISSION_RESPONSE_MODE";
pub const INIT_LEASE: &str = "ADMISSION_INIT_LEASE";
pub const EXEMPT: &str = "ADMISSION_EXEMPT";
pub const CRITICAL: &str = "ADMISSION_CRITICAL";
pub const SHEDDABLE: &str = "ADMISSION_SHEDDABLE";
pub const SHEDDABLE_AT: &str = "ADMISSION_SHEDDABLE_AT";
pub const CRITICAL_RESERVE: &str = "ADMISSION_CRITICAL_RESERVE";
pub const TENANT: &str = "ADMISSION_TENANT";
pub const TENANTS_MAX: &str = "ADMISSION_TENANTS_MAX";
pub const TENANT_RESERVE: &str = "ADMISSION_TENANT_RESERVE";
pub const TENANT_OVER_AT: &str = "ADMISSION_TENANT_OVER_AT";
pub const CPU: &str = "ADMISSION_CPU";
pub const CPU_SHED_AT: &str = "ADMISSION_CPU_SHED_AT";
pub const CPU_INTERVAL_MS: &str = "ADMISSION_CPU_INTERVAL_MS";
pub const CPU_WINDOW_MS: &str = "ADMISSION_CPU_WINDOW_MS";
pub const CPU_CGROUP: &str = "ADMISSION_CPU_CGROUP";

// Variables the platform sets; read, never documented as ours.
pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
pub const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
pub const MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
pub const MANAGED_INSTANCES: &str = "lambda-managed-instances";
pub const ON_DEMAND: &str = "on-demand";

/// What an unset variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// Parsed from this string, exactly as if it had been set.
    Value(&'static str),
    /// Another variable's value.
    From(&'static str),
    Unset,
}

#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: Default,
}

impl Variable {
    /// The default as the README's table writes it.
    pub fn documented_default(&self) -> String {
        match self.default {
            Default::Value(v) => v.to_string(),
            Default::From(var) => format!("${var}"),
            Default::Unset => "unset".to_string(),
        }
    }
}

const fn var(name: &'static str, default: Default) -> Variable {
    Variable { name, default }
}

/// Every variable this extension reads, with its default.
pub const VARIABLES: &[Variable] = &[
    var(MODE, Default::Value("enforce")),
    var(LIMIT, Default::Unset),
    var(LIMIT_MIN, Default::Value("1")),
    var(LIMIT_MAX, Default::Unset),
    var(ADAPTIVE, Default::Value("gradient")),
    var(ADAPTIVE_WINDOW_MS, Default::Value("1000")),
    var(SHED_AT, Default::Unset),
    var(PORT, Default::Value("9009")),
    var(UPSTREAM, Default::From(RUNTIME_API)),
    var(RETRY_AFTER_MAX, Default::Value("30")),
    var(METRICS_INTERVAL, Default::Value("60")),
    var(METRICS_NAMESPACE, Default::Value("LambdaAdmission")),
    var(COORDINATOR, Default::Value("local")),
    var(POOL, Default::From(FUNCTION_NAME)),
    var(POOL_SHARDS, Default::Value("1")),
    var(COORDINATOR_TIMEOUT_MS, Default::Value("5")),
    var(COORDINATOR_BACKOFF_MS, Default::Value("5000")),
    var(REDIS_CA_FILE, Default::Unset),
    var(REDIS_AUTH, Default::Value("password")),
    var(REDIS_IAM_CACHE, Default::Unset),
    var(REDIS_IAM_SERVERLESS, Default::Unset),
    var(REDIS_IAM_TOKEN_TTL, Default::Value("900")),
    var(LIMIT_REFRESH, Default::Value("60")),
    var(RESPONSE_MODE, Default::Value("auto")),
    var(INIT_LEASE, Default::Value("true")),
    var(EXEMPT, Default::Unset),
    var(CRITICAL, Default::Unset),
    var(SHEDDABLE, Default::Unset),
    var(SHEDDABLE_AT, Default::Value("0.5")),
    var(CRITICAL_RESERVE, Default::Value("0.1")),
    var(TENANT, Default::Unset),
    var(TENANTS_MAX, Default::Value("1000")),
    var(TENANT_RESERVE, Default::Value("0.2")),
    var(TENANT_OVER_AT, Default::Value("2")),
    var(CPU, Default::Value("auto")),
    var(CPU_SHED_AT, Default::Value("0.8")),
    var(CPU_INTERVAL_MS, Default::Value("100")),
    var(CPU_WINDOW_MS, Default::Value("1000")),
    var(CPU_CGROUP, Default::Unset),
];

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
    /// The value as set, with any password masked.
    pub value: String,
    pub expected: &'static str,
}

/// Every invalid variable of one environment.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, std::default::Default)]
pub enum Mode {
    /// Decide, count and shed.
    #[default]
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

/// How a 429 is posted to an HTTP front door that may stream (Function URLs in `RESPONSE_STREAM`
/// mode, REST integrations with `STREAM` transfer): the event does not say which it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, std::default::Default)]
pub enum ResponseMode {
    /// Buffered until the runtime posts a streamed HTTP response, streamed from then on.
    #[default]
    Auto,
    Buffered,
    Streaming,
}

/// Who counts the in-flight invocations.
#[derive(Debug, Clone, PartialEq, Eq, std::default::Default)]
pub enum CoordinatorConfig {
    /// This environment's own ledger.
    #[default]
    Local,
    /// A Redis or Valkey URL (`redis://` or `rediss://`), credentials included unless `iam`
    /// says how to authenticate.
    Redis { url: String, iam: Option<IamConfig> },
}

/// The adaptive limit's controller (`ADMISSION_ADAPTIVE`), by name: the controllers themselves
/// are the adaptive limit's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdaptiveController {
    /// (A placeholder while an invalid value is reported; the documented default is parsed.)
    #[default]
    Gradient,
    Aimd,
}

impl AdaptiveController {
    pub fn as_str(self) -> &'static str {
        match self {
            AdaptiveController::Gradient => "gradient",
            AdaptiveController::Aimd => "aimd",
        }
    }
}

/// The adaptive limit's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptiveConfig {
    pub controller: AdaptiveController,
    pub min: u64,
    /// The ceiling when set; otherwise the platform's limit.
    pub max: Option<u64>,
    pub window: Duration,
}

/// ElastiCache IAM authentication (`ADMISSION_REDIS_AUTH=iam`): the password is a token signed
/// with the function's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamConfig {
    /// The ElastiCache user, from the URL.
    pub user: String,
    /// The cache's name (`ADMISSION_REDIS_IAM_CACHE`): what the token is signed for.
    pub cache: String,
    /// Whether the cache is serverless (`ResourceType=ServerlessCache` in the token).
    pub serverless: bool,
    /// How long a token is valid; it is signed again, and connections re-authenticate, at half.
    pub token_lifetime: Duration,
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
    /// With fair shares: at most this many tenants are counted apart.
    pub tenants_max: u64,
    /// How many keys the pool's count is split over (each holding its part of the threshold).
    pub shards: usize,
    /// `ADMISSION_LIMIT=adaptive`: acquires read the fleet's adaptive limit back.
    pub adaptive: bool,
}

/// A concurrency limit and where it came from. [`crate::decision::limit`] turns it into the
/// threshold the decision admits up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    pub source: LimitSource,
}

impl Limit {
    pub fn new(value: u64, source: LimitSource) -> Limit {
        Limit { value, source }
    }
}

/// Where the limit came from; reported next to the `Limit` metric and in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    Env,
    /// One Managed Instances environment's concurrency.
    ManagedInstances,
    /// Managed Instances with a shared count: the sum of the concurrency of the environments the
    /// count has heard from lately.
    ManagedInstancesPool,
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
            LimitSource::ManagedInstancesPool => "managed-instances-pool",
            LimitSource::Reserved => "reserved",
            LimitSource::Account => "account",
        }
    }

    /// Managed Instances' limits: one environment's slots, or the pool's sum of them.
    pub fn is_managed_instances(self) -> bool {
        matches!(
            self,
            LimitSource::ManagedInstances | LimitSource::ManagedInstancesPool
        )
    }

    pub fn parse(s: &str) -> Option<LimitSource> {
        [
            LimitSource::Env,
            LimitSource::ManagedInstances,
            LimitSource::ManagedInstancesPool,
            LimitSource::Reserved,
            LimitSource::Account,
        ]
        .into_iter()
        .find(|source| source.as_str() == s)
    }
}

/// Fair shares per tenant (`ADMISSION_TENANT` and the settings beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    pub key: TenantKey,
    /// At most this many tenants are counted apart (`ADMISSION_TENANTS_MAX`).
    pub max: u64,
    /// The share of the limit a tenant over its fair share leaves, below the threshold, to
    /// tenants under theirs (`ADMISSION_TENANT_RESERVE`).
    pub reserve: f64,
    /// How many fair shares a tenant may hold before it is over its share
    /// (`ADMISSION_TENANT_OVER_AT`).
    pub over_at: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// The limit known at init (`ADMISSION_LIMIT`, or Managed Instances' concurrency); `None`
    /// admits everything until one is published.
    pub limit: Option<Limit>,
    /// A fixed share of the limit to admit up to; `None`: the headroom the sheds need.
    pub shed_at: Option<f64>,
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
    pub response_mode: ResponseMode,
    /// Hold a lease in the shared count while this environment initialises: an on-demand
    /// environment starting cold is busy for Lambda from the invoke that started it.
    pub init_lease: bool,
    /// Which requests are exempt, critical or sheddable.
    pub rules: Rules,
    /// The share of the limit from which sheddable requests are shed.
    pub sheddable_at: f64,
    /// With critical rules: the share of the limit the default class leaves to critical requests.
    pub critical_reserve: f64,
    /// Fair shares per tenant: where the key is read, and the bound; `None`: off.
    pub tenants: Option<TenantSettings>,
    /// `ADMISSION_LIMIT=adaptive`; `None`: a fixed limit.
    pub adaptive: Option<AdaptiveConfig>,
    /// CPU pressure as an admission signal (`ADMISSION_CPU`); `None`: off.
    pub cpu: Option<CpuConfig>,
    /// Unknown `ADMISSION_*` names, most likely typos: warned about, never fatal.
    pub unknown: Vec<String>,
}

/// CPU pressure's settings: on by default on Managed Instances, where an environment running hot
/// rejects invokes; `ADMISSION_CPU=on` elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuConfig {
    /// The share of the environment's vCPUs the default class's invocations may keep busy.
    pub shed_at: f64,
    pub interval: Duration,
    /// What the utilisation reported is measured over.
    pub window: Duration,
    /// The cgroup folder to read; `None`: this process's own, else `/proc/stat`.
    pub cgroup: Option<std::path::PathBuf>,
}

impl Config {
    /// Every variable read and checked; all the errors together when any is invalid.
    pub fn from_strings(env: &impl Strings) -> Result<Config, ConfigErrors> {
        Reader {
            env,
            errors: Vec::new(),
        }
        .config()
    }
}

/// `ADMISSION_LIMIT`, or else, with the local coordinator, Managed Instances' per-environment
/// concurrency. One environment's concurrency is no fleet-wide limit: with a shared coordinator
/// the limit comes from the Lambda API instead. A malformed platform value is not the user's
/// mistake, so it is ignored.
fn initial_limit(
    env: &impl Strings,
    set: Option<Option<u64>>,
    ceiling: Option<u64>,
    coordinator: &CoordinatorConfig,
) -> Option<Limit> {
    let explicit = match set {
        Some(Some(n)) => Some(n),
        // With a shared coordinator the adaptive ceiling stands for the platform's limit until
        // the Lambda API answers (then the lower of the two); Managed Instances have their own.
        Some(None) if *coordinator != CoordinatorConfig::Local => ceiling,
        _ => None,
    };
    match explicit {
        Some(value) => Some(Limit::new(value, LimitSource::Env)),
        None if *coordinator == CoordinatorConfig::Local => env
            .get(MAX_CONCURRENCY)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n >= 1)
            .map(|n| Limit::new(n, LimitSource::ManagedInstances)),
        None => None,
    }
}

/// An on-demand environment starting cold is busy for Lambda from the invoke that started it, so
/// with a shared count it holds a lease while it initialises. Provisioned concurrency and
/// SnapStart initialise ahead of any invoke; Managed Instances count locally.
fn takes_init_lease(env: &impl Strings, coordinator: &CoordinatorConfig) -> bool {
    *coordinator != CoordinatorConfig::Local
        && env
            .get(INITIALIZATION_TYPE)
            .is_none_or(|t| t.is_empty() || t == ON_DEMAND)
}

/// `ADMISSION_*` names this extension does not know: most likely typos.
fn unknown_variables(env: &impl Strings) -> Vec<String> {
    let mut unknown: Vec<String> = env
        .names()
        .into_iter()
        .filter(|n| n.starts_with("ADMISSION_") && !VARIABLES.iter().any(|v| v.name == n))
        .collect();
    unknown.sort();
    unknown
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

    fn errs(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
        Config::from_strings(&env(pairs))
            .expect_err("config should be rejected")
            .0
    }

    #[test]
    fn an_empty_environment_gives_every_documented_default() {
        let c = Config::from_strings(&env(&[(FUNCTION_NAME, "orders")])).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.limit, None);
        assert_eq!(c.shed_at, None);
        assert_eq!(c.port, 9009);
        assert_eq!(c.upstream, "127.0.0.1:9001");
        assert_eq!(c.retry_after_max, 30);
        assert_eq!(c.metrics_interval, Duration::from_secs(60));
        assert_eq!(c.metrics_namespace, "LambdaAdmission");
        assert_eq!(c.coordinator, CoordinatorConfig::Local);
        assert_eq!(c.shared.pool, "orders");
        assert_eq!(c.shared.timeout, Duration::from_millis(5));
        assert_eq!(c.shared.backoff, Duration::from_secs(5));
        assert_eq!(c.shared.ca_file, None);
        assert_eq!(c.limit_refresh, Duration::from_secs(60));
        assert_eq!(c.response_mode, ResponseMode::Auto);
        assert!(!c.managed_instances);
        // Each documented default, set explicitly, gives the same configuration.
        let mut explicit = env(&[(FUNCTION_NAME, "orders")]);
        for v in VARIABLES {
            if let Default::Value(d) = v.default {
                explicit.insert(v.name.to_string(), d.to_string());
            }
        }
        assert_eq!(Config::from_strings(&explicit).unwrap(), c);
    }

    #[test]
    fn blank_values_count_as_unset() {
        let blank = env(&[
            (LIMIT, ""),
            (SHED_AT, " "),
            (POOL, ""),
            (FUNCTION_NAME, "f"),
        ]);
        let c = Config::from_strings(&blank).unwrap();
        assert_eq!((c.limit, c.shed_at), (None, None));
        assert_eq!(c.shared.pool, "f");
    }

    #[test]
    fn cpu_pressure_is_on_for_managed_instances_and_where_asked() {
        let mi = (INITIALIZATION_TYPE, MANAGED_INSTANCES);
        assert_eq!(Config::from_strings(&env(&[])).unwrap().cpu, None);
        let on_mi = Config::from_strings(&env(&[mi])).unwrap().cpu.unwrap();
        assert_eq!(
            (on_mi.shed_at, on_mi.interval, on_mi.window, on_mi.cgroup),
            (
                0.8,
                Duration::from_millis(100),
                Duration::from_secs(1),
                None
            )
        );
        let off = Config::from_strings(&env(&[mi, (CPU, "off")])).unwrap();
        assert_eq!(off.cpu, None);
        let set = [
            (CPU, "on"),
            (CPU_SHED_AT, "0.7"),
            (CPU_INTERVAL_MS, "250"),
            (CPU_WINDOW_MS, "100"),
            (CPU_CGROUP, "/sys/fs/cgroup/x"),
        ];
        let on = Config::from_strings(&env(&set)).unwrap().cpu.unwrap();
        assert_eq!(on.shed_at, 0.7);
        assert_eq!(
            on.window,
            Duration::from_millis(250),
            "never shorter than the interval"
        );
        assert_eq!(on.cgroup, Some("/sys/fs/cgroup/x".into()));
        let bad = [
            (CPU, "maybe"),
            (CPU_SHED_AT, "1"),
            (CPU_INTERVAL_MS, "5"),
            (CPU_WINDOW_MS, "junk"),
            (CPU_CGROUP, "relative/path"),
        ];
        let named: Vec<&str> = errs(&bad).iter().map(|e| e.name).collect();
        assert_eq!(
            named,
            vec![CPU, CPU_SHED_AT, CPU_INTERVAL_MS, CPU_WINDOW_MS, CPU_CGROUP]
        );
    }

    #[test]
    fn managed_instances_limit_comes_from_the_platform_unless_set() {
        let mi = [
            (INITIALIZATION_TYPE, MANAGED_INSTANCES),
            (MAX_CONCURRENCY, "32"),
        ];
        let c = Config::from_strings(&env(&mi)).unwrap();
        assert!(c.managed_instances);
        assert_eq!(c.limit, Some(Limit::new(32, LimitSource::ManagedInstances)));
        let c = Config::from_strings(&env(&[mi[0], mi[1], (LIMIT, "8")])).unwrap();
        assert_eq!(c.limit, Some(Limit::new(8, LimitSource::Env)));
        let c = Config::from_strings(&env(&[mi[0], (MAX_CONCURRENCY, "junk")])).unwrap();
        assert_eq!(c.limit, None);
        // Shared across environments, one environment's concurrency is not the fleet's limit.
        let c =
            Config::from_strings(&env(&[mi[0], mi[1], (COORDINATOR, "redis://h:6379")])).unwrap();
        assert_eq!(c.limit, None);
    }

    #[test]
    fn an_init_lease_only_where_an_environment_initialises_on_an_invoke() {
        let redis = (COORDINATOR, "redis://h:6379");
        let init = |pairs: &[(&str, &str)]| Config::from_strings(&env(pairs)).unwrap().init_lease;
        assert!(init(&[redis]));
        assert!(init(&[redis, (INITIALIZATION_TYPE, ON_DEMAND)]));
        assert!(
            !init(&[]),
            "the local coordinator counts this environment only"
        );
        assert!(!init(&[redis, (INIT_LEASE, "false")]));
        for ahead in ["provisioned-concurrency", "snap-start", MANAGED_INSTANCES] {
            assert!(!init(&[redis, (INITIALIZATION_TYPE, ahead)]), "{ahead}");
        }
        assert_eq!(errs(&[(INIT_LEASE, "yes")])[0].name, INIT_LEASE);
    }

    #[test]
    fn every_invalid_rule_is_reported_with_its_variable() {
        let e = errs(&[
            (CRITICAL, "POST /checkout, post /orders"),
            (EXEMPT, "GET /health,header:"),
            (SHEDDABLE, "/ok"),
        ]);
        let named: Vec<(&str, &str)> = e.iter().map(|e| (e.name, e.value.as_str())).collect();
        assert_eq!(named, vec![(EXEMPT, "header:"), (CRITICAL, "post /orders")]);
        let c = Config::from_strings(&env(&[(CRITICAL, "POST /checkout,header:x-p=1")])).unwrap();
        assert!(!c.rules.is_empty());
        assert_eq!(c.rules.header_names(), vec!["x-p"]);
    }

    #[test]
    fn upstream_override_wins_and_may_not_be_the_proxy_itself() {
        let c = Config::from_strings(&env(&[(UPSTREAM, "127.0.0.1:9100")])).unwrap();
        assert_eq!(c.upstream, "127.0.0.1:9100");
        for own in ["127.0.0.1:9009", "localhost:9009"] {
            assert_eq!(errs(&[(UPSTREAM, own)])[0].name, UPSTREAM);
        }
        let e = errs(&[(UPSTREAM, "127.0.0.1:9100"), (PORT, "9100")]);
        assert_eq!(e[0].name, UPSTREAM);
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
            (PORT, "+9009"),
            (UPSTREAM, "localhost"),
            (UPSTREAM, "http://127.0.0.1:9001"),
            (UPSTREAM, "127.0.0.1:0"),
            (RETRY_AFTER_MAX, "0"),
            (RETRY_AFTER_MAX, "1m"),
            (METRICS_INTERVAL, "0"),
            (METRICS_INTERVAL, "5s"),
            (METRICS_NAMESPACE, "bad{ns}"),
            (METRICS_NAMESPACE, "AWS/Lambda"),
            (COORDINATOR, "memcached://host"),
            (COORDINATOR, "redis://"),
            (COORDINATOR, "Local"),
            (COORDINATOR, "rediss://host:6379#insecure"),
            (POOL, "a{b}"),
            (COORDINATOR_TIMEOUT_MS, "0"),
            (COORDINATOR_TIMEOUT_MS, "2s"),
            (COORDINATOR_BACKOFF_MS, "1"),
            (REDIS_CA_FILE, "/no/such/file.pem"),
            (LIMIT_REFRESH, "0"),
            (RESPONSE_MODE, "chunked"),
        ];
        for (name, value) in cases {
            let e = errs(&[(name, value)]);
            assert_eq!(e.len(), 1, "{name}={value}: {e:?}");
            assert_eq!(e[0].name, *name, "{name}={value}");
            assert_eq!(e[0].value, *value);
            let msg = e[0].to_string();
            assert!(msg.contains(name) && msg.contains("expected"), "{msg}");
        }
    }

    #[test]
    fn an_adaptive_limit_needs_a_ceiling_and_one_key() {
        let adaptive = (LIMIT, "adaptive");
        let redis = (COORDINATOR, "redis://h:6379");
        let only = |pairs: &[(&str, &str)]| {
            let e = errs(pairs);
            assert_eq!(e.len(), 1, "{pairs:?}: {e:?}");
            e.into_iter().next().unwrap()
        };
        // One on-demand environment alone has nothing to adapt.
        assert_eq!(only(&[adaptive]).name, LIMIT);
        assert_eq!(
            only(&[adaptive, redis, (POOL_SHARDS, "4")]).name,
            POOL_SHARDS
        );
        let e = only(&[adaptive, redis, (LIMIT_MAX, "10"), (LIMIT_MIN, "20")]);
        assert_eq!(e.name, LIMIT_MIN);
        let c = Config::from_strings(&env(&[adaptive, redis])).unwrap();
        let a = c.adaptive.expect("adaptive");
        assert_eq!(
            (a.controller, a.min, a.max),
            (AdaptiveController::Gradient, 1, None)
        );
        assert_eq!(a.window, Duration::from_millis(1000));
        assert_eq!(c.limit, None, "the ceiling is read from the Lambda API");
        // Even with a ceiling: one on-demand environment has nothing to adapt.
        assert_eq!(only(&[adaptive, (LIMIT_MAX, "60")]).name, LIMIT);
        let c = Config::from_strings(&env(&[
            adaptive,
            redis,
            (LIMIT_MAX, "60"),
            (ADAPTIVE, "aimd"),
        ]))
        .unwrap();
        assert_eq!(
            c.limit.map(|l| l.value),
            Some(60),
            "the ceiling stands for the limit until the Lambda API answers"
        );
        assert_eq!(
            c.adaptive.map(|a| a.controller),
            Some(AdaptiveController::Aimd)
        );
        let mi = Config::from_strings(&env(&[
            adaptive,
            (INITIALIZATION_TYPE, MANAGED_INSTANCES),
            (MAX_CONCURRENCY, "8"),
        ]))
        .unwrap();
        assert!(mi.adaptive.is_some());
        let mi_max = Config::from_strings(&env(&[
            adaptive,
            (LIMIT_MAX, "4"),
            (INITIALIZATION_TYPE, MANAGED_INSTANCES),
            (MAX_CONCURRENCY, "8"),
        ]))
        .unwrap();
        assert_eq!(
            mi_max.limit.map(|l| (l.value, l.source)),
            Some((8, LimitSource::ManagedInstances)),
            "the ceiling caps the platform's limit, never replaces it"
        );
        assert_eq!(
            Config::from_strings(&env(&[(LIMIT, "12")]))
                .unwrap()
                .adaptive,
            None
        );
        assert_eq!(only(&[(POOL, "orders#1")]).name, POOL);
    }

    #[test]
    fn iam_auth_needs_tls_a_user_no_password_and_the_cache() {
        let iam = (REDIS_AUTH, "iam");
        let cache = (REDIS_IAM_CACHE, "orders-cache");
        let only = |pairs: &[(&str, &str)]| {
            let e = errs(pairs);
            assert_eq!(e.len(), 1, "{pairs:?}: {e:?}");
            e.into_iter().next().unwrap()
        };
        assert_eq!(
            only(&[iam, cache]).name,
            REDIS_AUTH,
            "iam with the local coordinator"
        );
        for url in [
            "redis://app@cache.example.com:6379",
            "rediss://cache.example.com:6379",
            "rediss://app:secret@cache.example.com:6379",
            "rediss://app:@cache.example.com:6379",
            "rediss://@cache.example.com:6379",
        ] {
            let e = only(&[iam, cache, (COORDINATOR, url)]);
            assert_eq!(e.name, COORDINATOR, "{url}");
            assert!(
                !e.value.contains("secret") && e.expected.contains("iam"),
                "{e:?}"
            );
        }
        let e = only(&[iam, (COORDINATOR, "rediss://app@cache.example.com:6379")]);
        assert_eq!(e.name, REDIS_IAM_CACHE);
        assert_eq!(only(&[(REDIS_AUTH, "IAM")]).name, REDIS_AUTH);
        assert_eq!(
            only(&[(REDIS_IAM_TOKEN_TTL, "1")]).name,
            REDIS_IAM_TOKEN_TTL
        );
        assert_eq!(
            only(&[(REDIS_IAM_TOKEN_TTL, "901")]).name,
            REDIS_IAM_TOKEN_TTL
        );
    }

    #[test]
    fn iam_auth_is_read_with_the_serverless_default_from_the_host() {
        let config = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![
                (REDIS_AUTH, "iam"),
                (REDIS_IAM_CACHE, "orders-cache"),
                (COORDINATOR, url),
            ];
            pairs.extend_from_slice(extra);
            match Config::from_strings(&env(&pairs)).unwrap().coordinator {
                CoordinatorConfig::Redis { iam: Some(iam), .. } => iam,
                other => panic!("{other:?}"),
            }
        };
        let serverless =
            "rediss://app@orders-cache-abc123.serverless.use1.cache.amazonaws.com:6379";
        let nodes = "rediss://app@master.orders-cache.abc123.use1.cache.amazonaws.com:6379";
        assert_eq!(
            config(serverless, &[]),
            IamConfig {
                user: "app".into(),
                cache: "orders-cache".into(),
                serverless: true,
                token_lifetime: Duration::from_secs(900),
            }
        );
        assert!(!config(nodes, &[]).serverless);
        assert!(config(nodes, &[(REDIS_IAM_SERVERLESS, "true")]).serverless);
        assert!(!config(serverless, &[(REDIS_IAM_SERVERLESS, "false")]).serverless);
        let short = config(nodes, &[(REDIS_IAM_TOKEN_TTL, "60")]);
        assert_eq!(short.token_lifetime, Duration::from_secs(60));
        // The default is password: the URL's own credentials, no IAM.
        let c = Config::from_strings(&env(&[(COORDINATOR, "rediss://app:pw@h:6379")])).unwrap();
        assert!(matches!(
            c.coordinator,
            CoordinatorConfig::Redis { iam: None, .. }
        ));
    }

    #[test]
    fn every_invalid_variable_is_reported_together() {
        let e = Config::from_strings(&env(&[(MODE, "shed"), (PORT, "http"), (SHED_AT, "2")]))
            .unwrap_err();
        let names: Vec<&str> = e.0.iter().map(|e| e.name).collect();
        assert_eq!(names, [MODE, SHED_AT, PORT]);
        let msg = e.to_string();
        assert!(msg.contains(MODE) && msg.contains(PORT) && msg.contains(SHED_AT));
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
            assert_eq!(
                c.coordinator,
                CoordinatorConfig::Redis {
                    url: url.into(),
                    iam: None
                }
            );
        }
        let e = errs(&[(COORDINATOR, "redis//user:secret@host")]);
        assert!(!e[0].to_string().contains("secret"), "{e:?}");
        let e = errs(&[(COORDINATOR, "memcache://user:secret@host")]);
        let msg = e[0].to_string();
        assert!(
            !msg.contains("secret") && msg.contains("user:***@host"),
            "{msg}"
        );
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn the_pool_defaults_to_the_function_name() {
        let c =
            Config::from_strings(&env(&[(FUNCTION_NAME, "orders"), (POOL, "unreserved")])).unwrap();
        assert_eq!(c.shared.pool, "unreserved");
    }

    #[test]
    fn missing_runtime_api_is_an_error() {
        let m: HashMap<String, String> = HashMap::new();
        let e = Config::from_strings(&m).unwrap_err();
        assert_eq!(e.0[0].name, UPSTREAM);
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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A value a user might set: numbers in and out of range, words of other variables, URLs
    /// with passwords, and any text.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "0",
                "1",
                "-1",
                "0.5",
                "1.0",
                "2",
                "100",
                "1e3",
                "NaN",
                "inf",
                " 7 ",
                "",
                "18446744073709551616",
                "enforce",
                "observe",
                "off",
                "adaptive",
                "local",
                "redis://:hunter2@cache:6379",
                "rediss://user:hunter2@cache:6380/0",
                "redis://cache",
                "header:x-tenant",
                "GET /orders/*",
                "true",
                "yes",
                "streaming",
                "buffered",
            ])
            .prop_map(str::to_string),
            "[ -~]{0,24}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Any values for any of the variables: the configuration is read, or refused with every
        /// error naming a variable this extension reads; a password never reaches the message.
        #[test]
        fn any_values_are_read_or_refused_by_name(
            set in prop::collection::vec((0..VARIABLES.len(), value()), 0..8),
        ) {
            let mut env: HashMap<String, String> = set
                .iter()
                .map(|(i, v)| (VARIABLES[*i].name.to_string(), v.clone()))
                .collect();
            env.entry(RUNTIME_API.into())
                .or_insert_with(|| "127.0.0.1:9001".into());
            if let Err(errors) = Config::from_strings(&env) {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(VARIABLES.iter().any(|v| v.name == e.name), "{e}");
                }
                prop_assert!(!errors.to_string().contains("hunter2"), "{errors}");
            }
        }
    }
}
