//! The retry layer through its service, under paused time: what is retried,
//! what is replayed, how long it waits, and what it never does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_armor::Deadline;
use tower_armor::grpc::GrpcCode;
use tower_armor::key::Authority;
use tower_armor::reject::{Reason, Rejection};
use tower_armor::retry::{RetryBuilder, RetryLayer};

mod support;

/// What the upstream does with one call.
#[derive(Clone)]
enum Reply {
    Status(u16, Vec<(&'static str, HeaderValue)>),
    /// Fails the call, as a refused or reset connection would.
    Error,
    /// Never answers.
    Hang,
}

fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new())
}

/// One call the upstream received, body read to its end.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    method: Method,
    uri: http::Uri,
    version: http::Version,
    tag: Option<Tag>,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

/// An extension a caller put on the request, to see that retries keep it.
#[derive(Debug, Clone, PartialEq)]
struct Tag(&'static str);

#[derive(Debug)]
struct ConnectionReset;

impl std::fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

/// An upstream that reads each request body, then answers from a script
/// (and with `then` once the script is used up).
#[derive(Clone)]
struct Upstream {
    script: Arc<Mutex<VecDeque<Reply>>>,
    then: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    fn new(script: impl IntoIterator<Item = Reply>, then: Reply) -> Self {
        Upstream {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            then,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl<B> Service<Request<B>> for Upstream
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = ConnectionReset;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, ConnectionReset>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectionReset>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone());
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let at = Instant::now();
            let collected = body.collect().await.unwrap();
            seen.lock().unwrap().push(Seen {
                at,
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                tag: parts.extensions.get::<Tag>().cloned(),
                headers: parts.headers,
                trailers: collected.trailers().cloned(),
                body: collected.to_bytes(),
            });
            match reply {
                Reply::Status(code, headers) => {
                    let mut response = Response::builder().status(code);
                    for (name, value) in headers {
                        response = response.header(name, value);
                    }
                    Ok(response
                        .body(Full::new(Bytes::from_static(b"upstream")))
                        .unwrap())
                }
                Reply::Error => Err(ConnectionReset),
                Reply::Hang => std::future::pending().await,
            }
        })
    }
}

fn layer() -> RetryBuilder {
    RetryLayer::builder().backoff(Duration::from_millis(10), Duration::from_millis(100))
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

fn grpc(code: Option<GrpcCode>, pushback: Option<&'static str>) -> Reply {
    let mut headers = vec![("content-type", HeaderValue::from_static("application/grpc"))];
    if let Some(code) = code {
        headers.push(("grpc-status", code.header_value()));
    }
    if let Some(pushback) = pushback {
        headers.push(("grpc-retry-pushback-ms", HeaderValue::from_static(pushback)));
    }
    Reply::Status(200, headers)
}

fn grpc_request() -> Request<Full<Bytes>> {
    Request::post("http://svc/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
        .unwrap()
}

async fn send<E: tower_armor::key::KeyExtractor, B>(
    layer: &RetryLayer<E>,
    upstream: &Upstream,
    request: Request<B>,
) -> Result<Response<Bytes>, ConnectionReset>
where
    B: http_body::Body + Send + 'static,
    B::Data: bytes::Buf + Send,
    B::Error: std::fmt::Debug + Send + Sync + std::error::Error,
{
    let response = layer.layer(upstream.clone()).oneshot(request).await?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        body.collect().await.unwrap().to_bytes(),
    ))
}

fn counted(counters: &support::Counters, name: &str, label: &str) -> u64 {
    counters
        .iter()
        .filter(|(n, labels, _)| n == name && labels.iter().any(|l| l == label))
        .map(|(_, _, value)| value)
        .sum()
}

#[test]
fn a_flaky_upstream_fails_twice_then_the_caller_gets_one_success() {
    let upstream = Upstream::new([status(503), status(502)], status(200));
    let counters = support::counters_recorded(|| async {
        let layer = layer().name("inventory").build().unwrap();
        let response = send(&layer, &upstream, get("http://inventory/items"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "upstream");
    });
    assert_eq!(upstream.calls(), 3);
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=retried"),
        2
    );
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=success"),
        1
    );
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=failed"),
        0
    );
    assert!(
        counters
            .iter()
            .all(|(_, labels, _)| labels.contains(&"name=inventory".to_owned()))
    );
}

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_the_same_head() {
    let upstream = Upstream::new([status(503), status(503)], status(200));
    let mut request = get("http://inventory/items?page=2&sort=name");
    *request.version_mut() = http::Version::HTTP_2;
    request.extensions_mut().insert(Tag("trace-7"));
    let headers = request.headers_mut();
    headers.append("accept", HeaderValue::from_static("application/json"));
    headers.append("x-tag", HeaderValue::from_static("first"));
    headers.append("x-tag", HeaderValue::from_static("second"));
    headers.append("accept", HeaderValue::from_static("text/plain"));
    headers.append("cookie", HeaderValue::from_str("session=abc").unwrap());
    let sent = request.headers().clone();
    let response = send(&layer().build().unwrap(), &upstream, request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    let in_order = |map: &HeaderMap| {
        map.iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect::<Vec<_>>()
    };
    for attempt in &seen {
        assert_eq!(attempt.method, Method::GET);
        assert_eq!(attempt.uri, "http://inventory/items?page=2&sort=name");
        assert_eq!(attempt.version, http::Version::HTTP_2);
        assert_eq!(attempt.tag, Some(Tag("trace-7")));
        assert_eq!(in_order(&attempt.headers), in_order(&sent));
        assert_eq!(attempt.headers.get_all("x-tag").iter().count(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_the_maximum_and_the_last_answer_is_passed_on() {
    let upstream = Upstream::new(
        [],
        Reply::Status(503, vec![("x-attempt", HeaderValue::from_static("any"))]),
    );
    let layer = layer().max_attempts(4).build().unwrap();
    let response = send(&layer, &upstream, get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-attempt"], "any");
    assert_eq!(response.body(), "upstream");
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn post_is_sent_once_unless_it_carries_an_idempotency_key() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new([], status(503));
    let post = Request::post("/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(&layer, &upstream, post).await.unwrap().status(), 503);
    assert_eq!(upstream.calls(), 1);

    let upstream = Upstream::new([status(503)], status(201));
    let keyed = Request::post("/orders")
        .header("idempotency-key", "order-7f3a")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(&layer, &upstream, keyed).await.unwrap().status(), 201);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.method == Method::POST && s.body == "{}")
    );
}

#[tokio::test(start_paused = true)]
async fn the_eligibility_rule_can_be_replaced() {
    let layer = layer()
        .retry_requests_when(|head| head.uri.path().starts_with("/search"))
        .build()
        .unwrap();
    let upstream = Upstream::new([status(503)], status(200));
    let search = Request::post("/search")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&layer, &upstream, search).await.unwrap().status(), 200);
    assert_eq!(upstream.calls(), 2);

    let upstream = Upstream::new([status(503)], status(200));
    assert_eq!(
        send(&layer, &upstream, get("/items"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(upstream.calls(), 1);
}

/// A body streamed in frames, with trailers.
struct Frames(VecDeque<http_body::Frame<Bytes>>);

impl Stream for Frames {
    type Item = Result<http_body::Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

fn streamed(chunks: usize, chunk_len: usize) -> (StreamBody<Frames>, Bytes, HeaderMap) {
    let mut frames = VecDeque::new();
    let mut all = Vec::new();
    for i in 0..chunks {
        let chunk: Vec<u8> = (0..chunk_len).map(|j| ((i * 31 + j) % 251) as u8).collect();
        all.extend_from_slice(&chunk);
        frames.push_back(http_body::Frame::data(Bytes::from(chunk)));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from(all.len()));
    frames.push_back(http_body::Frame::trailers(trailers.clone()));
    (StreamBody::new(Frames(frames)), Bytes::from(all), trailers)
}

#[tokio::test(start_paused = true)]
async fn a_streamed_body_is_replayed_byte_for_byte_with_its_trailers() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new([status(500), status(503)], status(200));
    let (body, bytes, trailers) = streamed(16, 1000);
    let request = Request::put("/blob").body(body).unwrap();
    assert_eq!(
        send(&layer, &upstream, request).await.unwrap().status(),
        200
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    for attempt in seen {
        assert_eq!(attempt.body, bytes);
        assert_eq!(attempt.trailers.as_ref(), Some(&trailers));
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_cap_is_sent_whole_once_and_not_retried() {
    let layer = layer().max_replay_bytes(8 * 1024).build().unwrap();
    let upstream = Upstream::new([], status(503));
    let (body, bytes, trailers) = streamed(10, 1000);
    let request = Request::put("/blob").body(body).unwrap();
    assert_eq!(
        send(&layer, &upstream, request).await.unwrap().status(),
        503
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, bytes);
    assert_eq!(seen[0].trailers.as_ref(), Some(&trailers));

    // Known to be too long from its size: not even recorded.
    let upstream = Upstream::new([], status(503));
    let request = Request::put("/blob")
        .body(Full::new(Bytes::from(vec![7; 9000])))
        .unwrap();
    assert_eq!(
        send(&layer, &upstream, request).await.unwrap().status(),
        503
    );
    assert_eq!(upstream.calls(), 1);
}

#[test]
fn a_total_outage_spends_no_more_than_the_budget() {
    let upstream = Upstream::new([], status(503));
    let counters = support::counters_recorded(|| async {
        let layer = layer()
            .name("outage")
            .budget(0.1, 0, Duration::from_secs(10))
            .build()
            .unwrap();
        for _ in 0..100 {
            let answer = send(&layer, &upstream, get("/")).await.unwrap();
            assert_eq!(answer.status(), 503);
        }
        assert_eq!(layer.handle().budget_available(), Some(0));
    });
    // 100 requests earn 10 retries, not a tripled load.
    assert_eq!(upstream.calls(), 110);
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=retried"),
        10
    );
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=failed"),
        100
    );
    // Every request ended on an empty budget: 90 at once, 10 after their one retry.
    assert_eq!(
        counted(&counters, "armor.retry.budget_exhausted", "name=outage"),
        100
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_by_every_layer_call() {
    let layer = layer()
        .budget(0.0, 1, Duration::from_secs(2))
        .build()
        .unwrap();
    let upstream = Upstream::new([], status(503));
    let first = layer.layer(upstream.clone());
    let second = layer.layer(upstream.clone());
    for mut service in [first.clone(), second.clone(), first] {
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
            .await
            .unwrap()
            .call(get("/"))
            .await
            .unwrap();
    }
    // A reserve of 1 per second over 2 s: two retries in all, not per clone.
    assert_eq!(upstream.calls(), 3 + 2);
}

#[tokio::test(start_paused = true)]
async fn keyed_budgets_keep_one_upstream_outage_from_spending_the_others() {
    let layer = RetryLayer::builder()
        .key(Authority)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(0.0, 1, Duration::from_secs(3))
        .build()
        .unwrap();
    let upstream = Upstream::new([], status(503));
    for _ in 0..10 {
        send(&layer, &upstream, get("http://down.internal/"))
            .await
            .unwrap();
    }
    assert_eq!(upstream.calls(), 10 + 3);
    let healthy = Upstream::new([status(503)], status(200));
    assert_eq!(
        send(&layer, &healthy, get("http://up.internal/"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(healthy.calls(), 2);
    assert_eq!(layer.handle().live_keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_handle_reads_and_refills_budgets() {
    let layer = layer()
        .budget(0.0, 1, Duration::from_secs(2))
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.budget_available(), Some(2));
    let upstream = Upstream::new([], status(503));
    send(&layer, &upstream, get("/")).await.unwrap();
    // Two retries spent the reserve of 1 per second over 2 s.
    assert_eq!(upstream.calls(), 3);
    assert_eq!(handle.budget_available(), Some(0));
    send(&layer, &upstream, get("/")).await.unwrap();
    assert_eq!(upstream.calls(), 4, "no budget left: sent once");
    handle.reset_budget();
    assert_eq!(handle.budget_available(), Some(2));
    send(&layer, &upstream, get("/")).await.unwrap();
    assert_eq!(upstream.calls(), 7, "refilled: retried again");

    // Per key: one key's budget is read and refilled alone.
    let keyed = RetryLayer::builder()
        .key(Authority)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(0.0, 1, Duration::from_secs(2))
        .build()
        .unwrap();
    let handle = keyed.handle();
    let down: http::uri::Authority = "down.internal".parse().unwrap();
    let other: http::uri::Authority = "other.internal".parse().unwrap();
    send(&keyed, &upstream, get("http://down.internal/"))
        .await
        .unwrap();
    assert_eq!(handle.budget_available_for(&down), Some(0));
    assert_eq!(handle.budget_available_for(&other), Some(2));
    assert_eq!(handle.live_keys(), 1);
    handle.reset_budget_for(&down);
    assert_eq!(handle.budget_available_for(&down), Some(2));
    assert_eq!(
        RetryLayer::builder()
            .no_budget()
            .build()
            .unwrap()
            .handle()
            .budget_available(),
        None
    );
}

#[test]
fn requests_without_a_key_share_a_budget_go_once_or_are_refused() {
    use tower_armor::retry::MissingKey;
    let tenant = || tower_armor::key::from_fn(|request| request.headers.get("x-tenant").cloned());
    let keyed = |missing: MissingKey, name: &'static str| {
        RetryLayer::builder()
            .key(tenant())
            .backoff(Duration::from_millis(1), Duration::from_millis(1))
            .budget(0.0, 1, Duration::from_secs(1))
            .on_missing_key(missing)
            .name(name)
            .build()
            .unwrap()
    };
    let counters = support::counters_recorded(|| async {
        // Shared: the requests without a key draw on one budget together.
        let shared = keyed(MissingKey::Shared, "shared");
        let upstream = Upstream::new([], status(503));
        send(&shared, &upstream, get("/")).await.unwrap();
        send(&shared, &upstream, get("/")).await.unwrap();
        assert_eq!(upstream.calls(), 2 + 1, "one retry in the shared budget");
        // Allow: the layer steps aside: sent once, never retried.
        let allow = keyed(MissingKey::Allow, "allow");
        let upstream = Upstream::new([], status(503));
        let response = send(&allow, &upstream, get("/")).await.unwrap();
        assert_eq!(
            (response.status(), upstream.calls()),
            (StatusCode::SERVICE_UNAVAILABLE, 1)
        );
        // Refuse: never sent.
        let refuse = keyed(MissingKey::Refuse(StatusCode::UNAUTHORIZED), "refuse");
        let upstream = Upstream::new([], status(200));
        let response = send(&refuse, &upstream, get("/")).await.unwrap();
        assert_eq!(
            (response.status(), upstream.calls()),
            (StatusCode::UNAUTHORIZED, 0)
        );
        assert_eq!(
            response.extensions().get::<Rejection>().unwrap().reason(),
            Reason::Unidentified
        );
    });
    for (name, count) in [("shared", 2), ("allow", 1), ("refuse", 1)] {
        assert_eq!(
            counted(
                &counters,
                "armor.retry.missing_key",
                &format!("name={name}")
            ),
            count,
            "{name}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_sets_the_wait_and_a_long_one_ends_the_retries() {
    let layer = layer()
        .max_server_delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let upstream = Upstream::new(
        [Reply::Status(
            503,
            vec![("retry-after", HeaderValue::from_static("2"))],
        )],
        status(200),
    );
    let start = Instant::now();
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        200
    );
    let seen = upstream.seen();
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(2));
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    let upstream = Upstream::new(
        [Reply::Status(
            429,
            vec![("retry-after", HeaderValue::from_static("60"))],
        )],
        status(200),
    );
    let answer = send(&layer, &upstream, get("/")).await.unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.headers()["retry-after"], "60");
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_the_backoff() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new([status(429)], status(200));
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        200
    );
    let seen = upstream.seen();
    assert!(seen[1].at - seen[0].at <= Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_grow_within_their_jitter_bounds() {
    for _ in 0..20 {
        let layer = RetryLayer::builder()
            .max_attempts(5)
            .backoff(Duration::from_millis(100), Duration::from_millis(300))
            .build()
            .unwrap();
        let upstream = Upstream::new([], status(503));
        send(&layer, &upstream, get("/")).await.unwrap();
        let at: Vec<Instant> = upstream.seen().iter().map(|s| s.at).collect();
        assert_eq!(at.len(), 5);
        for (retry, ceiling) in [(1, 100), (2, 200), (3, 300), (4, 300)] {
            assert!(at[retry] - at[retry - 1] <= Duration::from_millis(ceiling));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn decorrelated_waits_stay_between_base_and_max() {
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .decorrelated_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .build()
        .unwrap();
    let upstream = Upstream::new([], status(503));
    send(&layer, &upstream, get("/")).await.unwrap();
    let at: Vec<Instant> = upstream.seen().iter().map(|s| s.at).collect();
    for pair in at.windows(2) {
        let wait = pair[1] - pair[0];
        assert!(
            wait >= Duration::from_millis(50) && wait <= Duration::from_millis(400),
            "{wait:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_unavailable_is_retried_with_pushback_and_attempt_count() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new(
        [grpc(Some(GrpcCode::Unavailable), Some("300"))],
        grpc(Some(GrpcCode::Ok), None),
    );
    let answer = send(&layer, &upstream, grpc_request()).await.unwrap();
    assert_eq!(answer.headers()["grpc-status"], "0");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].at - seen[0].at, Duration::from_millis(300));
    assert!(!seen[0].headers.contains_key("grpc-previous-rpc-attempts"));
    assert_eq!(seen[1].headers["grpc-previous-rpc-attempts"], "1");
    assert_eq!(seen[1].body, seen[0].body);
}

#[tokio::test(start_paused = true)]
async fn grpc_stops_on_other_codes_a_negative_pushback_and_a_started_stream() {
    let layer = layer().build().unwrap();
    for first in [
        grpc(Some(GrpcCode::InvalidArgument), None),
        grpc(Some(GrpcCode::Internal), None),
        grpc(Some(GrpcCode::Unavailable), Some("-1")),
        // No status in the head: the stream has begun, its end is the caller's.
        grpc(None, None),
    ] {
        let upstream = Upstream::new([first], grpc(Some(GrpcCode::Ok), None));
        send(&layer, &upstream, grpc_request()).await.unwrap();
        assert_eq!(upstream.calls(), 1);
    }
    // A proxy's 503 in front of a gRPC service means UNAVAILABLE.
    let upstream = Upstream::new([status(503)], grpc(Some(GrpcCode::Ok), None));
    send(&layer, &upstream, grpc_request()).await.unwrap();
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_grpc_retryable_codes_can_be_chosen() {
    let layer = layer()
        .grpc_retryable_codes([GrpcCode::Unavailable, GrpcCode::ResourceExhausted])
        .build()
        .unwrap();
    let upstream = Upstream::new(
        [grpc(Some(GrpcCode::ResourceExhausted), None)],
        grpc(Some(GrpcCode::Ok), None),
    );
    send(&layer, &upstream, grpc_request()).await.unwrap();
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn service_errors_are_retried_and_the_last_one_is_passed_on() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new([Reply::Error], status(200));
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        200
    );
    assert_eq!(upstream.calls(), 2);

    let upstream = Upstream::new([], Reply::Error);
    let error = send(&layer, &upstream, get("/")).await.unwrap_err();
    assert_eq!(error.to_string(), "connection reset");
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_closure_can_override_the_decision() {
    let layer = layer()
        .retry_if(|check| match check.response {
            Some((status, _)) if status == StatusCode::CONFLICT => Some(true),
            Some((status, _)) if status == StatusCode::BAD_GATEWAY => Some(false),
            _ => None,
        })
        .build()
        .unwrap();
    let upstream = Upstream::new([status(409)], status(200));
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        200
    );
    assert_eq!(upstream.calls(), 2);
    let upstream = Upstream::new([status(502)], status(200));
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        502
    );
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_wait_starts_that_would_end_after_the_deadline() {
    let layer = layer().build().unwrap();
    let upstream = Upstream::new(
        [Reply::Status(
            503,
            vec![("retry-after", HeaderValue::from_static("1"))],
        )],
        status(200),
    );
    let mut request = get("/");
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(800)));
    let start = Instant::now();
    assert_eq!(
        send(&layer, &upstream, request).await.unwrap().status(),
        503
    );
    assert_eq!(upstream.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_is_abandoned_at_the_per_try_timeout() {
    let layer = layer()
        .per_try_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let upstream = Upstream::new([Reply::Hang], status(200));
    let start = Instant::now();
    assert_eq!(
        send(&layer, &upstream, get("/")).await.unwrap().status(),
        200
    );
    assert_eq!(upstream.calls(), 2);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited <= Duration::from_millis(1010));

    // Every attempt hangs: the caller gets a 504 from the layer.
    let upstream = Upstream::new([], Reply::Hang);
    let answer = layer
        .layer(upstream.clone())
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    let rejection = answer.extensions().get::<Rejection>().unwrap();
    assert_eq!(
        (rejection.layer(), rejection.reason()),
        ("retry", Reason::TimedOut)
    );
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_per_try_timeout_never_outlasts_the_deadline() {
    let layer = layer()
        .per_try_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let upstream = Upstream::new([], Reply::Hang);
    let mut request = get("/");
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_secs(2)));
    let start = Instant::now();
    let answer = layer
        .layer(upstream.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(upstream.calls(), 1);
}

#[test]
fn local_refusals_further_in_are_passed_on_and_cost_no_budget() {
    let counters = support::counters_recorded(|| async {
        let layer = layer().build().unwrap();
        let calls = Arc::new(Mutex::new(0));
        let refusing = {
            let calls = calls.clone();
            tower::service_fn(move |_request: Request<_>| {
                *calls.lock().unwrap() += 1;
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
                    .extensions_mut()
                    .insert(Rejection::new("circuit_breaker", Reason::CircuitOpen));
                let _: &Request<tower_armor::retry::ReplayBody<Full<Bytes>>> = &_request;
                std::future::ready(Ok::<_, Infallible>(response))
            })
        };
        let before = layer.handle().budget_available();
        let answer = layer.layer(refusing).oneshot(get("/")).await.unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(*calls.lock().unwrap(), 1);
        assert_eq!(layer.handle().budget_available(), before);
    });
    assert_eq!(
        counted(&counters, "armor.retry.attempts", "outcome=refused"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_further_in_is_retried() {
    let layer = layer().build().unwrap();
    let inner_timeout = tower_armor::timeout::TimeoutLayer::builder(Duration::from_secs(1))
        .build()
        .unwrap();
    let upstream = Upstream::new([Reply::Hang], status(200));
    let service = layer.layer(inner_timeout.layer(upstream.clone()));
    let answer = service.oneshot(get("/")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(upstream.calls(), 2);
}

#[test]
fn bad_settings_fail_at_build() {
    let cases: Vec<(RetryBuilder, &str)> = vec![
        (RetryLayer::builder().max_attempts(0), "max_attempts"),
        (RetryLayer::builder().max_attempts(6), "max_attempts"),
        (
            RetryLayer::builder().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            "backoff",
        ),
        (
            RetryLayer::builder().per_try_timeout(Duration::ZERO),
            "per_try_timeout",
        ),
        (
            RetryLayer::builder().budget(-0.1, 0, Duration::from_secs(10)),
            "ratio",
        ),
        (
            RetryLayer::builder().budget(f64::NAN, 0, Duration::from_secs(10)),
            "ratio",
        ),
        (
            RetryLayer::builder().budget(0.2, 0, Duration::ZERO),
            "window",
        ),
    ];
    for (builder, mentions) in cases {
        let error = builder.build().unwrap_err();
        assert_eq!(error.layer(), "retry");
        assert!(error.to_string().contains(mentions), "{error}");
    }
    assert!(
        RetryLayer::builder()
            .key(Authority)
            .key_limits(tower_armor::key::KeyLimits::new(0, Duration::ZERO))
            .build()
            .is_err()
    );
}
