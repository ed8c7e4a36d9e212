//! The cache stacks measured by `benches/cache.rs` and `examples/perreq.rs`:
//! a handler that builds a response of a given size with
//! `Cache-Control: max-age=3600`, bare, behind our cache, or behind
//! http-cache-tower with its moka manager; and a driver that reads each
//! response to its end (a miss is stored as its body is read).
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor::cache::{CacheLayer, MemoryStore};

pub type Req = Request<Full<Bytes>>;

/// The URL every hit asks for (absolute: http-cache keys on full URLs).
pub const URL: &str = "http://bench.local/items/1";

pub fn request(url: &str) -> Req {
    Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

/// A URL no request asked for before: a miss.
pub fn fresh_url() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "http://bench.local/items/{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// Builds a `size`-byte response on every call, as an uncached handler does.
pub fn handler(
    size: usize,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone
+ Send
+ 'static {
    handler_saying(size, "max-age=3600")
}

/// A handler whose answers a cache may not store (no freshness, no
/// validator): what most routes of an API are.
pub fn uncacheable(
    size: usize,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone
+ Send
+ 'static {
    handler_saying(size, "no-cache, private")
}

fn handler_saying(
    size: usize,
    cache_control: &'static str,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone
+ Send
+ 'static {
    service_fn(move |_req: Req| {
        let response = Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", cache_control)
            .body(Full::new(Bytes::from(vec![b'x'; size])))
            .expect("a valid response");
        ready(Ok(response))
    })
}

/// Our cache around the handler, in a store small enough that a stream of
/// misses keeps evicting (memory stays flat however long a bench runs).
pub fn armor(
    size: usize,
) -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error = tower_armor::BoxError>>,
    Error = Infallible,
> + Clone {
    cached(handler(size))
}

/// Our cache around `handler`.
pub fn cached<S>(
    handler: S,
) -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error = tower_armor::BoxError>>,
    Error = Infallible,
> + Clone
where
    S: Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
        + Clone
        + Send
        + 'static,
{
    let store = MemoryStore::builder().max_bytes(32 << 20).build();
    CacheLayer::builder()
        .store(store)
        .build()
        .expect("valid settings")
        .layer(handler)
}

/// http-cache-tower (1.0.0-alpha.9) with its moka manager: the anchor.
pub fn anchor(
    size: usize,
) -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error = impl std::fmt::Debug>>,
    Error = impl std::fmt::Debug,
> + Clone {
    http_cache_tower::HttpCacheLayer::new(http_cache::MokaManager::default()).layer(handler(size))
}

/// Sends `request` and reads the body to its end; returns its length.
pub fn drive<S, B>(runtime: &tokio::runtime::Runtime, service: &mut S, request: Req) -> usize
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .len()
    })
}

/// Runs `n` requests through a named stack; false for an unknown name.
/// Names: `bare-1k`, `hit-1k`, `anchor-hit-1k`, `miss-1k` (and `-64k`);
/// `uncacheable-1k` and `pass-1k`: a handler whose answers may not be
/// stored, bare and behind the cache.
pub fn run(name: &str, n: u64) -> bool {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _context = runtime.enter();
    let Some((stack, size)) = name.rsplit_once('-') else {
        return false;
    };
    let size = match size {
        "1k" => 1 << 10,
        "64k" => 64 << 10,
        _ => return false,
    };
    fn go<S, B>(runtime: &tokio::runtime::Runtime, mut service: S, n: u64, url: impl Fn() -> String)
    where
        S: Service<Req, Response = Response<B>>,
        S::Error: std::fmt::Debug,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        for _ in 0..n {
            drive(runtime, &mut service, request(&url()));
        }
    }
    match stack {
        "bare" => go(&runtime, handler(size), n, || URL.to_owned()),
        "hit" => go(&runtime, armor(size), n, || URL.to_owned()),
        "anchor-hit" => go(&runtime, anchor(size), n, || URL.to_owned()),
        "miss" => go(&runtime, armor(size), n, fresh_url),
        "anchor-miss" => go(&runtime, anchor(size), n, fresh_url),
        "uncacheable" => go(&runtime, uncacheable(size), n, || URL.to_owned()),
        "pass" => go(&runtime, cached(uncacheable(size)), n, || URL.to_owned()),
        _ => return false,
    }
    true
}
