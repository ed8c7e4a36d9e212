//! The rate-limit layer inside real stacks: axum served over loopback with
//! connection info, a tonic server and client, and a hyper server.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_armor::rate_limit::{PeerIp, Quota, RateLimitLayer};

mod support;
use support::{get_status, hyper_client, serve_axum, serve_hyper};

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn axum_router_limits_per_peer_from_connect_info() {
    let limit = RateLimitLayer::builder(Quota::per_minute(2))
        .key(PeerIp)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(limit.clone());
    let addr = serve_axum(router).await;
    let client = hyper_client();
    for _ in 0..2 {
        assert_eq!(
            get_status(&client, format!("http://{addr}/")).await.0,
            StatusCode::OK
        );
    }
    let (status, headers) = get_status(&client, format!("http://{addr}/")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "30");
    // The one key was the loopback peer, read from axum's ConnectInfo.
    assert_eq!(limit.handle().live_keys(), 1);
}

#[tokio::test(start_paused = true)]
async fn axum_route_layers_from_one_layer_value_share_one_limit() {
    let limit = RateLimitLayer::builder(Quota::per_minute(3))
        .build()
        .unwrap();
    let router = Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .route_layer(limit.clone())
        .route("/free", get(|| async { "free" }));
    let addr = serve_axum(router).await;
    let client = hyper_client();
    let mut statuses = Vec::new();
    for path in ["/a", "/b", "/a", "/b", "/free", "/free"] {
        statuses.push(
            get_status(&client, format!("http://{addr}{path}"))
                .await
                .0
                .as_u16(),
        );
    }
    // Three between /a and /b together; /free is outside the route layer.
    assert_eq!(statuses, [200, 200, 200, 429, 200, 200]);
}

#[tokio::test(start_paused = true)]
async fn hyper_server_limits_over_loopback() {
    let limit = RateLimitLayer::builder(Quota::per_second(1))
        .key(PeerIp)
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(limit).service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"ok",
            ))))
        },
    );
    let addr = serve_hyper(service).await;
    let client = hyper_client();
    let (status, headers) = get_status(&client, format!("http://{addr}/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["ratelimit"], r#""1-per-1s";r=0;t=1"#);
    assert_eq!(
        get_status(&client, format!("http://{addr}/")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        get_status(&client, format!("http://{addr}/")).await.0,
        StatusCode::OK
    );
}

mod grpc {
    use super::*;
    use tonic::Code;
    use tonic::transport::Server;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    #[cfg(feature = "tonic")]
    #[tokio::test(start_paused = true)]
    async fn tonic_client_sees_resource_exhausted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let limit = RateLimitLayer::builder(Quota::per_minute(1))
            .key(PeerIp)
            .build()
            .unwrap();
        tokio::spawn(
            Server::builder()
                .layer(limit.clone())
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = support::tonic_channel(addr).await;
        let mut client = HealthClient::new(channel);
        client.check(HealthCheckRequest::default()).await.unwrap();
        let status = client
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.metadata().get("grpc-retry-pushback-ms").unwrap(),
            "60000"
        );
        // The key was the peer, read from tonic's TcpConnectInfo.
        assert_eq!(limit.handle().live_keys(), 1);
    }
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn axum_route_templates_get_a_budget_each() {
    use tower_armor::rate_limit::MatchedRoute;
    let limit = RateLimitLayer::builder(Quota::per_minute(2))
        .key(MatchedRoute)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/orders/{id}", get(|| async { "order" }))
        .route_layer(limit.clone());
    let addr = serve_axum(router).await;
    let client = hyper_client();
    let mut statuses = Vec::new();
    for path in ["/users/1", "/users/2", "/users/3", "/orders/1"] {
        statuses.push(
            get_status(&client, format!("http://{addr}{path}"))
                .await
                .0
                .as_u16(),
        );
    }
    // Three different users share the `/users/{id}` budget; orders have their own.
    assert_eq!(statuses, [200, 200, 429, 200]);
    assert_eq!(limit.handle().live_keys(), 2);
}
