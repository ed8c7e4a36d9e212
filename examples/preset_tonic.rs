//! The server preset on a tonic server and the client preset on a tonic
//! `Channel`: serves grpc.health.v1 on a free loopback port, checks it a
//! few times through the client stack, and exits.
//!
//! ```text
//! cargo run --all-features --example preset_tonic
//! ```

use std::time::Duration;

use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;
use tower_armor::preset::{ClientPreset, ServerPreset};
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::retry::RetryLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Every server layer; two calls a minute for the whole server, so the
    // third is refused with RESOURCE_EXHAUSTED.
    let server = ServerPreset::builder()
        .name("inventory")
        .rate_limit(RateLimitLayer::builder(Quota::per_minute(2)).build()?)
        .build()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn(
        Server::builder()
            .layer(server)
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                tokio::time::sleep(Duration::from_secs(1)),
            ),
    );

    // A Channel takes tonic's body and adds the authority itself: the
    // retry boxes into that body, and the upstream is named for the
    // metrics and the breaker.
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = ClientPreset::builder()
        .name("inventory")
        .upstream(addr.ip().to_string(), addr.port())
        .retry(
            RetryLayer::builder()
                .inner_body::<tonic::body::Body>()
                .build()?,
        )
        .build()?;
    let mut health = HealthClient::new(ServiceBuilder::new().layer(client).service(channel));
    for _ in 0..3 {
        match health.check(HealthCheckRequest::default()).await {
            Ok(response) => println!("Check: status {:?}", response.into_inner().status()),
            Err(status) => println!("Check: {:?} ({})", status.code(), status.message()),
        }
    }
    serving.await??;
    Ok(())
}
