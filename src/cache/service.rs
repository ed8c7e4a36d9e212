use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONNECTION, RANGE, UPGRADE};
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::future::{
    AfterForward, FromStore, PassCheck, Pending, ResponseFuture, StoreAnswer, answer, find,
    from_store, revalidate_behind,
};
use super::key::{CacheKey, primary_key};
use super::metrics::Lookup;
use super::policy::RequestDirectives;
use super::settings::Shared;
use super::status::Forward;
use crate::BoxError;
use crate::grpc::Protocol;
use crate::key::RequestHead;

/// The service made by [`CacheLayer`](super::CacheLayer); built with
/// [`CacheService::new`] or by the layer.
///
/// It needs `S: Clone`: a request that waits (for its store, or for another
/// request fetching the same URL) calls the service from its response
/// future, so it takes the service `poll_ready` made ready and leaves a
/// clone in its place. Every axum, tonic and hyper service is `Clone`.
pub struct CacheService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: Clone> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        CacheService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.inner)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S> CacheService<S> {
    inner_service_accessors!();
}

/// Requests the cache leaves entirely alone: gRPC calls and protocol
/// upgrades (WebSocket) are not HTTP resources to cache.
fn untouched<B>(request: &Request<B>) -> bool {
    Protocol::of_request(request).is_grpc()
        || request.method() == Method::CONNECT
        || (request.headers().contains_key(UPGRADE)
            && request.headers().get_all(CONNECTION).iter().any(|value| {
                value
                    .to_str()
                    .is_ok_and(|text| text.to_ascii_lowercase().contains("upgrade"))
            }))
}

/// RFC 9110 §9.2.1: methods that do not change the resource.
fn safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if untouched(&request) {
            self.shared.metrics.lookup(Lookup::Bypass);
            return ResponseFuture::forward(self.inner.call(request), None);
        }
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let invalidate =
                (!safe(method)).then(|| CacheKey::of(request.uri(), request.headers()));
            self.shared.metrics.lookup(Lookup::Bypass);
            let after = AfterForward {
                shared: self.shared.clone(),
                why: Forward::Method,
                invalidate,
                pass: None,
            };
            return ResponseFuture::forward(self.inner.call(request), Some(after));
        }
        if let Some(bypass) = &self.shared.bypass {
            if bypass(&RequestHead::of(&request)) {
                self.shared.metrics.lookup(Lookup::Bypass);
                let after = AfterForward {
                    shared: self.shared.clone(),
                    why: Forward::Bypass,
                    invalidate: None,
                    pass: None,
                };
                return ResponseFuture::forward(self.inner.call(request), Some(after));
            }
        }
        let shared = &self.shared;
        let (parts, body) = request.into_parts();
        let key = primary_key(&parts, shared.key_normalizer.as_ref());
        let directives = RequestDirectives::from_headers(&parts.headers);
        let lookup = match shared.store.get(&key).now() {
            Ok(variants) => StoreAnswer::Known(variants),
            Err(later) => StoreAnswer::Later(later),
        };
        // A URL whose last answer could not be stored, with nothing stored:
        // sent on as it is, its answer judged at the head (see `PassCheck`).
        if let StoreAnswer::Known(None) = &lookup {
            let now = shared.clock.now();
            let plain_get = parts.method == Method::GET
                && !parts.headers.contains_key(RANGE)
                && !parts.headers.contains_key(AUTHORIZATION)
                && !directives.cache_control.only_if_cached();
            if plain_get && shared.flights.passing(&key, now) {
                let after = AfterForward {
                    shared: shared.clone(),
                    why: Forward::UriMiss,
                    invalidate: None,
                    pass: Some(PassCheck {
                        key: Arc::from(&*key),
                        directives,
                        request_time: now,
                    }),
                };
                let request = Request::from_parts(parts, body);
                return ResponseFuture::forward(self.inner.call(request), Some(after));
            }
        }
        // The fast path: a stored answer usable now, found without waiting.
        if let StoreAnswer::Known(Some(variants)) = &lookup {
            if let Some(entry) = find(shared, variants, &parts.headers) {
                let now = shared.clock.now();
                match from_store(shared, &entry, &parts, &key, &directives, now) {
                    FromStore::Answer(response) => return ResponseFuture::ready(response),
                    FromStore::AnswerAndRevalidate(response) => {
                        let shared = shared.clone();
                        let key = Arc::from(&*key);
                        revalidate_behind(&shared, &mut self.inner, parts, body, key, entry);
                        return ResponseFuture::ready(response);
                    }
                    FromStore::Validate => {}
                }
            }
        }
        let pending = Pending {
            shared: shared.clone(),
            parts,
            key: Arc::from(&*key),
            directives,
            lookup,
        };
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::boxed(Box::pin(answer(pending, ready, body)))
    }
}
