//! The concurrency limit read from the Lambda API, when `ADMISSION_LIMIT` is not set.
//!
//! The function's reserved concurrency (`GetFunctionConcurrency`) when it has one; otherwise the
//! account's unreserved pool (`GetAccountSettings`), which the function shares with every other
//! function without a reservation. Read in the background after registration, never delaying it,
//! and again every `ADMISSION_LIMIT_REFRESH` seconds while warm; each reading is published as the
//! limit. A limit once known is kept when a later read fails. Needs the IAM permissions
//! `lambda:GetFunctionConcurrency` and `lambda:GetAccountSettings`.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::limit::{Limit, LimitSender, LimitSource};

pub struct LambdaApi {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaApi {
    /// Loads the AWS configuration (region, credentials, `AWS_ENDPOINT_URL_LAMBDA`) from the
    /// environment, with a rustls (ring) HTTPS client.
    pub async fn from_env(function_name: &str) -> LambdaApi {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .load()
            .await;
        LambdaApi {
            client: aws_sdk_lambda::Client::new(&config),
            function_name: function_name.to_string(),
        }
    }

    /// The limit that applies to this function now.
    pub async fn read(&self) -> Result<Limit, String> {
        let reserved = self
            .client
            .get_function_concurrency()
            .function_name(&self.function_name)
            .send()
            .await
            .map_err(|e| format!("GetFunctionConcurrency: {}", DisplayErrorContext(&e)))?
            .reserved_concurrent_executions();
        if let Some(n) = reserved {
            return Ok(Limit::new(n.max(0) as u64, LimitSource::Reserved));
        }
        let settings = self
            .client
            .get_account_settings()
            .send()
            .await
            .map_err(|e| format!("GetAccountSettings: {}", DisplayErrorContext(&e)))?;
        settings
            .account_limit()
            .and_then(|l| l.unreserved_concurrent_executions())
            .map(|n| Limit::new(n.max(0) as u64, LimitSource::Account))
            .ok_or_else(|| {
                "GetAccountSettings returned no UnreservedConcurrentExecutions".to_string()
            })
    }

    /// Publishes the limit now, then every `refresh` (±10 %, so that a fleet started together
    /// does not call the API together), for as long as anyone reads it.
    pub async fn publish(self, limit: LimitSender, refresh: Duration) {
        let mut last_error: Option<String> = None;
        while !limit.is_closed() {
            match self.read().await {
                Ok(read) => {
                    if *limit.borrow() != Some(read) {
                        tracing::info!(
                            limit = read.value,
                            source = read.source.as_str(),
                            "concurrency limit read from the Lambda API"
                        );
                    }
                    limit.send_replace(Some(read));
                    last_error = None;
                }
                Err(e) => {
                    if last_error.as_deref() != Some(e.as_str()) {
                        match *limit.borrow() {
                            Some(known) => {
                                tracing::warn!(error = %e, limit = known.value, "cannot read the concurrency limit from the Lambda API; keeping the last one")
                            }
                            None => {
                                tracing::warn!(error = %e, "cannot read the concurrency limit from the Lambda API (needs lambda:GetFunctionConcurrency and lambda:GetAccountSettings); admitting every event until a limit is known")
                            }
                        }
                    }
                    last_error = Some(e);
                }
            }
            let jitter = 0.9 + 0.2 * fastrand::f64();
            tokio::time::sleep(refresh.mul_f64(jitter)).await;
        }
    }
}
