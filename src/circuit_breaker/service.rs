use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::breaker::Breaker;
use super::core::Admission;
use super::future::{Recorder, ResponseBody};
use super::layer::{Breakers, Shared};
use crate::classify::Classify;
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, RequestHead};
use crate::reject::{Reason, Rejection};

/// The service made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
pub struct CircuitBreaker<S, E: KeyExtractor, C> {
    inner: S,
    shared: Arc<Shared<E, C>>,
    /// Whether `inner` has been polled ready for the next call. An open
    /// breaker answers `poll_ready` without asking the inner service, so a
    /// call admitted after all (the open period just ended) gets the inner
    /// service ready in its future.
    inner_ready: bool,
}

impl<S: Clone, E: KeyExtractor, C> Clone for CircuitBreaker<S, E, C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            inner_ready: false,
        }
    }
}

impl<S: std::fmt::Debug, E: KeyExtractor, C> std::fmt::Debug for CircuitBreaker<S, E, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E: KeyExtractor, C> CircuitBreaker<S, E, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<E, C>>) -> Self {
        CircuitBreaker {
            inner,
            shared,
            inner_ready: false,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn breaker_for<B>(&self, request: &Request<B>) -> Arc<Breaker<E::Key>> {
        match &self.shared.breakers {
            Breakers::Single(breaker) => breaker.clone(),
            Breakers::Keyed(registry) => {
                match self.shared.extractor.extract(&RequestHead::of(request)) {
                    Some(key) => registry.get(&key),
                    None => registry.shared.clone(),
                }
            }
        }
    }
}

impl<S, E, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, E, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    E: KeyExtractor,
    C: Classify,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody, E::Key, C>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, E::Key, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.inner_ready {
            return Poll::Ready(Ok(()));
        }
        // An open breaker refuses without waiting on the inner service: when
        // the service is what is failing, its readiness may never come.
        if let Breakers::Single(breaker) = &self.shared.breakers
            && breaker.core.refusing()
        {
            return Poll::Ready(Ok(()));
        }
        let ready = self.inner.poll_ready(cx);
        self.inner_ready = matches!(ready, Poll::Ready(Ok(())));
        ready
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let breaker = self.breaker_for(&request);
        let protocol = Protocol::of_request(&request);
        let permit = match breaker.admit() {
            Admission::Admitted(permit) => permit,
            Admission::Refused(wait) => {
                let mut rejection = Rejection::new("circuit_breaker", Reason::CircuitOpen)
                    .with_detail(format!(
                        "circuit breaker \"{}\" is {}",
                        breaker.observer.name,
                        breaker.core.state().as_str().replace('_', "-")
                    ));
                if let Some(wait) = wait {
                    rejection = rejection.with_retry_after(wait);
                }
                return ResponseFuture::refused(self.shared.renderer.render(rejection, protocol));
            }
        };
        let recorder = Recorder::new(breaker, permit, self.shared.classifier.clone(), protocol);
        if std::mem::take(&mut self.inner_ready) {
            ResponseFuture::call(self.inner.call(request), recorder)
        } else {
            // Admitted although `poll_ready` skipped the inner service: make a
            // clone ready in the future, leaving a fresh clone here.
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            ResponseFuture::ready_then_call(service, request, recorder)
        }
    }
}
