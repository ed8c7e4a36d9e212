use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::{MetricsBody, Observation};
use crate::classify::Classify;
use crate::grpc::Protocol;

pin_project! {
    /// The response future of [`Metrics`](super::Metrics). Dropped before
    /// the answer, it records the request as cancelled.
    pub struct ResponseFuture<F, C>
    where
        C: Classify,
    {
        #[pin]
        inner: F,
        observation: Option<Observation<C>>,
        protocol: Protocol,
    }
}

impl<F, C: Classify> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, observation: Observation<C>, protocol: Protocol) -> Self {
        ResponseFuture {
            inner,
            observation: Some(observation),
            protocol,
        }
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    C: Classify,
{
    type Output = Result<Response<MetricsBody<B, C>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let span = this.observation.as_ref().and_then(Observation::span);
        let entered = span.map(tracing::Span::enter);
        let result = ready!(this.inner.poll(cx));
        drop(entered);
        let mut observation = this
            .observation
            .take()
            .expect("metrics future polled after completion");
        Poll::Ready(match result {
            Ok(response) => {
                observation.head(*this.protocol, &response);
                Ok(response.map(|body| MetricsBody::new(body, observation)))
            }
            Err(error) => {
                observation.failed(&error);
                Err(error)
            }
        })
    }
}
