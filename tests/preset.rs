//! The server and client presets: each part does its job, each part can be
//! turned off (and then does nothing) without changing the preset's type,
//! and the presets drop into axum, tonic and hyper stacks.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::cache::Purge;
use tower_armor::circuit_breaker::CircuitBreakerLayer;
use tower_armor::key::Global;
use tower_armor::metrics::MetricsLayer;
use tower_armor::preset::{ClientPreset, ServerPreset};
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::reject::{Reason, Rejection};
use tower_armor::retry::RetryLayer;
use tower_armor::timeout::TimeoutLayer;

/// What the handlers below have been asked.
#[derive(Clone, Default)]
struct Calls {
    cached: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
}

/// `/` (small), `/big` (8 KiB of JSON), `/cached` (fresh for a minute) and
/// `/cached-big` (the same, 2 KiB, so it is compressed), `/slow` (a minute
/// late), `/fail` (500).
fn routes(calls: &Calls) -> Router {
    let cached = calls.cached.clone();
    let cached_big = calls.cached.clone();
    let failing = calls.failing.clone();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/big",
            get(|| async {
                let items: Vec<String> = (0..400).map(|i| format!("{{\"id\":{i:05}}}")).collect();
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    format!("[{}]", items.join(",")),
                )
            }),
        )
        .route(
            "/cached",
            get(move || {
                cached.fetch_add(1, Ordering::SeqCst);
                async { ([(CACHE_CONTROL, "max-age=60")], "stored") }
            }),
        )
        .route(
            "/cached-big",
            get(move || {
                cached_big.fetch_add(1, Ordering::SeqCst);
                async { ([(CACHE_CONTROL, "max-age=60")], "stored ".repeat(300)) }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        )
        .route(
            "/fail",
            get(move || {
                failing.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::INTERNAL_SERVER_ERROR }
            }),
        )
}

fn get_request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> Response<Bytes> {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// The server parts, one per test below.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ServerPart {
    Health,
    Metrics,
    Timeout,
    RateLimit,
    Cache,
    Compression,
    CircuitBreaker,
}

const SERVER_PARTS: [ServerPart; 7] = [
    ServerPart::Health,
    ServerPart::Metrics,
    ServerPart::Timeout,
    ServerPart::RateLimit,
    ServerPart::Cache,
    ServerPart::Compression,
    ServerPart::CircuitBreaker,
];

/// Every part on, with settings a test can see in a few requests, except
/// `off`; always the one type `ServerPreset<_, RateLimitLayer, _>`.
fn server_preset(off: Option<ServerPart>, recorder: DebuggingRecorder) -> ServerPreset {
    let builder = ServerPreset::builder()
        .name("api")
        .metrics(MetricsLayer::server().recorder(recorder).build().unwrap())
        .timeout(
            TimeoutLayer::builder(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .rate_limit(
            RateLimitLayer::builder(Quota::per_minute(5))
                .key(Global)
                .build()
                .unwrap(),
        )
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .consecutive_failures(3)
                .build()
                .unwrap(),
        );
    match off {
        None => builder,
        Some(ServerPart::Health) => builder.without_health(),
        Some(ServerPart::Metrics) => builder.without_metrics(),
        Some(ServerPart::Timeout) => builder.without_timeout(),
        Some(ServerPart::RateLimit) => builder.without_rate_limit(),
        Some(ServerPart::Cache) => builder.without_cache(),
        Some(ServerPart::Compression) => builder.without_compression(),
        Some(ServerPart::CircuitBreaker) => builder.without_circuit_breaker(),
    }
    .build()
    .unwrap()
}

fn requests_recorded(snapshotter: &Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "http.server.request.duration")
        .map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Whether `part` did its job in a fresh app behind `preset`.
async fn part_works(part: ServerPart, preset: ServerPreset, snapshotter: &Snapshotter) -> bool {
    let calls = Calls::default();
    let app = routes(&calls).layer(preset);
    match part {
        ServerPart::Health => send(&app, get_request("/livez")).await.status() == StatusCode::OK,
        ServerPart::Metrics => {
            send(&app, get_request("/")).await;
            requests_recorded(snapshotter) == 1
        }
        ServerPart::Timeout => {
            send(&app, get_request("/slow")).await.status() == StatusCode::GATEWAY_TIMEOUT
        }
        ServerPart::RateLimit => {
            let mut statuses = Vec::new();
            for _ in 0..6 {
                statuses.push(send(&app, get_request("/")).await.status());
            }
            assert!(
                statuses[..5].iter().all(|s| *s == StatusCode::OK),
                "{statuses:?}"
            );
            statuses[5] == StatusCode::TOO_MANY_REQUESTS
        }
        ServerPart::Cache => {
            let first = send(&app, get_request("/cached")).await;
            let second = send(&app, get_request("/cached")).await;
            assert_eq!(first.body().as_ref(), b"stored");
            assert_eq!(second.body().as_ref(), b"stored");
            let hit = second
                .headers()
                .get("cache-status")
                .is_some_and(|status| status.to_str().unwrap().contains("hit"));
            assert_eq!(hit, calls.cached.load(Ordering::SeqCst) == 1);
            hit
        }
        ServerPart::Compression => {
            let mut request = get_request("/big");
            request
                .headers_mut()
                .insert(ACCEPT_ENCODING, "gzip".parse().unwrap());
            let response = send(&app, request).await;
            response
                .headers()
                .get(CONTENT_ENCODING)
                .is_some_and(|coding| coding == "gzip")
        }
        ServerPart::CircuitBreaker => {
            let mut last = None;
            for _ in 0..4 {
                last = Some(send(&app, get_request("/fail")).await);
            }
            let last = last.unwrap();
            let refused = last
                .extensions()
                .get::<Rejection>()
                .is_some_and(|rejection| rejection.reason() == Reason::CircuitOpen);
            assert_eq!(refused, calls.failing.load(Ordering::SeqCst) == 3);
            refused
        }
    }
}

#[tokio::test(start_paused = true)]
async fn each_server_part_works_when_on_and_does_nothing_when_off() {
    for part in SERVER_PARTS {
        for off in [None, Some(part)] {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            let preset = server_preset(off, recorder);
            let works = part_works(part, preset, &snapshotter).await;
            assert_eq!(works, off.is_none(), "{part:?} with {off:?} off");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_other_parts_keep_working_when_one_is_off() {
    for off in SERVER_PARTS {
        for part in SERVER_PARTS.into_iter().filter(|part| *part != off) {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            let works = part_works(part, server_preset(Some(off), recorder), &snapshotter).await;
            assert!(works, "{part:?} with {off:?} off");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_server_preset() {
    let calls = Calls::default();
    let preset = ServerPreset::default();
    assert!(preset.rate_limit().is_none(), "no default limit");
    let cache = preset.cache().unwrap().handle();
    let app = routes(&calls).layer(preset);

    assert_eq!(
        send(&app, get_request("/readyz")).await.status(),
        StatusCode::OK
    );
    // Each coding the compression part produces is one cached variant,
    // however the client words its Accept-Encoding.
    for coding in ["gzip", "br", "gzip, deflate", "br;q=0.9, gzip;q=0.1"] {
        let mut request = get_request("/cached-big");
        request
            .headers_mut()
            .insert(ACCEPT_ENCODING, coding.parse().unwrap());
        send(&app, request).await;
    }
    assert_eq!(
        calls.cached.load(Ordering::SeqCst),
        2,
        "gzip stored once, br once"
    );
    let uri: http::Uri = "/cached-big".parse().unwrap();
    let purged = cache.purge(Purge::Key(cache.key_of(&uri)), false).await;
    assert_eq!(purged, 2, "both variants");
    send(&app, get_request("/cached-big")).await;
    assert_eq!(
        calls.cached.load(Ordering::SeqCst),
        3,
        "purged through the handle"
    );
    // The default breaker counts the failures of the whole service.
    for _ in 0..20 {
        send(&app, get_request("/fail")).await;
    }
    assert!(
        calls.failing.load(Ordering::SeqCst) < 20,
        "the breaker opened"
    );
}

#[tokio::test]
async fn a_cache_given_to_the_preset_is_kept_as_given() {
    use tower_armor::cache::CacheLayer;

    let calls = Calls::default();
    let preset = ServerPreset::builder()
        .cache(CacheLayer::builder().name("mine").build().unwrap())
        .build()
        .unwrap();
    let app = routes(&calls).layer(preset);
    for coding in ["gzip", "gzip, deflate"] {
        let mut request = get_request("/cached-big");
        request
            .headers_mut()
            .insert(ACCEPT_ENCODING, coding.parse().unwrap());
        send(&app, request).await;
    }
    // Without the preset's normaliser, `Vary: Accept-Encoding` values are
    // compared as sent.
    assert_eq!(calls.cached.load(Ordering::SeqCst), 2);
}

/// A tonic server behind the server preset, serving grpc.health.v1.
async fn serve_tonic(preset: ServerPreset) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(preset)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

#[tokio::test]
async fn server_preset_in_a_tonic_server() {
    let preset = ServerPreset::builder()
        .rate_limit(
            RateLimitLayer::builder(Quota::per_minute(2))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let addr = serve_tonic(preset).await;
    let mut client = HealthClient::new(support::tonic_channel(addr).await);
    for _ in 0..2 {
        let response = client.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(response.into_inner().status, 1, "SERVING");
    }
    let refused = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
}

#[tokio::test]
async fn server_preset_in_axum_and_hyper_servers() {
    let calls = Calls::default();
    let axum_addr = support::serve_axum(routes(&calls).layer(ServerPreset::default())).await;
    let service = ServiceBuilder::new()
        .layer(ServerPreset::default())
        .service_fn(|_request: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                b"hyper",
            ))))
        });
    let hyper_addr = support::serve_hyper(service).await;
    let client = support::hyper_client();
    for addr in [axum_addr, hyper_addr] {
        let (status, headers) = support::get_status(&client, format!("http://{addr}/livez")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[CACHE_CONTROL], "no-store",
            "the health route answered"
        );
        let (status, _) = support::get_status(&client, format!("http://{addr}/")).await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// An HTTP origin that answers 503 to the first `failures` requests, then 200.
async fn flaky_origin(failures: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    (support::serve_axum(app).await, seen)
}

fn hyper_util_client_of<B>()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn client_preset_retries_through_a_hyper_util_client() {
    let (addr, seen) = flaky_origin(1).await;
    let preset = ClientPreset::default();
    let breakers = preset.circuit_breaker().unwrap().handle();
    let mut client = ServiceBuilder::new()
        .layer(preset)
        .service(hyper_util_client_of());
    let request = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one retry");
    let upstreams: Vec<String> = breakers
        .states()
        .into_iter()
        .map(|(key, _)| key.to_string())
        .collect();
    assert_eq!(upstreams, [addr.to_string()], "a breaker per upstream");
}

#[tokio::test]
async fn client_preset_without_retry_makes_one_attempt() {
    let (addr, seen) = flaky_origin(usize::MAX).await;
    let mut client = ServiceBuilder::new()
        .layer(ClientPreset::builder().without_retry().build().unwrap())
        .service(hyper_util_client_of());
    let request = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // The default retries the same failure.
    let (addr, seen) = flaky_origin(usize::MAX).await;
    let mut client = ServiceBuilder::new()
        .layer(ClientPreset::default())
        .service(hyper_util_client_of());
    let request = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn client_preset_over_a_tonic_channel_keys_its_breaker_by_the_named_upstream() {
    let addr = serve_tonic(ServerPreset::default()).await;
    let preset = ClientPreset::builder()
        .upstream("inventory", 50051)
        .retry(
            RetryLayer::builder()
                .inner_body::<tonic::body::Body>()
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let breakers = preset.circuit_breaker().unwrap().handle();
    let stack = ServiceBuilder::new()
        .layer(preset)
        .service(support::tonic_channel(addr).await);
    let mut client = HealthClient::new(stack);
    let response = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(response.into_inner().status, 1, "SERVING");
    let upstreams: Vec<String> = breakers
        .states()
        .into_iter()
        .map(|(key, _)| key.to_string())
        .collect();
    assert_eq!(upstreams, ["inventory:50051"]);
}

#[test]
fn an_upstream_that_is_not_an_authority_fails_at_build() {
    let error = ClientPreset::builder()
        .upstream("not a host", 80)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("not a host"), "{error}");
}
