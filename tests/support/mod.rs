//! Helpers shared by the real-stack tests.
#![allow(dead_code)]

pub mod recording;

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::BoxError;

/// Serves `service` with hyper on a loopback port and returns the address.
/// Each request carries the peer's `SocketAddr` in its extensions, as a
/// server's connection info would.
pub async fn serve_hyper<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let service =
                tower::util::MapRequest::new(service.clone(), move |mut request: Request<_>| {
                    request.extensions_mut().insert(peer);
                    request
                });
            let service = hyper_util::service::TowerToHyperService::new(service);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A hyper-util HTTP/1 client.
pub fn hyper_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// The client type [`hyper_client`] returns.
pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// Counter values by name and labels, e.g. `("armor.timeout.expired", ["name=api"], 3)`.
pub type Counters = Vec<(String, Vec<String>, u64)>;

/// Runs `test` on a paused current-thread runtime with `recorder` as the
/// thread's local recorder (never a global one).
pub fn run_recorded<F: std::future::Future>(
    recorder: &dyn metrics::Recorder,
    test: impl FnOnce() -> F,
) {
    metrics::with_local_recorder(recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
}

/// Runs `test` as [`run_recorded`] does, with a new debugging recorder, and
/// returns the non-zero counters it saw.
pub fn counters_recorded<F: std::future::Future>(test: impl FnOnce() -> F) -> Counters {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    run_recorded(&recorder, test);
    let mut counters: Counters = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) if n > 0 => Some((
                key.key().name().to_owned(),
                key.key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect(),
                n,
            )),
            _ => None,
        })
        .collect();
    counters.sort();
    counters
}

/// GETs `url` and reads the whole body; returns the status and headers.
pub async fn get_status(client: &Client, url: String) -> (http::StatusCode, http::HeaderMap) {
    use http_body_util::BodyExt;

    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    response.into_body().collect().await.unwrap();
    (status, headers)
}

/// Serves `router` with axum over loopback, with the peer address as
/// `ConnectInfo`, the way production axum apps run.
pub async fn serve_axum(router: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// A tonic channel connected to a server on `addr`.
pub async fn tonic_channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A body the test feeds by hand, one data frame per chunk sent; it stays
/// pending until the next chunk and ends when the sender is dropped.
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

/// A [`ChannelBody`] and its sender, with room for `capacity` unread chunks.
pub fn channel_body(capacity: usize) -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
    (sender, ChannelBody(receiver))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// A response's status and its whole body as text.
pub async fn status_and_text<B>(response: http::Response<B>) -> (http::StatusCode, String)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;

    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Asserts that `layer`'s service is ready exactly when its inner service
/// is: pending while the inner one is, ready once it is.
pub fn readiness_follows_the_inner_service<L, S>(layer: L)
where
    L: tower::Layer<
            tower_test::mock::Mock<Request<Full<Bytes>>, http::Response<Full<Bytes>>>,
            Service = S,
        >,
    S: tower::Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let (mut service, mut handle) =
        tower_test::mock::spawn_layer::<Request<Full<Bytes>>, http::Response<Full<Bytes>>, _>(
            layer,
        );
    handle.allow(0);
    tokio_test::assert_pending!(service.poll_ready());
    handle.allow(1);
    tokio_test::assert_ready_ok!(service.poll_ready());
}
