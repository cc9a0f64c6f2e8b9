//! Request classes: which requests may use the whole limit, which are shed first, which never.
//!
//! Three rule lists, each a comma-separated `ADMISSION_*` variable, compiled once at init:
//!
//! - `ADMISSION_EXEMPT`: never shed (counted all the same);
//! - `ADMISSION_CRITICAL`: shed last, at the threshold itself; the default class then leaves
//!   `ADMISSION_CRITICAL_RESERVE` of the limit to them;
//! - `ADMISSION_SHEDDABLE`: shed first, from `ADMISSION_SHEDDABLE_AT` of the limit;
//! - anything else is the default class.
//!
//! A rule is `[METHOD ]PATH` or `header:NAME[=VALUE]`. A path rule's segments match the request's
//! path as the client sent it (`path` for REST and ALB, `rawPath` for HTTP API 2.0 and Function
//! URLs) segment by segment; a `*` segment matches any one segment, a trailing `*` the rest (none
//! or more). A header rule matches a request carrying the header (names are case-insensitive),
//! with exactly that value when one is given. The first list that matches wins, in the order
//! exempt, critical, sheddable.

use std::borrow::Cow;

/// A request's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Critical,
    Default,
    Sheddable,
    Exempt,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::Critical,
        Class::Default,
        Class::Sheddable,
        Class::Exempt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::Default => "default",
            Class::Sheddable => "sheddable",
            Class::Exempt => "exempt",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Class::Critical => 0,
            Class::Default => 1,
            Class::Sheddable => 2,
            Class::Exempt => 3,
        }
    }
}

/// What a rule can see of a request: its method, its path, the headers the rules name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Option<Cow<'a, str>>,
    pub path: Option<Cow<'a, str>>,
    /// `(lower-case name, value)` of the headers some rule names; the others are not kept.
    pub headers: Vec<(String, String)>,
}

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

    fn matches(&self, request: &Request) -> bool {
        match self {
            Rule::Header { name, value } => request
                .headers
                .iter()
                .any(|(n, v)| n == name && value.as_ref().is_none_or(|want| want == v)),
            Rule::Path {
                method,
                segments,
                rest,
            } => {
                let Some(path) = request.path.as_deref() else {
                    return false;
                };
                if let Some(m) = method {
                    if !request
                        .method
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(m))
                    {
                        return false;
                    }
                }
                let mut parts = path.split('/').skip(1);
                for segment in segments {
                    match (segment, parts.next()) {
                        (_, None) => return false,
                        (Segment::Any, Some(_)) => {}
                        (Segment::Literal(l), Some(p)) if l == p => {}
                        _ => return false,
                    }
                }
                *rest || parts.next().is_none()
            }
        }
    }
}

/// The compiled rule lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    exempt: Vec<Rule>,
    critical: Vec<Rule>,
    sheddable: Vec<Rule>,
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

    fn all(&self) -> impl Iterator<Item = &Rule> {
        self.exempt
            .iter()
            .chain(&self.critical)
            .chain(&self.sheddable)
    }

    pub fn classify(&self, request: &Request) -> Class {
        let any = |rules: &[Rule]| rules.iter().any(|r| r.matches(request));
        if any(&self.exempt) {
            Class::Exempt
        } else if any(&self.critical) {
            Class::Critical
        } else if any(&self.sheddable) {
            Class::Sheddable
        } else {
            Class::Default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(exempt: &str, critical: &str, sheddable: &str) -> Rules {
        let list = |v: &str| {
            if v.is_empty() {
                Vec::new()
            } else {
                Rules::parse_list(v).collect::<Result<_, _>>().unwrap()
            }
        };
        Rules::new(list(exempt), list(critical), list(sheddable))
    }

    fn req(method: &'static str, path: &'static str, headers: &[(&str, &str)]) -> Request<'static> {
        Request {
            method: Some(Cow::Borrowed(method)),
            path: Some(Cow::Borrowed(path)),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn paths_match_segment_by_segment() {
        let r = rules(
            "GET /health",
            "POST /orders/*/pay, /checkout/*",
            "/thumbnails/*",
        );
        assert_eq!(r.classify(&req("GET", "/health", &[])), Class::Exempt);
        assert_eq!(r.classify(&req("POST", "/health", &[])), Class::Default);
        assert_eq!(r.classify(&req("get", "/health", &[])), Class::Exempt);
        assert_eq!(
            r.classify(&req("POST", "/orders/7/pay", &[])),
            Class::Critical
        );
        assert_eq!(
            r.classify(&req("GET", "/orders/7/pay", &[])),
            Class::Default
        );
        assert_eq!(
            r.classify(&req("POST", "/orders/7/pay/x", &[])),
            Class::Default
        );
        assert_eq!(r.classify(&req("POST", "/orders/pay", &[])), Class::Default);
        assert_eq!(
            r.classify(&req("PUT", "/checkout/a/b", &[])),
            Class::Critical
        );
        assert_eq!(
            r.classify(&req("PUT", "/checkout", &[])),
            Class::Critical,
            "none or more"
        );
        assert_eq!(r.classify(&req("PUT", "/checkout/", &[])), Class::Critical);
        assert_eq!(
            r.classify(&req("GET", "/thumbnails/1.png", &[])),
            Class::Sheddable
        );
        assert_eq!(r.classify(&req("GET", "/Health", &[])), Class::Default);
        assert_eq!(r.classify(&Request::default()), Class::Default);
    }

    #[test]
    fn headers_match_by_name_and_value() {
        let r = rules(
            "header:x-webhook",
            "header:X-Priority=high",
            "header:x-priority=low",
        );
        assert_eq!(r.header_names(), vec!["x-priority", "x-webhook"]);
        assert_eq!(
            r.classify(&req("GET", "/", &[("x-priority", "high")])),
            Class::Critical
        );
        assert_eq!(
            r.classify(&req("GET", "/", &[("x-priority", "low")])),
            Class::Sheddable
        );
        assert_eq!(
            r.classify(&req("GET", "/", &[("x-priority", "HIGH")])),
            Class::Default
        );
        assert_eq!(
            r.classify(&req(
                "GET",
                "/",
                &[("x-webhook", ""), ("x-priority", "high")]
            )),
            Class::Exempt,
            "exempt wins"
        );
        assert!(!r.reads_paths());
    }

    #[test]
    fn invalid_rules_are_named() {
        for bad in [
            "orders",
            "get /orders",
            "FETCH /orders",
            "/orders/x*",
            "header:",
            "header:bad name",
            "/a,,/b",
            "",
        ] {
            let e = Rules::parse_list(bad)
                .collect::<Result<Vec<_>, _>>()
                .unwrap_err();
            assert!(bad.contains(&e.rule), "{bad}: {e:?}");
        }
    }
}
