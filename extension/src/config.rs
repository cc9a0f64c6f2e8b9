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

use crate::decision::classes::{Rule, Rules};
use crate::decision::limit::{Limit, LimitSource};
use crate::decision::tenants::{TenantKey, Tenants};

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
    pub tenants: Option<Tenants>,
    /// `ADMISSION_LIMIT=adaptive`; `None`: a fixed limit.
    pub adaptive: Option<AdaptiveConfig>,
    /// Unknown `ADMISSION_*` names, most likely typos: warned about, never fatal.
    pub unknown: Vec<String>,
}

impl Config {
    pub fn from_strings(env: &impl Strings) -> Result<Config, ConfigErrors> {
        let mut r = Reader {
            env,
            errors: Vec::new(),
        };
        let mode = r.read(MODE, mode);
        let limit_setting = r.read_opt(LIMIT, |v| match v {
            "adaptive" => Ok(None),
            _ => int(v, 1, u32::MAX as u64)
                .map(Some)
                .ok_or("an integer from 1 to 4294967295, or adaptive"),
        });
        let limit_min = r.read(LIMIT_MIN, |v| {
            int(v, 1, u32::MAX as u64).ok_or("an integer from 1 to 4294967295")
        });
        let limit_max = r.read_opt(LIMIT_MAX, |v| {
            int(v, 1, u32::MAX as u64).ok_or("an integer from 1 to 4294967295")
        });
        let controller = r.read(ADAPTIVE, |v| match v {
            "gradient" => Ok(AdaptiveController::Gradient),
            "aimd" => Ok(AdaptiveController::Aimd),
            _ => Err("gradient or aimd"),
        });
        let window_ms = r.read(ADAPTIVE_WINDOW_MS, |v| {
            int(v, 100, 60_000).ok_or("whole milliseconds from 100 to 60000")
        });
        let adaptive_on = limit_setting == Some(None);
        let shed_at = r.read_opt(SHED_AT, share);
        let port = r.read(PORT, |v| {
            int(v, 1, 65535)
                .map(|p| p as u16)
                .ok_or("a TCP port from 1 to 65535")
        });
        let upstream = r.read(UPSTREAM, host_port);
        let retry_after_max = r.read(RETRY_AFTER_MAX, seconds);
        let metrics_interval = Duration::from_secs(r.read(METRICS_INTERVAL, seconds));
        let metrics_namespace = r.read(METRICS_NAMESPACE, namespace);
        let coordinator = r.read(COORDINATOR, coordinator);
        let coordinator = r.auth(coordinator);
        let explicit_limit = match limit_setting {
            Some(Some(n)) => Some(n),
            // With a shared coordinator the ceiling stands for the platform's limit until the
            // Lambda API answers (then the lower of the two); Managed Instances have their own.
            Some(None) if coordinator != CoordinatorConfig::Local => limit_max,
            _ => None,
        };
        let mut shared = r.shared();
        let limit_refresh = Duration::from_secs(r.read(LIMIT_REFRESH, seconds));
        let response_mode = r.read(RESPONSE_MODE, response_mode);
        let init_lease = r.read(INIT_LEASE, boolean);
        let rules = Rules::new(r.rules(EXEMPT), r.rules(CRITICAL), r.rules(SHEDDABLE));
        let sheddable_at = r.read(SHEDDABLE_AT, share);
        let critical_reserve = r.read(CRITICAL_RESERVE, share);
        let tenant = r.read_opt(TENANT, TenantKey::parse);
        let tenant_reserve = r.read(TENANT_RESERVE, share);
        let tenant_over_at = r.read(TENANT_OVER_AT, |v| match v.parse::<f64>() {
            Ok(x) if (1.0..=100.0).contains(&x) => Ok(x),
            _ => Err("a number from 1 to 100"),
        });
        r.check_upstream(&upstream, port);
        if adaptive_on {
            r.check_adaptive(&coordinator, &shared, limit_min, limit_max);
        }
        shared.adaptive = adaptive_on;
        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        let tenants = tenant.map(|key| {
            let mut tenants = Tenants::new(key, shared.tenants_max, &shared.pool);
            tenants.reserve = tenant_reserve;
            tenants.over_at = tenant_over_at;
            tenants
        });
        // Provisioned concurrency and SnapStart initialise ahead of any invoke; Managed
        // Instances count locally.
        let init_lease = init_lease
            && coordinator != CoordinatorConfig::Local
            && env
                .get(INITIALIZATION_TYPE)
                .is_none_or(|t| t.is_empty() || t == ON_DEMAND);
        Ok(Config {
            mode,
            limit: initial_limit(env, explicit_limit, &coordinator),
            shed_at,
            port,
            upstream,
            retry_after_max,
            metrics_interval,
            metrics_namespace,
            function_name: env.get(FUNCTION_NAME).unwrap_or_default(),
            managed_instances: env.get(INITIALIZATION_TYPE).as_deref() == Some(MANAGED_INSTANCES),
            coordinator,
            shared,
            limit_refresh,
            response_mode,
            init_lease,
            rules,
            sheddable_at,
            critical_reserve,
            tenants,
            adaptive: adaptive_on.then(|| AdaptiveConfig {
                controller,
                min: limit_min,
                max: limit_max,
                window: Duration::from_millis(window_ms),
            }),
            unknown: unknown_variables(env),
        })
    }
}

/// `ADMISSION_LIMIT`, or else, with the local coordinator, Managed Instances' per-environment
/// concurrency. One environment's concurrency is no fleet-wide limit: with a shared coordinator
/// the limit comes from the Lambda API instead. A malformed platform value is not the user's
/// mistake, so it is ignored.
fn initial_limit(
    env: &impl Strings,
    explicit: Option<u64>,
    coordinator: &CoordinatorConfig,
) -> Option<Limit> {
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

/// Reads variables, collecting every error instead of stopping at the first.
struct Reader<'a, S> {
    env: &'a S,
    errors: Vec<ConfigError>,
}

/// A parser: the value, or what would have been accepted.
type Parsed<T> = Result<T, &'static str>;

impl<S: Strings> Reader<'_, S> {
    /// The variable's value as set, else its default; blank counts as unset.
    fn raw(&self, name: &str) -> Option<String> {
        let set = |n: &str| self.env.get(n).filter(|v| !v.trim().is_empty());
        if let Some(v) = set(name) {
            return Some(v);
        }
        match VARIABLES.iter().find(|v| v.name == name)?.default {
            Default::Value(v) => Some(v.to_string()),
            Default::From(other) => set(other),
            Default::Unset => None,
        }
    }

    fn read_opt<T>(&mut self, name: &'static str, parse: impl Fn(&str) -> Parsed<T>) -> Option<T> {
        let raw = self.raw(name)?;
        match parse(raw.trim()) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.fail(name, &raw, expected);
                None
            }
        }
    }

    /// A variable that always has a value; on error the placeholder returned is never used,
    /// since the configuration as a whole is rejected.
    fn read<T: std::default::Default>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Parsed<T>,
    ) -> T {
        self.read_opt(name, parse).unwrap_or_default()
    }

    /// A rule list; every invalid rule is reported, naming the variable and the rule.
    fn rules(&mut self, name: &'static str) -> Vec<Rule> {
        let Some(raw) = self.raw(name) else {
            return Vec::new();
        };
        let mut rules = Vec::new();
        for parsed in Rules::parse_list(&raw) {
            match parsed {
                Ok(rule) => rules.push(rule),
                Err(e) => self.fail(name, &e.rule, e.expected),
            }
        }
        rules
    }

    fn shared(&mut self) -> SharedConfig {
        SharedConfig {
            pool: self.read(POOL, pool),
            timeout: Duration::from_millis(self.read(COORDINATOR_TIMEOUT_MS, |v| {
                int(v, 1, 10_000).ok_or("whole milliseconds from 1 to 10000")
            })),
            backoff: Duration::from_millis(self.read(COORDINATOR_BACKOFF_MS, |v| {
                int(v, 10, 600_000).ok_or("whole milliseconds from 10 to 600000")
            })),
            ca_file: self.read_opt(REDIS_CA_FILE, pem_file),
            tenants_max: self.read(TENANTS_MAX, |v| {
                int(v, 1, 100_000).ok_or("an integer from 1 to 100000")
            }),
            shards: self.read(POOL_SHARDS, |v| {
                int(v, 1, 64)
                    .map(|n| n as usize)
                    .ok_or("an integer from 1 to 64")
            }),
            adaptive: false,
        }
    }

    /// `ADMISSION_REDIS_AUTH` and, with `iam`, what the token needs: a TLS URL with a user and
    /// no password, and the cache's name.
    fn auth(&mut self, coordinator: CoordinatorConfig) -> CoordinatorConfig {
        let iam = self.read(REDIS_AUTH, |v| match v {
            "password" => Ok(false),
            "iam" => Ok(true),
            _ => Err("password or iam"),
        });
        let lifetime = self.read(REDIS_IAM_TOKEN_TTL, |v| {
            int(v, 2, 900).ok_or("whole seconds from 2 to 900 (ElastiCache's longest)")
        });
        let cache = self.read_opt(REDIS_IAM_CACHE, |v| {
            let valid = !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if valid {
                Ok(v.to_string())
            } else {
                Err("the cache's name: letters, digits and -")
            }
        });
        let serverless = self.read_opt(REDIS_IAM_SERVERLESS, boolean);
        let CoordinatorConfig::Redis { url, .. } = coordinator else {
            if iam {
                self.fail(
                    REDIS_AUTH,
                    "iam",
                    "password, unless ADMISSION_COORDINATOR is a rediss:// URL",
                );
            }
            return coordinator;
        };
        if !iam {
            return CoordinatorConfig::Redis { url, iam: None };
        }
        const IAM_URL: &str = "rediss://USER@host[:port] with ADMISSION_REDIS_AUTH=iam: TLS, the ElastiCache user, no password (the token is the password)";
        let userinfo = url
            .strip_prefix("rediss://")
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo);
        let user = match userinfo {
            Some(u)
                if !u.is_empty()
                    && u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) =>
            {
                Some(u.to_string())
            }
            _ => {
                self.fail(COORDINATOR, &url, IAM_URL);
                None
            }
        };
        if cache.is_none() && self.raw(REDIS_IAM_CACHE).is_none() {
            self.fail(
                REDIS_IAM_CACHE,
                "",
                "the cache's name, required with ADMISSION_REDIS_AUTH=iam (the host does not carry it)",
            );
        }
        let iam = match (user, cache) {
            (Some(user), Some(cache)) => Some(IamConfig {
                serverless: serverless.unwrap_or_else(|| url.contains(".serverless.")),
                user,
                cache,
                token_lifetime: Duration::from_secs(lifetime),
            }),
            _ => None,
        };
        CoordinatorConfig::Redis { url, iam }
    }

    /// `ADMISSION_LIMIT=adaptive` needs a ceiling it can learn (a fleet reads the platform's
    /// limit, Managed Instances have theirs) or one set; a split pool is not supported.
    fn check_adaptive(
        &mut self,
        coordinator: &CoordinatorConfig,
        shared: &SharedConfig,
        min: u64,
        max: Option<u64>,
    ) {
        let managed_instances =
            self.env.get(INITIALIZATION_TYPE).as_deref() == Some(MANAGED_INSTANCES);
        if *coordinator == CoordinatorConfig::Local && !managed_instances {
            self.fail(
                LIMIT,
                "adaptive",
                "a number, or adaptive with a shared coordinator or on Managed Instances (one on-demand environment runs one invocation at a time)",
            );
        }
        if shared.shards > 1 && *coordinator != CoordinatorConfig::Local {
            self.fail(
                POOL_SHARDS,
                &shared.shards.to_string(),
                "1 with ADMISSION_LIMIT=adaptive (the fleet's windows live beside the pool's one key)",
            );
        }
        if max.is_some_and(|max| max < min) {
            self.fail(LIMIT_MIN, &min.to_string(), "at most ADMISSION_LIMIT_MAX");
        }
    }

    fn check_upstream(&mut self, upstream: &str, port: u16) {
        if self.raw(UPSTREAM).is_none() {
            self.fail(
                UPSTREAM,
                "",
                "host:port of the Lambda Runtime API; neither it nor AWS_LAMBDA_RUNTIME_API is set",
            );
        } else if is_self(upstream, port) {
            self.fail(
                UPSTREAM,
                upstream,
                "the Runtime API's address, not this proxy's own port",
            );
        }
    }

    fn fail(&mut self, name: &'static str, value: &str, expected: &'static str) {
        self.errors.push(ConfigError {
            name,
            value: redact(value),
            expected,
        });
    }
}

fn mode(v: &str) -> Parsed<Mode> {
    match v {
        "enforce" => Ok(Mode::Enforce),
        "observe" => Ok(Mode::Observe),
        "off" => Ok(Mode::Off),
        _ => Err("one of enforce, observe, off"),
    }
}

/// Digits only: Rust would also take `+9009`, which the wrapper would hand on as the port.
fn response_mode(v: &str) -> Parsed<ResponseMode> {
    match v {
        "auto" => Ok(ResponseMode::Auto),
        "buffered" => Ok(ResponseMode::Buffered),
        "streaming" => Ok(ResponseMode::Streaming),
        _ => Err("one of auto, buffered, streaming"),
    }
}

fn boolean(v: &str) -> Parsed<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false"),
    }
}

fn int(v: &str, min: u64, max: u64) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

fn seconds(v: &str) -> Parsed<u64> {
    int(v, 1, 86_400).ok_or("whole seconds from 1 to 86400")
}

fn share(v: &str) -> Parsed<f64> {
    match v.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => Err("a number greater than 0 and at most 1"),
    }
}

fn host_port(v: &str) -> Parsed<String> {
    let valid = v.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if valid {
        Ok(v.to_string())
    } else {
        Err("host:port of the Lambda Runtime API (defaults to AWS_LAMBDA_RUNTIME_API)")
    }
}

/// Whether `upstream` is this proxy itself: forwarding there would loop.
fn is_self(upstream: &str, port: u16) -> bool {
    let Some((host, p)) = upstream.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>() == Ok(port)
        && matches!(
            host,
            "127.0.0.1" | "localhost" | "0.0.0.0" | "[::1]" | "::1"
        )
}

fn namespace(v: &str) -> Parsed<String> {
    let valid = v.len() <= 255
        && !v.starts_with(':')
        && !v.starts_with("AWS/")
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c));
    if valid {
        Ok(v.to_string())
    } else {
        Err("1 to 255 characters of letters, digits and . - _ / # : (a CloudWatch namespace not starting with AWS/)")
    }
}

fn coordinator(v: &str) -> Parsed<CoordinatorConfig> {
    const EXPECTED: &str =
        "local, redis://[user:password@]host[:port] or rediss://... (TLS, without #insecure)";
    if v == "local" {
        return Ok(CoordinatorConfig::Local);
    }
    let rest = v
        .strip_prefix("redis://")
        .or_else(|| v.strip_prefix("rediss://"));
    let host = rest
        .map(|r| r.rsplit_once('@').map_or(r, |(_, h)| h))
        .map(|h| h.split(['/', '?', '#']).next().unwrap_or(""));
    // redis-rs reads `#insecure` as "skip certificate checks": never for a credential-bearing link.
    if host.is_some_and(|h| !h.is_empty() && !h.starts_with(':')) && !v.contains('#') {
        Ok(CoordinatorConfig::Redis {
            url: v.to_string(),
            iam: None,
        })
    } else {
        Err(EXPECTED)
    }
}

fn pool(v: &str) -> Parsed<String> {
    // `#` names a split pool's keys (`{<pool>#<i>}`): no pool may look like another's shard.
    if v.len() <= 200 && !v.contains(['{', '}', '#']) {
        Ok(v.to_string())
    } else {
        Err("1 to 200 characters without { } or #")
    }
}

fn pem_file(v: &str) -> Parsed<String> {
    if std::path::Path::new(v).is_file() {
        Ok(v.to_string())
    } else {
        Err("the path of a readable PEM file")
    }
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
