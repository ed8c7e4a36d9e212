//! The server preset around a handler answering 1 KiB of JSON that no cache
//! may store (what most API routes are), for `examples/perreq.rs`: the
//! preset with every part on (the rate limit per peer IP, with its headers),
//! and with one part off at a time, so each part's cost inside the whole is
//! the difference.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_armor::key::PeerIp;
use tower_armor::preset::{ServerPreset, ServerPresetBuilder};
use tower_armor::rate_limit::{Quota, RateLimitLayer};

pub type Req = Request<Full<Bytes>>;

/// A request from one client, its address where a server puts it.
pub fn request() -> Req {
    let mut request = Request::get("http://bench.local/items")
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    request
        .extensions_mut()
        .insert(SocketAddr::from(([127, 0, 0, 1], 40000)));
    request
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// 1 KiB of JSON, built on every call, saying nothing about caching.
pub fn handler()
-> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone {
    service_fn(|_req: Req| {
        let response = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(vec![b' '; 1024])))
            .expect("a valid response");
        ready(Ok(response))
    })
}

fn with_every_part()
-> ServerPresetBuilder<tower_armor::metrics::MetricsLayer, RateLimitLayer<PeerIp>> {
    ServerPreset::builder().rate_limit(
        RateLimitLayer::builder(Quota::per_second(100_000_000))
            .key(PeerIp)
            .build()
            .expect("a valid limit"),
    )
}

/// Runs `n` requests through a named stack: `bare`, `preset`, or
/// `preset-without-PART` (health, metrics, timeout, rate-limit, cache,
/// compression, breaker). False for an unknown name.
pub fn run(name: &str, n: u64) -> bool {
    let builder = with_every_part();
    let builder = match name {
        "bare" => {
            go(handler(), n);
            return true;
        }
        "preset" => builder,
        "preset-without-health" => builder.without_health(),
        "preset-without-metrics" => builder.without_metrics(),
        "preset-without-timeout" => builder.without_timeout(),
        "preset-without-rate-limit" => builder.without_rate_limit(),
        "preset-without-cache" => builder.without_cache(),
        "preset-without-compression" => builder.without_compression(),
        "preset-without-breaker" => builder.without_circuit_breaker(),
        _ => return false,
    };
    go(builder.build().expect("a valid preset").layer(handler()), n);
    true
}

/// Not inlined, so callgrind can count only here:
/// `COLLECT='perreq::preset_stacks::go*'`.
#[inline(never)]
fn go<S, B>(mut service: S, n: u64)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();
    for _ in 0..n {
        crate::cache_stacks::drive(&runtime, &mut service, request());
    }
}
