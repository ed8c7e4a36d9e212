//! Any order, every stack: each ordered pair of this crate's layers, and all
//! of them forward and reversed, composed in one `ServiceBuilder`, built and
//! driven with a real request in each stack the crate claims:
//!
//! * axum `Router::layer` and `Router::route_layer` (called with the stack
//!   as one layer: separate `layer` calls would box each layer into a
//!   `Route` and hide body-type mismatches);
//! * a tonic server, `Server::builder().layer(..)`, over loopback with a
//!   real gRPC call;
//! * a hyper server (hyper-util), over loopback;
//! * a hyper-util legacy client whose body type is whatever the stack hands
//!   it;
//! * a tonic `Channel` client.
//!
//! The layers are listed once, in `each_layer!`; adding a layer there adds
//! its row and column to every stack.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_armor::BoxError;
use tower_armor::cache::CacheLayer;
use tower_armor::circuit_breaker::CircuitBreakerLayer;
use tower_armor::compression::{CompressionLayer, RequestDecompressionLayer};
use tower_armor::metrics::MetricsLayer;
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::retry::RetryLayer;
use tower_armor::timeout::{RequestBodyTimeoutLayer, ResponseBodyDeadlineLayer, TimeoutLayer};

mod support;

/// How many layers `each_layer!` lists.
const LAYERS: usize = 10;
/// Cases per stack: every ordered pair, plus all forward and reversed.
const CASES: usize = LAYERS * LAYERS + 2;

/// Every layer of the crate, by name: the rows and columns of the matrix.
/// Calls `$then!` with the list.
macro_rules! each_layer {
    ($then:ident) => {
        $then!(
            timeout,
            request_body_timeout,
            response_body_deadline,
            rate_limit,
            circuit_breaker,
            retry,
            compression,
            request_decompression,
            metrics,
            cache
        )
    };
}

const LONG: Duration = Duration::from_secs(60);

fn timeout() -> TimeoutLayer {
    TimeoutLayer::builder(LONG).build().unwrap()
}

fn request_body_timeout() -> RequestBodyTimeoutLayer {
    RequestBodyTimeoutLayer::builder(LONG).build().unwrap()
}

fn response_body_deadline() -> ResponseBodyDeadlineLayer {
    ResponseBodyDeadlineLayer::builder(LONG).build().unwrap()
}

fn rate_limit() -> RateLimitLayer {
    RateLimitLayer::builder(Quota::per_second(1_000))
        .build()
        .unwrap()
}

fn circuit_breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::default()
}

fn retry() -> RetryLayer {
    RetryLayer::default()
}

fn compression() -> CompressionLayer {
    CompressionLayer::default()
}

fn request_decompression() -> RequestDecompressionLayer {
    RequestDecompressionLayer::default()
}

fn metrics() -> MetricsLayer {
    MetricsLayer::default()
}

fn cache() -> CacheLayer {
    CacheLayer::default()
}

/// Runs `$case!(stack, name, layers)` for every ordered pair, then for all
/// layers forward and reversed; returns how many cases ran.
macro_rules! every_pair_and_the_full_stack {
    ($case:ident, $stack:expr; $($layer:ident),+) => {{
        let mut cases = 0;
        every_pair_and_the_full_stack!(@rows $case, $stack, cases; [$($layer),+]; $($layer),+);
        $case!($stack, "all, forward", ServiceBuilder::new()$(.layer($layer()))+.into_inner());
        $case!($stack, "all, reversed", every_pair_and_the_full_stack!(@reversed [$($layer),+] []));
        cases + 2
    }};
    (@rows $case:ident, $stack:expr, $cases:ident; $all:tt; $($outer:ident),+) => {
        $(every_pair_and_the_full_stack!(@row $case, $stack, $cases; $outer; $all);)+
    };
    (@row $case:ident, $stack:expr, $cases:ident; $outer:ident; [$($inner:ident),+]) => {
        $(
            $case!(
                $stack,
                concat!(stringify!($outer), " > ", stringify!($inner)),
                ServiceBuilder::new().layer($outer()).layer($inner()).into_inner()
            );
            $cases += 1;
        )+
    };
    (@reversed [$first:ident $(, $rest:ident)*] [$($done:ident),*]) => {
        every_pair_and_the_full_stack!(@reversed [$($rest),*] [$first $(, $done)*])
    };
    (@reversed [] [$($layer:ident),+]) => {
        ServiceBuilder::new()$(.layer($layer()))+.into_inner()
    };
}

/// The body every HTTP handler answers: the request body, then enough
/// spaces to be worth compressing.
fn answer_for(request_body: &[u8]) -> Bytes {
    Bytes::from([request_body, &[b' '; 2048]].concat())
}

/// Reads a response body, decoding gzip when the response says so.
async fn read_body<B>(response: Response<B>) -> (StatusCode, Bytes)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let gzip = response
        .headers()
        .get("content-encoding")
        .is_some_and(|coding| coding == "gzip");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    if !gzip {
        return (status, body);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .unwrap();
    (status, Bytes::from(plain))
}

/// The request every HTTP stack serves: a small upload, gzip accepted.
fn upload(uri: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("accept-encoding", "gzip")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap()
}

fn assert_echoed(case: &str, (status, body): (StatusCode, Bytes)) {
    assert_eq!(status, StatusCode::OK, "{case}");
    assert_eq!(body, answer_for(b"hello"), "{case}");
}

/// An echo handler for any request body that keeps the crate's body rule.
#[derive(Clone)]
struct Echo;

impl<B> Service<Request<B>> for Echo
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(async move {
            let body = request.into_body().collect().await.map_err(Into::into)?;
            Ok(Response::new(Full::new(answer_for(&body.to_bytes()))))
        })
    }
}

async fn echo_handler(body: Bytes) -> Bytes {
    answer_for(&body)
}

macro_rules! axum_router_layer {
    ($_:expr, $case:expr, $layers:expr) => {{
        let router = Router::new().route("/", post(echo_handler)).layer($layers);
        let response = router.oneshot(upload("/")).await.unwrap();
        assert_echoed($case, read_body(response).await);
    }};
}

macro_rules! axum_route_layer {
    ($_:expr, $case:expr, $layers:expr) => {{
        let router = Router::new()
            .route("/", post(echo_handler))
            .route_layer($layers);
        let response = router.oneshot(upload("/")).await.unwrap();
        assert_echoed($case, read_body(response).await);
    }};
}

#[tokio::test]
async fn axum_router_layer() {
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(axum_router_layer, (); $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}

#[tokio::test]
async fn axum_route_layer() {
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(axum_route_layer, (); $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}

/// A tonic server behind `layers`, serving grpc.health.v1 on a loopback port.
async fn serve_tonic<L, ResBody>(layers: L) -> SocketAddr
where
    L: Layer<tonic::service::Routes> + Clone + Send + 'static,
    L::Service:
        Service<Request<tonic::body::Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    <L::Service as Service<Request<tonic::body::Body>>>::Future: Send,
    <L::Service as Service<Request<tonic::body::Body>>>::Error: Into<BoxError> + Send,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layers)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    addr
}

/// One health check: the service is SERVING.
async fn check_health<T>(case: &str, client: &mut HealthClient<T>)
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    let response = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_or_else(|status| panic!("{case}: {status:?}"));
    assert_eq!(response.into_inner().status, 1, "{case}: SERVING");
}

macro_rules! tonic_server_case {
    ($_:expr, $case:expr, $layers:expr) => {{
        let addr = serve_tonic($layers).await;
        let mut client = HealthClient::new(support::tonic_channel(addr).await);
        check_health($case, &mut client).await;
    }};
}

#[tokio::test]
async fn tonic_server() {
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(tonic_server_case, (); $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}

macro_rules! hyper_server_case {
    ($client:expr, $case:expr, $layers:expr) => {{
        let service = ServiceBuilder::new().layer($layers).service(Echo);
        let addr = support::serve_hyper(service).await;
        let response = $client
            .request(upload(&format!("http://{addr}/")))
            .await
            .unwrap();
        assert_echoed($case, read_body(response).await);
    }};
}

#[tokio::test]
async fn hyper_server() {
    let client = support::hyper_client();
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(hyper_server_case, client; $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}

/// A hyper-util client of whatever body type the layers above it send.
fn client_of<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

macro_rules! hyper_client_case {
    ($addr:expr, $case:expr, $layers:expr) => {{
        let client = ServiceBuilder::new().layer($layers).service(client_of());
        let response = client
            .oneshot(upload(&format!("http://{}/", $addr)))
            .await
            .unwrap();
        assert_echoed($case, read_body(response).await);
    }};
}

#[tokio::test]
async fn hyper_util_client() {
    let addr = support::serve_hyper(Echo).await;
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(hyper_client_case, addr; $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}

/// A tonic `Channel` takes `tonic::body::Body` only: a layer that wraps the
/// request body needs it boxed back before the channel, as any tower layer
/// of that kind does.
#[derive(Clone)]
struct IntoTonicBody(Channel);

impl<B> Service<Request<B>> for IntoTonicBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = <Channel as Service<Request<tonic::body::Body>>>::Response;
    type Error = <Channel as Service<Request<tonic::body::Body>>>::Error;
    type Future = <Channel as Service<Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.call(request.map(tonic::body::Body::new))
    }
}

macro_rules! tonic_channel_case {
    ($channel:expr, $case:expr, $layers:expr) => {{
        let stack = ServiceBuilder::new()
            .layer($layers)
            .service(IntoTonicBody($channel.clone()));
        check_health($case, &mut HealthClient::new(stack)).await;
    }};
}

#[tokio::test]
async fn tonic_channel_client() {
    let addr = serve_tonic(tower::layer::util::Identity::new()).await;
    let channel = support::tonic_channel(addr).await;
    macro_rules! run {
        ($($layer:ident),+) => {
            every_pair_and_the_full_stack!(tonic_channel_case, channel; $($layer),+)
        };
    }
    assert_eq!(each_layer!(run), CASES);
}
