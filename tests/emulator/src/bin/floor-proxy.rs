//! The floor for the proxy's cost: a keep-alive hyper pass-through with no logic at all.
//! `FLOOR_PORT` to listen on (127.0.0.1), `FLOOR_UPSTREAM` = `host:port` to forward to.

use http_body_util::{combinators::BoxBody, BodyExt};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::var("FLOOR_PORT")
        .expect("FLOOR_PORT")
        .parse()
        .expect("port");
    let upstream = std::env::var("FLOOR_UPSTREAM").expect("FLOOR_UPSTREAM");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, BoxBody<bytes::Bytes, hyper::Error>> =
        Client::builder(TokioExecutor::new()).build(connector);
    lambda_emulator::serve::spawn(
        listener,
        move |mut req: http::Request<hyper::body::Incoming>| {
            let client = client.clone();
            let uri = format!(
                "http://{upstream}{}",
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            async move {
                *req.uri_mut() = uri.parse().expect("uri");
                match client.request(req.map(BodyExt::boxed)).await {
                    Ok(r) => r.map(BodyExt::boxed),
                    Err(_) => {
                        let mut r = http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new())
                                .map_err(|n| match n {})
                                .boxed(),
                        );
                        *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                        r
                    }
                }
            }
        },
    );
    std::future::pending::<()>().await;
}
