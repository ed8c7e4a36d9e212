//! The server preset on a plain hyper server (no framework), called through
//! the client preset on a hyper-util client; serves on a free loopback
//! port, makes a few calls, and exits.
//!
//! ```text
//! cargo run --all-features --example preset_hyper
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::preset::{ClientPreset, ServerPreset};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The application: a hyper service answering every request.
async fn hello(
    _request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello from hyper\n",
    ))))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let service = ServiceBuilder::new()
        .layer(ServerPreset::default())
        .service_fn(hello);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned(),
            );
        }
    });

    let mut client = ServiceBuilder::new()
        .layer(ClientPreset::default())
        .service(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http());
    for path in ["/readyz", "/"] {
        let request = Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new()))?;
        let response = client.ready().await?.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "GET {path:<7} {status}  {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(())
}
