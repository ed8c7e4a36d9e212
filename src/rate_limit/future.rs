use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use std::sync::Arc;

use super::decision::Decision;
use super::headers::RateHeaders;
use super::limiter::{Decide, Next};
use crate::body::ArmorBody;
use crate::grpc::Protocol;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
    }
}

pin_project! {
    // Waiting and refusing are the rare paths: their bulky state (a service
    // clone and the request, or a whole response) lives in a box, so the
    // common future stays small and cheap to move.
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Calling { #[pin] future: S::Future, headers: Option<Box<RateHeaders>> },
        Deciding { deciding: Box<Deciding<S, ReqBody>> },
        Waiting { waiting: Pin<Box<Waiting<S, ReqBody>>> },
        Refused { response: Option<Box<Response<ArmorBody<ResBody>>>> },
    }
}

/// A request whose store has not answered yet.
struct Deciding<S, ReqBody> {
    decision: Pin<Box<dyn Future<Output = Decision> + Send>>,
    decider: Arc<dyn Decide>,
    protocol: Protocol,
    service: Option<S>,
    request: Option<Request<ReqBody>>,
}

pin_project! {
    struct Waiting<S, ReqBody> {
        #[pin]
        sleep: Sleep,
        service: Option<S>,
        request: Option<Request<ReqBody>>,
        headers: Option<Box<RateHeaders>>,
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn refused(response: Response<ArmorBody<ResBody>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn call(future: S::Future, headers: Option<Box<RateHeaders>>) -> Self {
        ResponseFuture {
            state: State::Calling { future, headers },
        }
    }

    pub(crate) fn deciding(
        decision: Pin<Box<dyn Future<Output = Decision> + Send>>,
        decider: Arc<dyn Decide>,
        protocol: Protocol,
        service: S,
        request: Request<ReqBody>,
    ) -> Self {
        ResponseFuture {
            state: State::Deciding {
                deciding: Box::new(Deciding {
                    decision,
                    decider,
                    protocol,
                    service: Some(service),
                    request: Some(request),
                }),
            },
        }
    }

    pub(crate) fn wait(
        wait: Duration,
        service: S,
        request: Request<ReqBody>,
        headers: Option<Box<RateHeaders>>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiting: Box::pin(Waiting {
                    sleep: tokio::time::sleep(wait),
                    service: Some(service),
                    request: Some(request),
                    headers,
                }),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ArmorBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(headers) = headers.take() {
                        headers.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response.map(ArmorBody::inner)));
                }
                StateProj::Deciding { deciding } => {
                    let decision = ready!(deciding.decision.as_mut().poll(cx));
                    let next = deciding.decider.decide(decision, deciding.protocol);
                    let (mut service, request) = deciding
                        .service
                        .take()
                        .zip(deciding.request.take())
                        .expect("a deciding rate-limit future holds its service and request");
                    match next {
                        Next::Proceed(headers) => {
                            let future = service.call(request);
                            state.set(State::Calling { future, headers });
                        }
                        Next::Delay(wait, headers) => state.set(State::Waiting {
                            waiting: Box::pin(Waiting {
                                sleep: tokio::time::sleep(wait),
                                service: Some(service),
                                request: Some(request),
                                headers,
                            }),
                        }),
                        Next::Refuse(response) => {
                            return Poll::Ready(Ok(response.map(ArmorBody::full)));
                        }
                    }
                }
                StateProj::Waiting { waiting } => {
                    let waiting = waiting.as_mut().project();
                    ready!(waiting.sleep.poll(cx));
                    let (mut service, request) = waiting
                        .service
                        .take()
                        .zip(waiting.request.take())
                        .expect("a waiting rate-limit future holds its service and request");
                    let headers = waiting.headers.take();
                    // The service was made ready in `poll_ready` before the wait.
                    let future = service.call(request);
                    state.set(State::Calling { future, headers });
                }
                StateProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("rate-limit future polled after completion");
                    return Poll::Ready(Ok(*response));
                }
            }
        }
    }
}
