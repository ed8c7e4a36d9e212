//! The rate-limit layer as a caller sees it, under paused Tokio time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceBuilder, ServiceExt};
mod support;

use tower_armor::body::ArmorBody;
use tower_armor::rate_limit::{
    Global, Header, KeyLimits, MissingKey, Mode, Overflow, PeerIp, Quota, RateLimitBuilder,
    RateLimitLayer, RequestHead,
};
use tower_armor::reject::{Reason, Rejection};

type Body = Full<Bytes>;

fn ok_service() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn limited(
    builder: RateLimitBuilder<impl tower_armor::rate_limit::KeyExtractor>,
) -> impl Service<
    Request<Body>,
    Response = Response<ArmorBody<Body>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ArmorBody<Body>>, Infallible>> + Send,
> + Clone
+ Send {
    ServiceBuilder::new()
        .layer(builder.build().unwrap())
        .service(ok_service())
}

fn from(peer: &str) -> Request<Body> {
    let mut request = Request::new(Body::default());
    request
        .extensions_mut()
        .insert(SocketAddr::new(peer.parse().unwrap(), 40000));
    request
}

async fn respond<S>(service: &mut S, request: Request<Body>) -> Response<ArmorBody<Body>>
where
    S: Service<Request<Body>, Response = Response<ArmorBody<Body>>, Error = Infallible>,
{
    service.ready().await.unwrap().call(request).await.unwrap()
}

async fn status<S>(service: &mut S, request: Request<Body>) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<ArmorBody<Body>>, Error = Infallible>,
{
    respond(service, request).await.status()
}

#[tokio::test(start_paused = true)]
async fn burst_then_refill_then_retry_after() {
    let mut service = limited(RateLimitLayer::builder(Quota::per_second(5)));
    for _ in 0..5 {
        assert_eq!(
            status(&mut service, Request::new(Body::default())).await,
            StatusCode::OK
        );
    }
    let refused = respond(&mut service, Request::new(Body::default())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // The next cell is 200 ms away: Retry-After rounds up to a whole second, never 0.
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let rejection = refused.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason(), Reason::RateLimited);
    assert_eq!(rejection.retry_after(), Some(Duration::from_millis(200)));

    // 200 ms later exactly one more request passes.
    advance(Duration::from_millis(200)).await;
    assert_eq!(
        status(&mut service, Request::new(Body::default())).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut service, Request::new(Body::default())).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // After a full second the whole burst is back.
    advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        assert_eq!(
            status(&mut service, Request::new(Body::default())).await,
            StatusCode::OK
        );
    }
}

#[tokio::test(start_paused = true)]
async fn ietf_headers_on_allowed_and_refused_responses() {
    let mut service = limited(
        RateLimitLayer::builder(Quota::per_second(2)).quota(Quota::per_hour(100).named("hourly")),
    );
    let first = respond(&mut service, Request::new(Body::default())).await;
    assert_eq!(
        first.headers()["ratelimit-policy"],
        r#""2-per-1s";q=2;w=1, "hourly";q=100;w=3600"#
    );
    assert_eq!(
        first.headers()["ratelimit"],
        r#""2-per-1s";r=1;t=1, "hourly";r=99;t=36"#
    );
    respond(&mut service, Request::new(Body::default())).await;
    let refused = respond(&mut service, Request::new(Body::default())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers()["ratelimit"],
        r#""2-per-1s";r=0;t=1, "hourly";r=98;t=72"#
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["detail"], "quota \"2-per-1s\" exceeded");

    // And they can be switched off.
    let mut quiet = limited(RateLimitLayer::builder(Quota::per_second(2)).headers(false));
    let response = respond(&mut quiet, Request::new(Body::default())).await;
    assert!(!response.headers().contains_key("ratelimit"));
    assert!(!response.headers().contains_key("ratelimit-policy"));
}

#[tokio::test(start_paused = true)]
async fn every_quota_must_pass() {
    let mut service =
        limited(RateLimitLayer::builder(Quota::per_second(10)).quota(Quota::per_minute(15)));
    let mut allowed = 0;
    for _ in 0..3 {
        for _ in 0..10 {
            if status(&mut service, Request::new(Body::default())).await == StatusCode::OK {
                allowed += 1;
            }
        }
        advance(Duration::from_secs(1)).await;
    }
    // 10 in the first second, then the minute quota caps the total at 15.
    assert_eq!(allowed, 15);
}

#[tokio::test(start_paused = true)]
async fn costs_weigh_requests() {
    let cost = |head: &RequestHead<'_>| {
        head.headers
            .get("x-cost")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1)
    };
    let mut service = limited(RateLimitLayer::builder(Quota::per_second(10)).cost(cost));
    let costing = |n: &str| {
        Request::builder()
            .header("x-cost", n)
            .body(Body::default())
            .unwrap()
    };
    assert_eq!(status(&mut service, costing("8")).await, StatusCode::OK);
    assert_eq!(
        status(&mut service, costing("3")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&mut service, costing("2")).await, StatusCode::OK);
    // A cost larger than the burst can never pass, and says so without a Retry-After.
    advance(Duration::from_secs(5)).await;
    let refused = respond(&mut service, costing("11")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!refused.headers().contains_key("retry-after"));
}

#[tokio::test(start_paused = true)]
async fn keys_have_separate_budgets() {
    let mut service = limited(RateLimitLayer::builder(Quota::per_minute(1)).key(PeerIp));
    assert_eq!(
        status(&mut service, from("192.0.2.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut service, from("192.0.2.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&mut service, from("192.0.2.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut service, from("2001:db8::1")).await,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn wait_mode_holds_requests_until_their_turn() {
    let mut service = limited(
        RateLimitLayer::builder(Quota::per_second(1)).mode(Mode::Wait(Duration::from_secs(2))),
    );
    let started = Instant::now();
    let mut waits = Vec::new();
    for _ in 0..3 {
        let response = respond(&mut service, Request::new(Body::default())).await;
        assert_eq!(response.status(), StatusCode::OK);
        waits.push(started.elapsed());
    }
    assert_eq!(
        waits,
        [
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );

    // Two requests reserve the next two turns; a third would wait too long.
    let first = tokio::spawn(service.clone().oneshot(Request::new(Body::default())));
    let second = tokio::spawn(service.clone().oneshot(Request::new(Body::default())));
    tokio::task::yield_now().await;
    let third = respond(&mut service, Request::new(Body::default())).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn missing_keys_share_a_bucket_or_are_refused() {
    let api_key = || Header::named(http::HeaderName::from_static("x-api-key"));
    let mut shared = limited(RateLimitLayer::builder(Quota::per_minute(2)).key(api_key()));
    assert_eq!(
        status(&mut shared, Request::new(Body::default())).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut shared, Request::new(Body::default())).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&mut shared, Request::new(Body::default())).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    let mut strict = limited(
        RateLimitLayer::builder(Quota::per_minute(2))
            .key(api_key())
            .on_missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED)),
    );
    let refused = respond(&mut strict, Request::new(Body::default())).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.extensions().get::<Rejection>().unwrap().reason(),
        Reason::Unidentified
    );
    let grpc = Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(Body::default())
        .unwrap();
    let refused = respond(&mut strict, grpc).await;
    assert_eq!(refused.headers()["grpc-status"], "16");
    let keyed = Request::builder()
        .header("x-api-key", "k1")
        .body(Body::default())
        .unwrap();
    assert_eq!(status(&mut strict, keyed).await, StatusCode::OK);
}

#[test]
fn requests_without_a_key_are_counted_whatever_the_policy() {
    let counters = support::counters_recorded(|| async {
        let api_key = || Header::named(http::HeaderName::from_static("x-api-key"));
        // Allow: the limiter steps aside, however many come.
        let mut open = limited(
            RateLimitLayer::builder(Quota::per_minute(1))
                .key(api_key())
                .on_missing_key(MissingKey::Allow)
                .name("open"),
        );
        for _ in 0..3 {
            assert_eq!(
                status(&mut open, Request::new(Body::default())).await,
                StatusCode::OK
            );
        }
        // A keyed request is still limited.
        let keyed = || {
            Request::builder()
                .header("x-api-key", "k1")
                .body(Body::default())
                .unwrap()
        };
        assert_eq!(status(&mut open, keyed()).await, StatusCode::OK);
        assert_eq!(
            status(&mut open, keyed()).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Refuse with a 5xx: gRPC callers get INTERNAL.
        let mut strict = limited(
            RateLimitLayer::builder(Quota::per_minute(1))
                .key(api_key())
                .on_missing_key(MissingKey::Refuse(StatusCode::INTERNAL_SERVER_ERROR))
                .name("strict"),
        );
        let grpc = Request::post("/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(Body::default())
            .unwrap();
        let refused = respond(&mut strict, grpc).await;
        assert_eq!(refused.headers()["grpc-status"], "13");
        let refused = respond(&mut strict, Request::new(Body::default())).await;
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let detail = refused
            .extensions()
            .get::<Rejection>()
            .unwrap()
            .detail()
            .to_owned();
        assert!(detail.contains("no rate_limit key"), "{detail}");
    });
    let count = |name: &str, metric: &str, label: Option<&str>| {
        counters
            .iter()
            .find(|(n, labels, _)| {
                n == metric
                    && labels.contains(&format!("name={name}"))
                    && label.is_none_or(|label| labels.contains(&label.to_owned()))
            })
            .map_or(0, |(_, _, value)| *value)
    };
    assert_eq!(count("open", "armor.rate_limit.missing_key", None), 3);
    assert_eq!(
        count(
            "open",
            "armor.rate_limit.decisions",
            Some("decision=allowed")
        ),
        4
    );
    assert_eq!(
        count(
            "open",
            "armor.rate_limit.decisions",
            Some("decision=rejected")
        ),
        1
    );
    assert_eq!(count("strict", "armor.rate_limit.missing_key", None), 2);
    assert_eq!(
        count(
            "strict",
            "armor.rate_limit.decisions",
            Some("decision=rejected")
        ),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn the_handle_reads_and_resets_a_key_without_spending() {
    let layer = RateLimitLayer::builder(Quota::per_minute(3))
        .quota(Quota::per_hour(10))
        .key(PeerIp)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = ServiceBuilder::new().layer(layer).service(ok_service());
    let client: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let remaining = |handle: &tower_armor::rate_limit::RateLimitHandle<PeerIp>| {
        handle
            .quotas_of(&client)
            .unwrap()
            .iter()
            .map(|quota| quota.remaining)
            .collect::<Vec<_>>()
    };
    assert_eq!(remaining(&handle), [3, 10]);
    for _ in 0..3 {
        status(&mut service, from("192.0.2.7")).await;
    }
    assert_eq!(remaining(&handle), [0, 7]);
    assert_eq!(
        status(&mut service, from("192.0.2.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(handle.live_keys(), 1);
    assert!(handle.reset(&client));
    assert_eq!(handle.live_keys(), 0);
    assert_eq!(remaining(&handle), [3, 10]);
    assert_eq!(
        status(&mut service, from("192.0.2.7")).await,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn a_closure_key_needs_no_type_annotation() {
    let mut per_tenant = limited(RateLimitLayer::builder(Quota::per_minute(1)).key(
        tower_armor::key::from_fn(|request| request.headers.get("x-tenant").cloned()),
    ));
    let tenant = |name: &str| {
        Request::builder()
            .header("x-tenant", name)
            .body(Body::default())
            .unwrap()
    };
    assert_eq!(status(&mut per_tenant, tenant("a")).await, StatusCode::OK);
    assert_eq!(
        status(&mut per_tenant, tenant("a")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(status(&mut per_tenant, tenant("b")).await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn grpc_callers_get_resource_exhausted_with_pushback() {
    let mut service = limited(RateLimitLayer::builder(Quota::per_second(1)));
    let grpc = || {
        Request::post("/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(Body::default())
            .unwrap()
    };
    respond(&mut service, grpc()).await;
    let refused = respond(&mut service, grpc()).await;
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(refused.headers()["grpc-status"], "8");
    assert_eq!(refused.headers()["grpc-retry-pushback-ms"], "1000");
    assert!(refused.headers().contains_key("ratelimit"));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_through_clones_share_one_limit() {
    let layer = RateLimitLayer::builder(Quota::per_second(5))
        .build()
        .unwrap();
    // Two services from two `layer()` calls, each cloned per request.
    let a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(ok_service());
    let b = ServiceBuilder::new().layer(layer).service(ok_service());
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let service = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(service.oneshot(Request::new(Body::default())))
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == StatusCode::OK {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_requests_on_four_threads_let_exactly_the_burst_through() {
    // A refill far slower than the test, so the count cannot depend on timing.
    let layer = RateLimitLayer::builder(Quota::per_hour(5)).build().unwrap();
    let service = ServiceBuilder::new().layer(layer).service(ok_service());
    let tasks: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(service.clone().oneshot(Request::new(Body::default()))))
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == StatusCode::OK {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

#[test]
fn decisions_are_counted_including_shadow_refusals() {
    let counters = support::counters_recorded(|| async {
        let mut enforcing = limited(RateLimitLayer::builder(Quota::per_minute(2)).name("enforce"));
        let mut shadow = limited(
            RateLimitLayer::builder(Quota::per_minute(2))
                .mode(Mode::Shadow)
                .name("shadow"),
        );
        for _ in 0..5 {
            status(&mut enforcing, Request::new(Body::default())).await;
            // Shadow mode never refuses.
            assert_eq!(
                status(&mut shadow, Request::new(Body::default())).await,
                StatusCode::OK
            );
        }
    });
    let decisions = |name: &str, decision: &str, n: u64| {
        (
            "armor.rate_limit.decisions".to_string(),
            vec![format!("name={name}"), format!("decision={decision}")],
            n,
        )
    };
    assert_eq!(
        counters,
        vec![
            decisions("enforce", "allowed", 2),
            decisions("enforce", "rejected", 3),
            decisions("shadow", "allowed", 2),
            decisions("shadow", "shadow_rejected", 3),
        ]
    );
}

#[test]
fn bad_configuration_fails_at_build() {
    let errors = [
        RateLimitLayer::builder(Quota::per_second(0))
            .build()
            .unwrap_err(),
        RateLimitLayer::builder(Quota::per_second(1))
            .quota(Quota::per_second(2))
            .quota(Quota::per_second(3))
            .quota(Quota::per_second(4))
            .quota(Quota::per_second(5))
            .build()
            .unwrap_err(),
        RateLimitLayer::builder(Quota::per_second(1))
            .mode(Mode::Wait(Duration::ZERO))
            .build()
            .unwrap_err(),
        RateLimitLayer::builder(Quota::per_second(1))
            .on_missing_key(MissingKey::Refuse(StatusCode::OK))
            .build()
            .unwrap_err(),
        RateLimitLayer::builder(Quota::per_second(1))
            .key_limits(KeyLimits::new(0, Duration::ZERO))
            .build()
            .unwrap_err(),
        RateLimitLayer::builder(Quota::per_second(1))
            .key_limits(KeyLimits::new(10, Duration::from_secs(2 * 86_400)))
            .build()
            .unwrap_err(),
    ];
    let messages = [
        "must allow at least one request",
        "at most 4 quotas",
        "wait",
        "missing-key status 200 OK",
        "at least one key",
        "at most a day",
    ];
    for (error, message) in errors.iter().zip(messages) {
        assert_eq!(error.layer(), "rate_limit");
        assert!(error.to_string().contains(message), "{error}");
    }
    let _global: RateLimitLayer<Global> = RateLimitLayer::builder(Quota::per_second(1))
        .build()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_key_cap_holds_and_overflow_keys_share_a_bucket() {
    let layer = RateLimitLayer::builder(Quota::per_minute(1))
        .key(PeerIp)
        .key_limits(KeyLimits::new(10, Duration::ZERO))
        .overflow(Overflow::SharedBucket)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(ok_service());
    let mut allowed = 0;
    for i in 0..100 {
        if status(&mut service, from(&format!("198.51.100.{i}"))).await == StatusCode::OK {
            allowed += 1;
        }
    }
    // Ten keys of their own, plus one request through the shared overflow bucket.
    assert_eq!(layer.handle().live_keys(), 10);
    assert_eq!(allowed, 11);
    // Once their quotas are whole again, keys are forgotten.
    advance(Duration::from_secs(61)).await;
    assert_eq!(layer.handle().evict_idle(), 10);
    assert_eq!(layer.handle().live_keys(), 0);
}

/// A store that answers only after a 5 ms "backend round trip", the way a
/// Redis store would, keeping its state in a `MemoryStore`.
struct RemoteStore {
    state: tower_armor::rate_limit::MemoryStore<std::net::IpAddr>,
}

impl tower_armor::rate_limit::RateStore<std::net::IpAddr> for RemoteStore {
    type Future = std::pin::Pin<Box<dyn Future<Output = tower_armor::rate_limit::Decision> + Send>>;

    fn check(&self, key: &std::net::IpAddr, check: tower_armor::rate_limit::Check) -> Self::Future {
        let decision = self.state.check(key, check).into_inner();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            decision
        })
    }
}

#[tokio::test(start_paused = true)]
async fn an_async_store_plugs_in_through_store_with() {
    let layer = RateLimitLayer::builder(Quota::per_minute(2).named("remote"))
        .key(PeerIp)
        .store_with(|quotas: &[Quota]| RemoteStore {
            state: tower_armor::rate_limit::MemoryStore::new(
                quotas,
                KeyLimits::new(100, Duration::ZERO),
                Overflow::Refuse,
            )
            .unwrap(),
        })
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(ok_service());
    let started = Instant::now();
    let first = respond(&mut service, from("192.0.2.9")).await;
    // The layer waited for the store's answer, then served.
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit"], r#""remote";r=1;t=30"#);
    assert_eq!(
        status(&mut service, from("192.0.2.9")).await,
        StatusCode::OK
    );
    let refused = respond(&mut service, from("192.0.2.9")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "30");
}

/// A store whose backend is down and which fails open by its own policy.
struct FailOpenStore;

impl tower_armor::rate_limit::RateStore<()> for FailOpenStore {
    type Future = std::future::Ready<tower_armor::rate_limit::Decision>;

    fn check(&self, _: &(), _: tower_armor::rate_limit::Check) -> Self::Future {
        std::future::ready(tower_armor::rate_limit::Decision {
            verdict: tower_armor::rate_limit::Verdict::Allowed,
            quotas: Vec::new(),
            placement: tower_armor::rate_limit::Placement::Own,
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_decides_its_own_failure_policy() {
    let layer = RateLimitLayer::builder(Quota::per_minute(1))
        .headers(false)
        .store_with(|_: &[Quota]| FailOpenStore)
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new().layer(layer).service(ok_service());
    for _ in 0..5 {
        assert_eq!(
            status(&mut service, Request::new(Body::default())).await,
            StatusCode::OK
        );
    }
}

#[test]
fn the_key_gauge_follows_new_keys() {
    let recording = support::recording::Recording::new();
    support::run_recorded(&recording, || async {
        let mut service = limited(RateLimitLayer::builder(Quota::per_minute(5)).key(PeerIp));
        for peer in ["192.0.2.1", "192.0.2.2", "192.0.2.2", "192.0.2.3"] {
            status(&mut service, from(peer)).await;
        }
    });
    let keys: Vec<f64> = support::recording::series(&recording)
        .into_iter()
        .filter(|series| series.name == "armor.rate_limit.keys")
        .filter_map(|series| match series.value {
            support::recording::Value::Level(level) => Some(level),
            _ => None,
        })
        .collect();
    assert_eq!(keys, [3.0]);
}
