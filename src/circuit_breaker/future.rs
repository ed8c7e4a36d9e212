use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::breaker::Breaker;
use super::core::Permit;
use crate::body::{ArmorBody, BodyEnd, GuardBody, OnBodyEnd};
use crate::classify::{Classification, Classify, FailureKind, Outcome};
use crate::grpc::Protocol;

/// The response body of [`CircuitBreaker`](super::CircuitBreaker): the inner
/// body, watched to its end so the call's outcome (gRPC trailers included)
/// reaches the breaker; or a refusal.
pub type ResponseBody<B, K, C> = ArmorBody<GuardBody<B, Recorder<K, C>>>;

/// Reports one admitted call to its breaker exactly once: when its response
/// body ends, when the service fails, or (as a cancellation, which gives a
/// probe permit back) when it is dropped first.
pub struct Recorder<K, C> {
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

    fn finish(&mut self, outcome: Outcome) {
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
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<S, ReqBody, ResBody, K, C>
    where
        S: Service<Request<ReqBody>>,
        C: Classify,
    {
        #[pin]
        state: State<S, ReqBody, ResBody, K, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody, K, C>
    where
        S: Service<Request<ReqBody>>,
        C: Classify,
    {
        Calling { #[pin] future: S::Future, recorder: Option<Recorder<K, C>> },
        // Rare: admitted after `poll_ready` skipped the inner service.
        Readying { readying: Box<Readying<S, ReqBody, K, C>> },
        Refused { response: Option<Box<Response<ResponseBody<ResBody, K, C>>>> },
    }
}

struct Readying<S, ReqBody, K, C> {
    service: S,
    request: Option<Request<ReqBody>>,
    recorder: Option<Recorder<K, C>>,
}

impl<S, ReqBody, ResBody, K, C> ResponseFuture<S, ReqBody, ResBody, K, C>
where
    S: Service<Request<ReqBody>>,
    C: Classify,
{
    pub(crate) fn call(future: S::Future, recorder: Recorder<K, C>) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                recorder: Some(recorder),
            },
        }
    }

    pub(crate) fn ready_then_call(
        service: S,
        request: Request<ReqBody>,
        recorder: Recorder<K, C>,
    ) -> Self {
        ResponseFuture {
            state: State::Readying {
                readying: Box::new(Readying {
                    service,
                    request: Some(request),
                    recorder: Some(recorder),
                }),
            },
        }
    }

    pub(crate) fn refused(response: Response<ResponseBody<ResBody, K, C>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<S, ReqBody, ResBody, K, C> Future for ResponseFuture<S, ReqBody, ResBody, K, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    C: Classify,
{
    type Output = Result<Response<ResponseBody<ResBody, K, C>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future, recorder } => {
                    let result = ready!(future.poll(cx));
                    let mut recorder = recorder
                        .take()
                        .expect("circuit-breaker future polled after completion");
                    return Poll::Ready(match result {
                        Ok(response) => {
                            recorder.head = recorder
                                .classifier
                                .classify_response_to(recorder.protocol, &response);
                            Ok(response
                                .map(|body| ArmorBody::inner(GuardBody::new(body, recorder))))
                        }
                        Err(error) => {
                            let outcome = recorder.classifier.classify_error(&error);
                            recorder.finish(outcome);
                            Err(error)
                        }
                    });
                }
                StateProj::Readying { readying } => {
                    if let Err(error) = ready!(readying.service.poll_ready(cx)) {
                        if let Some(mut recorder) = readying.recorder.take() {
                            let outcome = recorder.classifier.classify_error(&error);
                            recorder.finish(outcome);
                        }
                        return Poll::Ready(Err(error));
                    }
                    let (request, recorder) = readying
                        .request
                        .take()
                        .zip(readying.recorder.take())
                        .expect("circuit-breaker future polled after completion");
                    let future = readying.service.call(request);
                    state.set(State::Calling {
                        future,
                        recorder: Some(recorder),
                    });
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("circuit-breaker future polled after completion");
                    return Poll::Ready(Ok(*response));
                }
            }
        }
    }
}
