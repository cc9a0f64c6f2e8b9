//! The Extensions API: register, wait for events, report errors.
//!
//! The extension registers for `SHUTDOWN` only, on demand and on Managed Instances alike. Managed
//! Instances refuse `INVOKE`; on demand, an `INVOKE` event would tell the proxy nothing it does not
//! already see in `next`, and answering it would add a round trip to every invocation.
//!
//! This is a small client of its own rather than the `lambda-extension` crate's event loop: that
//! loop ends the extension when `next` fails (this one keeps the proxy serving and retries), and
//! reports errors with the error's text as the error type, where this one reports
//! `Extension.ConfigInvalid` with a message naming the variable.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::http::{full_body, Body, HttpClient};

const BASE: &str = "2020-01-01/extension";
const NAME_HEADER: &str = "Lambda-Extension-Name";
const ID_HEADER: &str = "Lambda-Extension-Identifier";
const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("Extensions API request failed: {0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    #[error("Extensions API body could not be read: {0}")]
    Body(#[from] hyper::Error),
    #[error("Extensions API answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("Extensions API registration returned no {ID_HEADER}")]
    NoIdentifier,
    #[error("Extensions API sent an event that is not JSON: {0}")]
    Event(#[from] serde_json::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "eventType", rename_all = "UPPERCASE")]
pub enum Event {
    Invoke {
        #[serde(rename = "requestId", default)]
        request_id: String,
    },
    Shutdown {
        #[serde(rename = "shutdownReason", default)]
        shutdown_reason: String,
        #[serde(rename = "deadlineMs", default)]
        deadline_ms: u64,
    },
}

pub struct Extension {
    client: HttpClient,
    runtime_api: String,
    id: String,
}

impl Extension {
    /// Registers under `name`, which must be the extension's file name in `/opt/extensions`.
    pub async fn register(
        client: HttpClient,
        runtime_api: &str,
        name: &str,
        events: &[&str],
    ) -> Result<Extension, LifecycleError> {
        let body = serde_json::json!({ "events": events }).to_string();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{runtime_api}/{BASE}/register"))
            .header(NAME_HEADER, name)
            .header("content-type", "application/json")
            .body(body_of(body))?;
        let response = client.request(req).await?;
        let id = response
            .headers()
            .get(ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = response.status();
        let text = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            return Err(LifecycleError::Status {
                status,
                body: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        Ok(Extension {
            client,
            runtime_api: runtime_api.to_string(),
            id: id.ok_or(LifecycleError::NoIdentifier)?,
        })
    }

    /// Blocks until Lambda has an event for this extension.
    pub async fn next_event(&self) -> Result<Event, LifecycleError> {
        let req = Request::builder()
            .uri(format!("http://{}/{BASE}/event/next", self.runtime_api))
            .header(ID_HEADER, &self.id)
            .body(body_of(String::new()))?;
        let body = self.send(req).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Reports a failed init (`init/error`): Lambda fails the init with this message.
    pub async fn init_error(&self, error_type: &str, message: &str) -> Result<(), LifecycleError> {
        self.report("init/error", error_type, message).await
    }

    async fn report(
        &self,
        what: &str,
        error_type: &str,
        message: &str,
    ) -> Result<(), LifecycleError> {
        let body =
            serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/{BASE}/{what}", self.runtime_api))
            .header(ID_HEADER, &self.id)
            .header(ERROR_TYPE_HEADER, error_type)
            .header("content-type", "application/json")
            .body(body_of(body))?;
        self.send(req).await.map(drop)
    }

    async fn send(&self, req: Request<Body>) -> Result<Bytes, LifecycleError> {
        let response = self.client.request(req).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status.is_success() {
            Ok(body)
        } else {
            Err(LifecycleError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        }
    }
}

fn body_of(s: String) -> Body {
    full_body(Bytes::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_in_any_shape_lambda_sends() {
        let e: Event = serde_json::from_str(
            r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Event::Shutdown {
                shutdown_reason: "spindown".into(),
                deadline_ms: 1_700_000_000_000
            }
        );
        let e: Event = serde_json::from_str(
            r#"{"eventType":"INVOKE","deadlineMs":1,"requestId":"r","invokedFunctionArn":"a","tracing":{"type":"X-Amzn-Trace-Id","value":"v"}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Event::Invoke {
                request_id: "r".into()
            }
        );
        assert!(serde_json::from_str::<Event>(r#"{"eventType":"RESTART"}"#).is_err());
    }
}
