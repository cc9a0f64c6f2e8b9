//! How the variables that pick requests out are written: the class rules (`ADMISSION_EXEMPT`,
//! `ADMISSION_CRITICAL`, `ADMISSION_SHEDDABLE`) and the tenant key (`ADMISSION_TENANT`). Plain
//! data, parsed and checked at init; [`crate::decision::classes`] matches the rules against a
//! request and [`crate::decision::tenants`] reads the key out of one.
//!
//! A rule is `[METHOD ]PATH` or `header:NAME[=VALUE]`; a `*` path segment matches any one
//! segment, a trailing `*` the rest (none or more).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Any,
}

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Path {
        /// Upper-case; `None`: any method.
        method: Option<String>,
        segments: Vec<Segment>,
        /// A trailing `*`: the rest of the path, however long.
        rest: bool,
    },
    Header {
        /// Lower-case.
        name: String,
        value: Option<String>,
    },
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

impl Rule {
    fn parse(rule: &str) -> Result<Rule, &'static str> {
        if let Some(spec) = rule.strip_prefix("header:") {
            let (name, value) = match spec.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (spec, None),
            };
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err("header:NAME or header:NAME=VALUE, NAME a header name");
            }
            return Ok(Rule::Header {
                name: name.to_ascii_lowercase(),
                value,
            });
        }
        let (method, path) = match rule.split_once(' ') {
            Some((m, p)) => (Some(m), p.trim_start()),
            None => (None, rule),
        };
        if let Some(m) = method {
            if !METHODS.contains(&m) {
                return Err(
                    "a method among GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, in capitals",
                );
            }
        }
        if !path.starts_with('/') || path.contains(char::is_whitespace) {
            return Err("[METHOD ]/PATH, the path starting with /");
        }
        let mut segments: Vec<Segment> = path
            .split('/')
            .skip(1)
            .map(|s| match s {
                "*" => Segment::Any,
                s => Segment::Literal(s.to_string()),
            })
            .collect();
        let rest = path.ends_with("/*");
        if rest {
            segments.pop();
        }
        if segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(l) if l.contains('*')))
        {
            return Err("`*` only as a whole segment");
        }
        Ok(Rule::Path {
            method: method.map(str::to_string),
            segments,
            rest,
        })
    }
}

/// The compiled rule lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub exempt: Vec<Rule>,
    pub critical: Vec<Rule>,
    pub sheddable: Vec<Rule>,
}

/// An invalid rule: the rule and what a rule may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub expected: &'static str,
}

impl Rules {
    /// The rules of one variable's value, each parsed or refused (comma-separated; a blank
    /// element is refused).
    pub fn parse_list(value: &str) -> impl Iterator<Item = Result<Rule, RuleError>> + '_ {
        value.split(',').map(str::trim).map(|r| {
            Rule::parse(r).map_err(|expected| RuleError {
                rule: r.to_string(),
                expected,
            })
        })
    }

    pub fn new(exempt: Vec<Rule>, critical: Vec<Rule>, sheddable: Vec<Rule>) -> Rules {
        Rules {
            exempt,
            critical,
            sheddable,
        }
    }

    pub fn has_critical(&self) -> bool {
        !self.critical.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.exempt.is_empty() && self.critical.is_empty() && self.sheddable.is_empty()
    }

    /// Whether any rule looks at the path or method (else they need not be read).
    pub fn reads_paths(&self) -> bool {
        self.all().any(|r| matches!(r, Rule::Path { .. }))
    }

    /// The lower-case names of the headers some rule looks at.
    pub fn header_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .all()
            .filter_map(|r| match r {
                Rule::Header { name, .. } => Some(name.clone()),
                Rule::Path { .. } => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn all(&self) -> impl Iterator<Item = &Rule> {
        self.exempt
            .iter()
            .chain(&self.critical)
            .chain(&self.sheddable)
    }
}

/// Where a request's tenant key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantKey {
    /// `Lambda-Runtime-Aws-Tenant-Id` on the `next` response.
    Lambda,
    /// A request header (lower-case name); the first value when it repeats.
    Header(String),
    /// API Gateway REST's `requestContext.identity.apiKey`.
    ApiKey,
    /// The client's address: `requestContext.identity.sourceIp` (REST, HTTP API 1.0),
    /// `requestContext.http.sourceIp` (HTTP API 2.0, Function URLs), or for ALB the last address
    /// of `X-Forwarded-For` (the one the load balancer appended; earlier ones are the client's
    /// say).
    SourceIp,
}

impl TenantKey {
    pub fn parse(v: &str) -> Result<TenantKey, &'static str> {
        const EXPECTED: &str = "lambda, apikey, sourceip or header:NAME";
        match v {
            "lambda" => Ok(TenantKey::Lambda),
            "apikey" => Ok(TenantKey::ApiKey),
            "sourceip" => Ok(TenantKey::SourceIp),
            _ => {
                let name = v.strip_prefix("header:").ok_or(EXPECTED)?.trim();
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || !name.bytes().all(token) {
                    return Err("header:NAME with NAME a valid HTTP header name");
                }
                Ok(TenantKey::Header(name.to_ascii_lowercase()))
            }
        }
    }

    /// The header the front door must keep for this key, if any.
    pub fn header(&self) -> Option<&str> {
        match self {
            TenantKey::Header(name) => Some(name),
            TenantKey::SourceIp => Some(FORWARDED_FOR),
            _ => None,
        }
    }
}

pub const FORWARDED_FOR: &str = "x-forwarded-for";
