//! The health stacks measured by `benches/health.rs` and
//! `examples/perreq.rs`: a handler answering at once, bare or behind a
//! health layer with one on-demand readiness check (TTL 1 s).
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_armor::health::{Check, CheckResult, HealthLayer, check_fn};

pub type Req = Request<Full<Bytes>>;

/// The path of a request the health layer passes on.
pub const PASS_THROUGH: &str = "/api/items";
/// The readiness probe's path.
pub const PROBE: &str = "/readyz";

pub fn request(path: &'static str) -> Req {
    Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

pub fn handler()
-> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone {
    service_fn(|_req: Req| ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))))
}

/// The health layer around the handler, and how many times its check ran.
pub fn armor() -> (
    impl Service<Req, Response = Response<impl http_body::Body>, Error = Infallible>,
    Arc<AtomicU64>,
) {
    let runs = Arc::new(AtomicU64::new(0));
    let counter = runs.clone();
    let layer = HealthLayer::builder()
        .check(
            Check::new(
                "database",
                check_fn(move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                    async { CheckResult::pass() }
                }),
            )
            .timeout(Duration::from_millis(500))
            .cache_for(Duration::from_secs(1)),
        )
        .build()
        .expect("valid settings");
    (layer.layer(handler()), runs)
}

/// Runs `n` requests through the stack named `name`; false if there is none.
pub fn run(name: &str, n: u64) -> bool {
    #[inline(never)] // a symbol for `COLLECT=`, see benches/instructions-per-request.sh
    fn go<S: Service<Req, Error = Infallible>>(mut service: S, path: &'static str, n: u64) {
        for _ in 0..n {
            crate::common::serve(&mut service, request(path));
        }
    }
    match name {
        "bare" => go(handler(), PASS_THROUGH, n),
        "armor" => go(armor().0, PASS_THROUGH, n),
        "probe" => go(armor().0, PROBE, n),
        _ => return false,
    }
    true
}
