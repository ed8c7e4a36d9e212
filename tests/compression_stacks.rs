//! The compression layer in real stacks over loopback: an axum `Router`, a
//! hyper server with a hyper-util client, and a tonic server whose gRPC
//! traffic passes through untouched.

use std::io::{Read, Write};

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceBuilder;
use tower_armor::compression::{CompressionLayer, RequestDecompressionLayer};

mod support;

fn catalogue() -> String {
    (0..2_000)
        .map(|i| format!("{{\"sku\":\"A-{i:05}\",\"price\":{}}},", i % 97))
        .collect()
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(coded: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(coded)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

async fn send(
    client: &support::Client,
    request: Request<Full<Bytes>>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn axum_router_compresses_json_and_decodes_uploads() {
    let layer = ServiceBuilder::new()
        .layer(CompressionLayer::default())
        .layer(
            RequestDecompressionLayer::builder()
                .max_decompressed_bytes(1024 * 1024)
                .build()
                .unwrap(),
        );
    let router = Router::new()
        .route("/catalogue", get(|| async { catalogue() }))
        .route(
            "/upload",
            post(|body: String| async move { body.len().to_string() }),
        )
        .layer(layer);
    let addr = support::serve_axum(router).await;
    let client = support::hyper_client();

    let request = Request::get(format!("http://{addr}/catalogue"))
        .header("accept-encoding", "gzip;q=1, br;q=0.5")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&client, request).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "accept-encoding");
    assert!(!headers.contains_key("content-length"));
    assert_eq!(gunzip(&body), catalogue().as_bytes());

    let upload = |coded: Vec<u8>| {
        Request::post(format!("http://{addr}/upload"))
            .header("content-encoding", "gzip")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(coded)))
            .unwrap()
    };
    let (status, _, body) = send(&client, upload(gzip(catalogue().as_bytes()))).await;
    assert_eq!(status, 200);
    assert_eq!(body, catalogue().len().to_string());

    // 16 MiB of spaces in a few KiB: axum's handler never gets it whole.
    let bomb = gzip(&vec![b' '; 16 * 1024 * 1024]);
    assert!(bomb.len() < 32 * 1024);
    let (status, headers, _) = send(&client, upload(bomb)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn hyper_server_and_hyper_util_client_over_loopback() {
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::default())
        .layer(RequestDecompressionLayer::default())
        .service_fn(
            |request: Request<
                tower_armor::compression::DecompressionBody<hyper::body::Incoming>,
            >| async move {
                // Echo the decoded request body, or the catalogue for a GET.
                let body = if request.method() == http::Method::POST {
                    request.into_body().collect().await?.to_bytes()
                } else {
                    Bytes::from(catalogue())
                };
                Ok::<_, tower_armor::BoxError>(http::Response::new(Full::new(body)))
            },
        );
    let addr = support::serve_hyper(service).await;
    let client = support::hyper_client();

    let request = Request::get(format!("http://{addr}/"))
        .header("accept-encoding", "zstd, gzip")
        .body(Full::default())
        .unwrap();
    let (status, headers, body) = send(&client, request).await;
    assert_eq!(
        (status, &headers["content-encoding"]),
        (StatusCode::OK, &"zstd".parse().unwrap())
    );
    let mut plain = Vec::new();
    ruzstd::decoding::StreamingDecoder::new(&body[..])
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, catalogue().as_bytes());

    let request = Request::post(format!("http://{addr}/"))
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gzip(b"ping"))))
        .unwrap();
    let (status, headers, body) = send(&client, request).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ping"[..]));
    assert!(
        !headers.contains_key("content-encoding"),
        "4 bytes are not worth it"
    );
}

#[tokio::test]
async fn tonic_grpc_passes_through_untouched() {
    use tonic::transport::Server;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("catalogue", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        Server::builder()
            .layer(CompressionLayer::builder().min_size(0).build().unwrap())
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = support::tonic_channel(addr).await;
    // A client that also says it accepts HTTP codings, as proxies may add.
    let channel = tower::ServiceBuilder::new()
        .map_request(|mut request: Request<tonic::body::Body>| {
            request
                .headers_mut()
                .insert("accept-encoding", "gzip, br".parse().unwrap());
            request
        })
        .map_response(|response: http::Response<_>| {
            assert!(
                !response.headers().contains_key("content-encoding"),
                "gRPC bodies are never HTTP-coded"
            );
            response
        })
        .service(channel);
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: "catalogue".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        answer.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
