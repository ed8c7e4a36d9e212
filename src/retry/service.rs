use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::{AttemptBody, ReplayBody};
use super::budget::Budgets;
use super::future::{ResponseFuture, Template};
use super::policy::is_idempotent;
use super::shared::Shared;
use crate::body::ArmorBody;
use crate::classify::Classify;
use crate::deadline::Deadline;
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, MissingKey, RequestHead};

/// The service made by [`RetryLayer`](super::RetryLayer); built with
/// [`Retry::new`] or by the layer.
///
/// It needs `S: Clone`, as retrying does: later attempts go to a clone of
/// the inner service, made ready before each one.
pub struct Retry<S, E: KeyExtractor, C, A> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared<E, C>>,
    pub(crate) adapter: A,
}

impl<S: Clone, E: KeyExtractor, C, A: Clone> Clone for Retry<S, E, C, A> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            adapter: self.adapter.clone(),
        }
    }
}

impl<S: std::fmt::Debug, E: KeyExtractor, C, A> std::fmt::Debug for Retry<S, E, C, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E: KeyExtractor, C, A> Retry<S, E, C, A> {
    inner_service_accessors!();
}

impl<S, E, C, A, B, ResBody> Service<Request<B>> for Retry<S, E, C, A>
where
    A: AttemptBody<B>,
    S: Service<Request<A::Body>, Response = Response<ResBody>> + Clone,
    B: http_body::Body,
    E: KeyExtractor,
    C: Classify,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, A, E, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let settings = &shared.settings;
        let protocol = Protocol::of_request(&request);
        let deadline = request.extensions().get::<Deadline>().copied();
        let mut stand_aside = false;
        let keyed_budget = match &shared.budgets {
            Budgets::Keyed(keyed) => match shared.extractor.extract(&RequestHead::of(&request)) {
                Some(key) => Some(keyed.get(&key)),
                None => {
                    let observer = &shared.observer;
                    observer.handles(|h| h.missing_key.increment(1));
                    observer
                        .missing_key_log
                        .log("retry", &observer.name, shared.missing_key);
                    match shared.missing_key {
                        MissingKey::Allow => {
                            stand_aside = true;
                            None
                        }
                        MissingKey::Refuse(status) => {
                            let rejection = MissingKey::rejection(status, "retry");
                            let response = shared.renderer.render_bytes(rejection, protocol);
                            return ResponseFuture::refused(response, shared.clone());
                        }
                        _ => Some(keyed.shared.clone()),
                    }
                }
            },
            _ => None,
        };
        // Decided before anything is kept: a request that may not be sent
        // twice, or whose body is known to be too long, goes through as is.
        let eligible = !stand_aside
            && settings.max_attempts > 1
            && match &shared.eligible {
                Some(eligible) => eligible(&RequestHead::of(&request)),
                // gRPC calls are all POST: for them the retryable codes
                // (UNAVAILABLE by default: not processed) are the safety rule.
                None => protocol.is_grpc() || is_idempotent(request.method(), request.headers()),
            }
            && request.body().size_hint().lower() <= settings.max_replay_bytes as u64;
        if !eligible {
            let request = request.map(|body| self.adapter.attempt_body(ReplayBody::once(body)));
            let future = self.inner.call(request);
            return ResponseFuture::once(future, shared.clone(), keyed_budget, protocol, deadline);
        }
        let (parts, body) = request.into_parts();
        let (first, replayer) = ReplayBody::record(body, settings.max_replay_bytes);
        let template = Template::of(&parts);
        let future = self
            .inner
            .call(Request::from_parts(parts, self.adapter.attempt_body(first)));
        // The called service goes with the future for later attempts; a
        // fresh clone takes its place here.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::retrying(
            future,
            service,
            template,
            replayer,
            self.adapter.clone(),
            shared.clone(),
            keyed_budget,
            protocol,
            deadline,
        )
    }
}
