//! The AWS configuration (region, credentials, endpoints) from the environment, and the HTTPS
//! client the Lambda API client and the credentials providers use: hyper's HTTP/1 client over
//! rustls (ring) with the Mozilla roots the Redis client trusts too. The SDK's default client
//! also carries HTTP/2, which a handful of Lambda API reads a minute never need; without it the
//! layer is smaller (docs/benchmarks.md, "Size").

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

pub async fn load() -> SdkConfig {
    let tls = tls()
        .map_err(|e| tracing::warn!(error = %e, "no TLS for the AWS APIs; calls to them fail"))
        .ok();
    let https = Https {
        tls: tls.map(Arc::new),
        connectors: Mutex::default(),
    };
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(https))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .load()
        .await
}

/// rustls with ring and the Mozilla roots.
fn tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connectors by their timeouts (connect, read): each keeps its pool of connections.
#[derive(Debug)]
struct Https {
    tls: Option<Arc<rustls::ClientConfig>>,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for Https {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock();
        if let Some((_, connector)) = connectors.iter().find(|(t, _)| *t == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(self.tls.clone(), timeouts));
        connectors.push((timeouts, connector.clone()));
        connector
    }
}

#[derive(Debug)]
struct Connector {
    /// `None`: TLS could not be set up (logged at init); every call fails.
    client: Option<Client<HttpsConnector<TcpConnector>, SdkBody>>,
    read_timeout: Option<Duration>,
}

impl Connector {
    fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        (connect_timeout, read_timeout): Timeouts,
    ) -> Connector {
        let client = tls.map(|tls| {
            let mut tcp = TcpConnector::new();
            tcp.enforce_http(false);
            tcp.set_nodelay(true);
            tcp.set_connect_timeout(connect_timeout);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(rustls::ClientConfig::clone(&tls))
                // `AWS_ENDPOINT_URL` may name a plain-HTTP endpoint (a local emulator).
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp);
            Client::builder(TokioExecutor::new()).build(https)
        });
        Connector {
            client,
            read_timeout,
        }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let Some(client) = &self.client else {
            let e = "no TLS for the AWS APIs";
            return HttpConnectorFuture::ready(Err(ConnectorError::other(e.into(), None)));
        };
        let sent = client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|e| ConnectorError::timeout(e.into()))?,
                None => sent.await,
            }
            // Connecting, or the connection failing mid-request: transient, as the SDK's
            // retries treat I/O errors.
            .map_err(|e| ConnectorError::io(e.into()))?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}
