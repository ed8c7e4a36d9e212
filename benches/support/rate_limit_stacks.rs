//! The rate-limit stacks measured by `benches/rate_limit.rs`: ours, the
//! anchors, and governor's raw checks as the floor.
//!
//! Every stack gets the same quota: one unit per 3.6 ms, with a burst of a
//! billion. Every request passes, and every key stays in use between its
//! visits (a key whose quota is whole again would be forgotten by our
//! bounded store and stored anew, which tower_governor never does), so what
//! is measured is the cost of deciding for a known key.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

pub type Req = Request<Body>;
type Answer = Result<Response<Body>, Infallible>;

/// A request from the `n`th of `keys` distinct peers.
pub fn request(n: u64, keys: u64) -> Req {
    let mut request = Request::get("/api/items")
        .body(Body::empty())
        .expect("a valid request");
    let ip = Ipv4Addr::from((n % keys) as u32 + 0x0A00_0000);
    request
        .extensions_mut()
        .insert(SocketAddr::new(IpAddr::V4(ip), 443));
    request
}

pub fn handler()
-> impl Service<Req, Response = Response<Body>, Error = Infallible, Future = Ready<Answer>> + Clone
{
    service_fn(|_req: Req| ready(Ok(Response::new(Body::empty()))))
}

pub use super::common::serve;

const BURST: u32 = 1_000_000_000;
const INTERVAL: Duration = Duration::from_micros(3600);

fn armor_quota() -> tower_armor::rate_limit::Quota {
    // 1,000,000 per hour is one unit per 3.6 ms.
    tower_armor::rate_limit::Quota::per_hour(1_000_000).burst(BURST)
}

pub fn armor_global() -> impl Service<Req, Error = Infallible> {
    tower_armor::rate_limit::RateLimitLayer::builder(armor_quota())
        .headers(false)
        .build()
        .expect("a valid limit")
        .layer(handler())
}

/// The same with the IETF `RateLimit-Policy` and `RateLimit` fields, the
/// layer's default.
pub fn armor_global_headers() -> impl Service<Req, Error = Infallible> {
    tower_armor::rate_limit::RateLimitLayer::builder(armor_quota())
        .build()
        .expect("a valid limit")
        .layer(handler())
}

pub fn armor_peer_ip(keys: usize) -> impl Service<Req, Error = Infallible> {
    tower_armor::rate_limit::RateLimitLayer::builder(armor_quota())
        .key(tower_armor::rate_limit::PeerIp)
        .headers(false)
        .key_limits(tower_armor::rate_limit::KeyLimits::new(
            2 * keys,
            tower_armor::rate_limit::KeyLimits::DEFAULT_IDLE,
        ))
        .build()
        .expect("a valid limit")
        .layer(handler())
}

fn governor_config<K: tower_governor::key_extractor::KeyExtractor>(
    key: K,
) -> Arc<tower_governor::governor::GovernorConfig<K, governor::middleware::NoOpMiddleware>> {
    Arc::new(
        tower_governor::governor::GovernorConfigBuilder::default()
            .period(INTERVAL)
            .burst_size(BURST)
            .key_extractor(key)
            .finish()
            .expect("a valid config"),
    )
}

pub fn tower_governor_global() -> impl Service<Req, Error = Infallible> {
    tower_governor::GovernorLayer::new(governor_config(
        tower_governor::key_extractor::GlobalKeyExtractor,
    ))
    .layer(handler())
}

pub fn tower_governor_smart_ip() -> impl Service<Req, Error = Infallible> {
    tower_governor::GovernorLayer::new(governor_config(
        tower_governor::key_extractor::SmartIpKeyExtractor,
    ))
    .layer(handler())
}

pub fn tower_resilience() -> impl Service<Req, Error: std::fmt::Debug> {
    tower_resilience::ratelimiter::RateLimiterLayer::builder()
        .limit_for_period(BURST as usize)
        .refresh_period(Duration::from_secs(1))
        .build()
        .expect("a valid limiter")
        .layer(handler())
}

fn plenty() -> governor::Quota {
    governor::Quota::with_period(INTERVAL)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(BURST).expect("non-zero"))
}

/// governor's direct limiter: one `check` per request, the floor for a global limit.
pub fn governor_direct() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(plenty())
}

/// governor's keyed limiter (DashMap): one `check_key` per request.
pub fn governor_keyed() -> governor::DefaultKeyedRateLimiter<IpAddr> {
    governor::RateLimiter::keyed(plenty())
}
