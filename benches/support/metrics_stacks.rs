//! The request-metrics stacks measured by `benches/metrics.rs` and
//! `examples/perreq.rs`: ours and the anchors around one handler answering
//! a small body at once, each request read to the end of its body (where
//! ours records). All report to the one recorder [`install`] makes global,
//! a `metrics-exporter-prometheus` recorder, as axum-prometheus's `pair()`
//! would install.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_armor::metrics::{MetricsLayer, NoRoute, prometheus};

pub type Req = Request<Body>;
type Answer = Result<Response<Body>, Infallible>;

pub const STACKS: [&str; 5] = [
    "bare",
    "armor",
    "armor-own-recorder",
    "axum-prometheus",
    "tower-http-trace",
];

/// Installs a `tracing` subscriber that formats every event at `DEBUG` and
/// up (tower-http's `TraceLayer` logs at `DEBUG`) and throws the text away:
/// the cost of logging each request, without the cost of a terminal.
pub fn install_logging() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .init();
}

pub fn request() -> Req {
    Request::get("/api/items")
        .body(Body::empty())
        .expect("a valid request")
}

pub fn handler()
-> impl Service<Req, Response = Response<Body>, Error = Infallible, Future = Ready<Answer>> + Clone
{
    service_fn(|_req: Req| ready(Ok(Response::new(Body::from("hello")))))
}

/// Installs the process's global recorder: the exporter's own, with the
/// OpenTelemetry duration buckets for every histogram (so no stack pays for
/// a summary), and returns its handle. Call once.
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&prometheus::DURATION_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the first recorder");
    handle
}

/// Ours, reporting to the current (global) recorder, with no route (the
/// request carries no `MatchedPath`; axum-prometheus falls back to the path).
pub fn armor() -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error: std::fmt::Debug>>,
    Error = Infallible,
> {
    MetricsLayer::server()
        .route(NoRoute)
        .build()
        .expect("valid settings")
        .layer(handler())
}

/// Ours, recording into this crate's Prometheus recorder given to the layer
/// (its self-run upkeep included).
pub fn armor_own_recorder() -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error: std::fmt::Debug>>,
    Error = Infallible,
> {
    let (recorder, _scrape) = prometheus::builder().build().expect("valid settings");
    MetricsLayer::server()
        .route(NoRoute)
        .recorder(recorder)
        .build()
        .expect("valid settings")
        .layer(handler())
}

/// axum-prometheus 0.10's layer, reporting to the global recorder.
pub fn axum_prometheus() -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error: std::fmt::Debug>>,
    Error = Infallible,
> {
    axum_prometheus::BaseMetricLayer::new().layer(handler())
}

/// tower-http's `TraceLayer` with its default classifier: the "just log it"
/// baseline (its events go to whatever subscriber is installed).
pub fn tower_http_trace() -> impl Service<
    Req,
    Response = Response<impl http_body::Body<Error: std::fmt::Debug>>,
    Error = Infallible,
> {
    tower_http::trace::TraceLayer::new_for_http().layer(handler())
}

/// Sends one request and reads its body to the end.
#[inline]
pub fn serve<S, B>(service: &mut S, request: Req)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))),
        "the stack is always ready"
    );
    let Poll::Ready(Ok(response)) = pin!(service.call(request)).poll(&mut cx) else {
        panic!("the stack answers at once")
    };
    let mut body = pin!(response.into_body());
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => drop(std::hint::black_box(frame.expect("a frame"))),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("the body is complete at once"),
        }
    }
}

/// Runs `n` requests through the stack named `name`; false if there is none.
pub fn run(name: &str, n: u64) -> bool {
    #[inline(never)] // a symbol for `COLLECT=`, see benches/instructions-per-request.sh
    fn go<S, B>(mut service: S, n: u64)
    where
        S: Service<Req, Response = Response<B>>,
        S::Error: std::fmt::Debug,
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        for _ in 0..n {
            serve(&mut service, request());
        }
    }
    match name {
        "bare" => go(handler(), n),
        "armor" => go(armor(), n),
        "armor-own-recorder" => go(armor_own_recorder(), n),
        "axum-prometheus" => go(axum_prometheus(), n),
        "tower-http-trace" => go(tower_http_trace(), n),
        _ => return false,
    }
    true
}

/// A recorder of this crate holding `sets` label sets of request durations
/// (routes × statuses, a few samples each), and its scrape route: what the
/// demo's `/metrics` renders at that size.
pub fn scrape_with_label_sets(sets: usize) -> prometheus::Scrape {
    let (recorder, scrape) = prometheus::builder().build().expect("valid settings");
    let statuses = [200u16, 201, 204, 400, 404, 409, 429, 500, 503, 504];
    let routes = sets.div_ceil(statuses.len());
    for route in 0..routes {
        for status in statuses.iter().take(sets - route * statuses.len()) {
            let path = format!("/api/v1/resource{route}/{{id}}");
            let layer = MetricsLayer::server()
                .recorder(recorder.clone())
                .route(tower_armor::metrics::route_fn(move |_| {
                    Some(path.clone().into())
                }))
                .build()
                .expect("valid settings");
            let status = *status;
            let mut service = layer.layer(service_fn(move |_req: Req| {
                let mut response = Response::new(Body::from(Bytes::from_static(b"hello")));
                *response.status_mut() = http::StatusCode::from_u16(status).expect("a status");
                ready(Ok::<_, Infallible>(response))
            }));
            for _ in 0..3 {
                serve(&mut service, request());
            }
        }
    }
    scrape
}
