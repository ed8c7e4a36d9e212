//! The retry layer inside real stacks over loopback: a tonic client around a
//! flaky tonic server, and a hyper-util client whose first connection dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::retry::{ReplayBody, RetryLayer};

mod support;

#[tokio::test(start_paused = true)]
async fn a_hyper_util_client_recovers_when_its_first_connection_drops() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (connections, bodies) = (connections.clone(), bodies.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if connections.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Read a little of the request, then hang up without answering.
                    let _ = stream.read(&mut [0; 64]).await;
                    drop(stream);
                    continue;
                }
                let bodies = bodies.clone();
                let service = tower::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let bodies = bodies.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        bodies.lock().unwrap().push(body);
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from("stored"))))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper_util::service::TowerToHyperService::new(service),
                        )
                        .await;
                });
            }
        });
    }

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<ReplayBody<Full<Bytes>>>();
    let retry = RetryLayer::builder()
        .backoff(Duration::from_millis(5), Duration::from_millis(50))
        .build()
        .unwrap();
    let mut client = ServiceBuilder::new().layer(retry).service(client);

    let payload = Bytes::from(vec![b'x'; 10_000]);
    let request = Request::put(format!("http://{addr}/blob"))
        .body(Full::new(payload.clone()))
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "stored"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(*bodies.lock().unwrap(), [payload]);
}

mod grpc {
    use super::*;
    use tonic::Status;
    use tonic::transport::Server;
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    #[tokio::test(start_paused = true)]
    async fn a_tonic_client_recovers_from_a_flaky_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("inventory", ServingStatus::Serving)
            .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // Fails the first two calls with UNAVAILABLE, as a server restarting would.
        let flaky =
            tonic::service::InterceptorLayer::new(move |request: tonic::Request<()>| match counted
                .fetch_add(1, Ordering::SeqCst)
            {
                0 | 1 => Err(Status::unavailable("warming up")),
                _ => Ok(request),
            });
        tokio::spawn(
            Server::builder()
                .layer(flaky)
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = support::tonic_channel(addr).await;

        let retry = RetryLayer::builder()
            .inner_body::<tonic::body::Body>()
            .build()
            .unwrap();
        let mut client = HealthClient::new(ServiceBuilder::new().layer(retry).service(channel));
        let answer = client
            .check(HealthCheckRequest {
                service: "inventory".into(),
            })
            .await
            .unwrap();
        assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // A code that is not retryable reaches the caller after one call.
        let error = client
            .check(HealthCheckRequest {
                service: "unknown".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::NotFound);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
