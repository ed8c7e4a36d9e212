//! The timeout layer inside real stacks: an axum `Router`, a hyper server with
//! a hyper-util client over loopback, and a tonic server and client.
//!
//! Time is paused: Tokio jumps the clock forward whenever every task is idle,
//! so a 30 s handler and a 1 s deadline take no real time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_armor::reject::{Reason, Rejection};
use tower_armor::timeout::TimeoutLayer;

mod support;
use support::{hyper_client, serve_hyper};

fn timeout(after: Duration) -> TimeoutLayer {
    TimeoutLayer::builder(after).name("stack").build().unwrap()
}

async fn slow() -> &'static str {
    sleep(Duration::from_secs(30)).await;
    "slow"
}

async fn fast() -> &'static str {
    "fast"
}

async fn get_status(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn axum_router_layer_times_out_slow_routes_only() {
    // `Router::layer` needs an `Infallible` error: no HandleErrorLayer here.
    let router = Router::new()
        .route("/slow", get(slow))
        .route("/fast", get(fast))
        .layer(timeout(Duration::from_secs(1)));

    let (status, body) = get_status(&router, "/fast").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "fast"));

    let started = Instant::now();
    let (status, body) = get_status(&router, "/slow").await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["reason"], "timed_out");
}

#[tokio::test(start_paused = true)]
async fn axum_route_layer_covers_only_the_routes_before_it() {
    let router = Router::new()
        .route("/guarded", get(slow))
        .route_layer(timeout(Duration::from_secs(1)))
        .route("/unguarded", get(slow));

    assert_eq!(
        get_status(&router, "/guarded").await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        get_status(&router, "/unguarded").await,
        (StatusCode::OK, "slow".to_string())
    );
    // route_layer leaves unmatched paths alone.
    assert_eq!(
        get_status(&router, "/missing").await.0,
        StatusCode::NOT_FOUND
    );
}

async fn slow_hyper_handler(
    request: Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let delay = if request.uri().path() == "/slow" {
        30
    } else {
        0
    };
    sleep(Duration::from_secs(delay)).await;
    Ok(http::Response::new(Full::new(Bytes::from_static(
        b"answered",
    ))))
}

#[tokio::test(start_paused = true)]
async fn hyper_server_answers_504_over_loopback() {
    let service = ServiceBuilder::new()
        .layer(timeout(Duration::from_secs(2)))
        .service_fn(slow_hyper_handler);
    let addr = serve_hyper(service).await;
    let client = hyper_client();

    let fast = client
        .get(format!("http://{addr}/fast").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(
        fast.into_body().collect().await.unwrap().to_bytes(),
        "answered"
    );

    let slow = client
        .get(format!("http://{addr}/slow").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.headers()["content-type"], "application/problem+json");
}

#[tokio::test(start_paused = true)]
async fn hyper_util_client_stack_refuses_locally_and_says_so() {
    // No timeout on the server: the client's own layer gives up.
    let addr = serve_hyper(tower::service_fn(slow_hyper_handler)).await;
    let client = ServiceBuilder::new()
        .layer(timeout(Duration::from_secs(1)))
        .service(hyper_client());

    let request = Request::get(format!("http://{addr}/slow"))
        .body(Full::default())
        .unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason(), Reason::TimedOut);

    // An upstream answer carries no Rejection.
    let request = Request::get(format!("http://{addr}/fast"))
        .body(Full::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<Rejection>().is_none());
}

mod grpc {
    use super::*;
    use tonic::Code;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    /// A tonic server whose health service takes `delay` to answer, behind `layer`.
    async fn slow_health_server(layer: TimeoutLayer, delay: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let stack = ServiceBuilder::new()
            .layer(layer)
            .layer(tower::filter::AsyncFilterLayer::new(
                move |request| async move {
                    sleep(delay).await;
                    Ok::<_, BoxError>(request)
                },
            ))
            .into_inner();
        tokio::spawn(
            Server::builder()
                .layer(stack)
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    async fn client(addr: SocketAddr) -> HealthClient<Channel> {
        let channel = support::tonic_channel(addr).await;
        HealthClient::new(channel)
    }

    #[tokio::test(start_paused = true)]
    async fn tonic_client_sees_deadline_exceeded() {
        let addr =
            slow_health_server(timeout(Duration::from_secs(1)), Duration::from_secs(30)).await;
        let mut client = client(addr).await;
        let started = Instant::now();
        let status = client
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    /// tonic's client enforces `grpc-timeout` itself, so this call goes out
    /// over a plain hyper-util HTTP/2 client that only sends the header.
    #[tokio::test(start_paused = true)]
    async fn grpc_timeout_header_shortens_the_server_timeout() {
        let addr =
            slow_health_server(timeout(Duration::from_secs(10)), Duration::from_secs(30)).await;
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        // An empty HealthCheckRequest: uncompressed flag, zero length.
        let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "300m")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let started = Instant::now();
        let response = client.request(request).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
        // DEADLINE_EXCEEDED (4), where tonic's own server timeout says CANCELLED (1).
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "4");
    }

    /// A tonic server whose health service takes `delay` to answer, with no
    /// timeout of its own.
    async fn slow_server_without_timeout(delay: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let delay = tower::filter::AsyncFilterLayer::new(move |request| async move {
            sleep(delay).await;
            Ok::<_, BoxError>(request)
        });
        tokio::spawn(
            Server::builder()
                .layer(delay)
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addr
    }

    /// Our deadline on a tonic `Channel`, sent on as `grpc-timeout`: tonic's
    /// channel enforces that header itself and fails with "Timeout expired"
    /// at the same instant, which its client reports as `CANCELLED`. The
    /// layer answers for its own deadline, so the caller sees
    /// `DEADLINE_EXCEEDED`.
    #[tokio::test(start_paused = true)]
    async fn a_client_deadline_on_a_tonic_channel_is_deadline_exceeded() {
        let addr = slow_server_without_timeout(Duration::from_secs(30)).await;
        let channel = support::tonic_channel(addr).await;
        let deadline = TimeoutLayer::builder(Duration::from_secs(1))
            .propagate_grpc_timeout(true)
            .build()
            .unwrap();
        let mut client = HealthClient::new(ServiceBuilder::new().layer(deadline).service(channel));
        let started = Instant::now();
        let status = client
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    /// What tonic does on its own, for comparison: `Endpoint::timeout` on the
    /// channel gives the caller `CANCELLED`, not `DEADLINE_EXCEEDED`.
    #[tokio::test(start_paused = true)]
    async fn tonics_own_channel_timeout_reports_cancelled() {
        let addr = slow_server_without_timeout(Duration::from_secs(30)).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .timeout(Duration::from_secs(1))
            .connect()
            .await
            .unwrap();
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn tonic_calls_within_the_deadline_succeed() {
        let addr =
            slow_health_server(timeout(Duration::from_secs(5)), Duration::from_millis(100)).await;
        let mut client = client(addr).await;
        let response = client.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(response.into_inner().status, 1 /* SERVING */);
    }
}
