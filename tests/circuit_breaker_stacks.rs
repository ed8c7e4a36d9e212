//! The circuit breaker inside real stacks: an axum router, a tonic client
//! around a failing tonic server, a hyper server, and a hyper-util client
//! with one breaker per upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_armor::key::Authority;

mod support;
use support::{get_status, hyper_client, serve_axum, serve_hyper};

#[tokio::test(start_paused = true)]
async fn axum_route_layer_guards_only_its_routes() {
    let breaker = CircuitBreakerLayer::builder()
        .name("flaky")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(60), Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let counted = flaky_calls.clone();
    let router = Router::new()
        .route(
            "/flaky",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::BAD_GATEWAY, "upstream down") }
            }),
        )
        .route_layer(breaker)
        .route("/ok", get(|| async { "ok" }));
    let addr = serve_axum(router).await;
    let client = hyper_client();

    for _ in 0..3 {
        let (status, _) = get_status(&client, format!("http://{addr}/flaky")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(handle.state(), CircuitState::Open);
    let (status, headers) = get_status(&client, format!("http://{addr}/flaky")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(
        flaky_calls.load(Ordering::SeqCst),
        3,
        "refused without calling the handler"
    );
    let (status, _) = get_status(&client, format!("http://{addr}/ok")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "routes outside the route layer still flow"
    );
}

#[tokio::test(start_paused = true)]
async fn hyper_server_refuses_over_loopback_while_open() {
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30), Duration::from_secs(60))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let service = ServiceBuilder::new().layer(breaker).service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::from_static(b"boom")))
                    .unwrap(),
            )
        },
    );
    let addr = serve_hyper(service).await;
    let client = hyper_client();
    for _ in 0..2 {
        assert_eq!(
            get_status(&client, format!("http://{addr}/")).await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let (status, headers) = get_status(&client, format!("http://{addr}/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn hyper_client_gets_one_breaker_per_upstream() {
    // A live upstream, and an address where nothing listens.
    let live = serve_hyper(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"up"))))
        },
    ))
    .await;
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let breaker = CircuitBreakerLayer::builder()
        .key(Authority)
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .layer(breaker.clone())
        .service(hyper_client());
    let get = |addr: SocketAddr| {
        Request::get(format!("http://{addr}/"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // Connection errors are failures: two of them open the dead upstream's breaker.
    for _ in 0..2 {
        assert!(client.ready().await.unwrap().call(get(dead)).await.is_err());
    }
    let refused = client.ready().await.unwrap().call(get(dead)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let key = dead.to_string().parse().unwrap();
    assert_eq!(breaker.handle().state_of(&key), Some(CircuitState::Open));

    let answer = client.ready().await.unwrap().call(get(live)).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.into_body().collect().await.unwrap().to_bytes(), "up");
}

mod grpc {
    use super::*;
    use tonic::transport::Server;
    use tonic::{Code, Status};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    #[tokio::test(start_paused = true)]
    async fn tonic_client_sees_unavailable_once_open() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let served = Arc::new(AtomicUsize::new(0));
        let counted = served.clone();
        // A server failing every call with INTERNAL.
        let failing = tonic::service::InterceptorLayer::new(move |_request| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err::<tonic::Request<()>, _>(Status::internal("database down"))
        });
        tokio::spawn(
            Server::builder()
                .layer(failing)
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = support::tonic_channel(addr).await;

        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(2), Duration::from_secs(10))
            .jitter(0.0)
            .build()
            .unwrap();
        let handle = breaker.handle();
        let mut client = HealthClient::new(ServiceBuilder::new().layer(breaker).service(channel));

        for _ in 0..3 {
            let status = client
                .check(HealthCheckRequest::default())
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::Internal);
        }
        assert_eq!(handle.state(), CircuitState::Open);
        let status = client
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "2000"
        );
        assert_eq!(
            served.load(Ordering::SeqCst),
            3,
            "the open breaker spared the server"
        );
    }
}
