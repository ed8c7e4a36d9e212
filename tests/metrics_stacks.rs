//! Request metrics inside real stacks over loopback: an axum router (with
//! `layer` and `route_layer`), a hyper server, a hyper-util client, a tonic
//! server and a tonic client, including a gRPC server stream that ends with
//! an error in its trailers.

use std::convert::Infallible;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_armor::metrics::{MetricsBuilder, MetricsLayer, RouteExtractor};

mod support;
use support::recording::{Recording, active, durations, labels};
use support::{get_status, hyper_client, serve_axum, serve_hyper};

/// A layer recording into a fresh recorder, and what it recorded.
fn recorded<R: RouteExtractor>(builder: MetricsBuilder<R>) -> (MetricsLayer<R>, Recording) {
    let recording = Recording::new();
    (
        builder.recorder(recording.clone()).build().unwrap(),
        recording,
    )
}

/// The label sets recorded under `name` and their sample counts, once at
/// least `expected` samples are in: a server records when the last frame of
/// the body is written, which can be just after the client has read it.
async fn recorded_sets(
    recording: &Recording,
    name: &str,
    expected: usize,
) -> Vec<(Vec<String>, usize)> {
    for _ in 0..1000 {
        let sets: Vec<_> = durations(recording, name)
            .into_iter()
            .map(|(labels, samples)| (labels, samples.len()))
            .collect();
        if sets.iter().map(|(_, n)| n).sum::<usize>() >= expected {
            return sets;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!(
        "{expected} samples of {name} never came: {:?}",
        durations(recording, name)
    );
}

fn http_labels(method: &str, route: Option<&str>, status: u16, error: Option<&str>) -> Vec<String> {
    let mut set = labels(&[&format!("http.request.method={method}"), "url.scheme=http"]);
    if let Some(route) = route {
        set.push(format!("http.route={route}"));
    }
    set.push(format!("http.response.status_code={status}"));
    set.push("network.protocol.version=1.1".into());
    if let Some(error) = error {
        set.push(format!("error.type={error}"));
    }
    set
}

#[tokio::test(start_paused = true)]
async fn axum_router_layer_names_matched_routes_and_leaves_the_rest_unnamed() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let router = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        )
        .layer(layer);
    let addr = serve_axum(router).await;
    let client = hyper_client();
    for path in ["/users/1", "/users/2", "/broken", "/wp-login.php"] {
        get_status(&client, format!("http://{addr}{path}")).await;
    }
    let mut sets = recorded_sets(&recording, "http.server.request.duration", 4).await;
    sets.sort();
    assert_eq!(
        sets,
        [
            (http_labels("GET", None, 404, None), 1),
            (http_labels("GET", Some("/broken"), 500, Some("500")), 1),
            (http_labels("GET", Some("/users/{id}"), 200, None), 2),
        ]
    );
    assert_eq!(
        active(&recording, "http.server.active_requests"),
        [(labels(&["http.request.method=GET", "url.scheme=http"]), 0.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn axum_route_layer_measures_only_its_routes() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let router = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route_layer(layer)
        .route("/healthz", get(|| async { "ok" }));
    let addr = serve_axum(router).await;
    let client = hyper_client();
    for path in ["/healthz", "/nowhere", "/orders/9"] {
        get_status(&client, format!("http://{addr}{path}")).await;
    }
    assert_eq!(
        recorded_sets(&recording, "http.server.request.duration", 1).await,
        [(http_labels("GET", Some("/orders/{id}"), 200, None), 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn hyper_server_and_hyper_util_client_each_see_the_request() {
    let (server_layer, server) = recorded(MetricsLayer::server());
    let addr = serve_hyper(ServiceBuilder::new().layer(server_layer).service_fn(
        |request: Request<hyper::body::Incoming>| async move {
            let status = if request.uri().path() == "/missing" {
                404
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"hello")))
                    .unwrap(),
            )
        },
    ))
    .await;
    let (client_layer, client) = recorded(MetricsLayer::client());
    let http = ServiceBuilder::new()
        .layer(client_layer)
        .service(hyper_client());
    for path in ["/", "/missing"] {
        let request = Request::get(format!("http://{addr}{path}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = http.clone().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let mut sets = recorded_sets(&server, "http.server.request.duration", 2).await;
    sets.sort();
    assert_eq!(
        sets,
        [
            (http_labels("GET", None, 200, None), 1),
            (http_labels("GET", None, 404, None), 1),
        ]
    );
    // A client counts 404 as an error and names its upstream.
    let upstream = |status: u16, error: Option<&str>| {
        let mut set = http_labels("GET", None, status, None);
        set.push("server.address=127.0.0.1".into());
        set.push(format!("server.port={}", addr.port()));
        if let Some(error) = error {
            set.push(format!("error.type={error}"));
        }
        set
    };
    let mut sets = recorded_sets(&client, "http.client.request.duration", 2).await;
    sets.sort();
    assert_eq!(
        sets,
        [(upstream(200, None), 1), (upstream(404, Some("404")), 1)]
    );
}

mod grpc {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::{Buf, BufMut};
    use http::uri::PathAndQuery;
    use tokio::net::TcpListener;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::server::{NamedService, ServerStreamingService};
    use tonic::transport::Server;
    use tonic::{Code, Status};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;

    /// Messages as raw bytes: enough for a real tonic server and client
    /// without generated code.
    #[derive(Debug, Clone, Copy, Default)]
    struct BytesCodec;

    impl Codec for BytesCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = BytesCodec;
        type Decoder = BytesCodec;
        fn encoder(&mut self) -> BytesCodec {
            BytesCodec
        }
        fn decoder(&mut self) -> BytesCodec {
            BytesCodec
        }
    }

    impl Encoder for BytesCodec {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for BytesCodec {
        type Item = Bytes;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    /// `test.Feed/Follow`: a server stream of two messages that then fails
    /// with UNAVAILABLE, in its trailers.
    #[derive(Debug, Clone)]
    struct Feed;

    impl NamedService for Feed {
        const NAME: &'static str = "test.Feed";
    }

    struct Messages(VecDeque<Result<Bytes, Status>>);

    impl futures_core::Stream for Messages {
        type Item = Result<Bytes, Status>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    struct Follow;

    impl ServerStreamingService<Bytes> for Follow {
        type Response = Bytes;
        type ResponseStream = Messages;
        type Future = std::future::Ready<Result<tonic::Response<Messages>, Status>>;
        fn call(&mut self, _: tonic::Request<Bytes>) -> Self::Future {
            std::future::ready(Ok(tonic::Response::new(Messages(VecDeque::from([
                Ok(Bytes::from_static(b"one")),
                Ok(Bytes::from_static(b"two")),
                Err(Status::unavailable("feed lost")),
            ])))))
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Feed {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(BytesCodec);
                Ok(grpc.server_streaming(Follow, request).await)
            })
        }
    }

    fn rpc_labels(method: &str, code: &str, error: Option<&str>) -> Vec<String> {
        let mut set = labels(&[
            "rpc.system.name=grpc",
            &format!("rpc.method={method}"),
            &format!("rpc.status_code={code}"),
        ]);
        if let Some(error) = error {
            set.push(format!("error.type={error}"));
        }
        set
    }

    #[tokio::test(start_paused = true)]
    async fn tonic_server_and_client_measure_unary_calls_and_a_failing_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", tonic_health::ServingStatus::Serving)
            .await;
        let (server_layer, server) = recorded(MetricsLayer::server());
        tokio::spawn(
            Server::builder()
                .layer(server_layer)
                .add_service(health)
                .add_service(Feed)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = support::tonic_channel(addr).await;
        // A channel adds the authority below this layer: the layer is told.
        let (client_layer, client) =
            recorded(MetricsLayer::client().server_address("127.0.0.1", addr.port()));
        let stack = ServiceBuilder::new().layer(client_layer).service(channel);

        let mut health_client = HealthClient::new(stack.clone());
        health_client
            .check(HealthCheckRequest {
                service: "ready".into(),
            })
            .await
            .unwrap();
        let missing = health_client
            .check(HealthCheckRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        let mut grpc = tonic::client::Grpc::new(stack);
        grpc.ready().await.unwrap();
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(Bytes::new()),
                PathAndQuery::from_static("/test.Feed/Follow"),
                BytesCodec,
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap(), "one");
        assert_eq!(stream.message().await.unwrap().unwrap(), "two");
        assert_eq!(
            stream.message().await.unwrap_err().code(),
            Code::Unavailable
        );
        drop(stream);

        let check = "grpc.health.v1.Health/Check";
        let mut sets = recorded_sets(&server, "rpc.server.call.duration", 3).await;
        sets.sort();
        assert_eq!(
            sets,
            [
                // NOT_FOUND is the caller's problem, not a server error.
                (rpc_labels(check, "NOT_FOUND", None), 1),
                (rpc_labels(check, "OK", None), 1),
                (
                    rpc_labels("test.Feed/Follow", "UNAVAILABLE", Some("UNAVAILABLE")),
                    1
                ),
            ]
        );
        assert!(durations(&server, "http.server.request.duration").is_empty());

        let upstream = |method: &str, code: &str, error: Option<&str>| {
            let mut set = rpc_labels(method, code, None);
            set.push("server.address=127.0.0.1".into());
            set.push(format!("server.port={}", addr.port()));
            if let Some(error) = error {
                set.push(format!("error.type={error}"));
            }
            set
        };
        let mut sets = recorded_sets(&client, "rpc.client.call.duration", 3).await;
        sets.sort();
        assert_eq!(
            sets,
            [
                // A client counts every status but OK.
                (upstream(check, "NOT_FOUND", Some("NOT_FOUND")), 1),
                (upstream(check, "OK", None), 1),
                (
                    upstream("test.Feed/Follow", "UNAVAILABLE", Some("UNAVAILABLE")),
                    1
                ),
            ]
        );
    }
}
