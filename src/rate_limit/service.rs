use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use super::future::RateHeaders;
use super::gcra::{Decision, Placement, Verdict};
use super::headers;
use super::key::{KeyExtractor, RequestHead};
use super::layer::{MissingKey, Mode, Shared};
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, K: KeyExtractor> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: Clone, K: KeyExtractor> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, K: KeyExtractor> std::fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, K: KeyExtractor> RateLimit<S, K> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K>>) -> Self {
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

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
{
    type Response = Response<crate::body::ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let protocol = Protocol::of_request(&request);
        let head = RequestHead::of(&request);
        let cost = shared.cost.as_ref().map_or(1, |cost| cost(&head));
        let want_states = shared.policy_header.is_some();
        let (decision, placement) = match shared.extractor.extract(&head) {
            Some(key) => shared.store.check(&key, cost, shared.max_wait, want_states),
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
                    shared
                        .unidentified
                        .check(&(), cost, shared.max_wait, want_states)
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
        if placement == Placement::Inserted {
            shared.live_keys.set(shared.store.live_keys() as f64);
        }
        let headers = rate_headers(shared, &decision);
        match decision.verdict {
            Verdict::Allowed => {
                shared.allowed.increment(1);
                ResponseFuture::call(self.inner.call(request), headers)
            }
            Verdict::Delayed(wait) => {
                shared.allowed.increment(1);
                // Take the service that was made ready; leave a clone in its place.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::wait(Duration::from_nanos(wait), ready, request, headers)
            }
            Verdict::Refused(_) if shared.mode == Mode::Shadow => {
                shared.shadow_rejected.increment(1);
                tracing::debug!(
                    name = &*shared.name,
                    "rate limit would refuse (shadow mode)"
                );
                ResponseFuture::call(self.inner.call(request), headers)
            }
            Verdict::Refused(refusal) => {
                shared.rejected.increment(1);
                let mut rejection = Rejection::new("rate_limit", Reason::RateLimited);
                let limits = shared.store.limits();
                rejection = match (refusal, placement) {
                    (Some((wait, quota)), _) => rejection
                        .with_retry_after(Duration::from_nanos(wait))
                        .with_detail(format!("quota \"{}\" exceeded", limits[quota].name)),
                    (None, Placement::Full) => {
                        rejection.with_detail("too many distinct clients; try again later")
                    }
                    (None, _) => rejection
                        .with_detail("the request costs more than the quota allows at once"),
                };
                tracing::debug!(
                    name = &*shared.name,
                    detail = rejection.detail(),
                    "rate limited"
                );
                let mut response = shared.renderer.render(rejection, protocol);
                if let Some(headers) = headers {
                    headers.apply(response.headers_mut());
                }
                ResponseFuture::refused(response)
            }
        }
    }
}

fn rate_headers<K: KeyExtractor>(
    shared: &Shared<K>,
    decision: &Decision,
) -> Option<Box<RateHeaders>> {
    let policy = shared.policy_header.clone()?;
    let limits = shared.store.limits();
    Some(Box::new(RateHeaders {
        policy,
        remaining: headers::remaining(limits, &decision.quotas[..limits.len()]),
    }))
}
