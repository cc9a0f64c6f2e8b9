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

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A path rule as a user writes it, and the rule it must compile to.
    fn path_rule() -> impl Strategy<Value = (String, Rule)> {
        let method = prop::option::of(prop::sample::select(METHODS));
        let segment = prop_oneof!["[a-z0-9_.{}-]{1,8}", Just("*".to_string())];
        let segments = prop::collection::vec(segment, 0..5);
        (method, segments, any::<bool>()).prop_map(|(method, segments, rest)| {
            let mut text = method.map(|m| format!("{m} ")).unwrap_or_default();
            text.push('/');
            text.push_str(&segments.join("/"));
            if rest {
                text.push_str(if segments.is_empty() { "*" } else { "/*" });
            }
            let mut compiled: Vec<Segment> = segments
                .iter()
                .map(|s| match s.as_str() {
                    "*" => Segment::Any,
                    s => Segment::Literal(s.to_string()),
                })
                .collect();
            // A trailing `*` is the rest of the path, however it was meant.
            let rest = if !rest && compiled.last() == Some(&Segment::Any) {
                compiled.pop();
                true
            } else {
                rest
            };
            if compiled.is_empty() && !rest {
                // `/` alone: the root, one empty segment (as the root path splits).
                compiled.push(Segment::Literal(String::new()));
            }
            let rule = Rule::Path {
                method: method.map(str::to_string),
                segments: compiled,
                rest,
            };
            (text, rule)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any text: one answer per comma-separated element, a rule or an error naming that
        /// element; never a panic.
        #[test]
        fn any_text_gives_one_answer_per_rule(text in "[ -~\u{e9}]{0,60}") {
            let answers: Vec<_> = Rules::parse_list(&text).collect();
            prop_assert_eq!(answers.len(), text.split(',').count());
            for (answer, element) in answers.iter().zip(text.split(',')) {
                match answer {
                    Ok(Rule::Path { method, .. }) => {
                        prop_assert!(method.as_deref().is_none_or(|m| METHODS.contains(&m)));
                        prop_assert!(element.trim().contains('/'));
                    }
                    Ok(Rule::Header { name, .. }) => {
                        prop_assert!(!name.is_empty() && name == &name.to_ascii_lowercase());
                    }
                    Err(e) => prop_assert_eq!(&e.rule, element.trim()),
                }
            }
        }

        /// Rules written as the README shows compile to what they say, in a list too.
        #[test]
        fn written_rules_compile_to_what_they_say(
            rules in prop::collection::vec(path_rule(), 1..4),
            header in "[A-Za-z0-9-]{1,12}",
            value in prop::option::of("[a-z0-9]{0,8}"),
        ) {
            let mut text: Vec<String> = rules.iter().map(|(t, _)| t.clone()).collect();
            text.push(match &value {
                Some(v) => format!(" header:{header}={v} "),
                None => format!("header:{header}"),
            });
            let parsed: Vec<Rule> = Rules::parse_list(&text.join(","))
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let mut expected: Vec<Rule> = rules.into_iter().map(|(_, r)| r).collect();
            expected.push(Rule::Header { name: header.to_ascii_lowercase(), value });
            prop_assert_eq!(parsed, expected);
        }
    }
}
