use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::decision::Check;
use super::limiter::{Decide, Limiter, Next};
use super::store::RateStore;
use crate::body::ArmorBody;
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, MissingKey, RequestHead};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer); built
/// with [`RateLimit::new`] or by the layer.
///
/// It needs `S: Clone`: a request in [`Mode::Wait`](super::Mode::Wait), or
/// one whose store answers later, calls the service from its response future,
/// so it takes the service `poll_ready` made ready and leaves a clone in its
/// place. Every axum, tonic and hyper service is `Clone`.
pub struct RateLimit<S, K: KeyExtractor, St> {
    pub(crate) inner: S,
    pub(crate) limiter: Arc<Limiter<K, St>>,
}

impl<S: Clone, K: KeyExtractor, St> Clone for RateLimit<S, K, St> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S: std::fmt::Debug, K: KeyExtractor, St> std::fmt::Debug for RateLimit<S, K, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.limiter.name)
            .finish_non_exhaustive()
    }
}

impl<S, K: KeyExtractor, St> RateLimit<S, K, St> {
    inner_service_accessors!();
}

impl<S, K, St, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    St: RateStore<K::Key>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let limiter = &*self.limiter;
        let protocol = Protocol::of_request(&request);
        let head = RequestHead::of(&request);
        let check = Check {
            cost: limiter.cost.as_ref().map_or(1, |cost| cost(&head)),
            max_wait: limiter.max_wait,
            want_states: limiter.header_template.is_some(),
        };
        let decision = match limiter.extractor.extract(&head) {
            Some(key) => {
                let mut pending = limiter.store.check(&key, check);
                // An in-process store answers on the first poll; only a store
                // still waiting on its backend costs a box.
                match Pin::new(&mut pending).poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(decision) => decision,
                    Poll::Pending => {
                        let ready = self.take_ready_service();
                        let decider: Arc<dyn Decide> = self.limiter.clone();
                        return ResponseFuture::deciding(
                            Box::pin(pending),
                            decider,
                            protocol,
                            ready,
                            request,
                        );
                    }
                }
            }
            None => {
                limiter.report_missing_key();
                match limiter.missing_key {
                    MissingKey::Shared => limiter.unidentified.check(&(), check).into_inner(),
                    MissingKey::Allow => {
                        limiter.metrics(|m| m.allowed.increment(1));
                        return ResponseFuture::call(self.inner.call(request), None);
                    }
                    MissingKey::Refuse(status) => {
                        limiter.metrics(|m| m.rejected.increment(1));
                        let rejection = MissingKey::rejection(status, "rate_limit");
                        return ResponseFuture::refused(
                            limiter.renderer.render(rejection, protocol),
                        );
                    }
                }
            }
        };
        match limiter.decide(decision, protocol) {
            Next::Proceed(headers) => ResponseFuture::call(self.inner.call(request), headers),
            Next::Delay(wait, headers) => {
                let ready = self.take_ready_service();
                ResponseFuture::wait(wait, ready, request, headers)
            }
            Next::Refuse(response) => ResponseFuture::refused(response.map(ArmorBody::full)),
        }
    }
}

impl<S: Clone, K: KeyExtractor, St> RateLimit<S, K, St> {
    /// Takes the service `poll_ready` made ready, leaving a clone in its place,
    /// for a call that happens later in the response future.
    fn take_ready_service(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}
