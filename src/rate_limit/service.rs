use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::future::RateHeaders;
use super::headers;
use super::layer::{MissingKey, Mode, Shared};
use super::store::{Check, Decision, Placement, RateStore, Verdict};
use crate::body::ArmorBody;
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, RequestHead};
use crate::reject::{Reason, Rejection};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, K: KeyExtractor, St> {
    inner: S,
    shared: Arc<Shared<K, St>>,
}

impl<S: Clone, K: KeyExtractor, St> Clone for RateLimit<S, K, St> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, K: KeyExtractor, St> std::fmt::Debug for RateLimit<S, K, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, K: KeyExtractor, St> RateLimit<S, K, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K, St>>) -> Self {
        RateLimit { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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
        let shared = &*self.shared;
        let protocol = Protocol::of_request(&request);
        let head = RequestHead::of(&request);
        let check = Check {
            cost: shared.cost.as_ref().map_or(1, |cost| cost(&head)),
            max_wait: shared.max_wait,
            want_states: shared.policy_header.is_some(),
        };
        let decision = match shared.extractor.extract(&head) {
            Some(key) => {
                let mut pending = shared.store.check(&key, check);
                // An in-process store answers on the first poll; only a store
                // still waiting on its backend costs a box.
                match Pin::new(&mut pending).poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(decision) => decision,
                    Poll::Pending => {
                        let ready = self.take_ready_service();
                        let decider: Arc<dyn Decide> = self.shared.clone();
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
            None => match shared.missing_key {
                MissingKey::SharedBucket => {
                    if !shared.warned_missing_key.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            name = &*shared.name,
                            "a request had no rate-limit key and shares one bucket with all such \
                             requests; for PeerIp behind axum or tonic, enable tower-armor's \
                             `axum` or `tonic` feature (reported once)"
                        );
                    }
                    shared.unidentified.check(&(), check).into_inner()
                }
                MissingKey::Refuse(status) => {
                    shared.rejected.increment(1);
                    let rejection = Rejection::new("rate_limit", Reason::Unidentified)
                        .with_status(status)
                        .with_grpc_code(shared.missing_key_grpc);
                    return ResponseFuture::refused(shared.renderer.render(rejection, protocol));
                }
            },
        };
        match shared.decide(decision, protocol) {
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

/// What to do with a request once its store has decided.
pub(crate) enum Next {
    /// Call the service, adding these headers to its response.
    Proceed(Option<Box<RateHeaders>>),
    /// Wait this long, then call the service.
    Delay(std::time::Duration, Option<Box<RateHeaders>>),
    /// Answer with this refusal.
    Refuse(Response<Bytes>),
}

/// Turns a store's decision into what happens next: the same rules whether
/// the store answered at once or later.
pub(crate) trait Decide: Send + Sync {
    fn decide(&self, decision: Decision, protocol: Protocol) -> Next;
}

impl<K, St> Decide for Shared<K, St>
where
    K: KeyExtractor,
    St: RateStore<K::Key>,
{
    fn decide(&self, decision: Decision, protocol: Protocol) -> Next {
        if decision.placement == Placement::Inserted {
            self.live_keys.set(self.store.live_keys() as f64);
        }
        let headers = self.rate_headers(&decision);
        match decision.verdict {
            Verdict::Allowed => {
                self.allowed.increment(1);
                Next::Proceed(headers)
            }
            Verdict::Delayed(wait) => {
                self.allowed.increment(1);
                Next::Delay(wait, headers)
            }
            Verdict::Refused(_) if self.mode == Mode::Shadow => {
                self.shadow_rejected.increment(1);
                tracing::debug!(name = &*self.name, "rate limit would refuse (shadow mode)");
                Next::Proceed(headers)
            }
            Verdict::Refused(refusal) => {
                self.rejected.increment(1);
                let rejection = Rejection::new("rate_limit", Reason::RateLimited);
                let rejection = match (refusal, decision.placement) {
                    (Some((wait, quota)), _) => {
                        let name = self.limits.get(quota).map_or("?", |limit| &limit.name);
                        rejection
                            .with_retry_after(wait)
                            .with_detail(format!("quota \"{name}\" exceeded"))
                    }
                    (None, Placement::Full) => {
                        rejection.with_detail("too many distinct clients; try again later")
                    }
                    (None, _) => rejection
                        .with_detail("the request costs more than the quota allows at once"),
                };
                tracing::debug!(
                    name = &*self.name,
                    detail = rejection.detail(),
                    "rate limited"
                );
                let mut response = self.renderer.render_bytes(rejection, protocol);
                if let Some(headers) = headers {
                    headers.apply(response.headers_mut());
                }
                Next::Refuse(response)
            }
        }
    }
}

impl<K: KeyExtractor, St> Shared<K, St> {
    fn rate_headers(&self, decision: &Decision) -> Option<Box<RateHeaders>> {
        let policy = self.policy_header.clone()?;
        Some(Box::new(RateHeaders {
            policy,
            remaining: headers::remaining(&self.limits, &decision.quotas),
        }))
    }
}
