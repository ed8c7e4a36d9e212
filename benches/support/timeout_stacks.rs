//! The timeout stacks measured by `benches/timeout.rs` and counted by
//! `examples/perreq.rs`, defined once so both measure the same thing.
//!
//! Every stack wraps the same handler, whose future is ready at once, so what
//! is measured is the layer's own cost per request: building the request,
//! `poll_ready`, `call`, one poll of the response future and dropping it.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};

pub type Req = Request<Full<Bytes>>;

/// The stacks, by the name the bench and `perreq` use.
pub const STACKS: [&str; 5] = [
    "bare",
    "armor",
    "armor-no-deadline-ext",
    "tower",
    "tower-http",
];

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The request every stack serves: a GET, or a POST of JSON (gRPC detection
/// only looks at the headers of POST requests, so both are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    Post,
}

pub fn request(kind: Kind) -> Req {
    let method = if kind == Kind::Post { "POST" } else { "GET" };
    Request::builder()
        .method(method)
        .uri("/api/items?page=2")
        .header("content-type", "application/json")
        .header("accept", "*/*")
        .header("user-agent", "bench/1.0")
        .body(Full::default())
        .expect("a valid request")
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

fn handler()
-> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready<Answer>>
+ Clone {
    service_fn(|_req: Req| ready(Ok(Response::new(Full::default()))))
}

pub use super::common::serve;

/// Builds a request of `kind` and sends it through `service`.
#[inline]
pub fn one_request<S>(service: &mut S, kind: Kind)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    serve(service, request(kind));
}

/// Runs `n` requests through the stack called `name` (`armor`, or
/// `armor:post` for POST requests); `false` if there is no such stack.
/// Must run inside a Tokio runtime context (the timeouts read its clock).
pub fn run(name: &str, n: u64) -> bool {
    let (name, kind) = match name.strip_suffix(":post") {
        Some(name) => (name, Kind::Post),
        None => (name, Kind::Get),
    };
    let go = |mut service: Box<dyn FnMut(Kind)>| {
        for _ in 0..n {
            service(kind);
        }
    };
    fn each<S: Service<Req> + 'static>(mut service: S) -> Box<dyn FnMut(Kind)>
    where
        S::Error: std::fmt::Debug,
    {
        Box::new(move |kind| one_request(&mut service, kind))
    }
    match name {
        "bare" => go(each(handler())),
        "armor" => go(each(armor(true).layer(handler()))),
        "armor-no-deadline-ext" => go(each(armor(false).layer(handler()))),
        "tower" => go(each(tower_timeout().layer(handler()))),
        "tower-http" => go(each(tower_http_timeout().layer(handler()))),
        _ => return false,
    }
    true
}

pub fn armor(deadline_extension: bool) -> tower_armor::timeout::TimeoutLayer {
    tower_armor::timeout::TimeoutLayer::builder(TIMEOUT)
        .deadline_extension(deadline_extension)
        .build()
        .expect("a valid timeout")
}

pub fn tower_timeout() -> tower::timeout::TimeoutLayer {
    tower::timeout::TimeoutLayer::new(TIMEOUT)
}

pub fn tower_http_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, TIMEOUT)
}

pub fn bare() -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    handler()
}
