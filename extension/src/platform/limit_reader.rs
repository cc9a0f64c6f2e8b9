//! The concurrency limit read from the Lambda API, when `ADMISSION_LIMIT` is not set.
//!
//! The function's reserved concurrency (`GetFunctionConcurrency`) when it has one; otherwise the
//! account's unreserved pool (`GetAccountSettings`), which the function shares with every other
//! function without a reservation. Read in the background after registration, never delaying it,
//! and again every `ADMISSION_LIMIT_REFRESH` seconds while warm; each reading is published as the
//! limit. A limit once known is kept when a later read fails. Needs the IAM permissions
//! `lambda:GetFunctionConcurrency` and `lambda:GetAccountSettings`.
//!
//! The control-plane API has a small per-account request quota: with a shared coordinator the
//! fleet shares one reading. Whichever environment finds no fresh limit in the pool's note reads
//! the API (holding a short `reading` note, so that a cold burst of environments does not all call
//! it) and stores the limit for the refresh period; the others take it from the note.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_lambda::error::DisplayErrorContext;

use crate::coordinator::Coordinator;
use crate::decision::limit::{Limit, LimitSender, LimitSource};
use crate::warnings::Warnings;

/// The pool's note holding the limit last read (`"<value> <source>"`).
const LIMIT_NOTE: &str = "limit";
/// The pool's note held while one environment reads the Lambda API for the fleet.
const READING_NOTE: &str = "limit:reading";
/// How long the others wait for that reading before reading the API themselves.
const READING_WAIT: Duration = Duration::from_secs(5);

pub struct LambdaApi {
    client: aws_sdk_lambda::Client,
    function_name: String,
}

impl LambdaApi {
    /// Loads the AWS configuration (region, credentials, `AWS_ENDPOINT_URL_LAMBDA`) from the
    /// environment, with a rustls (ring) HTTPS client.
    pub async fn from_env(function_name: &str) -> LambdaApi {
        let config = crate::platform::aws::load().await;
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

    /// The fleet's reading: from the pool's note, or read here and stored there for `refresh`.
    async fn read_shared(
        &self,
        shared: &dyn Coordinator,
        refresh: Duration,
    ) -> Result<Limit, String> {
        let waited = tokio::time::Instant::now();
        while !shared.connected() && waited.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while waited.elapsed() < READING_WAIT {
            if let Some(limit) = shared
                .read_note(LIMIT_NOTE)
                .await
                .as_deref()
                .and_then(parse_note)
            {
                return Ok(limit);
            }
            if !shared.connected()
                || shared
                    .write_note(READING_NOTE, "1", READING_WAIT, true)
                    .await
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let read = self.read().await?;
        let note = format!("{} {}", read.value, read.source.as_str());
        shared.write_note(LIMIT_NOTE, &note, refresh, false).await;
        Ok(read)
    }

    /// Publishes the limit now, then every `refresh` (±10 %, so that a fleet started together
    /// does not call the API together), for as long as anyone reads it.
    pub async fn publish(
        self,
        limit: LimitSender,
        refresh: Duration,
        shared: Option<Arc<dyn Coordinator>>,
        warnings: Warnings,
    ) {
        let mut last_error: Option<String> = None;
        while !limit.is_closed() {
            let reading = match &shared {
                Some(shared) => self.read_shared(shared.as_ref(), refresh).await,
                None => self.read().await,
            };
            match reading {
                Ok(read) => {
                    if *limit.borrow() != Some(read) {
                        tracing::info!(
                            limit = read.value,
                            source = read.source.as_str(),
                            "concurrency limit read from the Lambda API"
                        );
                    }
                    limit.send_replace(Some(read));
                    warnings.set_limit_unreadable(None);
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
                    if limit.borrow().is_none() {
                        warnings.set_limit_unreadable(Some(e.clone()));
                    }
                    last_error = Some(e);
                }
            }
            let jitter = 0.9 + 0.2 * fastrand::f64();
            tokio::time::sleep(refresh.mul_f64(jitter)).await;
        }
    }
}

fn parse_note(note: &str) -> Option<Limit> {
    let (value, source) = note.split_once(' ')?;
    Some(Limit::new(value.parse().ok()?, LimitSource::parse(source)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_read_back_as_written() {
        let limit = Limit::new(42, LimitSource::Reserved);
        let note = format!("{} {}", limit.value, limit.source.as_str());
        assert_eq!(parse_note(&note), Some(limit));
        assert_eq!(parse_note("x reserved"), None);
        assert_eq!(parse_note("42 nowhere"), None);
        assert_eq!(parse_note(""), None);
    }
}
