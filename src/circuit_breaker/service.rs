use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::breaker::{Breaker, Breakers, Shared};
use super::core::Admission;
use super::future::{CircuitBreakerBody, Recorder};
use crate::classify::{Classify, Outcome};
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, MissingKey, RequestHead};
use crate::reject::{Reason, Rejection};

/// The service made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer);
/// built with [`CircuitBreaker::new`] or by the layer.
pub struct CircuitBreaker<S, E: KeyExtractor, C> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<E, C>>,
    /// Whether `inner` has been polled ready for the next call. An open
    /// breaker answers `poll_ready` without asking the inner service, so a
    /// call admitted after all (the open period ended in between) finds the
    /// inner service not ready, and is answered as if still open.
    pub(crate) inner_ready: bool,
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
    inner_service_accessors!();
}

/// Which breaker guards a request.
enum Guard<K> {
    Breaker(Arc<Breaker<K>>),
    /// No key and [`MissingKey::Allow`]: none.
    Unguarded,
    /// No key and [`MissingKey::Refuse`]: refused with this status.
    Refused(http::StatusCode),
}

impl<S, E: KeyExtractor, C> CircuitBreaker<S, E, C> {
    fn guard_for<B>(&self, request: &Request<B>) -> Guard<E::Key> {
        let registry = match &self.shared.breakers {
            Breakers::Single(breaker) => return Guard::Breaker(breaker.clone()),
            Breakers::Keyed(registry) => registry,
        };
        if let Some(key) = self.shared.extractor.extract(&RequestHead::of(request)) {
            return Guard::Breaker(registry.get(&key));
        }
        let observer = &registry.observer;
        observer.handles(|h| h.missing_key.increment(1));
        observer
            .missing_key_log
            .log("circuit_breaker", &observer.name, self.shared.missing_key);
        match self.shared.missing_key {
            MissingKey::Allow => Guard::Unguarded,
            MissingKey::Refuse(status) => Guard::Refused(status),
            _ => Guard::Breaker(registry.shared.clone()),
        }
    }
}

impl<S, E, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, E, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    E: KeyExtractor,
    C: Classify,
    ResBody: http_body::Body,
{
    type Response = Response<CircuitBreakerBody<ResBody, E::Key, C>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, E::Key, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.inner_ready {
            return Poll::Ready(Ok(()));
        }
        // An open breaker refuses without waiting on the inner service: when
        // the service is what is failing, its readiness may never come.
        let refusing = match &self.shared.breakers {
            Breakers::Single(breaker) => breaker.core.refusing(),
            Breakers::Keyed(_) => false,
        };
        if refusing {
            return Poll::Ready(Ok(()));
        }
        let ready = self.inner.poll_ready(cx);
        self.inner_ready = matches!(ready, Poll::Ready(Ok(())));
        ready
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let protocol = Protocol::of_request(&request);
        let breaker = match self.guard_for(&request) {
            Guard::Breaker(breaker) => breaker,
            Guard::Unguarded => {
                self.inner_ready = false;
                return ResponseFuture::unguarded(self.inner.call(request));
            }
            Guard::Refused(status) => {
                let rejection = MissingKey::rejection(status, "circuit_breaker");
                return ResponseFuture::refused(self.shared.renderer.render(rejection, protocol));
            }
        };
        let permit = match breaker.admit() {
            Admission::Admitted(permit) if std::mem::take(&mut self.inner_ready) => permit,
            Admission::Admitted(permit) => {
                // Admitted although `poll_ready` answered for an open breaker
                // without readying the inner service: the open period ended
                // in between. The call is answered as open; the permit goes
                // back untouched, so a probe is not lost.
                breaker.complete(permit, Outcome::Cancelled);
                return ResponseFuture::refused(self.refusal(&breaker, None, protocol));
            }
            Admission::Refused(wait) => {
                return ResponseFuture::refused(self.refusal(&breaker, wait, protocol));
            }
        };
        let recorder = Recorder::new(breaker, permit, self.shared.classifier.clone(), protocol);
        ResponseFuture::call(self.inner.call(request), recorder)
    }
}

impl<S, E: KeyExtractor, C> CircuitBreaker<S, E, C> {
    fn refusal<B>(
        &self,
        breaker: &Breaker<E::Key>,
        wait: Option<std::time::Duration>,
        protocol: Protocol,
    ) -> Response<crate::body::ArmorBody<B>> {
        let mut rejection =
            Rejection::new("circuit_breaker", Reason::CircuitOpen).with_detail(format!(
                "circuit breaker \"{}\" is {}",
                breaker.observer.name,
                breaker.core.state().as_str().replace('_', "-")
            ));
        if let Some(wait) = wait {
            rejection = rejection.with_retry_after(wait);
        }
        self.shared.renderer.render(rejection, protocol)
    }
}
