//! The server preset on an axum router, called through the client preset on
//! a hyper-util client; serves on a free loopback port, makes a few calls,
//! prints what each layer did, and exits.
//!
//! ```text
//! cargo run --all-features --example preset_axum
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::key::PeerIp;
use tower_armor::preset::{ClientPreset, ServerPreset};
use tower_armor::rate_limit::{Quota, RateLimitLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Every server layer with its defaults, plus a limit of 3 a minute per
    // client (ConnectInfo gives the peer address).
    let server = ServerPreset::builder()
        .name("api")
        .rate_limit(
            RateLimitLayer::builder(Quota::per_minute(3))
                .key(PeerIp)
                .build()?,
        )
        .build()?;
    let health = server.health().expect("health is on").handle();
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/catalogue",
            get(|| async { ([("cache-control", "max-age=60")], "x".repeat(4096)) }),
        )
        .layer(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async { tokio::time::sleep(Duration::from_secs(1)).await })
        .await
    });

    // Every client layer with its defaults.
    let mut client = ServiceBuilder::new()
        .layer(ClientPreset::default())
        .service(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        );
    for (path, coding) in [
        ("/livez", ""),
        ("/catalogue", "gzip"),
        ("/catalogue", "gzip"),
        ("/", ""),
        ("/", ""),
    ] {
        let request = Request::get(format!("http://{addr}{path}"))
            .header("accept-encoding", coding)
            .body(Full::new(Bytes::new()))?;
        let response = client.ready().await?.call(request).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map_or("-", |value| value.to_str().unwrap_or("?"))
                .to_owned()
        };
        let (status, encoding, cache) = (
            response.status(),
            header("content-encoding"),
            header("cache-status"),
        );
        let bytes = response.into_body().collect().await?.to_bytes().len();
        println!(
            "GET {path:<11} {status}  content-encoding: {encoding:<5} cache-status: {cache}  ({bytes} bytes)"
        );
    }
    health.drain();
    serving.await??;
    Ok(())
}
