use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics::SharedString;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::frame_as_bytes;
use crate::config::{ConfigError, instance_name};
use crate::grpc::{self, GrpcCode, Protocol};
use crate::timer::LazySleep;

/// Caps the time a response body may take to stream, from the response head
/// to its last frame. See the [module docs](super).
///
/// On expiry a gRPC stream ends with `grpc-status: 4` (`DEADLINE_EXCEEDED`) in
/// its trailers; a plain HTTP body ends with a [`BodyDeadlineElapsed`] error,
/// so the server aborts the stream rather than passing off a truncated body
/// as complete.
#[derive(Debug, Clone)]
pub struct ResponseBodyDeadlineLayer {
    config: Arc<BodyDeadlineConfig>,
}

#[derive(Debug)]
struct BodyDeadlineConfig {
    name: SharedString,
    deadline: Duration,
}

impl ResponseBodyDeadlineLayer {
    /// Starts a layer giving each response body `deadline` to finish.
    pub fn builder(deadline: Duration) -> ResponseBodyDeadlineBuilder {
        ResponseBodyDeadlineBuilder {
            name: SharedString::const_str("default"),
            deadline,
        }
    }
}

/// Builds a [`ResponseBodyDeadlineLayer`]; made by [`ResponseBodyDeadlineLayer::builder`].
#[derive(Debug)]
#[must_use = "call .build() to get the layer"]
pub struct ResponseBodyDeadlineBuilder {
    name: SharedString,
    deadline: Duration,
}

impl ResponseBodyDeadlineBuilder {
    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = instance_name(name);
        self
    }

    /// Checks the settings and builds the layer. Fails when the deadline is
    /// zero or longer than 365 days.
    pub fn build(self) -> Result<ResponseBodyDeadlineLayer, ConfigError> {
        let deadline = super::check_duration("response body deadline", self.deadline)?;
        Ok(ResponseBodyDeadlineLayer {
            config: Arc::new(BodyDeadlineConfig {
                name: self.name,
                deadline,
            }),
        })
    }
}

impl<S> Layer<S> for ResponseBodyDeadlineLayer {
    type Service = ResponseBodyDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseBodyDeadline::new(inner, self.clone())
    }
}

/// The service made by [`ResponseBodyDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ResponseBodyDeadline<S> {
    inner: S,
    config: Arc<BodyDeadlineConfig>,
}

impl<S> ResponseBodyDeadline<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: ResponseBodyDeadlineLayer) -> Self {
        ResponseBodyDeadline {
            inner,
            config: layer.config,
        }
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseBodyDeadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<DeadlineBody<ResBody>>;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        DeadlineFuture {
            protocol: Protocol::of_request(&request),
            inner: self.inner.call(request),
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`ResponseBodyDeadline`].
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        protocol: Protocol,
        config: Arc<BodyDeadlineConfig>,
    }
}

impl<F, B, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<DeadlineBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let config = this.config.clone();
        // A gRPC stream ends in trailers; judge by the request, else by the response.
        let grpc = this.protocol.is_grpc() || Protocol::detect(response.headers()).is_grpc();
        let deadline = Instant::now() + config.deadline;
        Poll::Ready(Ok(response.map(|body| DeadlineBody {
            body,
            sleep: LazySleep::until(deadline),
            grpc,
            state: State::Streaming,
            config,
        })))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    Done,
}

pin_project! {
    /// A response body with a deadline for its whole stream; see
    /// [`ResponseBodyDeadlineLayer`].
    pub struct DeadlineBody<B> {
        #[pin]
        body: B,
        #[pin]
        sleep: LazySleep,
        grpc: bool,
        state: State,
        config: Arc<BodyDeadlineConfig>,
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.state == State::Done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame_as_bytes(frame));
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.state = State::Done;
        super::record_expired(&this.config.name, "response_body");
        if *this.grpc {
            let mut trailers = HeaderMap::new();
            trailers.insert(grpc::GRPC_STATUS, GrpcCode::DeadlineExceeded.header_value());
            trailers.insert(
                grpc::GRPC_MESSAGE,
                HeaderValue::from_static("response stream deadline exceeded"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed(())))))
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error a plain HTTP response body ends with when its deadline passes.
#[derive(Debug)]
pub struct BodyDeadlineElapsed(());

impl fmt::Display for BodyDeadlineElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response body deadline elapsed")
    }
}

impl Error for BodyDeadlineElapsed {}
