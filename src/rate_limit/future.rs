use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::body::ArmorBody;

/// The `RateLimit-Policy` and `RateLimit` values for one response.
#[derive(Debug, Clone)]
pub(crate) struct RateHeaders {
    pub(crate) policy: HeaderValue,
    pub(crate) remaining: HeaderValue,
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl RateHeaders {
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        headers.insert(RATELIMIT.clone(), self.remaining);
    }
}

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
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Calling { #[pin] future: S::Future, headers: Option<RateHeaders> },
        Waiting {
            #[pin] sleep: Sleep,
            service: Option<S>,
            request: Option<Request<ReqBody>>,
            headers: Option<RateHeaders>,
        },
        Refused { response: Option<Response<ArmorBody<ResBody>>> },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn refused(response: Response<ArmorBody<ResBody>>) -> Self {
        ResponseFuture {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn call(future: S::Future, headers: Option<RateHeaders>) -> Self {
        ResponseFuture {
            state: State::Calling { future, headers },
        }
    }

    pub(crate) fn wait(
        wait: Duration,
        service: S,
        request: Request<ReqBody>,
        headers: Option<RateHeaders>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                sleep: tokio::time::sleep(wait),
                service: Some(service),
                request: Some(request),
                headers,
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
                StateProj::Waiting {
                    sleep,
                    service,
                    request,
                    headers,
                } => {
                    ready!(sleep.poll(cx));
                    let (mut service, request) = service
                        .take()
                        .zip(request.take())
                        .expect("a waiting rate-limit future holds its service and request");
                    let headers = headers.take();
                    // The service was made ready in `poll_ready` before the wait.
                    let future = service.call(request);
                    state.set(State::Calling { future, headers });
                }
                StateProj::Refused { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("rate-limit future polled after completion")));
                }
            }
        }
    }
}
