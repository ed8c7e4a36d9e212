//! The load bench's peer server: the shared routes behind the stack a user
//! would build today without tower-armor.
//!
//! ```text
//! load-peer STACK PORT     # STACK: bare or peer
//! ```

#[path = "../../routes.rs"]
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// tower-resilience's breaker refuses with an error: axum needs it made
/// into a response.
async fn breaker_refusal<E: std::fmt::Debug>(error: E) -> impl IntoResponse {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{error:?}"))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(stack), Some(port)) = (args.first(), args.get(1)) else {
        return Err("usage: load-peer bare|peer PORT".into());
    };
    let port: u16 = port.parse()?;
    let app = match stack.as_str() {
        "bare" => routes::routes(),
        "peer" => {
            // A limit no load here reaches, per peer IP as tower_governor's
            // users key it.
            let governor = Arc::new(
                tower_governor::governor::GovernorConfigBuilder::default()
                    .per_nanosecond(10)
                    .burst_size(100_000_000)
                    .key_extractor(tower_governor::key_extractor::PeerIpKeyExtractor)
                    .finish()
                    .ok_or("a valid governor config")?,
            );
            let breaker = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .failure_rate_threshold(0.5)
                .sliding_window_size(100)
                .minimum_number_of_calls(20)
                .build()
                .map_err(|error| format!("{error:?}"))?;
            routes::routes().layer(
                ServiceBuilder::new()
                    .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                        StatusCode::GATEWAY_TIMEOUT,
                        Duration::from_secs(30),
                    ))
                    .layer(tower_governor::GovernorLayer::new(governor))
                    .layer(HandleErrorLayer::new(breaker_refusal))
                    .layer(breaker)
                    .layer(tower_http::compression::CompressionLayer::new()),
            )
        }
        other => return Err(format!("no stack {other:?}; bare or peer").into()),
    };
    routes::serve(app, port);
    Ok(())
}
