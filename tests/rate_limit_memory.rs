//! A million distinct clients cannot make the limiter's memory grow without
//! bound. Live heap bytes are counted by this test binary's allocator.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::rate_limit::{KeyLimits, PeerIp, Quota, RateLimitLayer};

const DEFAULT_MAX_KEYS: usize = KeyLimits::DEFAULT_MAX_KEYS;

#[path = "support/live_bytes.rs"]
mod live_bytes;

#[global_allocator]
static GLOBAL: live_bytes::Counting = live_bytes::Counting;

/// The stated bound: 16 MiB of limiter state for the default cap of 100,000
/// IP keys (about 60 bytes of table per key, with hash-table slack).
const BOUND: isize = 16 << 20;

fn request_from(n: u32) -> Request<()> {
    let mut request = Request::new(());
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(n)), 443);
    request.extensions_mut().insert(peer);
    request
}

/// Sends one request from each address in `range`; returns how many passed.
async fn flood<S>(service: &mut S, range: std::ops::Range<u32>) -> u32
where
    S: Service<
            Request<()>,
            Response = Response<tower_armor::body::ArmorBody<()>>,
            Error = Infallible,
        >,
{
    let mut allowed = 0;
    for n in range {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request_from(n))
            .await
            .unwrap();
        allowed += u32::from(response.status() == StatusCode::OK);
    }
    allowed
}

#[tokio::test(start_paused = true)]
async fn a_million_distinct_keys_stay_under_the_bound() {
    let layer = RateLimitLayer::builder(Quota::per_second(1))
        .key(PeerIp)
        .headers(false)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let before = live_bytes::live();

    // A flood of a million new addresses, all within one instant: no key is
    // idle yet, so the cap is what holds.
    let allowed = flood(&mut service, 0..1_000_000).await;
    let grown = live_bytes::live() - before;
    eprintln!(
        "after 1,000,000 keys: {} live keys in {grown} bytes",
        layer.handle().live_keys()
    );
    assert_eq!(layer.handle().live_keys(), DEFAULT_MAX_KEYS);
    // Keys past the cap shared one overflow bucket: one more request passed.
    assert_eq!(allowed, DEFAULT_MAX_KEYS as u32 + 1);
    assert!(grown < BOUND, "the limiter grew by {grown} bytes");

    // Once those keys are idle, a second flood of new addresses replaces
    // them a shard at a time instead of adding to them.
    tokio::time::advance(KeyLimits::DEFAULT_IDLE + Duration::from_secs(2)).await;
    let allowed = flood(&mut service, 1_000_000..2_000_000).await;
    let grown = live_bytes::live() - before;
    eprintln!(
        "after 2,000,000 keys: {} live keys in {grown} bytes",
        layer.handle().live_keys()
    );
    assert!(layer.handle().live_keys() <= DEFAULT_MAX_KEYS);
    assert!(
        allowed > DEFAULT_MAX_KEYS as u32 / 2,
        "only {allowed} new clients got through"
    );
    assert!(grown < BOUND, "the limiter grew by {grown} bytes");

    // And all of it can be handed back.
    tokio::time::advance(KeyLimits::DEFAULT_IDLE + Duration::from_secs(2)).await;
    layer.handle().evict_idle();
    assert_eq!(layer.handle().live_keys(), 0);
    let _ = service.ready().await.unwrap();
}
