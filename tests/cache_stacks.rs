//! The cache in the stacks users put it in, over loopback: an axum Router,
//! a hyper server, a hyper-util client (private mode), and tonic, where
//! gRPC calls are never cached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_armor::ServiceBuilderExt;
use tower_armor::cache::{CacheLayer, CacheMode};

mod support;

async fn fetch(client: &support::Client, url: &str) -> (StatusCode, http::HeaderMap, String) {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn cache_status(headers: &http::HeaderMap) -> &str {
    headers
        .get("cache-status")
        .map_or("", |value| value.to_str().unwrap())
}

#[tokio::test]
async fn axum_router_serves_hits_and_leaves_other_routes_alone() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = Router::new()
        .route(
            "/page",
            get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [("cache-control", "public, max-age=60")],
                        format!("page {n}"),
                    )
                }
            }),
        )
        .route(
            "/private",
            get(|| async { ([("cache-control", "private, max-age=60")], "mine") }),
        )
        .layer(
            ServiceBuilder::new().armor_cache(CacheLayer::builder().name("axum").build().unwrap()),
        );
    let addr = support::serve_axum(router).await;
    let client = support::hyper_client();

    let (status, headers, body) = fetch(&client, &format!("http://{addr}/page")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "page 1"));
    assert!(cache_status(&headers).starts_with("axum; fwd=uri-miss; fwd-status=200; stored"));
    let (_, headers, body) = fetch(&client, &format!("http://{addr}/page")).await;
    assert_eq!(body, "page 1");
    assert!(cache_status(&headers).starts_with("axum; hit"));
    assert_eq!(headers["age"], "0");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (_, headers, _) = fetch(&client, &format!("http://{addr}/private")).await;
    assert_eq!(
        cache_status(&headers),
        "axum; fwd=uri-miss; fwd-status=200; detail=private"
    );
}

/// A hyper origin answering `body` with these fields, and how many
/// requests reached it.
fn counted_origin(
    fields: &'static [(&'static str, &'static str)],
    body: Bytes,
) -> (
    impl tower::Service<
        Request<hyper::body::Incoming>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = service_fn(move |_: Request<hyper::body::Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::builder();
        for (name, value) in fields {
            response = response.header(*name, *value);
        }
        let response = response.body(Full::new(body.clone())).unwrap();
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    (origin, calls)
}

#[tokio::test]
async fn hyper_server_streams_a_miss_and_replays_it() {
    let fields = &[("cache-control", "max-age=60"), ("etag", "\"1\"")];
    let (origin, calls) = counted_origin(fields, Bytes::from(vec![b'z'; 100_000]));
    let service = ServiceBuilder::new()
        .armor_cache(CacheLayer::new())
        .service(origin);
    let addr = support::serve_hyper(service).await;
    let client = support::hyper_client();
    let url = format!("http://{addr}/big");
    let (_, _, first) = fetch(&client, &url).await;
    let (_, headers, second) = fetch(&client, &url).await;
    assert_eq!(first.len(), 100_000);
    assert_eq!(first, second);
    assert!(cache_status(&headers).contains("hit"));
    // A conditional request is answered by the cache.
    let conditional = Request::get(&url)
        .header("if-none-match", "\"1\"")
        .body(Full::default())
        .unwrap();
    let response = client.request(conditional).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_hyper_util_client_keeps_a_private_cache() {
    let fields = &[("cache-control", "private, max-age=60")];
    let (origin, calls) = counted_origin(fields, Bytes::from_static(b"just for you"));
    let addr: SocketAddr = support::serve_hyper(origin).await;
    let cache = CacheLayer::builder()
        .mode(CacheMode::Private)
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .armor_cache(cache)
        .service(support::hyper_client());
    for _ in 0..3 {
        let request = Request::get(format!("http://{addr}/me"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "just for you");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tonic_calls_are_never_cached() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        Server::builder()
            .layer(ServiceBuilder::new().armor_cache(CacheLayer::new()))
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = support::tonic_channel(addr).await;
    let mut client = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: "svc".into(),
    };
    let first = client.check(check()).await.unwrap();
    assert_eq!(first.get_ref().status(), ServingStatus::Serving);
    assert!(first.metadata().get("cache-status").is_none());
    reporter
        .set_service_status("svc", tonic_health::ServingStatus::NotServing)
        .await;
    let second = client.check(check()).await.unwrap();
    assert_eq!(second.get_ref().status(), ServingStatus::NotServing);
}

/// Reads a response: status, headers and body bytes.
async fn read<B>(response: Response<B>) -> (StatusCode, http::HeaderMap, Bytes)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn above_compression_each_coding_is_compressed_once_and_served_many_times() {
    use http::header::ACCEPT_ENCODING;
    use tower_armor::cache::VaryNormalizer;
    use tower_armor::compression::{CompressionLayer, Encoding};

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let handler = service_fn(move |_: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            let response = Response::builder()
                .header("content-type", "application/json")
                .header("cache-control", "max-age=60")
                .body(Full::new(Bytes::from(format!(
                    "[{}]",
                    "1,".repeat(2000) + "1"
                ))))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let cache = CacheLayer::builder()
        .vary_normalizer(
            ACCEPT_ENCODING,
            VaryNormalizer::negotiated_coding(["br", "gzip"]),
        )
        .build()
        .unwrap();
    let compression = CompressionLayer::builder()
        .encodings([Encoding::Brotli, Encoding::Gzip])
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .armor_cache(cache)
        .armor_compression(compression)
        .service(handler);
    let mut codings = Vec::new();
    for accept in [
        "gzip, br",
        "br",
        "br;q=1, gzip;q=0.8",
        "gzip",
        "gzip, deflate",
        "identity",
    ] {
        let request = Request::get("http://app.example/data")
            .header(ACCEPT_ENCODING, accept)
            .body(Full::default())
            .unwrap();
        let (status, headers, body) =
            read(service.ready().await.unwrap().call(request).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());
        let coding = headers
            .get("content-encoding")
            .map_or("identity", |value| value.to_str().unwrap())
            .to_owned();
        codings.push((coding, cache_status(&headers).contains("hit")));
    }
    let expected = [
        ("br", false),
        ("br", true),
        ("br", true),
        ("gzip", false),
        ("gzip", true),
        ("identity", false),
    ];
    let codings: Vec<(&str, bool)> = codings
        .iter()
        .map(|(coding, hit)| (coding.as_str(), *hit))
        .collect();
    assert_eq!(codings, expected);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn below_the_cache_an_open_breaker_is_answered_stale_if_error() {
    use std::time::Duration;
    use tower_armor::circuit_breaker::CircuitBreakerLayer;

    let failing = Arc::new(AtomicUsize::new(0));
    let switch = failing.clone();
    let handler = service_fn(move |_: Request<Full<Bytes>>| {
        let status = if switch.load(Ordering::SeqCst) == 1 {
            500
        } else {
            200
        };
        async move {
            let response = Response::builder()
                .status(status)
                .header("cache-control", "max-age=1, stale-if-error=600")
                .body(Full::new(Bytes::from_static(b"catalogue")))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = ServiceBuilder::new()
        .armor_cache(CacheLayer::new())
        .armor_circuit_breaker(breaker)
        .service(handler);
    let get = || {
        Request::get("http://app.example/catalogue")
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    read(service.ready().await.unwrap().call(get()).await.unwrap()).await;
    failing.store(1, Ordering::SeqCst);
    // Stale now: each request asks the origin, fails, and gets the stale copy,
    // until the breaker opens and refuses without asking.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(2)).await;
        let (status, headers, body) =
            read(service.ready().await.unwrap().call(get()).await.unwrap()).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"catalogue"[..]));
        assert!(cache_status(&headers).contains("fwd=stale"), "{headers:?}");
    }
    assert_eq!(
        handle.state(),
        tower_armor::circuit_breaker::CircuitState::Open
    );
    let (_, headers, _) = read(service.ready().await.unwrap().call(get()).await.unwrap()).await;
    assert!(cache_status(&headers).contains("fwd-status=503"));
}
