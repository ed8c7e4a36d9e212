//! The load bench's server: the shared routes behind one named stack of
//! ours, over loopback; and a gRPC mode (a tonic server, bare or behind the
//! server preset) with the small client loop that loads it.
//!
//! ```text
//! load_server http STACK PORT          # serves until killed
//! load_server grpc STACK PORT          # tonic, grpc.health.v1
//! load_server grpc-load ADDR CONNECTIONS SECONDS   # prints "requests/s p99_ms"
//! ```
//!
//! Run by `benches/load/run`, which pins the server and the load generator
//! to different cores; see that script.

#[path = "routes.rs"]
mod routes;

use std::time::{Duration, Instant};

use axum::Router;
use tower_armor::cache::CacheLayer;
use tower_armor::circuit_breaker::CircuitBreakerLayer;
use tower_armor::compression::CompressionLayer;
use tower_armor::health::HealthLayer;
use tower_armor::key::PeerIp;
use tower_armor::metrics::{MetricsLayer, prometheus};
use tower_armor::preset::ServerPreset;
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::timeout::TimeoutLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The stacks, by name.
const STACKS: [&str; 11] = [
    "bare",
    "timeout",
    "rate-limit",
    "rate-limit-lean",
    "breaker",
    "compression",
    "cache",
    "metrics",
    "health",
    "ours-4",
    "preset",
];

/// A limit no load here reaches: every request is counted, none refused.
fn rate_limit(headers: bool) -> Result<RateLimitLayer<PeerIp>, BoxError> {
    Ok(RateLimitLayer::builder(Quota::per_second(100_000_000))
        .key(PeerIp)
        .headers(headers)
        .build()?)
}

/// The preset as the bench's goal has it: every layer on, the rate limit
/// with its IETF headers.
fn preset() -> Result<ServerPreset<MetricsLayer, RateLimitLayer<PeerIp>>, BoxError> {
    Ok(ServerPreset::builder()
        .rate_limit(rate_limit(true)?)
        .build()?)
}

fn app(stack: &str) -> Result<Router, BoxError> {
    let routes = routes::routes();
    Ok(match stack {
        "bare" => routes,
        "timeout" => routes.layer(TimeoutLayer::builder(Duration::from_secs(30)).build()?),
        "rate-limit" => routes.layer(rate_limit(true)?),
        "rate-limit-lean" => routes.layer(rate_limit(false)?),
        "breaker" => routes.layer(CircuitBreakerLayer::default()),
        "compression" => routes.layer(CompressionLayer::default()),
        "cache" => routes.layer(CacheLayer::default()),
        "metrics" => routes.layer(MetricsLayer::server().build()?),
        "health" => routes.layer(HealthLayer::default()),
        // What the issue's first table measured: the four layers a user
        // would stack to replace the peer stack.
        "ours-4" => routes.layer(
            tower::ServiceBuilder::new()
                .layer(TimeoutLayer::builder(Duration::from_secs(30)).build()?)
                .layer(rate_limit(true)?)
                .layer(CircuitBreakerLayer::default())
                .layer(CompressionLayer::default()),
        ),
        "preset" => routes.layer(preset()?),
        other => return Err(format!("no stack {other:?}; one of {STACKS:?}").into()),
    })
}

fn serve_grpc(stack: &str, port: u16) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], port).into())
            .map_err(|error| -> BoxError { error.to_string().into() })?;
        match stack {
            "bare" => {
                tonic::transport::Server::builder()
                    .add_service(health)
                    .serve_with_incoming(incoming)
                    .await?
            }
            "preset" => {
                tonic::transport::Server::builder()
                    .layer(preset()?)
                    .add_service(health)
                    .serve_with_incoming(incoming)
                    .await?
            }
            other => return Err(format!("no gRPC stack {other:?}; bare or preset").into()),
        }
        Ok(())
    })
}

/// Keeps `connections` unary calls in flight on as many HTTP/2 connections
/// for `seconds`; prints requests per second and the p99 in milliseconds.
fn grpc_load(addr: &str, connections: usize, seconds: u64) -> Result<(), BoxError> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut callers = Vec::new();
        for _ in 0..connections {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?;
            callers.push(tokio::spawn(async move {
                let mut client = HealthClient::new(channel);
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    if client.check(HealthCheckRequest::default()).await.is_ok() {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for caller in callers {
            latencies.extend(caller.await?);
        }
        latencies.sort();
        let p99 = latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default();
        println!(
            "{:.0} {:.3}",
            latencies.len() as f64 / seconds as f64,
            p99.as_secs_f64() * 1000.0
        );
        Ok(())
    })
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, BoxError> {
        args.get(i).map(String::as_str).ok_or_else(|| {
            "usage: load_server http|grpc STACK PORT, or grpc-load ADDR CONNECTIONS SECONDS".into()
        })
    };
    // Installed for every stack, as a service in production would have it;
    // only the stacks with metrics record into it.
    let (recorder, _scrape) = prometheus::builder().build()?;
    metrics::set_global_recorder(recorder)?;
    match arg(0)? {
        "http" => {
            let app = app(arg(1)?)?;
            routes::serve(app, arg(2)?.parse()?);
            Ok(())
        }
        "grpc" => serve_grpc(arg(1)?, arg(2)?.parse()?),
        "grpc-load" => grpc_load(arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}
