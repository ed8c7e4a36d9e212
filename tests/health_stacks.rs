//! The health layer and its gRPC service in real servers over loopback: an
//! axum Router, a hyper server, a tonic server called by tonic-health's own
//! client, and a raw HTTP/2 call for `List`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_armor::health::{Check, CheckResult, HealthLayer, Probe, check_fn};

mod support;

/// A health layer whose `database` readiness check follows `healthy`.
fn layer(healthy: Arc<AtomicBool>) -> HealthLayer {
    HealthLayer::builder()
        .check(
            Check::new(
                "database",
                check_fn(move || {
                    let healthy = healthy.load(Ordering::SeqCst);
                    async move {
                        if healthy {
                            CheckResult::pass()
                        } else {
                            CheckResult::fail("down")
                        }
                    }
                }),
            )
            .timeout(Duration::from_secs(1))
            .cache_for(Duration::ZERO),
        )
        .check(
            Check::new("threads", check_fn(|| async { CheckResult::pass() }))
                .probes(Probe::Liveness)
                .timeout(Duration::from_secs(1)),
        )
        .grpc_service("shop.Orders", ["database"])
        .build()
        .unwrap()
}

async fn get(client: &support::Client, url: String) -> (StatusCode, String) {
    let response = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    support::status_and_text(response).await
}

#[tokio::test(start_paused = true)]
async fn an_axum_router_answers_probes_and_routes_the_rest() {
    let healthy = Arc::new(AtomicBool::new(true));
    let health = layer(healthy.clone());
    let handle = health.handle();
    let app = axum::Router::new()
        .route("/orders", axum::routing::get(|| async { "orders" }))
        .layer(health);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = support::hyper_client();
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(
        get(&client, url("/readyz")).await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(
        get(&client, url("/orders")).await,
        (StatusCode::OK, "orders".into())
    );
    healthy.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&client, url("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&client, url("/livez")).await.0, StatusCode::OK);
    healthy.store(true, Ordering::SeqCst);
    handle.drain();
    assert_eq!(
        get(&client, url("/healthz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&client, url("/livez")).await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_hyper_server_answers_probes() {
    let health = layer(Arc::new(AtomicBool::new(true)));
    let app = tower::Layer::layer(
        &health,
        tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"app",
            ))))
        }),
    );
    let addr = support::serve_hyper(app).await;
    let client = support::hyper_client();
    assert_eq!(
        get(&client, format!("http://{addr}/readyz/database")).await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(get(&client, format!("http://{addr}/x")).await.1, "app");
}

#[tokio::test(start_paused = true)]
async fn tonic_health_clients_check_watch_and_see_the_drain() {
    let healthy = Arc::new(AtomicBool::new(true));
    let health = layer(healthy.clone());
    let handle = health.handle();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(handle.grpc())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let mut client = HealthClient::new(support::tonic_channel(addr).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", "readiness", "liveness", "startup", "shop.Orders"] {
        let answer = client.check(check(service)).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = client.check(check("shop.Nothing")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut unknown_watch = client
        .watch(check("shop.Nothing"))
        .await
        .unwrap()
        .into_inner();
    let first = unknown_watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::ServiceUnknown);

    let mut watch = client
        .watch(check("shop.Orders"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    // The check fails: the watcher hears within a recheck.
    healthy.store(false, Ordering::SeqCst);
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    handle.drain();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    assert!(
        watch.message().await.unwrap().is_none(),
        "the stream ends after the drain"
    );
    assert!(
        unknown_watch.message().await.unwrap().is_none(),
        "every stream ends"
    );
    let overall = client.check(check("")).await.unwrap().into_inner();
    assert_eq!(overall.status(), ServingStatus::NotServing);
    let liveness = client.check(check("liveness")).await.unwrap().into_inner();
    assert_eq!(
        liveness.status(),
        ServingStatus::Serving,
        "liveness survives the drain"
    );
}

#[tokio::test(start_paused = true)]
async fn list_over_raw_http2_maps_every_service() {
    let health = layer(Arc::new(AtomicBool::new(false)));
    let addr = support::serve_hyper(health.handle().grpc()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/List"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    let body = collected.to_bytes();
    let message = &body[5..];
    assert_eq!(
        u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize,
        message.len()
    );
    // Each map entry: 0x0a len { 0x0a len name 0x12 2 { 0x08 status } }.
    let mut entries = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        assert_eq!(rest[0], 0x0a);
        let length = rest[1] as usize;
        let entry = &rest[2..2 + length];
        let name_length = entry[1] as usize;
        let name = std::str::from_utf8(&entry[2..2 + name_length])
            .unwrap()
            .to_owned();
        let status = entry[2 + name_length + 3];
        entries.push((name, status));
        rest = &rest[2 + length..];
    }
    assert_eq!(
        entries,
        [
            ("".to_owned(), 2),
            ("liveness".to_owned(), 1),
            ("readiness".to_owned(), 2),
            ("startup".to_owned(), 1),
            ("shop.Orders".to_owned(), 2),
        ]
    );
}
