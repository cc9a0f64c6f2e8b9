//! Reading the variables: each value parsed on its own, every error collected (named with its
//! variable and what it may be) so that init reports them all at once.

use std::time::Duration;

use super::rules::{Rule, Rules, TenantKey};
use super::*;

/// Reads variables, collecting every error instead of stopping at the first.
pub(super) struct Reader<'a, S> {
    pub env: &'a S,
    pub errors: Vec<ConfigError>,
}

/// A parser: the value, or what would have been accepted.
pub(super) type Parsed<T> = Result<T, &'static str>;

impl<S: Strings> Reader<'_, S> {
    /// The configuration, in the order the variables are read (and their errors reported).
    pub fn config(mut self) -> Result<Config, ConfigErrors> {
        let mode = self.read(MODE, mode);
        let (limit_set, adaptive) = self.limit();
        let adaptive_on = limit_set == Some(None);
        let shed_at = self.read_opt(SHED_AT, share);
        let port = self.read(PORT, port);
        let upstream = self.read(UPSTREAM, host_port);
        let retry_after_max = self.read(RETRY_AFTER_MAX, seconds);
        let metrics_interval = Duration::from_secs(self.read(METRICS_INTERVAL, seconds));
        let metrics_namespace = self.read(METRICS_NAMESPACE, namespace);
        let coordinator = self.read(COORDINATOR, coordinator);
        let coordinator = self.auth(coordinator);
        let mut shared = self.shared();
        let limit_refresh = Duration::from_secs(self.read(LIMIT_REFRESH, seconds));
        let response_mode = self.read(RESPONSE_MODE, response_mode);
        let init_lease = self.read(INIT_LEASE, boolean);
        let rules = Rules::new(
            self.rules(EXEMPT),
            self.rules(CRITICAL),
            self.rules(SHEDDABLE),
        );
        let sheddable_at = self.read(SHEDDABLE_AT, share);
        let critical_reserve = self.read(CRITICAL_RESERVE, share);
        let tenants = self.tenants(shared.tenants_max);
        let cpu = self.cpu();
        self.check_upstream(&upstream, port);
        if adaptive_on {
            self.check_adaptive(&coordinator, &shared, adaptive.min, adaptive.max);
        }
        shared.adaptive = adaptive_on;
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        let env = self.env;
        Ok(Config {
            mode,
            limit: initial_limit(env, limit_set, adaptive.max, &coordinator),
            shed_at,
            port,
            upstream,
            retry_after_max,
            metrics_interval,
            metrics_namespace,
            function_name: env.get(FUNCTION_NAME).unwrap_or_default(),
            managed_instances: env.get(INITIALIZATION_TYPE).as_deref() == Some(MANAGED_INSTANCES),
            init_lease: init_lease && takes_init_lease(env, &coordinator),
            coordinator,
            shared,
            limit_refresh,
            response_mode,
            rules,
            sheddable_at,
            critical_reserve,
            tenants,
            adaptive: adaptive_on.then_some(adaptive),
            cpu: cpu_on(env, cpu),
            unknown: unknown_variables(env),
        })
    }

    /// `ADMISSION_LIMIT` (`Some(None)`: `adaptive`) and the adaptive limit's settings, read
    /// whether or not they are used so that an invalid one is always reported.
    fn limit(&mut self) -> (Option<Option<u64>>, AdaptiveConfig) {
        const COUNT: &str = "an integer from 1 to 4294967295";
        let set = self.read_opt(LIMIT, |v| match v {
            "adaptive" => Ok(None),
            _ => int(v, 1, u32::MAX as u64)
                .map(Some)
                .ok_or("an integer from 1 to 4294967295, or adaptive"),
        });
        let min = self.read(LIMIT_MIN, |v| int(v, 1, u32::MAX as u64).ok_or(COUNT));
        let max = self.read_opt(LIMIT_MAX, |v| int(v, 1, u32::MAX as u64).ok_or(COUNT));
        let controller = self.read(ADAPTIVE, |v| match v {
            "gradient" => Ok(AdaptiveController::Gradient),
            "aimd" => Ok(AdaptiveController::Aimd),
            _ => Err("gradient or aimd"),
        });
        let window_ms = self.read(ADAPTIVE_WINDOW_MS, |v| {
            int(v, 100, 60_000).ok_or("whole milliseconds from 100 to 60000")
        });
        let adaptive = AdaptiveConfig {
            controller,
            min,
            max,
            window: Duration::from_millis(window_ms),
        };
        (set, adaptive)
    }

    /// `ADMISSION_TENANT` and the fair share's settings; `None`: fair shares are off.
    fn tenants(&mut self, max: u64) -> Option<TenantSettings> {
        let key = self.read_opt(TENANT, TenantKey::parse);
        let reserve = self.read(TENANT_RESERVE, share);
        let over_at = self.read(TENANT_OVER_AT, |v| match v.parse::<f64>() {
            Ok(x) if (1.0..=100.0).contains(&x) => Ok(x),
            _ => Err("a number from 1 to 100"),
        });
        key.map(|key| TenantSettings {
            key,
            max,
            reserve,
            over_at,
        })
    }

    /// `ADMISSION_CPU` (`None`: `auto`) and CPU pressure's settings, read whether or not it is on
    /// so that an invalid one is always reported.
    fn cpu(&mut self) -> Option<(Option<bool>, CpuConfig)> {
        let on = self.read_opt(CPU, |v| match v {
            "auto" => Ok(None),
            "on" | "true" => Ok(Some(true)),
            "off" | "false" => Ok(Some(false)),
            _ => Err("auto (on for Managed Instances), on or off"),
        });
        let shed_at = self.read(CPU_SHED_AT, |v| match v.parse::<f64>() {
            Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
            _ => Err("a share of the vCPUs (0 < x < 1)"),
        });
        let interval = self.read(CPU_INTERVAL_MS, |v| {
            int(v, 10, 10_000).ok_or("whole milliseconds from 10 to 10000")
        });
        let window = self.read(CPU_WINDOW_MS, |v| {
            int(v, 100, 60_000).ok_or("whole milliseconds from 100 to 60000")
        });
        let cgroup = self.read_opt(CPU_CGROUP, |v| {
            if std::path::Path::new(v).is_absolute() {
                Ok(std::path::PathBuf::from(v))
            } else {
                Err("an absolute path to a cgroup folder")
            }
        });
        let settings = CpuConfig {
            shed_at,
            interval: Duration::from_millis(interval),
            window: Duration::from_millis(window.max(interval)),
            cgroup,
        };
        on.map(|on| (on, settings))
    }

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

/// CPU pressure's settings if it is on: set so, or `auto` on Managed Instances.
fn cpu_on(env: &impl Strings, cpu: Option<(Option<bool>, CpuConfig)>) -> Option<CpuConfig> {
    let (on, settings) = cpu?;
    let managed = env.get(INITIALIZATION_TYPE).as_deref() == Some(MANAGED_INSTANCES);
    on.unwrap_or(managed).then_some(settings)
}

/// The coordinator's variables: the shared count's settings, authentication, and what an
/// adaptive limit needs of them.
impl<S: Strings> Reader<'_, S> {
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
        let iam = self
            .iam_user(&url)
            .zip(cache)
            .map(|(user, cache)| IamConfig {
                serverless: serverless.unwrap_or_else(|| url.contains(".serverless.")),
                user,
                cache,
                token_lifetime: Duration::from_secs(lifetime),
            });
        CoordinatorConfig::Redis { url, iam }
    }

    /// With IAM: the ElastiCache user from a TLS URL without a password (the token is the
    /// password), and the cache's name, which the host does not carry.
    fn iam_user(&mut self, url: &str) -> Option<String> {
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
                self.fail(COORDINATOR, url, IAM_URL);
                None
            }
        };
        if self.raw(REDIS_IAM_CACHE).is_none() {
            self.fail(
                REDIS_IAM_CACHE,
                "",
                "the cache's name, required with ADMISSION_REDIS_AUTH=iam (the host does not carry it)",
            );
        }
        user
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
}

fn port(v: &str) -> Parsed<u16> {
    int(v, 1, 65535)
        .map(|p| p as u16)
        .ok_or("a TCP port from 1 to 65535")
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
