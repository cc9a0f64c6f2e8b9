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

pub use crate::config::rules::{Rule, RuleError, Rules, Segment};

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

impl Rules {
    pub fn classify(&self, request: &Request) -> Class {
        let any = |rules: &[Rule]| rules.iter().any(|r| matches(r, request));
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

/// Whether `rule` matches `request`.
fn matches(rule: &Rule, request: &Request) -> bool {
    match rule {
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
