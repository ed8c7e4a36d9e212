use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics::SharedString;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::ArmorBody;
use crate::body::frame_as_bytes;
use crate::config::{ConfigError, instance_name};
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection, Renderer};

/// Answers **408** (gRPC: `DEADLINE_EXCEEDED`) when the client pauses longer
/// than an idle timeout while the handler is reading the request body. See
/// the [module docs](super).
///
/// The timer runs only while the handler waits for the next frame, so a
/// handler busy with other work is never blamed on the client. When it fires,
/// the handler's read fails with [`RequestBodyTimedOut`], and whatever the
/// handler answers is replaced by the 408 refusal.
#[derive(Debug, Clone)]
pub struct RequestBodyTimeoutLayer {
    config: Arc<IdleConfig>,
}

#[derive(Debug)]
struct IdleConfig {
    name: SharedString,
    idle: Duration,
    renderer: Renderer,
}

impl RequestBodyTimeoutLayer {
    /// Starts a layer allowing the client `idle` between request body frames.
    pub fn builder(idle: Duration) -> RequestBodyTimeoutBuilder {
        RequestBodyTimeoutBuilder {
            config: IdleConfig {
                name: SharedString::const_str("default"),
                idle,
                renderer: Renderer::default(),
            },
        }
    }
}

/// Builds a [`RequestBodyTimeoutLayer`]; made by [`RequestBodyTimeoutLayer::builder`].
#[derive(Debug)]
#[must_use = "call .build() to get the layer"]
pub struct RequestBodyTimeoutBuilder {
    config: IdleConfig,
}

impl RequestBodyTimeoutBuilder {
    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = instance_name(name);
        self
    }

    /// Renders the 408 refusal your own way.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.config.renderer = renderer;
        self
    }

    /// Checks the settings and builds the layer. Fails when the idle timeout
    /// is zero or longer than 365 days.
    pub fn build(self) -> Result<RequestBodyTimeoutLayer, ConfigError> {
        super::check_duration("request body idle timeout", self.config.idle)?;
        Ok(RequestBodyTimeoutLayer {
            config: Arc::new(self.config),
        })
    }
}

impl<S> Layer<S> for RequestBodyTimeoutLayer {
    type Service = RequestBodyTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBodyTimeout::new(inner, self.clone())
    }
}

impl<S> RequestBodyTimeout<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: RequestBodyTimeoutLayer) -> Self {
        RequestBodyTimeout {
            inner,
            config: layer.config,
        }
    }

    inner_service_accessors!();
}

/// The service made by [`RequestBodyTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestBodyTimeout<S> {
    inner: S,
    config: Arc<IdleConfig>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestBodyTimeout<S>
where
    S: Service<Request<IdleTimeoutBody<ReqBody>>, Response = Response<ResBody>>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = IdleFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = Protocol::of_request(&request);
        let expired = Arc::new(AtomicBool::new(false));
        let idle = self.config.idle;
        let request = request.map(|body| IdleTimeoutBody {
            body,
            sleep: None,
            idle,
            waiting: false,
            expired: expired.clone(),
        });
        IdleFuture {
            inner: self.inner.call(request),
            protocol,
            expired,
            config: self.config.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`RequestBodyTimeout`].
    pub struct IdleFuture<F> {
        #[pin]
        inner: F,
        protocol: Protocol,
        expired: Arc<AtomicBool>,
        config: Arc<IdleConfig>,
    }
}

impl<F, B, E> Future for IdleFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ArmorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        if !this.expired.load(Ordering::Acquire) {
            return Poll::Ready(Ok(response.map(ArmorBody::inner)));
        }
        super::record_expired(&this.config.name, "request_body");
        let rejection = Rejection::new("timeout", Reason::RequestBodyTimeout);
        Poll::Ready(Ok(this.config.renderer.render(rejection, *this.protocol)))
    }
}

pin_project! {
    /// A request body that fails with [`RequestBodyTimedOut`] when the client
    /// sends nothing for the idle timeout while it is being read.
    ///
    /// It is `Unpin` when the caller's body is, as a hyper-util client needs:
    /// the timer is boxed, and only made once a read has to wait.
    pub struct IdleTimeoutBody<B> {
        #[pin]
        body: B,
        sleep: Option<Pin<Box<Sleep>>>,
        idle: Duration,
        // True while a read is pending; the timer is armed on the first such poll.
        waiting: bool,
        expired: Arc<AtomicBool>,
    }
}

impl<B> Body for IdleTimeoutBody<B>
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
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(RequestBodyTimedOut(())))));
        }
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame_as_bytes(frame));
        }
        // The client's idle time starts with the first read that waits.
        let sleep = match this.sleep {
            Some(sleep) if *this.waiting => sleep,
            Some(sleep) => {
                sleep.as_mut().reset(Instant::now() + *this.idle);
                sleep
            }
            None => this
                .sleep
                .insert(Box::pin(sleep_until(Instant::now() + *this.idle))),
        };
        *this.waiting = true;
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(Box::new(RequestBodyTimedOut(())))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error a handler reading the request body gets when the client went idle.
#[derive(Debug)]
pub struct RequestBodyTimedOut(());

impl fmt::Display for RequestBodyTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body idle timeout elapsed")
    }
}

impl Error for RequestBodyTimedOut {}
