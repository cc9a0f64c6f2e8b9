//! Fair shares per tenant: who sent a request, as a key that is never kept in clear.
//!
//! `ADMISSION_TENANT` names where a request's tenant key is read: `lambda` (the
//! `Lambda-Runtime-Aws-Tenant-Id` header Lambda sends with an event of a function in
//! tenant-isolation mode), `header:NAME`, `apikey` (API Gateway REST's
//! `requestContext.identity.apiKey`) or `sourceip` (the client's address as the front door saw
//! it). A request without a key belongs to one shared anonymous tenant.
//!
//! The key is hashed (SHA-256, salted with the pool's name) into a 16-hex-digit id before
//! anything counts, logs or sends it: the shared count, the logs and the metrics only ever see
//! the id. An id is a pseudonym, not a secret: whoever knows the pool's name can test a guess
//! (for example every IPv4 address) against it.
//!
//! The count keeps at most `ADMISSION_TENANTS_MAX` tenants with leases in flight apart; past
//! that, a new tenant shares the overflow tenant ([`OVERFLOW`]) with every other newcomer, and
//! so one fair share between them, until a tenant's last lease ends (so at most the bound + 1
//! tenants are counted).

use std::fmt::Write;

pub use crate::config::rules::TenantKey;
use crate::config::rules::FORWARDED_FOR;
use crate::config::TenantSettings;
use crate::decision::front_door::HttpRequest;

/// The tenant of requests that carry no key.
pub const ANONYMOUS: &str = "-";
/// The tenant every tenant past the bound is counted as.
pub const OVERFLOW: &str = "~";

/// The tenants of a pool: where keys come from, how they are hashed, and the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenants {
    pub settings: TenantSettings,
    salt: String,
}

impl Tenants {
    pub fn new(settings: TenantSettings, pool: &str) -> Tenants {
        Tenants {
            settings,
            salt: format!("lambda-admission tenant\0{pool}\0"),
        }
    }

    /// The tenant id of a request: `lambda_tenant` is the id Lambda sent with the event,
    /// `request` the HTTP request (`None` for events that are not one).
    pub fn of(&self, lambda_tenant: Option<&str>, request: Option<&HttpRequest>) -> Box<str> {
        let key = match (&self.settings.key, request) {
            (TenantKey::Lambda, _) => lambda_tenant,
            (TenantKey::Header(name), Some(r)) => r
                .request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
            (TenantKey::ApiKey, Some(r)) => r.api_key.as_deref(),
            (TenantKey::SourceIp, Some(r)) => r.source_ip.as_deref().or_else(|| {
                // ALB: the address it appended last.
                let forwarded = r.request.headers.iter().rev();
                forwarded
                    .filter(|(n, _)| n == FORWARDED_FOR)
                    .find_map(|(_, v)| v.rsplit(',').next())
                    .map(str::trim)
            }),
            (_, None) => None,
        };
        match key.filter(|k| !k.is_empty()) {
            Some(key) => self.hash(key).into(),
            None => ANONYMOUS.into(),
        }
    }

    fn hash(&self, key: &str) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.salt.as_bytes());
        ctx.update(key.as_bytes());
        let digest = ctx.finish();
        let mut id = String::with_capacity(16);
        for b in &digest.as_ref()[..8] {
            let _ = write!(id, "{b:02x}");
        }
        id
    }
}

/// The name a tenant's lease has in a shared count: the tenant rides in it, so whoever drops the
/// lease (release, expiry) can count the tenant down without another lookup.
pub fn member(id: &str, tenant: Option<&str>) -> Box<str> {
    match tenant {
        Some(t) => format!("{t}|{id}").into(),
        None => id.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::classes::Rules;
    use crate::decision::front_door::{read, Wanted};
    use crate::lease::under_share;

    fn settings(key: TenantKey) -> TenantSettings {
        TenantSettings {
            key,
            max: 10,
            reserve: 0.2,
            over_at: 2.0,
        }
    }

    #[test]
    fn keys_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(TenantKey::parse("lambda"), Ok(TenantKey::Lambda));
        assert_eq!(TenantKey::parse("apikey"), Ok(TenantKey::ApiKey));
        assert_eq!(TenantKey::parse("sourceip"), Ok(TenantKey::SourceIp));
        assert_eq!(
            TenantKey::parse("header:X-Tenant"),
            Ok(TenantKey::Header("x-tenant".into()))
        );
        for bad in ["", "header:", "header:a b", "ip", "Lambda", "header:x:y"] {
            assert!(TenantKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_salted_hashes_never_the_key() {
        let t = Tenants::new(settings(TenantKey::Lambda), "pool-a");
        let a = t.of(Some("acme"), None);
        assert_eq!(a.len(), 16);
        assert!(!a.contains("acme"));
        assert_eq!(a, t.of(Some("acme"), None), "stable");
        assert_ne!(a, t.of(Some("acme2"), None));
        let other_pool = Tenants::new(settings(TenantKey::Lambda), "pool-b");
        assert_ne!(a, other_pool.of(Some("acme"), None));
        assert_eq!(&*t.of(None, None), ANONYMOUS);
        assert_eq!(&*t.of(Some(""), None), ANONYMOUS);
    }

    #[test]
    fn keys_are_read_from_each_front_door() {
        let tenants = |key: TenantKey| Tenants::new(settings(key), "p");
        let wanted = |t: &Tenants| Wanted::of(&Rules::default(), t.settings.key.header());
        let rest = serde_json::json!({"httpMethod": "GET", "path": "/",
            "headers": {"X-Tenant": "acme", "X-Forwarded-For": "10.0.0.1, 198.51.100.2"},
            "requestContext": {"identity": {"apiKey": "k-1", "sourceIp": "203.0.113.9"}}})
        .to_string();
        let v2 = serde_json::json!({"version": "2.0", "rawPath": "/",
            "requestContext": {"http": {"method": "GET", "sourceIp": "203.0.113.9"}}})
        .to_string();
        let alb = serde_json::json!({"httpMethod": "GET", "path": "/",
            "headers": {"x-forwarded-for": "203.0.113.1, 203.0.113.9"},
            "requestContext": {"elb": {"targetGroupArn": "arn"}}})
        .to_string();
        let by_ip = tenants(TenantKey::SourceIp);
        let ip = by_ip.hash("203.0.113.9");
        for event in [&rest, &v2, &alb] {
            let r = read(event.as_bytes(), &wanted(&by_ip)).unwrap();
            assert_eq!(&*by_ip.of(None, Some(&r)), ip.as_str(), "{event}");
        }
        let by_header = tenants(TenantKey::Header("x-tenant".into()));
        let r = read(rest.as_bytes(), &wanted(&by_header)).unwrap();
        assert_eq!(&*by_header.of(None, Some(&r)), by_header.hash("acme"));
        let r = read(v2.as_bytes(), &wanted(&by_header)).unwrap();
        assert_eq!(&*by_header.of(None, Some(&r)), ANONYMOUS);
        let by_key = tenants(TenantKey::ApiKey);
        let r = read(rest.as_bytes(), &wanted(&by_key)).unwrap();
        assert_eq!(&*by_key.of(None, Some(&r)), by_key.hash("k-1"));
        // A malformed identity is no key, not no request.
        let odd = serde_json::json!({"httpMethod": "GET", "path": "/",
            "requestContext": {"identity": {"apiKey": 7, "sourceIp": null}}})
        .to_string();
        let r = read(odd.as_bytes(), &wanted(&by_key)).unwrap();
        assert_eq!(&*by_key.of(None, Some(&r)), ANONYMOUS);
        // Lambda's id is used whatever the event.
        let by_lambda = tenants(TenantKey::Lambda);
        assert_eq!(&*by_lambda.of(Some("t1"), None), by_lambda.hash("t1"));
    }

    #[test]
    fn fair_shares() {
        // Alone: under its share until it holds the whole threshold.
        assert!(under_share(9, 1, 10.0));
        assert!(!under_share(10, 1, 10.0));
        // A newcomer next to a tenant holding the whole threshold.
        assert!(under_share(0, 2, 10.0));
        assert!(!under_share(10, 2, 10.0));
        assert!(under_share(4, 2, 10.0));
        assert!(!under_share(5, 2, 10.0));
        // Twice the share (`ADMISSION_TENANT_OVER_AT=2`).
        assert!(under_share(9, 2, 20.0));
        assert!(!under_share(u64::MAX, 3, 10.0));
    }
}
