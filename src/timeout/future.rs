use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::settings::Expiry;
use crate::body::ArmorBody;
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection};
use crate::timer::LazySleep;

pin_project! {
    /// The response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: LazySleep,
        protocol: Protocol,
        expiry: Expiry,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, deadline: Instant, protocol: Protocol, expiry: Expiry) -> Self {
        ResponseFuture {
            inner,
            sleep: LazySleep::until(deadline),
            protocol,
            expiry,
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
        // away, and the timer is only created when we actually wait.
        match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response.map(ArmorBody::inner))),
            // An error once our deadline has passed is the deadline's doing
            // (a client's transport gave up on the `grpc-timeout` we sent, or
            // the connection was cut): the caller hears of the deadline.
            Poll::Ready(Err(error)) if Instant::now() < this.sleep.deadline() => {
                return Poll::Ready(Err(error));
            }
            Poll::Ready(Err(_)) => {}
            Poll::Pending if this.sleep.poll(cx).is_pending() => return Poll::Pending,
            Poll::Pending => {}
        }
        let expiry = &*this.expiry;
        super::record_expired(&expiry.name, "response");
        let rejection = Rejection::new("timeout", Reason::TimedOut).with_status(expiry.status);
        Poll::Ready(Ok(expiry.renderer.render(rejection, *this.protocol)))
    }
}
