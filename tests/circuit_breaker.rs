//! The circuit breaker through its service, under paused time: transitions,
//! probes, refusals, keys, the handle and metrics.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_armor::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitState};
use tower_armor::key::Authority;
use tower_armor::reject::{Reason, Rejection};

mod support;

type Body = Full<Bytes>;

/// An upstream whose answer for each call is the status set in `status`.
#[derive(Clone)]
struct Upstream {
    status: Arc<Mutex<u16>>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn new(status: u16) -> Self {
        Upstream {
            status: Arc::new(Mutex::new(status)),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn set(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The upstream as a service; every clone answers with the same status.
    fn service(&self) -> Upstream {
        self.clone()
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let status = *self.status.lock().unwrap();
        std::future::ready(Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"upstream")))
            .unwrap()))
    }
}

async fn send<S, B>(service: &mut S) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    send_to(service, "/").await
}

async fn send_to<S, B>(service: &mut S, uri: &str) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    call(
        service,
        Request::builder().uri(uri).body(Body::default()).unwrap(),
    )
    .await
}

async fn call<S, B>(service: &mut S, request: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    service.ready().await.unwrap().call(request).await.unwrap()
}

/// Sends a request and reads the whole body, so the outcome is reported.
async fn status_of<S, B>(service: &mut S) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = send(service).await;
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

fn layer() -> tower_armor::circuit_breaker::CircuitBreakerBuilder<tower_armor::key::Global> {
    CircuitBreakerLayer::builder()
        .count_window(10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .open_duration(Duration::from_secs(10), Duration::from_secs(40))
        .jitter(0.0)
        .half_open_probes(2)
}

/// Four failures open a [`layer()`] breaker; then its 10 s open period passes.
async fn open_then_wait<S, B>(service: &mut S)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for _ in 0..4 {
        status_of(service).await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;
}

#[tokio::test(start_paused = true)]
async fn opens_refuses_probes_and_closes() {
    let upstream = Upstream::new(500);
    let breaker = layer().build().unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());

    for _ in 0..3 {
        assert_eq!(
            status_of(&mut service).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "below the minimum of calls"
    );
    assert_eq!(
        status_of(&mut service).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(handle.state(), CircuitState::Open);

    // Open: refused at once, with the time left, without calling upstream.
    tokio::time::advance(Duration::from_millis(2500)).await;
    let refused = send(&mut service).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "8");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let rejection = refused.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason(), Reason::CircuitOpen);
    assert_eq!(rejection.retry_after(), Some(Duration::from_millis(7500)));
    assert_eq!(upstream.calls(), 4);

    // After the open period, the upstream has recovered: two probes close it.
    tokio::time::advance(Duration::from_millis(7500)).await;
    upstream.set(200);
    assert_eq!(status_of(&mut service).await, StatusCode::OK);
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert_eq!(status_of(&mut service).await, StatusCode::OK);
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.window().calls, 0, "closing starts a fresh window");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_longer_and_closing_resets_the_growth() {
    let upstream = Upstream::new(500);
    let breaker = layer().build().unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    for _ in 0..4 {
        status_of(&mut service).await;
    }
    let opened = tokio::time::Instant::now();
    assert_eq!(
        handle.next_admission(),
        Some(opened + Duration::from_secs(10))
    );

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        status_of(&mut service).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        handle.state(),
        CircuitState::Open,
        "one failed probe re-opens"
    );
    let refused = send(&mut service).await;
    assert_eq!(refused.headers()["retry-after"], "20", "twice as long");

    tokio::time::advance(Duration::from_secs(20)).await;
    status_of(&mut service).await;
    assert_eq!(send(&mut service).await.headers()["retry-after"], "40");

    // Capped at 40 s.
    tokio::time::advance(Duration::from_secs(40)).await;
    status_of(&mut service).await;
    assert_eq!(send(&mut service).await.headers()["retry-after"], "40");

    tokio::time::advance(Duration::from_secs(40)).await;
    upstream.set(200);
    status_of(&mut service).await;
    status_of(&mut service).await;
    assert_eq!(handle.state(), CircuitState::Closed);
    upstream.set(500);
    for _ in 0..4 {
        status_of(&mut service).await;
    }
    assert_eq!(send(&mut service).await.headers()["retry-after"], "10");
}

#[tokio::test(start_paused = true)]
async fn exactly_the_configured_probes_run_under_concurrency() {
    let upstream = Upstream::new(500);
    let breaker = layer().half_open_probes(3).build().unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    open_then_wait(&mut service).await;
    upstream.set(200);
    let calls_before = upstream.calls();

    // 100 tasks through clones at the same instant; the probes' bodies are
    // held open, so no probe reports while the others arrive.
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut service = service.clone();
        tasks.push(tokio::spawn(async move { send(&mut service).await }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.unwrap());
    }
    let admitted = responses
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    let refused = responses
        .iter()
        .filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((admitted, refused), (3, 97));
    assert_eq!(upstream.calls() - calls_before, 3);
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    // Half-open refusals carry no Retry-After: the wait depends on the probes.
    assert!(
        responses
            .iter()
            .any(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE
                && !r.headers().contains_key("retry-after"))
    );

    for response in responses {
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_permit_back() {
    let upstream = Upstream::new(500);
    let breaker = layer().half_open_probes(1).build().unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    open_then_wait(&mut service).await;
    upstream.set(200);

    // A probe whose response body is dropped unread (the client went away)...
    let probe = send(&mut service).await;
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(
        send(&mut service).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(probe);
    // ...and a probe whose future is dropped before it is polled.
    let request = Request::new(Body::default());
    let pending = service.ready().await.unwrap().call(request);
    drop(pending);

    assert_eq!(status_of(&mut service).await, StatusCode::OK);
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_cannot_wedge_the_breaker() {
    let upstream = Upstream::new(500);
    let breaker = layer()
        .half_open_probes(1)
        .probe_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    open_then_wait(&mut service).await;
    let _hung = send(&mut service).await; // body never read, never dropped
    tokio::time::advance(Duration::from_secs(5)).await;
    let refused = send(&mut service).await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert_eq!(
        refused.headers()["retry-after"],
        "20",
        "re-opened, for longer"
    );
}

#[tokio::test(start_paused = true)]
async fn the_count_window_slides() {
    let upstream = Upstream::new(200);
    let breaker = CircuitBreakerLayer::builder()
        .count_window(100)
        .minimum_calls(10)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    for _ in 0..10_000 {
        status_of(&mut service).await;
    }
    upstream.set(503);
    for _ in 0..49 {
        status_of(&mut service).await;
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    status_of(&mut service).await;
    // 50 failures among the last 100 calls, after 10,000 successes.
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_old_failures() {
    let upstream = Upstream::new(500);
    let breaker = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(4)
        .failure_rate(0.5)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());
    for _ in 0..3 {
        status_of(&mut service).await;
    }
    assert_eq!(handle.window().failures, 3);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(handle.window().failures, 0);
    status_of(&mut service).await;
    assert_eq!(
        handle.state(),
        CircuitState::Closed,
        "the old failures have left"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_and_timeouts_open_the_breaker() {
    let breaker = CircuitBreakerLayer::builder()
        .failure_rate(None)
        .slow_calls(Duration::from_millis(100), 0.5)
        .minimum_calls(2)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service =
        ServiceBuilder::new()
            .layer(breaker)
            .service_fn(|_req: Request<Body>| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<_, Infallible>(Response::new(Body::default()))
            });
    status_of(&mut service).await;
    status_of(&mut service).await;
    assert_eq!(handle.state(), CircuitState::Open);

    // A timeout layer's 504 inside the breaker is a failure.
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = ServiceBuilder::new()
        .layer(breaker)
        .layer(
            tower_armor::timeout::TimeoutLayer::builder(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    assert_eq!(status_of(&mut service).await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status_of(&mut service).await, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(handle.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn another_layers_refusal_is_not_an_upstream_failure() {
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let limit = tower_armor::rate_limit::RateLimitLayer::builder(
        tower_armor::rate_limit::Quota::per_minute(1),
    )
    .build()
    .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(breaker)
        .layer(limit)
        .service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    assert_eq!(status_of(&mut service).await, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(status_of(&mut service).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.window().failures, 0);
}

/// A gRPC upstream that answers 200 with the status only in the trailers.
fn grpc_upstream(
    code: &'static str,
) -> impl Service<
    Request<Body>,
    Response = Response<
        StreamBody<impl Stream<Item = Result<http_body::Frame<Bytes>, Infallible>>>,
    >,
    Error = Infallible,
> + Clone {
    tower::service_fn(move |_req: Request<Body>| async move {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", code.parse().unwrap());
        let frames = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(http_body::Frame::trailers(trailers)),
        ];
        Ok(Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures_util_stream(frames)))
            .unwrap())
    })
}

fn futures_util_stream<T: Unpin>(items: Vec<T>) -> impl Stream<Item = T> + Unpin {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T: Unpin> Stream for Iter<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

fn grpc_request() -> Request<Body> {
    Request::post("/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .body(Body::default())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_counts_and_refusals_are_unavailable() {
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_millis(1500), Duration::from_secs(10))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = breaker.handle();

    // INVALID_ARGUMENT is the caller's fault: not a failure.
    let mut ok = breaker.layer(grpc_upstream("3"));
    for _ in 0..3 {
        let response = call(&mut ok, grpc_request()).await;
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Closed);

    // INTERNAL, read from the trailers at the end of the body, is.
    let mut failing = breaker.layer(grpc_upstream("13"));
    for _ in 0..2 {
        let response = call(&mut failing, grpc_request()).await;
        assert_eq!(
            handle.state(),
            CircuitState::Closed,
            "not judged at the head"
        );
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(handle.state(), CircuitState::Open);

    let refused = call(&mut failing, grpc_request()).await;
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(refused.headers()["grpc-status"], "14");
    assert_eq!(refused.headers()["grpc-retry-pushback-ms"], "1500");
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_isolate_one_upstream_from_another() {
    let breaker = CircuitBreakerLayer::builder()
        .key(Authority)
        .consecutive_failures(2)
        .build()
        .unwrap();
    let mut service = breaker.layer(tower::service_fn(|req: Request<Body>| async move {
        let status = if req.uri().host() == Some("down.example") {
            502
        } else {
            200
        };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Body::default())
                .unwrap(),
        )
    }));
    for _ in 0..2 {
        send_to(&mut service, "http://down.example/x")
            .await
            .into_body()
            .collect()
            .await
            .unwrap();
    }
    assert_eq!(
        send_to(&mut service, "http://down.example/x")
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send_to(&mut service, "http://up.example/x").await.status(),
        StatusCode::OK
    );
    let down = "down.example".parse().unwrap();
    let up = "up.example".parse().unwrap();
    assert_eq!(breaker.handle().state_of(&down), Some(CircuitState::Open));
    assert_eq!(breaker.handle().state_of(&up), Some(CircuitState::Closed));

    // An operator can close one upstream's breaker by key.
    breaker.handle().for_key(&down).force_closed();
    assert_eq!(breaker.handle().state_of(&down), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_bounded_and_idle_ones_are_forgotten() {
    let breaker = CircuitBreakerLayer::builder()
        .key(Authority)
        .consecutive_failures(1)
        .key_limits(tower_armor::key::KeyLimits::new(
            10,
            Duration::from_secs(60),
        ))
        .build()
        .unwrap();
    let mut service = breaker.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::default()))
    }));
    for n in 0..50 {
        let response = send_to(&mut service, &format!("http://host{n}.example/")).await;
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(
        breaker.handle().states().len(),
        10,
        "new keys beyond the cap share one breaker"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        breaker.handle().evict_idle(),
        0,
        "the first sweep only marks them unused"
    );
    assert_eq!(breaker.handle().evict_idle(), 10);
    assert!(breaker.handle().states().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_does_not_wait_for_inner_readiness() {
    let (mock, mut mock_handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let handle = breaker.handle();
    handle.force_open();
    let mut service = breaker.layer(mock);
    mock_handle.allow(0);
    // The inner service is not ready, but an open breaker answers anyway.
    let response = tokio::time::timeout(Duration::from_secs(1), send(&mut service))
        .await
        .expect("refused without waiting on the inner service");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Closed again, readiness is the inner service's, as it must be.
    handle.reset();
    let mut ready = tokio_test::task::spawn(service.ready());
    tokio_test::assert_pending!(ready.poll());
    mock_handle.allow(1);
    assert!(ready.is_woken());
    tokio_test::assert_ready_ok!(ready.poll());
}

/// An upstream that is not `Clone`, answering 500 until told otherwise.
struct NotClone(Upstream);

impl Service<Request<Body>> for NotClone {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.0.call(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_is_not_clone_is_guarded_too() {
    let upstream = Upstream::new(500);
    let mut service = CircuitBreaker::new(NotClone(upstream.service()), layer().build().unwrap());
    open_then_wait(&mut service).await;
    assert_eq!(upstream.calls(), 4);
    upstream.set(200);
    // Both probes reach the upstream and close the breaker.
    for _ in 0..2 {
        assert_eq!(status_of(&mut service).await, StatusCode::OK);
    }
    assert_eq!(upstream.calls(), 6);
    assert_eq!(service.get_ref().0.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_after_poll_ready_skipped_the_service_is_refused_and_loses_no_probe() {
    let upstream = Upstream::new(500);
    let breaker = layer().build().unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(NotClone(upstream.service()));
    for _ in 0..4 {
        status_of(&mut service).await;
    }
    assert_eq!(handle.state(), CircuitState::Open);
    // `poll_ready` answers for the open breaker without asking the upstream…
    std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .unwrap();
    // …then the open period ends before the call.
    tokio::time::advance(Duration::from_secs(10)).await;
    let response = service.call(Request::new(Body::default())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.calls(), 4, "the unready upstream was not called");
    // Both probe permits are still there.
    upstream.set(200);
    for _ in 0..2 {
        assert_eq!(status_of(&mut service).await, StatusCode::OK);
    }
    assert_eq!(handle.state(), CircuitState::Closed);
}

#[test]
fn requests_without_a_key_share_a_breaker_pass_or_are_refused_and_are_counted() {
    use tower_armor::circuit_breaker::MissingKey;
    let upstream = Upstream::new(500);
    let keyed = |missing: MissingKey, name: &'static str| {
        CircuitBreakerLayer::builder()
            .key(tower_armor::key::from_fn(|request| {
                request.headers.get("x-upstream").cloned()
            }))
            .consecutive_failures(2)
            .on_missing_key(missing)
            .name(name)
            .build()
            .unwrap()
    };
    let counters = support::counters_recorded(|| async {
        // Shared: requests without a key trip one breaker together.
        let shared = keyed(MissingKey::Shared, "shared");
        let mut service = shared.layer(upstream.service());
        for _ in 0..2 {
            assert_eq!(
                status_of(&mut service).await,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        assert_eq!(
            status_of(&mut service).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(shared.handle().state(), CircuitState::Open);
        // Allow: no breaker at all, however often the upstream fails.
        let mut service = keyed(MissingKey::Allow, "allow").layer(upstream.service());
        for _ in 0..4 {
            assert_eq!(
                status_of(&mut service).await,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        // Refuse: never reaches the upstream.
        let before = upstream.calls();
        let mut service =
            keyed(MissingKey::Refuse(StatusCode::BAD_REQUEST), "refuse").layer(upstream.service());
        let refused = send(&mut service).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            refused.extensions().get::<Rejection>().unwrap().reason(),
            Reason::Unidentified
        );
        assert_eq!(upstream.calls(), before);
    });
    let missing = |name: &str| {
        counters
            .iter()
            .find(|(metric, labels, _)| {
                metric == "armor.circuit_breaker.missing_key"
                    && labels.contains(&format!("name={name}"))
            })
            .map_or(0, |(_, _, value)| *value)
    };
    assert_eq!(
        (missing("shared"), missing("allow"), missing("refuse")),
        (3, 4, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn operator_controls() {
    let upstream = Upstream::new(500);
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let breaker = layer()
        .on_state_change(move |change| seen.lock().unwrap().push((change.from, change.to)))
        .build()
        .unwrap();
    let handle = breaker.handle();
    let mut service = breaker.layer(upstream.service());

    handle.force_open();
    assert_eq!(
        status_of(&mut service).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(handle.next_admission(), None);
    assert_eq!(upstream.calls(), 0);

    handle.disable();
    for _ in 0..10 {
        assert_eq!(
            status_of(&mut service).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(
        handle.machine_state(),
        CircuitState::Closed,
        "disabled records nothing"
    );

    handle.metrics_only();
    for _ in 0..6 {
        assert_eq!(
            status_of(&mut service).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    assert_eq!(handle.state(), CircuitState::MetricsOnly);
    assert_eq!(
        handle.machine_state(),
        CircuitState::Open,
        "it would have opened"
    );

    handle.reset();
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.next_admission(), Some(tokio::time::Instant::now()));
    assert_eq!(
        *changes.lock().unwrap(),
        vec![
            (CircuitState::Closed, CircuitState::ForcedOpen),
            (CircuitState::ForcedOpen, CircuitState::Disabled),
            (CircuitState::Disabled, CircuitState::MetricsOnly),
            (CircuitState::Closed, CircuitState::Open),
            (CircuitState::MetricsOnly, CircuitState::Closed),
        ]
    );
}

#[test]
fn metrics_state_gauge_transitions_and_calls() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The layer is kept until after the snapshot: a dropped breaker leaves the gauge.
    let _breaker = metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let upstream = Upstream::new(500);
                let breaker = layer().name("orders").build().unwrap();
                let mut service = breaker.layer(upstream.service());
                for _ in 0..4 {
                    status_of(&mut service).await;
                }
                status_of(&mut service).await;
                tokio::time::advance(Duration::from_secs(10)).await;
                upstream.set(200);
                status_of(&mut service).await;
                breaker
            })
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    };
    let gauge = |state: &str| match value("armor.circuit_breaker.state", &[("state", state)]) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!("no gauge for {state}: {other:?}"),
    };
    let counter = |name: &str, labels: &[(&str, &str)]| match value(name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    };
    // Half-open now: that gauge is 1, every other state 0.
    assert_eq!(gauge("half_open"), 1.0);
    for state in ["closed", "open", "forced_open", "disabled", "metrics_only"] {
        assert_eq!(gauge(state), 0.0, "{state}");
    }
    let calls = "armor.circuit_breaker.calls";
    assert_eq!(
        counter(calls, &[("name", "orders"), ("outcome", "failure")]),
        4
    );
    assert_eq!(counter(calls, &[("outcome", "refused")]), 1);
    assert_eq!(counter(calls, &[("outcome", "success")]), 1);
    let transitions = "armor.circuit_breaker.transitions";
    assert_eq!(
        counter(transitions, &[("from", "closed"), ("to", "open")]),
        1
    );
    assert_eq!(
        counter(transitions, &[("from", "open"), ("to", "half_open")]),
        1
    );
}

#[test]
fn bad_configuration_fails_at_build() {
    let cases = [
        CircuitBreakerLayer::builder().count_window(0).build().err(),
        CircuitBreakerLayer::builder()
            .failure_rate(1.5)
            .build()
            .err(),
        CircuitBreakerLayer::builder()
            .failure_rate(None)
            .build()
            .err(),
        CircuitBreakerLayer::builder()
            .time_window(Duration::from_millis(5), 10)
            .build()
            .err(),
        CircuitBreakerLayer::builder()
            .open_duration(Duration::from_secs(10), Duration::from_secs(1))
            .build()
            .err(),
        CircuitBreakerLayer::builder()
            .half_open_probes(0)
            .build()
            .err(),
        CircuitBreakerLayer::builder().jitter(1.0).build().err(),
        CircuitBreakerLayer::builder()
            .consecutive_failures(0)
            .build()
            .err(),
    ];
    for (n, error) in cases.into_iter().enumerate() {
        let error = error.unwrap_or_else(|| panic!("case {n} was accepted"));
        assert_eq!(error.layer(), "circuit_breaker");
    }
}
