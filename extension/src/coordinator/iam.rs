//! ElastiCache IAM authentication: the password is a short-lived token, a SigV4-presigned
//! `GET https://{cache}/?Action=connect&User={user}` (plus `&ResourceType=ServerlessCache` for a
//! serverless cache) for the service `elasticache`, signed with the function's credentials.
//!
//! The token is exactly what AWS's own clients produce (botocore's presigner, AWS's Java sample):
//! only `host` is signed, the payload hash is that of an empty body, the session token is inside
//! the signed query (`X-Amz-Security-Token`), and the token is the URL without `https://`.
//!
//! [`IamAuth`] is a credentials provider for the Redis client: a connection takes the current
//! token when it opens (always in the background: no decision waits for one), then re-authenticates
//! with a fresh token every half lifetime. Re-authenticating is also what keeps a connection past
//! ElastiCache's 12-hour limit for IAM connections. A token is a credential: it is never logged,
//! and no error carries it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use futures_util::Stream;
use parking_lot::Mutex;
use redis::auth::{BasicAuth, StreamingCredentialsProvider};
use redis::{ErrorKind, RedisError, RedisResult};

use crate::config::IamConfig;

/// What a token is signed for, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest<'a> {
    pub cache: &'a str,
    pub user: &'a str,
    pub serverless: bool,
    pub region: &'a str,
    pub lifetime: Duration,
}

/// The token for `request`, signed at `at` with `credentials`.
pub fn token(
    request: &TokenRequest<'_>,
    credentials: Credentials,
    at: SystemTime,
) -> Result<String, String> {
    let mut url = format!(
        "https://{}/?Action=connect&User={}",
        request.cache,
        encode(request.user)
    );
    if request.serverless {
        url.push_str("&ResourceType=ServerlessCache");
    }
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(request.lifetime);
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(request.region)
        .name("elasticache")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign an IAM token: {e}"))?
        .into();
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("cannot sign an IAM token: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("cannot sign an IAM token: {e}"))?
        .into_parts();
    // As botocore writes it: the signature last, every value percent-encoded.
    let (_, mut params) = instructions.into_parts();
    params.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in params {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode(&value));
    }
    Ok(url.split_off("https://".len()))
}

/// A query value as SigV4 encodes it: everything but letters, digits and `-_.~`.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Redis client's credentials: the user and a cached token, refreshed before it expires.
#[derive(Clone)]
pub struct IamAuth {
    inner: Arc<Inner>,
}

struct Inner {
    config: IamConfig,
    aws: tokio::sync::OnceCell<aws_config::SdkConfig>,
    /// The last token and when it was signed.
    cached: Mutex<Option<(Instant, Arc<str>)>>,
}

impl IamAuth {
    pub fn new(config: IamConfig) -> IamAuth {
        IamAuth {
            inner: Arc::new(Inner {
                config,
                aws: tokio::sync::OnceCell::new(),
                cached: Mutex::new(None),
            }),
        }
    }

    /// How often a connection re-authenticates, and the age past which a cached token is signed
    /// again: half its lifetime, so a token in use always has half its lifetime left.
    pub fn refresh(&self) -> Duration {
        self.inner.config.token_lifetime / 2
    }

    /// The current token: the cached one while younger than [`IamAuth::refresh`], else a fresh one.
    pub async fn current(&self) -> Result<Arc<str>, String> {
        if let Some((at, token)) = &*self.inner.cached.lock() {
            if at.elapsed() < self.refresh() {
                return Ok(token.clone());
            }
        }
        let aws = self.inner.aws.get_or_init(crate::platform::aws::load).await;
        let region = aws
            .region()
            .map(|r| r.to_string())
            .filter(|r| !r.is_empty())
            .ok_or("no AWS region for the IAM token (AWS_REGION is not set)")?;
        let provider = aws
            .credentials_provider()
            .ok_or("no AWS credentials for the IAM token")?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials for the IAM token: {e}"))?;
        let config = &self.inner.config;
        let request = TokenRequest {
            cache: &config.cache,
            user: &config.user,
            serverless: config.serverless,
            region: &region,
            lifetime: config.token_lifetime,
        };
        let fresh: Arc<str> = token(&request, credentials, SystemTime::now())?.into();
        *self.inner.cached.lock() = Some((Instant::now(), fresh.clone()));
        tracing::debug!(cache = %config.cache, user = %config.user, "signed an ElastiCache IAM token");
        Ok(fresh)
    }

    async fn credentials(&self) -> RedisResult<BasicAuth> {
        match self.current().await {
            Ok(token) => Ok(BasicAuth::new(
                self.inner.config.user.clone(),
                token.to_string(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign an ElastiCache IAM token");
                Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "cannot sign an ElastiCache IAM token",
                    e,
                )))
            }
        }
    }
}

impl StreamingCredentialsProvider for IamAuth {
    /// The current token at once (a connection opening), then a fresh one every
    /// [`IamAuth::refresh`] (the connection re-authenticating) for as long as it is open.
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
        let auth = self.clone();
        Box::pin(futures_util::stream::unfold(true, move |first| {
            let auth = auth.clone();
            async move {
                if !first {
                    tokio::time::sleep(auth.refresh()).await;
                }
                Some((auth.credentials().await, false))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(serverless: bool) -> TokenRequest<'static> {
        TokenRequest {
            cache: "my-cache",
            user: "admission",
            serverless,
            region: "us-east-1",
            lifetime: Duration::from_secs(900),
        }
    }

    /// Temporary credentials, as Lambda gives a function (with a session token).
    fn session_credentials() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session/token+=".into()),
            None,
            "t",
        )
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn query(token: &str) -> Vec<(String, String)> {
        let (_, q) = token.split_once('?').expect("a query");
        q.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn a_token_is_the_presigned_url_without_its_scheme() {
        let creds = session_credentials();
        let t = token(&request(false), creds, at()).unwrap();
        assert!(
            t.starts_with("my-cache/?Action=connect&User=admission&"),
            "{t}"
        );
        let q = query(&t);
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20231114%2Fus-east-1%2Felasticache%2Faws4_request")
        );
        assert_eq!(get("X-Amz-Date"), Some("20231114T221320Z"));
        assert_eq!(get("X-Amz-Expires"), Some("900"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(get("X-Amz-Security-Token"), Some("session%2Ftoken%2B%3D"));
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
        assert_eq!(get("ResourceType"), None);
        assert!(!t.contains("secret"));
    }

    /// The same token from botocore 1.43 (`SigV4QueryAuth(Credentials("AKIDEXAMPLE", "secret",
    /// "session/token+="), "elasticache", "us-east-1", expires=900)` on
    /// `https://my-cache/?Action=connect&User=admission&ResourceType=ServerlessCache` at
    /// 2023-11-14T22:13:20Z), as AWS's Python sample signs it; the checking front in the tests
    /// signs every token again the same way.
    const BOTOCORE: &str = "my-cache/?Action=connect&User=admission&ResourceType=ServerlessCache&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Felasticache%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=session%2Ftoken%2B%3D&X-Amz-Signature=5f085d255131010e370d4e799aea1458e30bc6f7fc6af6d5d41f16963dc5952a";

    #[test]
    fn a_token_is_botocores_byte_for_byte() {
        let creds = session_credentials();
        assert_eq!(token(&request(true), creds, at()).unwrap(), BOTOCORE);
    }

    #[test]
    fn a_serverless_token_names_its_resource_type_and_signs_it() {
        let creds = || Credentials::new("AKIDEXAMPLE", "secret", None, None, "t");
        let node = token(&request(false), creds(), at()).unwrap();
        let serverless = token(&request(true), creds(), at()).unwrap();
        assert!(
            serverless.contains("&ResourceType=ServerlessCache&"),
            "{serverless}"
        );
        assert!(!node.contains("X-Amz-Security-Token"));
        let signature = |t: &str| query(t).into_iter().find(|(k, _)| k == "X-Amz-Signature");
        assert_ne!(signature(&node), signature(&serverless));
    }

    #[test]
    fn the_signature_depends_on_the_secret_the_time_and_the_user() {
        let signed = |secret: &str, at: SystemTime, user: &'static str| {
            let mut r = request(false);
            r.user = user;
            let t = token(&r, Credentials::new("AK", secret, None, None, "t"), at).unwrap();
            query(&t).into_iter().find(|(k, _)| k == "X-Amz-Signature")
        };
        let base = signed("a", at(), "u");
        assert_eq!(base, signed("a", at(), "u"));
        assert_ne!(base, signed("b", at(), "u"));
        assert_ne!(base, signed("a", at() + Duration::from_secs(1), "u"));
        assert_ne!(base, signed("a", at(), "v"));
    }

    #[test]
    fn user_names_are_percent_encoded() {
        assert_eq!(encode("app-user_1.x~"), "app-user_1.x~");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
