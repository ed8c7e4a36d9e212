//! What the cache does once a request needs more than a stored answer
//! found at once: waiting for the store or for another request's fetch,
//! asking the origin (conditionally when something is stored), and turning
//! the origin's answer into a stored entry, a refreshed one, or a stale
//! one served in place of an error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::CONTENT_RANGE;
use http::header::{
    AGE, CONTENT_LENGTH, CONTENT_LOCATION, IF_MODIFIED_SINCE, IF_NONE_MATCH, LOCATION, RANGE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{CacheBody, Recording};
use super::directives::CacheControl;
use super::entry::{self, Entry, not_modified_headers, stored_headers, updated_headers};
use super::flight::{self, Flight, Join};
use super::key::{self, CacheKey};
use super::metrics::Lookup;
use super::policy::{Freshness, Millis, NotStorable, RequestDirectives, StaleUse, Usable};
use super::range::{self, RangeAnswer};
use super::settings::Shared;
use super::status::{CacheStatus, Forward, write_hit};
use super::store::{Lead, StoreCall, Variants};
use super::vary::vary_names;
use crate::BoxError;
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection, render_default};

type BoxResponseFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<CacheBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`CacheService`](super::CacheService).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Forward { #[pin] future: F, after: Option<Box<AfterForward>> },
        Boxed { future: BoxResponseFuture<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn ready(response: Response<CacheBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    /// The inner service's answer, untouched but for the body type, then
    /// `after` (invalidation, `Cache-Status`) if given.
    pub(crate) fn forward(future: F, after: Option<AfterForward>) -> Self {
        ResponseFuture {
            kind: Kind::Forward {
                future,
                after: after.map(Box::new),
            },
        }
    }

    pub(crate) fn boxed(future: BoxResponseFuture<B, E>) -> Self {
        ResponseFuture {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Forward { future, after } => {
                let response = ready!(future.poll(cx))?;
                let (mut head, body) = response.into_parts();
                if let Some(after) = after.take() {
                    after.apply(head.status, &mut head.headers);
                }
                Poll::Ready(Ok(Response::from_parts(head, CacheBody::upstream(body))))
            }
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

/// What the cache does with the answer to a request it only forwards.
pub(crate) struct AfterForward {
    pub(crate) shared: Arc<Shared>,
    /// Why the cache only forwarded it: its method, or the bypass rule.
    pub(crate) why: Forward,
    /// For an unsafe method: the target, whose entries a success removes.
    pub(crate) invalidate: Option<CacheKey>,
    /// For a GET of a URL known to be uncacheable, sent on directly: what
    /// judging its answer needs.
    pub(crate) pass: Option<PassCheck>,
}

/// A GET forwarded without the store's machinery because its URL's last
/// answer could not be stored (and nothing is stored for it): its answer
/// is judged as ever, and if it may be stored now, the URL's pass ends so
/// the next request stores it. (Storing is never required; skipping one
/// answer is the price of not carrying a request's copy for every call to
/// a route that is never cacheable.)
pub(crate) struct PassCheck {
    pub(crate) key: Arc<str>,
    pub(crate) directives: RequestDirectives,
    pub(crate) request_time: Millis,
}

impl AfterForward {
    fn apply(self, status: StatusCode, headers: &mut HeaderMap) {
        let shared = &self.shared;
        if let Some(pass) = self.pass {
            let response = shared.policy.response_directives(headers);
            // Only requests without `Authorization` are sent this way.
            let request_headers = HeaderMap::new();
            let judged = verdict(
                shared,
                &Method::GET,
                &request_headers,
                &pass.directives,
                status,
                headers,
                &response,
                pass.request_time,
                shared.clock.now(),
            );
            let mut member = status_of(shared, &pass.key)
                .forward(Forward::UriMiss)
                .forward_status(status);
            match judged {
                Ok(_) => {
                    shared.flights.end_pass(&pass.key);
                    shared.metrics.lookup(Lookup::Miss);
                }
                Err(reason) => {
                    shared.metrics.lookup(Lookup::Uncacheable);
                    member = member.detail(reason.as_str());
                }
            }
            if shared.strip_tags {
                strip_tags(shared, headers);
            }
            member.write_to(headers);
            return;
        }
        // RFC 9111 §4.4: a non-error answer to an unsafe method invalidates
        // the target URI and same-origin Location / Content-Location.
        if let Some(target) = self
            .invalidate
            .filter(|_| status.is_success() || status.is_redirection())
        {
            let normalizer = shared.key_normalizer.as_ref();
            let mut keys = vec![{
                let mut target = target.clone();
                if let Some(normalize) = normalizer {
                    normalize(&mut target);
                }
                target.to_shared()
            }];
            for name in [LOCATION, CONTENT_LOCATION] {
                if let Some(location) = headers.get(name).and_then(|value| value.to_str().ok()) {
                    keys.extend(key::same_origin_key(&target, location, normalizer));
                }
            }
            for key in keys {
                shared.store.remove(&key).run_detached(());
            }
        }
        if shared.strip_tags {
            strip_tags(shared, headers);
        }
        CacheStatus::new(&shared.status_name)
            .forward(self.why)
            .forward_status(status)
            .write_to(headers);
    }
}

fn strip_tags(shared: &Shared, headers: &mut HeaderMap) {
    for name in &shared.tag_fields {
        headers.remove(name);
    }
}

/// The newest stored variant that matches the request.
pub(crate) fn find(
    shared: &Shared,
    variants: &Variants,
    request: &HeaderMap,
) -> Option<Arc<Entry>> {
    variants
        .iter()
        .rev()
        .find(|entry| shared.vary.matches(&entry.variant, request))
        .cloned()
}

/// A response made from a stored entry: a 304 when the client's own
/// conditional is satisfied, no body for HEAD, `Age` and `Cache-Status`.
pub(crate) fn from_entry<B>(
    shared: &Shared,
    entry: &Entry,
    request: &Parts,
    member: Member,
    now: Millis,
) -> Response<CacheBody<B>> {
    let fresh_left = shared.freshness(entry).fresh_left(now);
    let (code, mut headers, body) = if entry.satisfies_conditional(&request.headers) {
        (
            StatusCode::NOT_MODIFIED,
            not_modified_headers(&entry.headers),
            CacheBody::empty(),
        )
    } else if request.method == Method::HEAD {
        (entry.status, entry.headers.clone(), CacheBody::empty())
    } else {
        match range::answer(&request.headers, entry) {
            RangeAnswer::Whole => (
                entry.status,
                entry.headers.clone(),
                CacheBody::stored(entry.body.clone(), entry.trailers.clone()),
            ),
            RangeAnswer::Part {
                first,
                last,
                length,
            } => {
                let mut headers = entry.headers.clone();
                headers.insert(CONTENT_LENGTH, HeaderValue::from(last - first + 1));
                let content_range = format!("bytes {first}-{last}/{length}");
                if let Ok(value) = HeaderValue::try_from(content_range) {
                    headers.insert(CONTENT_RANGE, value);
                }
                let part = range::slice(&entry.body, first, last);
                (
                    StatusCode::PARTIAL_CONTENT,
                    headers,
                    CacheBody::stored(Arc::from(part), None),
                )
            }
            RangeAnswer::Unsatisfiable { length } => {
                let mut headers = entry.headers.clone();
                headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                let content_range = format!("bytes */{length}");
                if let Ok(value) = HeaderValue::try_from(content_range) {
                    headers.insert(CONTENT_RANGE, value);
                }
                (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    headers,
                    CacheBody::empty(),
                )
            }
        }
    };
    headers.insert(AGE, entry.age_header(now));
    match member {
        Member::Hit => write_hit(&mut headers, &shared.status_name, fresh_left),
        Member::Other(status) => status.ttl(fresh_left).write_to(&mut headers),
    }
    let mut response = Response::new(body);
    *response.status_mut() = code;
    *response.headers_mut() = headers;
    response
}

/// This cache's `Cache-Status` member for a response from the store.
pub(crate) enum Member {
    /// A plain hit (written on the fast path).
    Hit,
    /// Anything else, or a hit that shows its key.
    Other(CacheStatus),
}

/// The member of a hit: the fast one unless the key is shown.
pub(crate) fn hit(shared: &Shared, key: &str) -> Member {
    if shared.show_key {
        Member::Other(status_of(shared, key).hit())
    } else {
        Member::Hit
    }
}

/// The first `Cache-Status` member of a response, with the key if shown.
pub(crate) fn status_of(shared: &Shared, key: &str) -> CacheStatus {
    let status = CacheStatus::new(&shared.status_name);
    if shared.show_key {
        status.key(key)
    } else {
        status
    }
}

/// What a stored entry can do for a request without asking the origin
/// first.
pub(crate) enum FromStore<B> {
    /// Fresh, or stale within the request's `max-stale`: this answer.
    Answer(Response<CacheBody<B>>),
    /// Stale within `stale-while-revalidate`: this answer, and the request
    /// goes on to the origin behind it ([`revalidate_behind`]).
    AnswerAndRevalidate(Response<CacheBody<B>>),
    /// Nothing without validating it first.
    Validate,
}

/// The entry's answer to a request, counted in the lookup metrics.
pub(crate) fn from_store<B>(
    shared: &Shared,
    entry: &Entry,
    request: &Parts,
    key: &str,
    directives: &RequestDirectives,
    now: Millis,
) -> FromStore<B> {
    let (result, swr) = match shared.usable(entry, directives, now) {
        Usable::Fresh => (Lookup::Hit, false),
        Usable::Stale(StaleUse::MaxStale) => (Lookup::Stale, false),
        Usable::Stale(StaleUse::WhileRevalidate) => (Lookup::Stale, true),
        Usable::Validate => return FromStore::Validate,
    };
    shared.metrics.lookup(result);
    let response = from_entry(shared, entry, request, hit(shared, key), now);
    if swr {
        FromStore::AnswerAndRevalidate(response)
    } else {
        FromStore::Answer(response)
    }
}

/// Where a request that could not be answered at once stands.
pub(crate) struct Pending {
    pub(crate) shared: Arc<Shared>,
    pub(crate) parts: Parts,
    pub(crate) key: Arc<str>,
    pub(crate) directives: RequestDirectives,
    pub(crate) lookup: StoreAnswer,
}

/// The store's answer, known or to come.
pub(crate) enum StoreAnswer {
    Known(Option<Variants>),
    Later(StoreCall<Option<Variants>>),
}

/// Answers a request that needs the store's later answer, another
/// request's fetch, or the origin. `inner` is ready to be called.
pub(crate) async fn answer<S, ReqBody, ResBody>(
    pending: Pending,
    mut inner: S,
    body: ReqBody,
) -> Result<Response<CacheBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let Pending {
        shared,
        parts,
        key,
        directives,
        lookup,
    } = pending;
    let variants = match lookup {
        StoreAnswer::Known(variants) => variants,
        StoreAnswer::Later(call) => call.await,
    };
    let now = shared.clock.now();
    let found = variants
        .as_ref()
        .and_then(|variants| find(&shared, variants, &parts.headers));
    let mut why = match &variants {
        Some(variants) if !variants.is_empty() => Forward::VaryMiss,
        _ => Forward::UriMiss,
    };
    if let Some(entry) = &found {
        match from_store(&shared, entry, &parts, &key, &directives, now) {
            FromStore::Answer(response) => return Ok(response),
            FromStore::AnswerAndRevalidate(response) => {
                revalidate_behind(&shared, &mut inner, parts, body, key, entry.clone());
                return Ok(response);
            }
            FromStore::Validate => {
                why = if directives.no_cache || directives.cache_control.max_age().is_some() {
                    Forward::Request
                } else {
                    Forward::Stale
                };
            }
        }
    }
    if directives.cache_control.only_if_cached() {
        shared.metrics.lookup(Lookup::Miss);
        return Ok(not_cached(&shared, &key));
    }
    // A HEAD or range request is answered from a stored GET, never used
    // to refresh one: it goes to the origin as it came.
    let whole_get = parts.method == Method::GET && !parts.headers.contains_key(RANGE);
    let validating = found.filter(|_| whole_get);
    let mut flight = None;
    if whole_get {
        match shared.flights.join(&key, now) {
            Join::Pass => {}
            Join::Lead(mut leading) => {
                if let Some(hit) =
                    lead_everywhere(&shared, &key, &parts, &directives, &mut leading).await
                {
                    return Ok(hit);
                }
                flight = Some(leading);
            }
            Join::Wait(receiver) => {
                shared.metrics.coalesced();
                let _ = tokio::time::timeout(shared.lock_timeout, flight::landed(receiver)).await;
                if let Some(hit) = collapsed_hit(&shared, &key, &parts, &directives).await {
                    return Ok(hit);
                }
            }
        }
    }
    let exchange = Exchange {
        shared,
        key,
        directives,
        why,
        flight,
        counted: true,
    };
    exchange.fetch(&mut inner, parts, body, validating).await
}

/// The entry another fetch of `key` stored, if it answers this request.
async fn collapsed_hit<B>(
    shared: &Arc<Shared>,
    key: &Arc<str>,
    parts: &Parts,
    directives: &RequestDirectives,
) -> Option<Response<CacheBody<B>>> {
    let again = shared.store.get(key).await;
    let now = shared.clock.now();
    let entry = again
        .as_ref()
        .and_then(|variants| find(shared, variants, &parts.headers))?;
    if !matches!(
        shared.usable(&entry, directives, now),
        Usable::Fresh | Usable::Stale(StaleUse::MaxStale)
    ) {
        return None;
    }
    shared.metrics.lookup(Lookup::Hit);
    let status = status_of(shared, key).hit().collapsed();
    Some(from_entry(
        shared,
        &entry,
        parts,
        Member::Other(status),
        now,
    ))
}

/// Leads the fetch of `key` for every instance sharing the store, or, while
/// another instance fetches it, polls for its entry (5 ms, doubling to
/// 100 ms, asking to lead in between) until the lock timeout, then goes
/// upstream anyway.
async fn lead_everywhere<B>(
    shared: &Arc<Shared>,
    key: &Arc<str>,
    parts: &Parts,
    directives: &RequestDirectives,
    flight: &mut Flight,
) -> Option<Response<CacheBody<B>>> {
    let deadline = tokio::time::Instant::now() + shared.lock_timeout;
    let mut pause = Duration::from_millis(5);
    let mut counted = false;
    loop {
        if shared.store.lead(key).await == Lead::Go {
            flight.land_in(shared.store.clone());
            return None;
        }
        if !counted {
            shared.metrics.coalesced();
            counted = true;
        }
        if tokio::time::Instant::now() + pause > deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
        if let Some(hit) = collapsed_hit(shared, key, parts, directives).await {
            return Some(hit);
        }
    }
}

/// One trip to the origin for a GET or HEAD.
struct Exchange {
    shared: Arc<Shared>,
    key: Arc<str>,
    directives: RequestDirectives,
    why: Forward,
    flight: Option<Flight>,
    /// Whether the outcome counts in `armor.cache.lookups` (not for a
    /// background revalidation: its client was counted already).
    counted: bool,
}

impl Exchange {
    async fn fetch<S, ReqBody, ResBody>(
        self,
        inner: &mut S,
        parts: Parts,
        body: ReqBody,
        validating: Option<Arc<Entry>>,
    ) -> Result<Response<CacheBody<ResBody>>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let shared = self.shared.clone();
        let client = parts.clone();
        let mut upstream = parts;
        if let Some(entry) = &validating {
            make_conditional(&mut upstream.headers, entry);
        }
        let request_time = shared.clock.now();
        let result = inner.call(Request::from_parts(upstream, body)).await;
        let now = shared.clock.now();
        let stale_on_error = validating.as_ref().filter(|entry| {
            self.why == Forward::Stale && shared.freshness(entry).usable_on_error(now)
        });
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.count(if stale_on_error.is_some() {
                    Lookup::Stale
                } else {
                    Lookup::Uncacheable
                });
                return match stale_on_error {
                    Some(entry) => {
                        let status = status_of(&shared, &self.key).forward(Forward::Stale);
                        Ok(from_entry(
                            &shared,
                            entry,
                            &client,
                            Member::Other(status),
                            now,
                        ))
                    }
                    None => Err(error),
                };
            }
        };
        let status = response.status();
        if let Some(entry) = &validating {
            if status == StatusCode::NOT_MODIFIED {
                let refreshed = Arc::new(refresh(
                    &shared,
                    entry,
                    response.headers(),
                    request_time,
                    now,
                ));
                shared
                    .store
                    .put(self.key.clone(), refreshed.clone())
                    .run_detached(());
                self.count(Lookup::Revalidated);
                let status = status_of(&shared, &self.key)
                    .forward(self.why)
                    .forward_status(status);
                return Ok(from_entry(
                    &shared,
                    &refreshed,
                    &client,
                    Member::Other(status),
                    now,
                ));
            }
        }
        if let Some(entry) = stale_on_error {
            if matches!(status.as_u16(), 500 | 502 | 503 | 504) {
                self.count(Lookup::Stale);
                let status = status_of(&shared, &self.key)
                    .forward(Forward::Stale)
                    .forward_status(status);
                return Ok(from_entry(
                    &shared,
                    entry,
                    &client,
                    Member::Other(status),
                    now,
                ));
            }
        }
        Ok(self.store_or_pass(response, &client, request_time, now))
    }

    fn count(&self, result: Lookup) {
        if self.counted {
            self.shared.metrics.lookup(result);
        }
    }

    /// Passes the origin's answer on, storing it as it streams when it may
    /// be stored.
    fn store_or_pass<B: Body>(
        self,
        response: Response<B>,
        request: &Parts,
        request_time: Millis,
        now: Millis,
    ) -> Response<CacheBody<B>> {
        let shared = &self.shared;
        let (mut head, body) = response.into_parts();
        let directives = shared.policy.response_directives(&head.headers);
        let mut status = status_of(shared, &self.key)
            .forward(self.why)
            .forward_status(head.status);
        let verdict = verdict(
            shared,
            &request.method,
            &request.headers,
            &self.directives,
            head.status,
            &head.headers,
            &directives,
            request_time,
            now,
        );
        self.count(if verdict.is_ok() {
            Lookup::Miss
        } else {
            Lookup::Uncacheable
        });
        let body = match verdict {
            Ok(freshness) => {
                status = status.stored().ttl(freshness.fresh_left(now));
                let shared_mode = shared.policy.mode == super::CacheMode::Shared;
                let entry = Entry {
                    status: head.status,
                    headers: stored_headers(
                        &head.headers,
                        &directives,
                        shared_mode,
                        &shared.tag_fields,
                    ),
                    body: Arc::from(Vec::new()),
                    trailers: None,
                    freshness,
                    variant: shared
                        .vary
                        .variant(vary_names(&head.headers), &request.headers),
                    tags: Arc::from(entry::tags(&head.headers, &shared.tag_fields)),
                    invalidated: false,
                };
                let expected = head
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
                CacheBody::recorded(
                    body,
                    Recording {
                        entry,
                        key: self.key.clone(),
                        store: shared.store.clone(),
                        limit: shared.max_entry_bytes,
                        expected,
                        chunks: Vec::new(),
                        size: 0,
                        trailers: None,
                        flight: self.flight,
                    },
                )
            }
            Err(reason) => {
                // Another request's answer may differ only by its own
                // credentials; any other reason is the URL's.
                if let Some(flight) = self.flight.filter(|_| reason != NotStorable::Authorization) {
                    flight.pass(now);
                }
                status = status.detail(reason.as_str());
                CacheBody::upstream(body)
            }
        };
        if shared.strip_tags {
            strip_tags(shared, &mut head.headers);
        }
        status.write_to(&mut head.headers);
        Response::from_parts(head, body)
    }
}

/// Whether an answer may be stored, and how fresh it is if so.
#[allow(clippy::too_many_arguments)]
fn verdict(
    shared: &Shared,
    method: &Method,
    request_headers: &HeaderMap,
    request: &RequestDirectives,
    status: StatusCode,
    headers: &HeaderMap,
    directives: &CacheControl,
    request_time: Millis,
    now: Millis,
) -> Result<Freshness, NotStorable> {
    shared.policy.storable(
        method,
        request_headers,
        request,
        status,
        headers,
        directives,
    )?;
    let too_large = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > shared.max_entry_bytes as u64);
    if too_large {
        return Err(NotStorable::TooLarge);
    }
    let freshness = shared
        .policy
        .freshness(status, headers, directives, request_time, now);
    let validator = headers.contains_key(http::header::ETAG)
        || headers.contains_key(http::header::LAST_MODIFIED);
    let useful = freshness.lifetime > freshness.initial_age
        || validator
        || freshness.stale_while_revalidate > 0
        || freshness.stale_if_error > 0;
    if useful {
        Ok(freshness)
    } else {
        Err(NotStorable::NoFreshness)
    }
}

/// Asks the origin whether the stored response is still current: our
/// validators replace the client's (whose own conditional we answer).
fn make_conditional(headers: &mut HeaderMap, entry: &Entry) {
    headers.remove(IF_NONE_MATCH);
    headers.remove(IF_MODIFIED_SINCE);
    if let Some(etag) = entry.etag() {
        headers.insert(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = entry.last_modified() {
        headers.insert(IF_MODIFIED_SINCE, modified.clone());
    }
}

/// RFC 9111 §4.3.4: the stored response updated by a 304, its freshness
/// measured afresh (with the 304's own `Age`, not the old one).
fn refresh(
    shared: &Shared,
    entry: &Entry,
    not_modified: &HeaderMap,
    request_time: Millis,
    now: Millis,
) -> Entry {
    let merged = updated_headers(&entry.headers, not_modified);
    let directives = shared.policy.response_directives(&merged);
    let mut measured = merged.clone();
    if let Some(age) = not_modified.get(AGE) {
        measured.insert(AGE, age.clone());
    }
    let freshness =
        shared
            .policy
            .freshness(entry.status, &measured, &directives, request_time, now);
    let shared_mode = shared.policy.mode == super::CacheMode::Shared;
    Entry {
        headers: stored_headers(&merged, &directives, shared_mode, &shared.tag_fields),
        freshness,
        invalidated: false,
        ..entry.clone()
    }
}

/// The answer to `only-if-cached` when nothing usable is stored (504).
fn not_cached<B>(shared: &Shared, key: &str) -> Response<CacheBody<B>> {
    let rejection = Rejection::new("cache", Reason::NotCached);
    let (mut head, body) = render_default(&rejection, Protocol::Http).into_parts();
    head.extensions.insert(rejection);
    status_of(shared, key)
        .detail("only-if-cached")
        .write_to(&mut head.headers);
    Response::from_parts(head, CacheBody::full(body))
}

/// Serves stale now and revalidates in the background (RFC 5861): one
/// revalidation per URL at a time, at most `max_background` in all; past
/// either, the stale answer is served without one.
pub(crate) fn revalidate_behind<S, ReqBody, ResBody>(
    shared: &Arc<Shared>,
    inner: &mut S,
    parts: Parts,
    body: ReqBody,
    key: Arc<str>,
    entry: Arc<Entry>,
) where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Some(flight) = shared.flights.try_lead(&key) else {
        return;
    };
    if shared.background.fetch_add(1, Ordering::AcqRel) >= shared.max_background {
        shared.background.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let slot = BackgroundSlot(shared.clone());
    let mut upstream = parts.clone();
    make_conditional(&mut upstream.headers, &entry);
    let request_time = shared.clock.now();
    let future = inner.call(Request::from_parts(upstream, body));
    let exchange = Exchange {
        shared: shared.clone(),
        key,
        directives: RequestDirectives::from_headers(&parts.headers),
        why: Forward::Stale,
        flight: Some(flight),
        counted: false,
    };
    runtime.spawn(async move {
        let _slot = slot;
        let Ok(response) = future.await else { return };
        let now = exchange.shared.clock.now();
        if response.status() == StatusCode::NOT_MODIFIED {
            let refreshed = refresh(
                &exchange.shared,
                &entry,
                response.headers(),
                request_time,
                now,
            );
            exchange
                .shared
                .store
                .put(exchange.key.clone(), Arc::new(refreshed))
                .run_detached(());
            return;
        }
        // Read the new response to its end, storing it if it may be.
        let body = exchange
            .store_or_pass(response, &parts, request_time, now)
            .into_body();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if frame.is_err() {
                break;
            }
        }
    });
}

/// A place among the background revalidations, given back on drop.
struct BackgroundSlot(Arc<Shared>);

impl Drop for BackgroundSlot {
    fn drop(&mut self) {
        self.0.background.fetch_sub(1, Ordering::AcqRel);
    }
}
