//! The cache layer as a client of it sees it: what is stored, when it is
//! served, validated or refetched, and what `Cache-Status` and `Age` say.
//! Paused Tokio time drives every freshness window.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_armor::cache::{CacheLayer, CacheMode, CacheService, Purge, VaryNormalizer};

/// Response fields, as the origins here take them.
type Fields = &'static [(&'static str, &'static str)];

type Handler = Arc<dyn Fn(&Request<Full<Bytes>>, usize) -> Response<Full<Bytes>> + Send + Sync>;

/// An origin that answers with `handler` and records what reached it.
#[derive(Clone)]
struct Origin {
    handler: Handler,
    seen: Arc<Mutex<Vec<(Method, String, HeaderMap)>>>,
    delay: Duration,
}

impl Origin {
    fn new(
        handler: impl Fn(&Request<Full<Bytes>>, usize) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Self {
        Origin {
            handler: Arc::new(handler),
            seen: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    /// Every response has these headers and the body `body <n>`, where n
    /// counts requests from 1.
    fn with_headers(pairs: &'static [(&'static str, &'static str)]) -> Self {
        Origin::new(move |_, n| {
            let mut response = Response::builder();
            for (name, value) in pairs {
                response = response.header(*name, *value);
            }
            response.body(Full::from(format!("body {n}"))).unwrap()
        })
    }

    /// Answers `body <n>` with this `Cache-Control`, with status 200 until
    /// the returned switch is set, then with `failure`.
    fn breakable(cache_control: &'static str, failure: u16) -> (Self, Arc<AtomicBool>) {
        let broken = Arc::new(AtomicBool::new(false));
        let switch = broken.clone();
        let origin = Origin::new(move |_, n| {
            let status = if switch.load(Ordering::SeqCst) {
                failure
            } else {
                200
            };
            Response::builder()
                .status(status)
                .header("cache-control", cache_control)
                .body(Full::from(format!("body {n}")))
                .unwrap()
        });
        (origin, broken)
    }

    /// Every response has these headers; a request with `If-None-Match`
    /// gets them in a 304, any other the body `body <n>`.
    fn validating(pairs: &'static [(&'static str, &'static str)]) -> Self {
        Origin::new(move |request, n| {
            let mut response = Response::builder();
            for (name, value) in pairs {
                response = response.header(*name, *value);
            }
            if request.headers().contains_key("if-none-match") {
                return response.status(304).body(Full::default()).unwrap();
            }
            response.body(Full::from(format!("body {n}"))).unwrap()
        })
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last_headers(&self) -> HeaderMap {
        self.seen.lock().unwrap().last().unwrap().2.clone()
    }
}

impl Service<Request<Full<Bytes>>> for Origin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push((
                request.method().clone(),
                request.uri().to_string(),
                request.headers().clone(),
            ));
            seen.len()
        };
        let response = (self.handler)(&request, n);
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(response)
        })
    }
}

fn cached(origin: &Origin) -> CacheService<Origin> {
    CacheService::new(origin.clone(), &CacheLayer::new())
}

fn cached_with(origin: &Origin, layer: &CacheLayer) -> CacheService<Origin> {
    CacheService::new(origin.clone(), layer)
}

fn get(path: &str) -> Request<Full<Bytes>> {
    request(Method::GET, path, &[])
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "example.com");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

/// Status, headers and body text, the body read to its end (which is
/// when a miss is stored).
async fn send<S>(service: &mut S, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String)
where
    S: Service<
            Request<Full<Bytes>>,
            Response = Response<tower_armor::cache::CacheBody<Full<Bytes>>>,
            Error = Infallible,
        >,
{
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn cache_status(headers: &HeaderMap) -> &str {
    headers
        .get("cache-status")
        .map_or("", |value| value.to_str().unwrap())
}

async fn advance(seconds: u64) {
    tokio::time::advance(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn a_fresh_response_is_stored_then_served_with_age() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("x-from", "origin")]);
    let mut service = cached(&origin);
    let (status, headers, body) = send(&mut service, get("/a")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=uri-miss; fwd-status=200; stored; ttl=100"
    );

    advance(30).await;
    let (status, headers, body) = send(&mut service, get("/a")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
    assert_eq!(headers["age"], "30");
    assert_eq!(headers["x-from"], "origin");
    assert_eq!(cache_status(&headers), "tower-armor; hit; ttl=70");
    assert_eq!(origin.calls(), 1);

    // Another URL is another entry.
    let (_, _, body) = send(&mut service, get("/b")).await;
    assert_eq!(body, "body 2");
}

#[tokio::test(start_paused = true)]
async fn a_stale_response_is_validated_and_a_304_refreshes_it() {
    let origin = Origin::new(|request, n| {
        let builder = Response::builder()
            .header("cache-control", "max-age=10")
            .header("etag", "\"v1\"")
            .header("x-version", n.to_string());
        if request
            .headers()
            .get("if-none-match")
            .is_some_and(|tag| tag == "\"v1\"")
        {
            builder.status(304).body(Full::default()).unwrap()
        } else {
            builder.body(Full::from("content")).unwrap()
        }
    });
    let mut service = cached(&origin);
    send(&mut service, get("/r")).await;
    advance(11).await;
    let (status, headers, body) = send(&mut service, get("/r")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "content"));
    assert_eq!(origin.last_headers()["if-none-match"], "\"v1\"");
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=stale; fwd-status=304; ttl=10"
    );
    // The 304's fields replaced the stored ones.
    assert_eq!(headers["x-version"], "2");
    assert_eq!(headers["age"], "0");
    // Fresh again: no third request.
    advance(5).await;
    let (_, headers, _) = send(&mut service, get("/r")).await;
    assert_eq!(cache_status(&headers), "tower-armor; hit; ttl=5");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_304_age_replaces_the_old_one() {
    let origin = Origin::new(|request, _| {
        if request.headers().contains_key("if-modified-since") {
            Response::builder()
                .status(304)
                .header("cache-control", "max-age=100")
                .header("age", "40")
                .body(Full::default())
                .unwrap()
        } else {
            Response::builder()
                .header("cache-control", "max-age=100")
                .header("age", "99")
                .header("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")
                .body(Full::from("x"))
                .unwrap()
        }
    });
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    advance(2).await;
    let (_, headers, _) = send(&mut service, get("/")).await;
    assert_eq!(
        origin.last_headers()["if-modified-since"],
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(headers["age"], "40");
}

#[tokio::test(start_paused = true)]
async fn what_must_not_be_stored_is_not() {
    for (headers, detail) in [
        (
            &[("cache-control", "no-store, max-age=100")][..],
            "no-store",
        ),
        (&[("cache-control", "private, max-age=100")][..], "private"),
        (
            &[
                ("cache-control", "max-age=100"),
                ("set-cookie", "session=alice"),
            ][..],
            "set-cookie",
        ),
        (
            &[("cache-control", "max-age=100"), ("vary", "*")][..],
            "vary-any",
        ),
        (&[("x-nothing", "1")][..], "no-freshness"),
    ] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(headers.to_vec().into_boxed_slice());
        let origin = Origin::with_headers(pairs);
        let mut service = cached(&origin);
        let (_, first, _) = send(&mut service, get("/")).await;
        assert_eq!(
            cache_status(&first),
            format!("tower-armor; fwd=uri-miss; fwd-status=200; detail={detail}")
        );
        let (_, _, body) = send(&mut service, get("/")).await;
        assert_eq!(body, "body 2", "{headers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_private_cache_stores_private_responses() {
    let origin = Origin::with_headers(&[("cache-control", "private, max-age=100")]);
    let layer = CacheLayer::builder()
        .mode(CacheMode::Private)
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/")).await;
    let (_, _, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
}

#[tokio::test(start_paused = true)]
async fn one_users_cookie_or_authorised_answer_never_reaches_another() {
    // Stored with Set-Cookie allowed: the cookie itself is never replayed,
    // not even to a request that accepts any staleness.
    let origin = Origin::with_headers(&[
        ("cache-control", "max-age=1"),
        ("set-cookie", "session=alice"),
    ]);
    let layer = CacheLayer::builder()
        .store_set_cookie(true)
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    let (_, first, _) = send(&mut service, get("/")).await;
    assert_eq!(first["set-cookie"], "session=alice");
    advance(100).await;
    let (_, headers, body) = send(
        &mut service,
        request(Method::GET, "/", &[("cache-control", "max-stale")]),
    )
    .await;
    assert_eq!(body, "body 1");
    assert!(headers.get("set-cookie").is_none());

    // An Authorization request's answer is kept only when it says so.
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    let alice = || request(Method::GET, "/me", &[("authorization", "Bearer alice")]);
    let (_, first, _) = send(&mut service, alice()).await;
    assert!(cache_status(&first).ends_with("detail=authorization"));
    let (_, _, body) = send(&mut service, get("/me")).await;
    assert_eq!(body, "body 2");
}

#[tokio::test(start_paused = true)]
async fn max_stale_cannot_override_what_forbids_stale() {
    for directive in [
        "max-age=1, must-revalidate",
        "s-maxage=1",
        "max-age=1, proxy-revalidate",
    ] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("cache-control", directive)].into_boxed_slice());
        let origin = Origin::with_headers(pairs);
        let mut service = cached(&origin);
        send(&mut service, get("/")).await;
        advance(10).await;
        let (_, _, body) = send(
            &mut service,
            request(Method::GET, "/", &[("cache-control", "max-stale=1000")]),
        )
        .await;
        assert_eq!(body, "body 2", "{directive}");
    }
}

#[tokio::test(start_paused = true)]
async fn vary_keeps_one_variant_per_request_kind() {
    let origin = Origin::new(|request, n| {
        let language = request
            .headers()
            .get("accept-language")
            .map_or("none", |v| v.to_str().unwrap())
            .to_owned();
        Response::builder()
            .header("cache-control", "max-age=100")
            .header("vary", "Accept-Language")
            .body(Full::from(format!("{language} {n}")))
            .unwrap()
    });
    let mut service = cached(&origin);
    let en = || request(Method::GET, "/", &[("accept-language", "en")]);
    let fr = || request(Method::GET, "/", &[("accept-language", "fr")]);
    assert_eq!(send(&mut service, en()).await.2, "en 1");
    let (_, headers, body) = send(&mut service, fr()).await;
    assert_eq!(body, "fr 2");
    assert!(cache_status(&headers).contains("fwd=vary-miss"));
    // Both variants stay.
    assert_eq!(send(&mut service, en()).await.2, "en 1");
    assert_eq!(send(&mut service, fr()).await.2, "fr 2");
    assert_eq!(send(&mut service, get("/")).await.2, "none 3");
    assert_eq!(origin.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn vary_normalisers_merge_equivalent_requests() {
    let origin = Origin::with_headers(&[
        ("cache-control", "max-age=100"),
        ("vary", "accept-encoding"),
    ]);
    let layer = CacheLayer::builder()
        .vary_normalizer(
            http::header::ACCEPT_ENCODING,
            VaryNormalizer::accept_encoding(),
        )
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    send(
        &mut service,
        request(Method::GET, "/", &[("accept-encoding", "gzip, br")]),
    )
    .await;
    let (_, _, body) = send(
        &mut service,
        request(Method::GET, "/", &[("accept-encoding", "br,GZIP")]),
    )
    .await;
    assert_eq!(body, "body 1");
}

#[tokio::test(start_paused = true)]
async fn head_is_answered_from_a_stored_get() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("content-length", "6")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (status, headers, body) = send(&mut service, request(Method::HEAD, "/", &[])).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(headers["content-length"], "6");
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_clients_conditional_is_answered_304_from_a_fresh_entry() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("etag", "\"abc\"")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (status, headers, body) = send(
        &mut service,
        request(Method::GET, "/", &[("if-none-match", "W/\"abc\"")]),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    assert_eq!(headers["etag"], "\"abc\"");
    let (status, _, _) = send(
        &mut service,
        request(Method::GET, "/", &[("if-none-match", "\"other\"")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_if_cached_gets_504_when_nothing_usable_is_stored() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=10")]);
    let mut service = cached(&origin);
    let only_cached = || request(Method::GET, "/", &[("cache-control", "only-if-cached")]);
    let (status, headers, _) = send(&mut service, only_cached()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(cache_status(&headers), "tower-armor; detail=only-if-cached");
    assert_eq!(origin.calls(), 0);
    send(&mut service, get("/")).await;
    assert_eq!(send(&mut service, only_cached()).await.0, StatusCode::OK);
    advance(20).await;
    assert_eq!(
        send(&mut service, only_cached()).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn request_no_cache_and_pragma_force_a_trip_to_the_origin() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (_, headers, body) = send(
        &mut service,
        request(Method::GET, "/", &[("cache-control", "no-cache")]),
    )
    .await;
    assert_eq!(body, "body 2");
    assert!(cache_status(&headers).contains("fwd=request"));
    let (_, _, body) = send(
        &mut service,
        request(Method::GET, "/", &[("pragma", "no-cache")]),
    )
    .await;
    assert_eq!(body, "body 3");
    // The newest response replaced the old one.
    assert_eq!(send(&mut service, get("/")).await.2, "body 3");
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once_behind() {
    let mut origin =
        Origin::with_headers(&[("cache-control", "max-age=10, stale-while-revalidate=60")]);
    origin.delay = Duration::from_secs(1);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    advance(15).await;
    // Three requests inside the window: all served stale at once, one
    // revalidation between them.
    for _ in 0..3 {
        let (_, headers, body) = send(&mut service, get("/")).await;
        assert_eq!(body, "body 1");
        // Age counts the second the first answer took to arrive.
        assert_eq!(cache_status(&headers), "tower-armor; hit; ttl=-6");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(origin.calls(), 2);
    let (_, _, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 2");
    // Past the window, the request waits for the origin.
    advance(200).await;
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 3");
    assert!(cache_status(&headers).contains("fwd=stale"));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_stale_on_5xx_inside_its_window_only() {
    let (origin, failing) = Origin::breakable("max-age=10, stale-if-error=30", 503);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    failing.store(true, Ordering::SeqCst);
    advance(20).await;
    let (status, headers, body) = send(&mut service, get("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=stale; fwd-status=503; ttl=-10"
    );
    advance(30).await;
    let (status, _, _) = send(&mut service, get("/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn must_revalidate_forbids_stale_if_error() {
    let (origin, failing) =
        Origin::breakable("max-age=10, stale-if-error=300, must-revalidate", 500);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    failing.store(true, Ordering::SeqCst);
    advance(20).await;
    assert_eq!(
        send(&mut service, get("/")).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test(start_paused = true)]
async fn unsafe_methods_invalidate_the_target_and_same_origin_locations() {
    let origin = Origin::new(|request, n| {
        let mut response = Response::builder().header("cache-control", "max-age=100");
        if request.method() == Method::POST {
            response = response
                .header("location", "/other")
                .header("content-location", "http://elsewhere.example/third");
        }
        response.body(Full::from(format!("body {n}"))).unwrap()
    });
    let mut service = cached(&origin);
    send(&mut service, get("/target")).await;
    send(&mut service, get("/other")).await;
    let (_, headers, _) = send(&mut service, request(Method::POST, "/target", &[])).await;
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=method; fwd-status=200"
    );
    assert_eq!(send(&mut service, get("/target")).await.2, "body 4");
    assert_eq!(send(&mut service, get("/other")).await.2, "body 5");
    // A failed unsafe request invalidates nothing.
    let failing = Origin::new(|request, n| {
        let status = if request.method() == Method::DELETE {
            500
        } else {
            200
        };
        Response::builder()
            .status(status)
            .header("cache-control", "max-age=100")
            .body(Full::from(format!("body {n}")))
            .unwrap()
    });
    let mut service = cached(&failing);
    send(&mut service, get("/kept")).await;
    send(&mut service, request(Method::DELETE, "/kept", &[])).await;
    assert_eq!(send(&mut service, get("/kept")).await.2, "body 1");
}

#[tokio::test(start_paused = true)]
async fn purges_by_key_prefix_and_tag_hard_and_soft() {
    let origin = Origin::new(|request, n| {
        let tag = if request.uri().path().starts_with("/items") {
            "items"
        } else {
            "other"
        };
        Response::builder()
            .header("cache-control", "max-age=100, stale-while-revalidate=100")
            .header("surrogate-key", format!("all {tag}"))
            .body(Full::from(format!("body {n}")))
            .unwrap()
    });
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let mut service = cached_with(&origin, &layer);
    for path in ["/items/1", "/items/2", "/page"] {
        let (_, headers, _) = send(&mut service, get(path)).await;
        assert!(
            headers.get("surrogate-key").is_none(),
            "tags are not shown to clients"
        );
    }
    assert_eq!(handle.purge(Purge::Tag("items".into()), false).await, 2);
    assert_eq!(send(&mut service, get("/items/1")).await.2, "body 4");
    assert_eq!(send(&mut service, get("/page")).await.2, "body 3");

    let key = handle.key_of(&"http://example.com/page".parse().unwrap());
    assert_eq!(key, "http://example.com/page");
    assert_eq!(handle.purge(Purge::Key(key), false).await, 1);
    assert_eq!(send(&mut service, get("/page")).await.2, "body 5");

    assert_eq!(
        handle
            .purge(Purge::Prefix("http://example.com/items/".into()), false)
            .await,
        1
    );
    assert_eq!(send(&mut service, get("/items/1")).await.2, "body 6");

    // Soft: the entry is stale at once, served while it is fetched again.
    assert_eq!(handle.purge(Purge::Tag("all".into()), true).await, 2);
    let (_, headers, body) = send(&mut service, get("/page")).await;
    assert_eq!(body, "body 5");
    assert!(cache_status(&headers).contains("hit"));
    tokio::task::yield_now().await;
    assert_eq!(send(&mut service, get("/page")).await.2, "body 7");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_upstream_request() {
    let mut origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    origin.delay = Duration::from_millis(100);
    let service = cached(&origin);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut service = service.clone();
        tasks.push(tokio::spawn(async move {
            send(&mut service, get("/hot")).await
        }));
    }
    let mut collapsed = 0;
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
        collapsed += usize::from(cache_status(&headers).contains("collapsed"));
    }
    assert_eq!(origin.calls(), 1);
    assert_eq!(collapsed, 99);
}

#[tokio::test(start_paused = true)]
async fn waiters_recover_when_the_leader_is_dropped_or_uncacheable() {
    let mut origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    origin.delay = Duration::from_millis(100);
    let service = cached(&origin);
    // The leader's future is dropped mid-flight.
    let mut leader_service = service.clone();
    let leader = tokio::spawn(async move { send(&mut leader_service, get("/")).await });
    tokio::task::yield_now().await;
    let mut waiter_service = service.clone();
    let waiter = tokio::spawn(async move { send(&mut waiter_service, get("/")).await });
    tokio::task::yield_now().await;
    leader.abort();
    let (status, _, body) = waiter.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 2"));

    // The leader's answer cannot be stored: every waiter goes upstream.
    let mut origin = Origin::with_headers(&[("cache-control", "no-store")]);
    origin.delay = Duration::from_millis(100);
    let service = cached(&origin);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let mut service = service.clone();
        tasks.push(tokio::spawn(
            async move { send(&mut service, get("/")).await },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(origin.calls(), 5);
}

/// How long `count` concurrent GETs of `path` take to be answered.
async fn concurrent_wave(
    service: &CacheService<Origin>,
    path: &'static str,
    count: usize,
) -> Duration {
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..count {
        let mut service = service.clone();
        tasks.push(tokio::spawn(
            async move { send(&mut service, get(path)).await },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_url_found_uncacheable_is_not_coalesced_for_a_while() {
    // Answers 1 to 12 cannot be stored; later ones can.
    let mut origin = Origin::new(|_, n| {
        let builder = Response::builder();
        let builder = if n > 12 {
            builder.header("cache-control", "max-age=100")
        } else {
            builder
        };
        builder.body(Full::from(format!("body {n}"))).unwrap()
    });
    origin.delay = Duration::from_millis(100);
    let service = cached(&origin);
    // The first answer shows the URL uncacheable; the next wave goes
    // upstream together instead of queueing behind a leader.
    assert_eq!(
        concurrent_wave(&service, "/api", 1).await,
        Duration::from_millis(100)
    );
    assert_eq!(
        concurrent_wave(&service, "/api", 10).await,
        Duration::from_millis(100)
    );
    assert_eq!(origin.calls(), 11);
    // A request sent on alone is answered and counted as before.
    let (_, headers, _) = send(&mut service.clone(), get("/api")).await;
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=uri-miss; fwd-status=200; detail=no-freshness"
    );
    // The first storable answer ends the pass (it went by without the
    // store's machinery, so it is not stored); the next one is stored and
    // then served.
    let (_, headers, body) = send(&mut service.clone(), get("/api")).await;
    assert_eq!(body, "body 13");
    assert!(!cache_status(&headers).contains("stored"), "{headers:?}");
    let (_, headers, _) = send(&mut service.clone(), get("/api")).await;
    assert!(cache_status(&headers).contains("stored"), "{headers:?}");
    let (_, headers, body) = send(&mut service.clone(), get("/api")).await;
    assert_eq!(body, "body 14");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");

    // Without the window (or once it is over), the wave waits for one
    // leader's uncacheable answer, then goes upstream.
    let mut origin = Origin::with_headers(&[]);
    origin.delay = Duration::from_millis(100);
    let layer = CacheLayer::builder()
        .pass_uncacheable_for(Duration::ZERO)
        .build()
        .unwrap();
    let service = cached_with(&origin, &layer);
    assert_eq!(
        concurrent_wave(&service, "/api", 1).await,
        Duration::from_millis(100)
    );
    assert_eq!(
        concurrent_wave(&service, "/api", 10).await,
        Duration::from_millis(200)
    );
    let service = cached(&origin);
    assert_eq!(
        concurrent_wave(&service, "/other", 1).await,
        Duration::from_millis(100)
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        concurrent_wave(&service, "/other", 10).await,
        Duration::from_millis(200)
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_for_its_own_credentials_leaves_the_url_coalesced() {
    let mut origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    origin.delay = Duration::from_millis(100);
    let service = cached(&origin);
    let mut private = service.clone();
    send(
        &mut private,
        request(Method::GET, "/me", &[("authorization", "Bearer a")]),
    )
    .await;
    // Nothing stored for it, and the next wave still makes one request.
    assert_eq!(
        concurrent_wave(&service, "/me", 10).await,
        Duration::from_millis(100)
    );
    assert_eq!(origin.calls(), 2);
}

#[test]
fn an_uncacheable_pass_window_over_a_year_is_refused() {
    let error = CacheLayer::builder()
        .pass_uncacheable_for(Duration::from_secs(366 * 24 * 3600))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("365 days"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_limit_or_cut_short_are_passed_on_and_not_stored() {
    let origin = Origin::new(|_, n| {
        Response::builder()
            .header("cache-control", "max-age=100")
            .body(Full::from(format!("{n}").repeat(100)))
            .unwrap()
    });
    let layer = CacheLayer::builder().max_entry_bytes(50).build().unwrap();
    let mut service = cached_with(&origin, &layer);
    let (_, _, body) = send(&mut service, get("/")).await;
    assert_eq!(body.len(), 100);
    assert_eq!(send(&mut service, get("/")).await.2, "2".repeat(100));

    // Content-Length promises more than the body holds.
    let lying =
        Origin::with_headers(&[("cache-control", "max-age=100"), ("content-length", "100")]);
    let mut service = cached(&lying);
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    let _ = response.into_body().collect().await;
    assert_eq!(send(&mut service, get("/")).await.2, "body 2");

    // A client that goes away mid-body leaves nothing behind.
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    drop(response);
    assert_eq!(send(&mut service, get("/")).await.2, "body 2");
}

#[tokio::test(start_paused = true)]
async fn grpc_calls_and_upgrades_pass_through_untouched() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    let grpc = || {
        request(
            Method::POST,
            "/pkg.Svc/Call",
            &[("content-type", "application/grpc")],
        )
    };
    let (_, headers, _) = send(&mut service, grpc()).await;
    assert!(headers.get("cache-status").is_none());
    let upgrade = || {
        request(
            Method::GET,
            "/ws",
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
        )
    };
    send(&mut service, upgrade()).await;
    let (_, headers, body) = send(&mut service, upgrade()).await;
    assert!(headers.get("cache-status").is_none());
    assert_eq!(body, "body 3");
}

#[tokio::test(start_paused = true)]
async fn hop_by_hop_fields_are_not_replayed() {
    let origin = Origin::with_headers(&[
        ("cache-control", "max-age=100"),
        ("connection", "x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("x-end", "kept"),
    ]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (_, headers, _) = send(&mut service, get("/")).await;
    for name in ["connection", "x-hop", "keep-alive"] {
        assert!(headers.get(name).is_none(), "{name}");
    }
    assert_eq!(headers["x-end"], "kept");
}

#[tokio::test(start_paused = true)]
async fn a_key_normaliser_shares_entries_between_equivalent_urls() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let layer = CacheLayer::builder()
        .key_normalizer(|key| {
            key.remove_query_params(|name| name.starts_with("utm_"));
            key.sort_query();
        })
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/p?b=2&a=1&utm_source=x")).await;
    assert_eq!(send(&mut service, get("/p?a=1&b=2")).await.2, "body 1");
    assert_eq!(send(&mut service, get("/p?a=1")).await.2, "body 2");
}

#[test]
fn bad_settings_are_refused_at_build() {
    assert!(
        CacheLayer::builder()
            .heuristic(101, Duration::from_secs(1))
            .build()
            .is_err()
    );
    assert!(
        CacheLayer::builder()
            .lock_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_is_stored_without_being_read() {
    let origin = Origin::new(|_, _| {
        Response::builder()
            .status(204)
            .header("cache-control", "max-age=100")
            .body(Full::default())
            .unwrap()
    });
    let mut service = cached(&origin);
    // Servers never read a 204's body: drop it unread.
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    drop(response);
    let (status, headers, _) = send(&mut service, get("/")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_range_is_served_from_a_stored_whole_response() {
    let origin = Origin::new(|_, _| {
        Response::builder()
            .header("cache-control", "max-age=100")
            .header("etag", "\"e\"")
            .body(Full::from("0123456789"))
            .unwrap()
    });
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let ranged = |range: &'static str| request(Method::GET, "/", &[("range", range)]);
    let (status, headers, body) = send(&mut service, ranged("bytes=2-4")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "234")
    );
    assert_eq!(headers["content-range"], "bytes 2-4/10");
    assert_eq!(headers["content-length"], "3");
    let (status, headers, body) = send(&mut service, ranged("bytes=-3")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::PARTIAL_CONTENT, "789")
    );
    assert_eq!(headers["content-length"], "3");
    assert_eq!(headers["content-range"], "bytes 7-9/10");
    let (status, headers, _) = send(&mut service, ranged("bytes=20-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */10");
    // An If-Range for another version gets the whole response.
    let other = request(
        Method::GET,
        "/",
        &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
    );
    let (status, _, body) = send(&mut service, other).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "0123456789"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_targeted_field_replaces_cache_control_and_expires_when_valid() {
    // (response fields, whether the cache obeys CDN-Cache-Control, the second answer)
    let cases: [(Fields, bool, &str); 4] = [
        // CDN-Cache-Control allows what Cache-Control forbids...
        (
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=100"),
            ],
            true,
            "body 1",
        ),
        // ...and forbids what it allows, Expires included.
        (
            &[
                ("cache-control", "max-age=100"),
                ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                ("cdn-cache-control", "max-age=0"),
            ],
            true,
            "body 2",
        ),
        // An invalid field is ignored: Cache-Control decides.
        (
            &[
                ("cache-control", "max-age=100"),
                ("cdn-cache-control", "max-age=\"0\""),
            ],
            true,
            "body 1",
        ),
        // A cache not told to obey it ignores it.
        (
            &[
                ("cache-control", "max-age=100"),
                ("cdn-cache-control", "no-store"),
            ],
            false,
            "body 1",
        ),
    ];
    for (fields, obeys, second) in cases {
        let mut builder = CacheLayer::builder();
        if obeys {
            builder = builder.targeted_fields([http::HeaderName::from_static("cdn-cache-control")]);
        }
        let origin = Origin::with_headers(fields);
        let mut service = cached_with(&origin, &builder.build().unwrap());
        send(&mut service, get("/")).await;
        assert_eq!(send(&mut service, get("/")).await.2, second, "{fields:?}");
    }
}

#[test]
fn every_request_is_counted_once_by_what_the_cache_did() {
    let counters = support::counters_recorded(|| async {
        let origin = Origin::new(|request, n| {
            let builder = Response::builder()
                .header(
                    "cache-control",
                    if request.uri().path() == "/no" {
                        "no-store"
                    } else {
                        "max-age=10"
                    },
                )
                .header("etag", "\"v\"");
            if request.headers().contains_key("if-none-match") {
                builder.status(304).body(Full::default()).unwrap()
            } else {
                builder.body(Full::from(format!("body {n}"))).unwrap()
            }
        });
        let layer = CacheLayer::builder().name("pages").build().unwrap();
        let handle = layer.handle();
        let mut service = cached_with(&origin, &layer);
        send(&mut service, get("/a")).await; // miss
        send(&mut service, get("/a")).await; // hit
        send(&mut service, get("/a")).await; // hit
        advance(11).await;
        send(&mut service, get("/a")).await; // revalidated
        advance(11).await;
        send(
            &mut service,
            request(Method::GET, "/a", &[("cache-control", "max-stale")]),
        )
        .await; // stale
        send(&mut service, get("/no")).await; // uncacheable
        send(&mut service, request(Method::POST, "/a", &[])).await; // bypass, and invalidates /a
        send(&mut service, get("/b")).await; // miss
        handle
            .purge(Purge::Key("http://example.com/b".into()), false)
            .await;
    });
    let lookup = |result: &str, n: u64| {
        (
            "armor.cache.lookups".to_owned(),
            vec!["name=pages".to_owned(), format!("result={result}")],
            n,
        )
    };
    let evictions: Vec<_> = counters
        .iter()
        .filter(|(name, _, _)| name == "armor.cache.evictions")
        .collect();
    assert_eq!(
        evictions,
        [&(
            "armor.cache.evictions".to_owned(),
            vec!["name=pages".to_owned(), "cause=explicit".to_owned()],
            2
        )]
    );
    let lookups: Vec<_> = counters
        .into_iter()
        .filter(|(name, _, _)| name == "armor.cache.lookups")
        .collect();
    assert_eq!(
        lookups,
        [
            lookup("bypass", 1),
            lookup("hit", 2),
            lookup("miss", 2),
            lookup("revalidated", 1),
            lookup("stale", 1),
            lookup("uncacheable", 1),
        ]
    );
}

#[test]
fn waiting_requests_are_counted_as_coalesced() {
    let counters = support::counters_recorded(|| async {
        let mut origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
        origin.delay = Duration::from_millis(50);
        let service = cached(&origin);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let mut service = service.clone();
            tasks.push(tokio::spawn(
                async move { send(&mut service, get("/")).await },
            ));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let coalesced = counters
        .iter()
        .find(|(name, _, _)| name == "armor.cache.coalesced");
    assert_eq!(coalesced.map(|(_, _, n)| *n), Some(3));
}

#[test]
fn the_stored_bytes_gauge_follows_the_store() {
    use support::recording::{Recording, active};
    use tower_armor::cache::MemoryStore;

    let recording = Recording::new();
    let store = MemoryStore::new();
    let reader = store.clone();
    let readings = recording.clone();
    support::run_recorded(&recording, || async move {
        let origin =
            Origin::with_headers(&[("cache-control", "max-age=100"), ("surrogate-key", "t")]);
        let layer = CacheLayer::builder()
            .name("pages")
            .store(store)
            .build()
            .unwrap();
        let handle = layer.handle();
        let mut service = cached_with(&origin, &layer);
        send(&mut service, get("/a")).await;
        send(&mut service, get("/b")).await;
        let held = reader.weighted_size();
        assert!(held > 2 * "body 1".len() as u64);
        let gauge = active(&readings, "armor.cache.stored_bytes");
        assert_eq!(gauge, [(vec!["name=pages".to_owned()], held as f64)]);
        handle.purge(Purge::Tag("t".into()), false).await;
        let gauge = active(&readings, "armor.cache.stored_bytes");
        assert_eq!(gauge, [(vec!["name=pages".to_owned()], 0.0)]);
    });
}

/// A store that keeps entries as bytes and answers later, as a networked
/// store does; `corrupt` spoils what it holds.
#[derive(Clone, Default)]
struct BytesStore(Arc<Mutex<std::collections::HashMap<String, Vec<Bytes>>>>);

impl BytesStore {
    fn corrupt(&self, key: &str) {
        for bytes in self.0.lock().unwrap().get_mut(key).unwrap() {
            *bytes = Bytes::from_static(b"not an entry");
        }
    }
}

impl tower_armor::cache::CacheStore for BytesStore {
    fn get(
        &self,
        key: &str,
    ) -> tower_armor::cache::StoreCall<Option<tower_armor::cache::Variants>> {
        let stored = self.0.lock().unwrap().get(key).cloned();
        tower_armor::cache::StoreCall::later(async move {
            tokio::task::yield_now().await;
            // What does not decode is left out: possibly every variant.
            let entries: Vec<Arc<tower_armor::cache::Entry>> = stored?
                .iter()
                .filter_map(|bytes| tower_armor::cache::Entry::decode(bytes).map(Arc::new))
                .collect();
            Some(entries.into())
        })
    }

    fn put(
        &self,
        key: Arc<str>,
        entry: Arc<tower_armor::cache::Entry>,
    ) -> tower_armor::cache::StoreCall<()> {
        let store = self.0.clone();
        tower_armor::cache::StoreCall::later(async move {
            store
                .lock()
                .unwrap()
                .insert(key.to_string(), vec![entry.encode()]);
        })
    }

    fn remove(&self, key: &str) -> tower_armor::cache::StoreCall<()> {
        self.0.lock().unwrap().remove(key);
        tower_armor::cache::StoreCall::ready(())
    }

    fn purge(&self, selector: Purge, _soft: bool) -> tower_armor::cache::StoreCall<usize> {
        let Purge::Key(key) = selector else {
            unimplemented!("only keys in this test")
        };
        tower_armor::cache::StoreCall::ready(usize::from(
            self.0.lock().unwrap().remove(&key).is_some(),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_answers_later_works_and_an_undecodable_entry_is_a_miss() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("etag", "\"x\"")]);
    let store = BytesStore::default();
    let layer = CacheLayer::builder().store(store.clone()).build().unwrap();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/")).await;
    tokio::task::yield_now().await; // the store's put runs on its own
    let (status, headers, body) = send(&mut service, get("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(headers["etag"], "\"x\"");

    store.corrupt("http://example.com/");
    let (status, headers, body) = send(&mut service, get("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 2"));
    assert!(cache_status(&headers).contains("fwd=uri-miss"));
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn trailers_are_stored_and_replayed() {
    use http_body_util::StreamBody;

    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = tower::service_fn(move |_: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc".parse().unwrap());
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"part one, "))),
                Ok(http_body::Frame::data(Bytes::from_static(b"part two"))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let body = StreamBody::new(tokio_stream_iter(frames));
            let response = Response::builder()
                .header("cache-control", "max-age=100")
                .body(body)
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let mut service = tower::ServiceBuilder::new()
        .layer(CacheLayer::new())
        .service(origin);
    for round in 0..2 {
        let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(
            collected.trailers().unwrap()["x-checksum"],
            "abc",
            "round {round}"
        );
        assert_eq!(collected.to_bytes(), "part one, part two");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A stream over ready items.
fn tokio_stream_iter<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
    struct Items<T>(std::collections::VecDeque<T>);
    impl<T: Unpin> futures_core::Stream for Items<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
    Items(items.into())
}

#[tokio::test(start_paused = true)]
async fn the_key_is_shown_only_when_asked() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let layer = CacheLayer::builder()
        .name("edge")
        .show_key(true)
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    let (_, first, _) = send(&mut service, get("/k?x=1")).await;
    assert!(
        cache_status(&first).contains("key=\"http://example.com/k?x=1\""),
        "{first:?}"
    );
    let (_, second, _) = send(&mut service, get("/k?x=1")).await;
    assert_eq!(
        cache_status(&second),
        "edge; hit; ttl=100; key=\"http://example.com/k?x=1\""
    );
    let mut hidden = cached(&origin);
    let (_, headers, _) = send(&mut hidden, get("/k?x=1")).await;
    assert!(!cache_status(&headers).contains("key="));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_after_the_lock_timeout() {
    let mut origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    origin.delay = Duration::from_secs(10);
    let layer = CacheLayer::builder()
        .lock_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let service = cached_with(&origin, &layer);
    let mut leader = service.clone();
    let leading = tokio::spawn(async move { send(&mut leader, get("/")).await });
    tokio::task::yield_now().await;
    let mut waiter = service.clone();
    let started = tokio::time::Instant::now();
    let (status, headers, _) = send(&mut waiter, get("/")).await;
    // It waited the lock timeout, then went upstream itself (10 s more).
    assert_eq!(status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(11));
    assert!(cache_status(&headers).contains("fwd=uri-miss"));
    assert_eq!(origin.calls(), 2);
    leading.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn background_revalidations_are_capped() {
    let mut origin =
        Origin::with_headers(&[("cache-control", "max-age=1, stale-while-revalidate=100")]);
    origin.delay = Duration::from_secs(5);
    let layer = CacheLayer::builder()
        .max_background_revalidations(1)
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    for path in ["/a", "/b"] {
        send(&mut service, get(path)).await;
    }
    assert_eq!(origin.calls(), 2);
    advance(2).await;
    // Both stale: /a starts the one background revalidation allowed,
    // /b is served stale without one.
    for path in ["/a", "/b"] {
        let (_, headers, _) = send(&mut service, get(path)).await;
        assert!(cache_status(&headers).contains("hit"));
    }
    assert_eq!(origin.calls(), 3);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The slot is free again.
    send(&mut service, get("/b")).await;
    assert_eq!(origin.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_head_miss_goes_to_the_origin_as_head_and_is_not_stored() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    let (_, headers, _) = send(&mut service, request(Method::HEAD, "/", &[])).await;
    assert!(cache_status(&headers).contains("detail=method"));
    assert_eq!(origin.seen.lock().unwrap()[0].0, Method::HEAD);
    send(&mut service, request(Method::HEAD, "/", &[])).await;
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_age_past_the_lifetime_is_stale_at_once() {
    for age in ["2147483648", "200"] {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("cache-control", "max-age=100"), ("age", age)].into_boxed_slice());
        let origin = Origin::with_headers(pairs);
        let mut service = cached(&origin);
        send(&mut service, get("/")).await;
        assert_eq!(send(&mut service, get("/")).await.2, "body 2", "age {age}");
    }
    // An invalid Age is ignored.
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("age", "-5")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
    assert_eq!(headers["age"], "0");
}

#[tokio::test(start_paused = true)]
async fn a_body_exactly_at_the_limit_is_stored() {
    let origin = Origin::new(|_, n| {
        Response::builder()
            .header("cache-control", "max-age=100")
            .header("content-length", "50")
            .body(Full::from(format!("{n}").repeat(50)))
            .unwrap()
    });
    let layer = CacheLayer::builder().max_entry_bytes(50).build().unwrap();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/")).await;
    assert_eq!(send(&mut service, get("/")).await.2, "1".repeat(50));
}

#[tokio::test(start_paused = true)]
async fn the_entry_is_stored_with_its_last_frame_not_at_a_later_poll() {
    // hyper stops polling a body that says it has ended: the entry must be
    // stored with the last data frame.
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "body 1");
    assert!(http_body::Body::is_end_stream(&body));
    drop(body);
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
    assert!(cache_status(&headers).contains("hit"));
}

#[tokio::test(start_paused = true)]
async fn a_stored_body_knows_its_size_and_its_end() {
    use http_body::Body as _;

    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(format!("{body:?}"), "CacheBody::Stored");
    assert_eq!(body.size_hint().exact(), Some(6));
    assert!(!body.is_end_stream());
    body.frame().await.unwrap().unwrap();
    assert_eq!(body.size_hint().exact(), Some(0));
    assert!(body.is_end_stream());
    assert!(body.frame().await.is_none());

    // A miss's body reports what the origin's does.
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get("/other"))
        .await
        .unwrap();
    let body = response.into_body();
    assert_eq!(format!("{body:?}"), "CacheBody::Upstream");
    assert_eq!(body.size_hint().exact(), Some(6));
    assert!(!body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn bypassed_requests_neither_read_nor_fill_the_cache() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let layer = CacheLayer::builder()
        .bypass(|request| request.headers.contains_key("x-signed-in"))
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    let signed_in = || request(Method::GET, "/", &[("x-signed-in", "alice")]);
    let (_, headers, body) = send(&mut service, signed_in()).await;
    assert_eq!(body, "body 1");
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=bypass; fwd-status=200"
    );
    // Nothing was stored by the bypassed request...
    assert_eq!(send(&mut service, get("/")).await.2, "body 2");
    // ...and a stored entry is not used for one.
    assert_eq!(send(&mut service, signed_in()).await.2, "body 3");
    assert_eq!(send(&mut service, get("/")).await.2, "body 2");
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_limit_is_not_stored_from_the_head() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100"), ("content-length", "6")]);
    let layer = CacheLayer::builder().max_entry_bytes(5).build().unwrap();
    let mut service = cached_with(&origin, &layer);
    let (_, headers, _) = send(&mut service, get("/")).await;
    assert_eq!(
        cache_status(&headers),
        "tower-armor; fwd=uri-miss; fwd-status=200; detail=too-large"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_through_a_store_that_answers_later_is_kept() {
    let origin = Origin::validating(&[("cache-control", "max-age=10"), ("etag", "\"x\"")]);
    let layer = CacheLayer::builder()
        .store(BytesStore::default())
        .build()
        .unwrap();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/")).await;
    tokio::task::yield_now().await;
    advance(11).await;
    let (_, headers, _) = send(&mut service, get("/")).await;
    assert!(cache_status(&headers).contains("fwd-status=304"));
    tokio::task::yield_now().await;
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
    assert!(cache_status(&headers).contains("hit"), "{headers:?}");
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stale_entry_is_not_used_to_validate_a_head_request() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=10"), ("etag", "\"x\"")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    advance(11).await;
    send(&mut service, request(Method::HEAD, "/", &[])).await;
    assert_eq!(origin.seen.lock().unwrap()[1].0, Method::HEAD);
    assert!(origin.last_headers().get("if-none-match").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_validator_alone_or_a_stale_if_error_window_alone_is_worth_storing() {
    // no-cache and an ETag: stored, and validated on every use.
    let origin = Origin::validating(&[("cache-control", "no-cache"), ("etag", "\"x\"")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
    assert!(cache_status(&headers).contains("fwd-status=304"));
    assert_eq!(origin.last_headers()["if-none-match"], "\"x\"");

    // Stale at once, no validator, but a stale-if-error window: stored for errors.
    let (origin, failing) = Origin::breakable("max-age=0, stale-if-error=60", 500);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    failing.store(true, Ordering::SeqCst);
    let (status, _, body) = send(&mut service, get("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
}

#[tokio::test(start_paused = true)]
async fn fields_named_by_private_are_kept_only_by_a_private_cache() {
    let origin = Origin::validating(&[
        ("cache-control", "max-age=10, private=\"x-user\""),
        ("x-user", "alice"),
        ("etag", "\"x\""),
    ]);
    let mut shared = cached(&origin);
    send(&mut shared, get("/")).await;
    let (_, headers, _) = send(&mut shared, get("/")).await;
    assert!(headers.get("x-user").is_none());
    // Nor after a 304 that names it again.
    advance(11).await;
    let (_, headers, _) = send(&mut shared, get("/")).await;
    assert!(cache_status(&headers).contains("fwd-status=304"));
    assert!(headers.get("x-user").is_none());

    let layer = CacheLayer::builder()
        .mode(CacheMode::Private)
        .build()
        .unwrap();
    let mut private = cached_with(&origin, &layer);
    send(&mut private, get("/")).await;
    let (_, headers, _) = send(&mut private, get("/")).await;
    assert_eq!(headers["x-user"], "alice");
}

#[tokio::test(start_paused = true)]
async fn a_validated_soft_purged_entry_is_fresh_again() {
    let origin = Origin::validating(&[("cache-control", "max-age=100"), ("etag", "\"x\"")]);
    let layer = CacheLayer::new();
    let handle = layer.handle();
    let mut service = cached_with(&origin, &layer);
    send(&mut service, get("/")).await;
    handle
        .purge(Purge::Prefix("http://example.com/".into()), true)
        .await;
    let (_, headers, _) = send(&mut service, get("/")).await;
    assert!(cache_status(&headers).contains("fwd=stale; fwd-status=304"));
    let (_, headers, body) = send(&mut service, get("/")).await;
    assert_eq!(body, "body 1");
    assert!(cache_status(&headers).contains("hit"));
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn options_leaves_entries_alone_and_an_upgrade_header_alone_is_cached() {
    let origin = Origin::with_headers(&[("cache-control", "max-age=100")]);
    let mut service = cached(&origin);
    send(&mut service, get("/")).await;
    let (_, headers, _) = send(&mut service, request(Method::OPTIONS, "/", &[])).await;
    assert!(cache_status(&headers).contains("fwd=method"));
    assert_eq!(send(&mut service, get("/")).await.2, "body 1");
    // Upgrade without `Connection: upgrade` asks for nothing.
    let (_, headers, body) = send(
        &mut service,
        request(Method::GET, "/", &[("upgrade", "websocket")]),
    )
    .await;
    assert_eq!(body, "body 1");
    assert!(cache_status(&headers).contains("hit"));
    let debug = format!(
        "{:?}",
        CacheService::new(
            "inner",
            &CacheLayer::builder().name("pages").build().unwrap()
        )
    );
    assert!(
        debug.starts_with("CacheService") && debug.contains("\"inner\"") && debug.contains("pages"),
        "{debug}"
    );
}

#[tokio::test]
async fn readiness_follows_the_inner_service() {
    support::readiness_follows_the_inner_service(CacheLayer::new());
}

#[test]
fn a_slow_store_still_counts_hits_and_stale_answers_apart() {
    let counters = support::counters_recorded(|| async {
        let origin = Origin::with_headers(&[("cache-control", "max-age=10")]);
        let layer = CacheLayer::builder()
            .store(BytesStore::default())
            .build()
            .unwrap();
        let mut service = cached_with(&origin, &layer);
        send(&mut service, get("/")).await;
        tokio::task::yield_now().await;
        send(&mut service, get("/")).await; // hit
        send(&mut service, get("/")).await; // hit
        advance(20).await;
        send(
            &mut service,
            request(Method::GET, "/", &[("cache-control", "max-stale")]),
        )
        .await; // stale
    });
    let lookups: Vec<(String, u64)> = counters
        .into_iter()
        .filter(|(name, _, _)| name == "armor.cache.lookups")
        .map(|(_, labels, n)| (labels[1].clone(), n))
        .collect();
    assert_eq!(
        lookups,
        [
            ("result=hit".to_owned(), 2),
            ("result=miss".to_owned(), 1),
            ("result=stale".to_owned(), 1)
        ]
    );
}
