use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::layer::TimeoutConfig;
use crate::body::ArmorBody;
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection};

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        protocol: Protocol,
        config: Arc<TimeoutConfig>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        deadline: Instant,
        protocol: Protocol,
        config: Arc<TimeoutConfig>,
    ) -> Self {
        ResponseFuture {
            inner,
            sleep: sleep_until(deadline),
            protocol,
            config,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ArmorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future goes first: an answer that is ready is never thrown
        // away, and the timer is only registered when we actually wait.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ArmorBody::inner)));
        }
        if this.sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        let config = &**this.config;
        super::record_expired(&config.name, "response");
        let rejection = Rejection::new("timeout", Reason::TimedOut).with_status(config.status);
        Poll::Ready(Ok(config.renderer.render(rejection, *this.protocol)))
    }
}
