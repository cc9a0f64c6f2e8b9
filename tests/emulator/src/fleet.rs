//! A function's fleet: up to N execution environments behind one invoke, and the API Gateway
//! front door in front of it.
//!
//! [`Fleet`] behaves like Lambda at a concurrency limit: an invoke goes to the least busy
//! environment with a free slot (one on demand, K on Managed Instances); when every slot of the N
//! environments is busy the invoke is throttled, before any code runs. Environments are started
//! warm (no cold starts), each with the real extension (or none) and a real runtime process.
//!
//! [`ApiGateway`] behaves like API Gateway REST with the Lambda proxy integration: a throttle is a
//! 500 `{"message":"Internal server error"}`, a function error or malformed answer a 502, a proxy
//! response the HTTP response it describes. Optionally its `DEFAULT_5XX` gateway responses are
//! remapped to 429, the common workaround.

use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::{Builder, Environment, Outcome, Runtime};

/// What stands between the platform and the runtime in each environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    None,
    /// The extension with the local coordinator, limited per environment.
    Local,
    /// The extension counting the fleet in Redis at this URL.
    Redis(String),
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Execution environments: the reserved concurrency on demand.
    pub environments: usize,
    /// Invocations one environment runs at once: 1 on demand, K on Managed Instances.
    pub per_environment: usize,
    pub runtime: Runtime,
    pub layer: Layer,
    /// `ADMISSION_SHED_AT` for the layer.
    pub shed_at: f64,
    /// `ADMISSION_POOL`, so fleets sharing a Redis do not share a count.
    pub pool: String,
}

/// An invoke as the front door sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Invoke {
    /// Lambda refused it: every slot was busy (HTTP 429 `TooManyRequestsException`).
    Throttled,
    Done(Outcome),
}

pub struct Fleet {
    envs: Vec<Environment>,
    per_environment: usize,
    /// Serialises slot choice; the highest number of busy slots seen since `take_peak`.
    peak: Mutex<usize>,
}

impl Fleet {
    pub async fn start(config: &FleetConfig) -> Fleet {
        let limit = config.environments * config.per_environment;
        let mut envs = Vec::new();
        for _ in 0..config.environments {
            let mut b = Builder::new(config.runtime.clone());
            if config.per_environment > 1 {
                b = b.managed_instances(config.per_environment as u32);
            }
            b = match &config.layer {
                Layer::None => b.without_layer(),
                // On Managed Instances the limit is AWS_LAMBDA_MAX_CONCURRENCY; on demand, the
                // function's limit, which one environment alone never approaches.
                Layer::Local if config.per_environment > 1 => {
                    b.env("ADMISSION_SHED_AT", &config.shed_at.to_string())
                }
                Layer::Local => b
                    .env("ADMISSION_SHED_AT", &config.shed_at.to_string())
                    .env("ADMISSION_LIMIT", &limit.to_string()),
                Layer::Redis(url) => b
                    .env("ADMISSION_SHED_AT", &config.shed_at.to_string())
                    .env("ADMISSION_LIMIT", &limit.to_string())
                    .env("ADMISSION_COORDINATOR", url)
                    .env("ADMISSION_POOL", &config.pool)
                    .env("ADMISSION_COORDINATOR_TIMEOUT_MS", "50"),
            };
            envs.push(b.env("ADMISSION_METRICS_INTERVAL", "3600").start().await);
        }
        for e in &envs {
            assert!(
                e.platform.wait_ready(Duration::from_secs(20)).await,
                "a runtime did not start: {}",
                e.runtime_stderr.text()
            );
        }
        if matches!(config.layer, Layer::Redis(_)) {
            for e in &envs {
                let connected = e
                    .wait_status(Duration::from_secs(10), |s| {
                        s["coordinatorConnected"] == true
                    })
                    .await;
                assert!(
                    connected.is_ok(),
                    "an environment did not reach Redis: {}",
                    e.extension_stderr.text()
                );
            }
        }
        Fleet {
            envs,
            per_environment: config.per_environment,
            peak: Mutex::new(0),
        }
    }

    /// Invokes synchronously: a free slot runs the event; none free is a throttle. A slot is
    /// busy, as Lambda counts it, until the runtime has answered and asked for the next event.
    pub async fn invoke(&self, payload: String, timeout: Duration) -> Invoke {
        let slot = {
            let mut peak = self.peak.lock();
            // The least busy environment: a load balancer's choice (on demand, any idle one).
            let least = (0..self.envs.len()).min_by_key(|&i| self.envs[i].platform.slots_in_use());
            let free = least.filter(|&i| self.envs[i].platform.reserve(self.per_environment));
            if free.is_some() {
                *peak = (*peak).max(self.busy());
            }
            free
        };
        match slot {
            Some(i) => Invoke::Done(self.envs[i].platform.invoke(payload, timeout).await),
            None => Invoke::Throttled,
        }
    }

    fn busy(&self) -> usize {
        self.envs.iter().map(|e| e.platform.slots_in_use()).sum()
    }

    /// The highest number of busy slots since the last call.
    pub fn take_peak(&self) -> usize {
        let mut peak = self.peak.lock();
        std::mem::replace(&mut *peak, self.busy())
    }

    pub fn capacity(&self) -> usize {
        self.envs.len() * self.per_environment
    }
}

/// An HTTP response as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct ApiGateway {
    /// The workaround: gateway-generated 5xx responses (`DEFAULT_5XX`) become 429.
    pub remap_5xx_to_429: bool,
}

impl ApiGateway {
    /// The REST proxy-integration event for `GET path?query`.
    pub fn event(path: &str, query: &[(&str, &str)]) -> String {
        let q: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "resource": "/{proxy+}", "path": path, "httpMethod": "GET",
            "headers": {"accept": "*/*", "host": "api.example.com"},
            "multiValueHeaders": {"accept": ["*/*"], "host": ["api.example.com"]},
            "queryStringParameters": q, "multiValueQueryStringParameters": null,
            "pathParameters": {"proxy": path.trim_start_matches('/')}, "stageVariables": null,
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "GET", "stage": "prod",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "path": format!("/prod{path}")},
            "body": null, "isBase64Encoded": false,
        })
        .to_string()
    }

    /// What the client receives for `invoke`.
    pub fn respond(&self, invoke: &Invoke) -> HttpResponse {
        match invoke {
            Invoke::Throttled => {
                self.gateway_error(500, "Internal server error", "InternalServerErrorException")
            }
            Invoke::Done(Outcome::Error { .. }) => {
                self.gateway_error(502, "Internal server error", "InternalServerErrorException")
            }
            Invoke::Done(Outcome::Timeout) => {
                self.gateway_error(504, "Endpoint request timed out", "IntegrationTimeout")
            }
            Invoke::Done(Outcome::Response { body, .. }) => match proxy_response(body) {
                Some(r) => r,
                None => {
                    self.gateway_error(502, "Internal server error", "InternalServerErrorException")
                }
            },
        }
    }

    fn gateway_error(&self, status: u16, message: &str, error_type: &str) -> HttpResponse {
        let status = if self.remap_5xx_to_429 && status >= 500 {
            429
        } else {
            status
        };
        HttpResponse {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-amzn-ErrorType".into(), error_type.into()),
            ],
            body: json!({"message": message}).to_string(),
        }
    }
}

/// A Lambda proxy response, or `None` if malformed (API Gateway answers 502 then).
fn proxy_response(body: &[u8]) -> Option<HttpResponse> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let status = v
        .get("statusCode")?
        .as_u64()
        .filter(|s| (100..600).contains(s))? as u16;
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = v.get("headers").and_then(Value::as_object) {
        headers.extend(
            h.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))),
        );
    }
    // multiValueHeaders win over headers of the same name.
    if let Some(h) = v.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vals) in h {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            for val in vals
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                headers.push((k.clone(), val.to_string()));
            }
        }
    }
    let body = match v.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return None,
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn done(body: &str) -> Invoke {
        Invoke::Done(Outcome::Response {
            body: Bytes::from(body.to_string()),
            streamed: false,
            trailers: Default::default(),
        })
    }

    #[test]
    fn api_gateway_maps_lambda_outcomes_like_rest_proxy_integration() {
        let gw = ApiGateway {
            remap_5xx_to_429: false,
        };
        let r = gw.respond(&Invoke::Throttled);
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, r#"{"message":"Internal server error"}"#)
        );
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("InternalServerErrorException")
        );
        let r = gw.respond(&done(r#"{"statusCode":201,"headers":{"a":"1","b":"2"},"multiValueHeaders":{"b":["3","4"]},"body":"hi"}"#));
        assert_eq!((r.status, r.body.as_str()), (201, "hi"));
        assert_eq!(
            r.headers,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
                ("b".into(), "4".into())
            ]
        );
        assert_eq!(gw.respond(&done("not json")).status, 502);
        assert_eq!(gw.respond(&done(r#"{"body":"no status"}"#)).status, 502);
        let err = Invoke::Done(Outcome::Error {
            error_type: "Unhandled".into(),
            body: Bytes::new(),
        });
        assert_eq!(gw.respond(&err).status, 502);
    }

    #[test]
    fn the_workaround_turns_every_gateway_5xx_into_429() {
        let gw = ApiGateway {
            remap_5xx_to_429: true,
        };
        assert_eq!(gw.respond(&Invoke::Throttled).status, 429);
        let err = Invoke::Done(Outcome::Error {
            error_type: "Unhandled".into(),
            body: Bytes::new(),
        });
        assert_eq!(
            gw.respond(&err).status,
            429,
            "a genuine error becomes a 429 too"
        );
        assert_eq!(gw.respond(&Invoke::Throttled).header("retry-after"), None);
        // A 500 the function itself returns is not a gateway response: untouched.
        assert_eq!(
            gw.respond(&done(r#"{"statusCode":500,"body":"x"}"#)).status,
            500
        );
    }
}
