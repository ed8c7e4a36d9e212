use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::breaker::Breaker;
use super::core::Permit;
use crate::BoxError;
use crate::body::{ArmorBody, BodyEnd, GuardBody, OnBodyEnd};
use crate::classify::{Classification, Classify, FailureKind, Outcome};
use crate::grpc::Protocol;

/// Reports one admitted call to its breaker exactly once: when its response
/// body ends, when the service fails, or (as a cancellation, which gives a
/// probe permit back) when it is dropped first.
pub(crate) struct Recorder<K, C> {
    breaker: Arc<Breaker<K>>,
    permit: Option<Permit>,
    classifier: C,
    protocol: Protocol,
    head: Classification,
}

impl<K, C> std::fmt::Debug for Recorder<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<K, C: Classify> Recorder<K, C> {
    pub(crate) fn new(
        breaker: Arc<Breaker<K>>,
        permit: Permit,
        classifier: C,
        protocol: Protocol,
    ) -> Self {
        Recorder {
            breaker,
            permit: Some(permit),
            classifier,
            protocol,
            head: Classification::AtEndOfStream,
        }
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.complete(permit, outcome);
        }
    }
}

impl<K, C> Drop for Recorder<K, C> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.complete(permit, Outcome::Cancelled);
        }
    }
}

impl<K, C: Classify> OnBodyEnd for Recorder<K, C> {
    #[inline]
    fn on_body_end(mut self, end: BodyEnd<'_>) {
        let outcome = match (self.head, end) {
            (Classification::Done(outcome), BodyEnd::Complete { .. }) => outcome,
            (Classification::Done(Outcome::Success), BodyEnd::Error) => {
                Outcome::Failure(FailureKind::BodyError)
            }
            // A client that leaves mid-body says nothing about the service…
            (Classification::Done(Outcome::Success), BodyEnd::Dropped) => Outcome::Cancelled,
            // …but a failure already seen at the head stays a failure.
            (Classification::Done(outcome), _) => outcome,
            (Classification::AtEndOfStream, end) => self.classifier.classify_body_end(end),
        };
        self.finish(outcome);
    }
}

pin_project! {
    /// The response body of [`CircuitBreaker`](super::CircuitBreaker): the
    /// inner body, watched to its end so the call's outcome (gRPC trailers
    /// included) reaches the breaker; or a refusal.
    pub struct CircuitBreakerBody<B, K, C>
    where
        C: Classify,
    {
        #[pin]
        kind: BodyKind<B, K, C>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B, K, C>
    where
        C: Classify,
    {
        Guarded { #[pin] body: GuardBody<B, Recorder<K, C>> },
        // A refusal, or the answer to a request no breaker guards (no key,
        // `MissingKey::Allow`).
        Plain { #[pin] body: ArmorBody<B> },
    }
}

impl<B, K, C: Classify> std::fmt::Debug for CircuitBreakerBody<B, K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            BodyKind::Guarded { .. } => "guarded",
            BodyKind::Plain { .. } => "plain",
        };
        f.debug_tuple("CircuitBreakerBody").field(&kind).finish()
    }
}

impl<B, K, C> Body for CircuitBreakerBody<B, K, C>
where
    B: Body,
    B::Error: Into<BoxError>,
    C: Classify,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            BodyKindProj::Guarded { body } => body.poll_frame(cx),
            BodyKindProj::Plain { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Guarded { body } => body.is_end_stream(),
            BodyKind::Plain { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Guarded { body } => body.size_hint(),
            BodyKind::Plain { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<F, ResBody, K, C> {
        #[pin]
        state: State<F, ResBody, K, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody, K, C> {
        Calling { #[pin] future: F, recorder: Option<Recorder<K, C>> },
        Unguarded { #[pin] future: F },
        Refused { response: Option<Box<Response<ArmorBody<ResBody>>>> },
    }
}

impl<F, ResBody, K, C> ResponseFuture<F, ResBody, K, C> {
    pub(crate) fn call(future: F, recorder: Recorder<K, C>) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                recorder: Some(recorder),
            },
        }
    }

    pub(crate) fn unguarded(future: F) -> Self {
        ResponseFuture {
            state: State::Unguarded { future },
        }
    }

    pub(crate) fn refused(response: Response<ArmorBody<ResBody>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<F, E, ResBody, K, C> Future for ResponseFuture<F, ResBody, K, C>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: http_body::Body,
    C: Classify,
{
    type Output = Result<Response<CircuitBreakerBody<ResBody, K, C>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { future, recorder } => {
                let result = ready!(future.poll(cx));
                let mut recorder = recorder
                    .take()
                    .expect("circuit-breaker future polled after completion");
                Poll::Ready(match result {
                    Ok(response) => {
                        recorder.head = recorder
                            .classifier
                            .classify_response_to(recorder.protocol, &response);
                        Ok(response.map(|body| CircuitBreakerBody {
                            kind: BodyKind::Guarded {
                                body: GuardBody::new(body, recorder),
                            },
                        }))
                    }
                    Err(error) => {
                        let outcome = recorder.classifier.classify_error(&error);
                        recorder.finish(outcome);
                        Err(error)
                    }
                })
            }
            StateProj::Unguarded { future } => future.poll(cx).map_ok(|response| {
                response.map(|body| CircuitBreakerBody {
                    kind: BodyKind::Plain {
                        body: ArmorBody::inner(body),
                    },
                })
            }),
            StateProj::Refused { response } => {
                let response = response
                    .take()
                    .expect("circuit-breaker future polled after completion");
                Poll::Ready(Ok(response.map(|body| CircuitBreakerBody {
                    kind: BodyKind::Plain { body },
                })))
            }
        }
    }
}
