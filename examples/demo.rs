//! The tower-armor demo: an axum server built on the server preset, with
//! every layer, one route per behaviour, and the curl commands that show
//! each one.
//!
//! ```text
//! cargo run --all-features --example demo                 # serves on 127.0.0.1:3000
//! cargo run --all-features --example demo -- --port 8080  # another port
//! cargo run --all-features --example demo -- --check      # serves on a free port, checks every behaviour, exits
//! cargo run --all-features --example demo -- --check --save-metrics FILE  # ...and keeps its last /metrics
//! ARMOR_REDIS_URL=redis://127.0.0.1:6379/ cargo run --all-features --example demo  # the cache shared through Redis
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tower_armor::Deadline;
use tower_armor::cache::{CacheHandle, CacheLayer, MemoryStore, Purge, VaryNormalizer};
use tower_armor::circuit_breaker::{CircuitBreakerLayer, CircuitHandle};
use tower_armor::compression::{Encoding, RequestDecompressionLayer};
use tower_armor::health::{Check, CheckResult, HealthHandle, HealthLayer, Probe, check_fn, checks};
use tower_armor::metrics::{MetricsLayer, prometheus};
use tower_armor::preset::{ClientPreset, ServerPreset};
use tower_armor::rate_limit::{Header, MissingKey, Quota, RateLimitLayer};
use tower_armor::redis::{RedisCacheStore, RedisConnection};
use tower_armor::retry::{ReplayBody, RetryLayer};
use tower_armor::timeout::{RequestBodyTimeoutLayer, ResponseBodyDeadlineLayer, TimeoutLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Handlers get one second to start answering.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(1);
/// No route, uploads and streams included, may take longer to its head.
const REQUEST_CEILING: Duration = Duration::from_secs(10);
/// A client may pause this long while uploading.
const UPLOAD_IDLE: Duration = Duration::from_secs(2);
/// A streamed response must finish within this.
const STREAM_DEADLINE: Duration = Duration::from_secs(3);
/// How long the flaky route's breaker stays open the first time.
const BREAKER_OPEN: Duration = Duration::from_secs(2);

/// Calls the shaky upstream has had; two of every three fail.
static SHAKY_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The HTTP client under the demo's own client stack.
type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    ReplayBody<http_body_util::Empty<Bytes>>,
>;

/// The demo's own HTTP client to its shaky upstream: the client preset
/// (metrics, a 10 s timeout, retries, a breaker per upstream), measured as
/// one request however many attempts it takes.
type RetryingClient = <ClientPreset as tower::Layer<HttpClient>>::Service;

/// Decoded request bodies may grow to this; past it, 413.
const MAX_DECODED_UPLOAD: u64 = 1024 * 1024;
/// Time between two server-sent events.
const EVENT_EVERY: Duration = Duration::from_millis(300);

/// Whether the flaky route's pretend upstream is healthy.
static UPSTREAM_HEALTHY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The cached route's catalogue version: bumped by a change, which purges
/// the route's tag.
static CATALOGUE_VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
/// How long the cached route's answer is fresh.
const CATALOGUE_FRESH: Duration = Duration::from_secs(2);

/// How long the demo keeps serving after it starts draining, so load
/// balancers see readiness fail before it stops.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn app(addr: SocketAddr, scrape: prometheus::Scrape) -> Result<(Router, HealthHandle), BoxError> {
    // Request metrics for every route, recorded when each response body
    // ends, with the route axum matched as `http.route`.
    let metrics = MetricsLayer::server().name("demo").build()?;

    let timeout = TimeoutLayer::builder(HANDLER_TIMEOUT)
        .name("demo")
        .build()?;

    // Five requests per ten seconds, shared by everyone. To share it between
    // every instance of a service as well, keep it in Redis (feature
    // `redis`) with one more line:
    //     .store_with(tower_armor::redis::RedisRateStore::builder(redis))
    let shared_limit =
        RateLimitLayer::builder(Quota::new(5, Duration::from_secs(10)).named("demo"))
            .name("shared")
            .build()?;
    // Two per minute per API key; no key, no service.
    let per_key_limit = RateLimitLayer::builder(Quota::per_minute(2).named("per-key"))
        .key(Header::named(http::HeaderName::from_static("x-api-key")))
        .on_missing_key(MissingKey::Refuse(StatusCode::UNAUTHORIZED))
        .name("per_key")
        .build()?;

    // Opens after three failures in a row, for 2 s (then 4, 8... while the
    // upstream stays broken), and lets 3 probes through to test recovery.
    let breaker = CircuitBreakerLayer::builder()
        .name("flaky")
        .consecutive_failures(3)
        .open_duration(BREAKER_OPEN, Duration::from_secs(30))
        .jitter(0.0)
        .build()?;
    let breaker_handle = breaker.handle();

    // Health routes: /livez, /readyz (with the flaky route's breaker: open
    // warns, it never takes the instance out), /startupz, /healthz, and
    // grpc.health.v1. Operators (`x-operator` header) see why.
    let health = HealthLayer::builder()
        .name("demo")
        .check(
            Check::new("process", check_fn(|| async { CheckResult::pass() }))
                .probes(Probe::Liveness | Probe::Readiness)
                .timeout(Duration::from_millis(50)),
        )
        .check(
            Check::new("flaky-upstream", checks::breaker(breaker_handle.clone()))
                .timeout(Duration::from_millis(50))
                .cache_for(Duration::ZERO),
        )
        .full_details_when(|request| request.headers.contains_key("x-operator"))
        .build()?;
    let health_handle = health.handle();

    // A client that retries: the client preset, its retries backing off
    // from 20 ms (up to 3 attempts, budgeted).
    let client: RetryingClient = tower::ServiceBuilder::new()
        .layer(
            ClientPreset::builder()
                .name("shaky")
                .retry(
                    RetryLayer::builder()
                        .name("shaky")
                        .backoff(Duration::from_millis(20), Duration::from_millis(200))
                        .build()?,
                )
                .build()?,
        )
        .service(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        );
    let shaky_url = format!("http://{addr}/shaky");

    // Compressed uploads decoded, up to 1 MiB once decoded. (Answers are
    // compressed by the preset, for every route.)
    let decompression = RequestDecompressionLayer::builder()
        .name("demo")
        .max_decompressed_bytes(MAX_DECODED_UPLOAD)
        .build()?;
    let orders = Router::new()
        .route("/orders", get(orders).post(import_orders))
        .layer(decompression);

    // The catalogue is fresh for 2 s, then revalidated with its ETag; a
    // change purges everything tagged `catalogue`. The preset's cache (below)
    // stores what says it may be stored, in memory; with
    // ARMOR_REDIS_URL=redis://127.0.0.1:6379/ every instance of the demo
    // shares it through Redis, each with its own memory tier in front
    // (purges reach them all).
    let redis_cache = match std::env::var("ARMOR_REDIS_URL") {
        Ok(url) => Some(
            CacheLayer::builder()
                .name("demo")
                .vary_normalizer(
                    http::header::ACCEPT_ENCODING,
                    VaryNormalizer::negotiated_coding(Encoding::compiled().map(Encoding::as_str)),
                )
                .store(
                    RedisCacheStore::builder(RedisConnection::open(&url)?)
                        .local(MemoryStore::new())
                        .build()?,
                )
                .build()?,
        ),
        Err(_) => None,
    };

    // A real gRPC service (grpc.health.v1), served by the same axum router.
    let grpc = tonic::service::Routes::new(health_handle.grpc()).into_axum_router();

    let router = Router::new()
        .route("/fast", get(|| async { "fast\n" }))
        .route("/sleep/{ms}", get(sleep_then_answer))
        .route("/deadline", get(time_left))
        .route("/demo.Slow/Call", post(slow_grpc_call))
        .route(
            "/limited",
            get(|| async { "within the shared limit\n" }).layer(shared_limit),
        )
        .route(
            "/per-key",
            get(|| async { "within your key's limit\n" }).layer(per_key_limit),
        )
        .route("/flaky", get(flaky_upstream).layer(breaker))
        .route("/flaky/heal", post(|| async { set_upstream(true) }))
        .route("/flaky/break", post(|| async { set_upstream(false) }))
        .route(
            "/breaker",
            get(move || breaker_state(breaker_handle.clone())),
        )
        .route("/shaky", get(shaky_upstream))
        .route(
            "/retried",
            get(move || call_shaky(client.clone(), shaky_url.clone())),
        )
        .route("/catalogue", get(catalogue))
        .route("/events", get(events))
        .merge(grpc)
        .merge(orders)
        .layer(timeout)
        // Body limits go only where they are wanted: they change the body types.
        .route(
            "/upload",
            post(count_upload).layer(
                RequestBodyTimeoutLayer::builder(UPLOAD_IDLE)
                    .name("upload")
                    .build()?,
            ),
        )
        .route(
            "/stream",
            get(one_chunk_per_second).layer(
                ResponseBodyDeadlineLayer::builder(STREAM_DEADLINE)
                    .name("stream")
                    .build()?,
            ),
        )
        .route_service("/metrics", scrape);

    // The server preset around everything: health outermost (probes are
    // never counted or refused), metrics (every other layer's refusals
    // counted too), a 10 s ceiling for every route, the cache, compression.
    // The demo's limits and its breaker are per route, above, so the
    // preset's are off.
    let mut preset = ServerPreset::builder()
        .name("demo")
        .health(health)
        .metrics(metrics)
        .timeout(
            TimeoutLayer::builder(REQUEST_CEILING)
                .name("ceiling")
                .build()?,
        )
        .without_circuit_breaker();
    if let Some(cache) = redis_cache {
        preset = preset.cache(cache);
    }
    let preset = preset.build()?;
    let cache_handle = preset.cache().expect("the cache is on").handle();
    let router = router
        .route(
            "/catalogue/change",
            post(move || change_catalogue(cache_handle.clone())),
        )
        .layer(preset);
    Ok((router, health_handle))
}

/// The cached route: a catalogue with an ETag per version, answering 304
/// when the cache asks whether its copy is still current.
async fn catalogue(request: Request) -> Response {
    let version = CATALOGUE_VERSION.load(std::sync::atomic::Ordering::SeqCst);
    let etag = format!("\"v{version}\"");
    let current = request
        .headers()
        .get("if-none-match")
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
    let headers = [
        (
            "cache-control",
            format!("public, max-age={}", CATALOGUE_FRESH.as_secs()),
        ),
        ("etag", etag),
        ("surrogate-key", "catalogue".to_owned()),
    ];
    if current {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let built = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    (
        headers,
        format!("catalogue version {version}, built at {built} ms\n"),
    )
        .into_response()
}

/// A new catalogue version, and every cached copy of the old one purged.
async fn change_catalogue(cache: CacheHandle) -> String {
    CATALOGUE_VERSION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let purged = cache.purge(Purge::Tag("catalogue".into()), false).await;
    format!("changed; {purged} cached entries purged\n")
}

/// A pretend upstream: 500 while broken (it starts broken).
async fn flaky_upstream() -> (StatusCode, &'static str) {
    if UPSTREAM_HEALTHY.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "upstream answered\n")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "upstream failed\n")
    }
}

fn set_upstream(healthy: bool) -> &'static str {
    UPSTREAM_HEALTHY.store(healthy, std::sync::atomic::Ordering::Relaxed);
    if healthy {
        "upstream healed\n"
    } else {
        "upstream broken\n"
    }
}

/// A pretend upstream that fails two calls of every three with 503.
async fn shaky_upstream() -> (StatusCode, String) {
    let call = SHAKY_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if call % 3 == 0 {
        (
            StatusCode::OK,
            format!("shaky upstream answered call {call}\n"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("call {call} failed\n"),
        )
    }
}

/// Calls the shaky upstream through the retrying client; its answer is ours.
async fn call_shaky(mut client: RetryingClient, url: String) -> Response {
    use tower::{Service, ServiceExt};

    let request = match http::Request::get(url).body(http_body_util::Empty::new()) {
        Ok(request) => request,
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
        }
    };
    let answer = match client.ready().await {
        Ok(client) => client.call(request).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(response) => response.map(Body::new).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

/// What an admin endpoint can show from the breaker's handle.
async fn breaker_state(handle: CircuitHandle) -> String {
    let next = handle
        .next_admission()
        .map(|at| at.saturating_duration_since(Instant::now()).as_millis());
    let window = handle.window();
    format!(
        "{{\"state\":\"{}\",\"next_admission_in_ms\":{},\"window\":{{\"calls\":{},\"failures\":{}}}}}\n",
        handle.state().as_str(),
        next.map_or("null".to_owned(), |ms| ms.to_string()),
        window.calls,
        window.failures
    )
}

/// Sleeps `ms` milliseconds, then answers: over a second is too slow.
async fn sleep_then_answer(Path(ms): Path<u64>) -> String {
    sleep(Duration::from_millis(ms)).await;
    format!("answered after {ms} ms\n")
}

/// Reports how much of the deadline is left, as the timeout layer put it.
async fn time_left(request: Request) -> String {
    match Deadline::from_request(&request) {
        Some(deadline) => format!("{} ms left\n", deadline.remaining().as_millis()),
        None => "no deadline\n".to_owned(),
    }
}

/// A gRPC method that takes two seconds: trailers-only OK if it gets there.
async fn slow_grpc_call() -> impl IntoResponse {
    sleep(Duration::from_secs(2)).await;
    (
        [("content-type", "application/grpc"), ("grpc-status", "0")],
        "",
    )
}

/// Reads the whole upload and says how big it was.
async fn count_upload(body: Body) -> Response {
    match body.collect().await {
        Ok(body) => format!("received {} bytes\n", body.to_bytes().len()).into_response(),
        // The layer replaces this with its 408 when the client went quiet.
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

/// Streams one line a second for ten seconds; the body deadline cuts it at three.
async fn one_chunk_per_second() -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(async move {
        for i in 1..=10 {
            if tx
                .send(Ok(Bytes::from(format!("chunk {i}\n"))))
                .await
                .is_err()
            {
                return;
            }
            sleep(Duration::from_secs(1)).await;
        }
    });
    Body::from_stream(ReceiverStream(rx))
}

/// 600 orders as JSON, about 42 KB.
async fn orders() -> impl IntoResponse {
    let orders: Vec<String> = (1..=600)
        .map(|id| {
            format!(
                "{{\"id\":{id},\"customer\":\"customer-{}\",\"status\":\"{}\",\"total\":{}.{:02}}}",
                id % 97,
                ["pending", "shipped", "delivered"][id % 3],
                id * 7 % 500,
                id % 100
            )
        })
        .collect();
    (
        [("content-type", "application/json")],
        format!("[{}]", orders.join(",\n")),
    )
}

/// Counts the orders in an upload (which the layer decoded if it was compressed).
async fn import_orders(body: Bytes) -> String {
    let count = body.windows(5).filter(|w| w == b"\"id\":").count();
    format!("imported {count} orders from {} bytes\n", body.len())
}

/// Five server-sent events, 300 ms apart.
async fn events() -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(async move {
        for n in 1..=5 {
            let event = format!("id: {n}\nevent: tick\ndata: {{\"tick\":{n}}}\n\n");
            if tx.send(Ok(Bytes::from(event))).await.is_err() {
                return;
            }
            sleep(EVENT_EVERY).await;
        }
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(ReceiverStream(rx)),
    )
}

/// An mpsc receiver as a stream of body chunks.
struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Bytes, Infallible>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Bytes, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn print_tour(addr: SocketAddr) {
    let base = format!("http://{addr}");
    let grpc = "--http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
                --data-binary @<(printf '\\0\\0\\0\\0\\0')";
    println!(
        "tower-armor demo listening on {base}

timeout ({}s for the response head):
  curl -i {base}/fast                       # 200
  curl -i {base}/sleep/500                  # 200 after 0.5 s
  curl -i {base}/sleep/1500                 # 504 Gateway Timeout, application/problem+json
  curl -i {base}/deadline                   # the time left, read from the Deadline extension

gRPC (bash, for the <(...) body):
  curl -si {grpc} {base}/grpc.health.v1.Health/Check                 # grpc-status 0, SERVING
  curl -si {grpc} -H 'grpc-timeout: 200m' {base}/demo.Slow/Call      # grpc-status 4 after 0.2 s
  curl -si {grpc} {base}/demo.Slow/Call                              # grpc-status 4 after 1 s

request body idle timeout ({}s):
  (printf abc; sleep 3; printf def) | curl -i -T - -X POST {base}/upload   # 408 Request Timeout
  printf abcdef | curl -i -T - -X POST {base}/upload                       # 200, 6 bytes

response body deadline ({}s):
  curl -N {base}/stream                     # three chunks, then the stream is cut off

rate limit (RateLimit-Policy / RateLimit headers on every answer):
  for i in 1 2 3 4 5 6; do curl -si {base}/limited | head -1; done     # 5 x 200, then 429
  curl -i {base}/limited                    # 429, Retry-After, application/problem+json
  curl -i {base}/per-key                    # 401: no x-api-key
  curl -i -H 'x-api-key: alice' {base}/per-key   # 2 per minute for alice...
  curl -i -H 'x-api-key: bob' {base}/per-key     # ...and 2 for bob

circuit breaker (3 failures in a row open it for {}s, doubling while it stays broken):
  for i in 1 2 3 4; do curl -si {base}/flaky | head -1; done      # 3 x 500, then 503
  curl -i {base}/flaky                      # 503, Retry-After, application/problem+json
  curl {base}/breaker                       # state, time to the next probe, window
  curl -X POST {base}/flaky/heal; sleep {}; for i in 1 2 3; do curl -s {base}/flaky; done
  curl {base}/breaker                       # closed again after 3 good probes

compression (zstd, br, gzip, deflate; uploads decoded up to 1 MiB):
  curl -s -D- -o /dev/null -H 'accept-encoding: gzip, br' {base}/orders   # content-encoding: br, vary
  curl -s --compressed {base}/orders | head -c 200                       # 42 KB of JSON, sent as 4 KB
  curl -N --compressed {base}/events        # gzip-compressed SSE, each event arrives as it is sent
  curl -i -H 'accept-encoding: identity;q=0, snappy' {base}/orders  # 406, decided before the handler
  curl -s {base}/orders | gzip | curl -s --data-binary @- -H 'content-encoding: gzip' {base}/orders
  head -c 16777216 /dev/zero | gzip | curl -si --data-binary @- -H 'content-encoding: gzip' {base}/orders | head -1   # 413

health (probes answered before any other layer, never counted as traffic):
  curl -i {base}/readyz                     # ok; warn (still 200) while the flaky breaker is open
  curl -H 'x-operator: 1' '{base}/readyz?verbose'   # each check, with reasons for operators
  curl -H 'accept: application/health+json' -H 'x-operator: 1' {base}/readyz
  curl -i {base}/livez                      # liveness: the process alone
  Ctrl-C                                    # drains: /readyz 503 and gRPC NOT_SERVING for 2 s, then stops

cache (fresh for {}s, then revalidated with its ETag; Cache-Status says what happened):
  curl -si {base}/catalogue | grep -iE '^(cache-status|age)'   # fwd=uri-miss; stored, then hit with a growing Age
  sleep {}; curl -si {base}/catalogue | grep -i cache-status    # fwd=stale; fwd-status=304: refreshed, body from the cache
  curl -X POST {base}/catalogue/change      # a new version; the tag `catalogue` purged
  curl -s {base}/catalogue                  # version 2, fetched again

retry (a client inside the demo calls /shaky, which fails 2 calls of every 3):
  curl -i {base}/shaky                      # 503 twice, then 200
  curl -i {base}/retried                    # 200: the client retried /shaky until it answered
",
        HANDLER_TIMEOUT.as_secs(),
        UPLOAD_IDLE.as_secs(),
        STREAM_DEADLINE.as_secs(),
        BREAKER_OPEN.as_secs(),
        BREAKER_OPEN.as_secs(),
        CATALOGUE_FRESH.as_secs(),
        CATALOGUE_FRESH.as_secs(),
    );
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut port = 3000;
    let mut check = false;
    let mut save_metrics = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?
            }
            "--check" => check = true,
            "--save-metrics" => {
                save_metrics = Some(args.next().ok_or("--save-metrics needs a file")?)
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if check {
        port = 0;
    }

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    // The Prometheus recorder, installed as the process's own; `scrape`
    // renders it at `/metrics`.
    let (recorder, scrape) = prometheus::builder().build()?;
    metrics::set_global_recorder(recorder)?;
    let (router, health) = app(addr, scrape)?;
    let server = axum::serve(listener, router);
    if !check {
        print_tour(addr);
        // Ctrl-C: fail readiness, keep serving while load balancers notice,
        // then stop accepting and finish what is in flight.
        let draining = health.clone();
        return Ok(server
            .with_graceful_shutdown(async move {
                let _ = tokio::signal::ctrl_c().await;
                draining.drain();
                println!("draining: /readyz now fails; stopping in {DRAIN_GRACE:?}");
                sleep(DRAIN_GRACE).await;
            })
            .await?);
    }
    tokio::spawn(async move { server.await });
    run_checks(addr, save_metrics, health).await
}

type Http1 =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// GETs `url` `times` times: the statuses, and the last response.
async fn statuses_of(
    client: &Http1,
    url: String,
    times: usize,
) -> Result<(Vec<u16>, http::Response<hyper::body::Incoming>), BoxError> {
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..times {
        let response = client
            .request(http::Request::get(&url).body(Body::empty())?)
            .await?;
        statuses.push(response.status().as_u16());
        last = Some(response);
    }
    Ok((statuses, last.ok_or("no request sent")?))
}

/// GETs `url` and returns its body as trimmed text.
async fn text_of(client: &Http1, url: String) -> Result<String, BoxError> {
    let response = client
        .request(http::Request::get(url).body(Body::empty())?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// The compression routes: coded answers that decode, SSE events that arrive
/// one by one, 406 before the handler, decoded uploads and a refused bomb.
async fn check_compression(
    client: &Http1,
    url: &impl Fn(&str) -> String,
    expect: &mut impl FnMut(&str, bool, String),
) -> Result<(), BoxError> {
    use std::io::{Read, Write};

    let plain = text_of(client, url("/orders")).await?;
    let request = http::Request::get(url("/orders"))
        .header("accept-encoding", "gzip, br")
        .body(Body::empty())?;
    let response = client.request(request).await?;
    let coding = response.headers().get("content-encoding").cloned();
    let coded = response.into_body().collect().await?.to_bytes();
    let mut decoded = String::new();
    brotli_decompressor::Decompressor::new(&coded[..], 4096).read_to_string(&mut decoded)?;
    expect(
        "large JSON compressed with br",
        coding.as_ref().is_some_and(|c| c == "br") && decoded.trim() == plain,
        format!("{coding:?}, {} bytes for {}", coded.len(), decoded.len()),
    );

    let request = http::Request::get(url("/events"))
        .header("accept-encoding", "gzip")
        .body(Body::empty())?;
    let started = Instant::now();
    let response = client.request(request).await?;
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut first_event_after = None;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            decoder.write_all(data)?;
            decoder.flush()?;
        }
        if first_event_after.is_none() && decoder.get_ref().ends_with(b"\n\n") {
            first_event_after = Some(started.elapsed());
        }
    }
    let events = String::from_utf8_lossy(&decoder.finish()?)
        .matches("data:")
        .count();
    expect(
        "SSE events arrive compressed, one by one",
        events == 5 && first_event_after.is_some_and(|at| at < EVENT_EVERY),
        format!("{events} events, the first after {first_event_after:?}"),
    );

    let request = http::Request::get(url("/orders"))
        .header("accept-encoding", "identity;q=0, snappy")
        .body(Body::empty())?;
    let status = client.request(request).await?.status();
    expect(
        "406 when nothing acceptable",
        status == 406,
        status.to_string(),
    );

    let gzip = |bytes: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes)?;
        encoder.finish()
    };
    let upload = |body: Vec<u8>| {
        http::Request::post(url("/orders"))
            .header("content-encoding", "gzip")
            .body(Body::from(body))
    };
    let response = client.request(upload(gzip(plain.as_bytes())?)?).await?;
    let answer = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes())
        .trim()
        .to_owned();
    expect(
        "gzip upload decoded for the handler",
        answer.starts_with("imported 600 orders"),
        answer,
    );
    let bomb = gzip(&vec![0u8; 16 * 1024 * 1024])?;
    let status = client.request(upload(bomb.clone())?).await?.status();
    expect(
        "decompression bomb refused",
        status == 413,
        format!("{status} for {} bytes that decode to 16 MiB", bomb.len()),
    );
    Ok(())
}

/// `/metrics` after every other check: one series per route template, the
/// refusals of each layer as `error_type`, gRPC calls by method and status,
/// the retrying client's requests, and real histogram buckets. Returns the
/// exposition.
async fn check_metrics(
    client: &Http1,
    url: &impl Fn(&str) -> String,
    expect: &mut impl FnMut(&str, bool, String),
) -> Result<String, BoxError> {
    let response = client
        .request(http::Request::get(url("/metrics")).body(Body::empty())?)
        .await?;
    let content_type = response.headers().get("content-type").cloned();
    let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    expect(
        "/metrics is Prometheus text",
        content_type
            .as_ref()
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain; version=0.0.4")),
        format!("{content_type:?}, {} bytes", text.len()),
    );
    let durations: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count{"))
        .collect();
    let has = |parts: &[&str]| {
        durations
            .iter()
            .any(|line| parts.iter().all(|part| line.contains(part)))
    };
    expect(
        "duration per route template, never per path",
        has(&[
            "http_route=\"/sleep/{ms}\"",
            "http_response_status_code=\"504\"",
            "error_type=\"timeout\"",
        ]) && !text.contains("/sleep/1500"),
        format!("{} duration series", durations.len()),
    );
    let refusals = [
        "rate_limited",
        "circuit_open",
        "not_acceptable",
        "payload_too_large",
    ];
    let missing: Vec<_> = refusals
        .iter()
        .filter(|refusal| !has(&[&format!("error_type=\"{refusal}\"")]))
        .collect();
    expect(
        "every layer's refusal counted",
        missing.is_empty(),
        format!("missing: {missing:?}"),
    );
    let grpc = text.lines().any(|line| {
        line.starts_with("rpc_server_call_duration_seconds_count{")
            && line.contains("rpc_method=\"grpc.health.v1.Health/Check\"")
            && line.contains("rpc_status_code=\"OK\"")
    });
    expect("gRPC calls by method and status", grpc, String::new());
    let client_side = text
        .lines()
        .find(|line| line.starts_with("http_client_request_duration_seconds_count{"));
    expect(
        "the retrying client's requests, one per logical request",
        client_side.is_some_and(|line| {
            line.contains("server_address=\"127.0.0.1\"") && line.ends_with(" 2")
        }),
        format!("{client_side:?}"),
    );
    expect(
        "health probes are not counted as traffic",
        !text.contains("/readyz") && !text.contains("/livez"),
        String::new(),
    );
    let cache_results: Vec<&str> = ["hit", "miss", "revalidated"]
        .into_iter()
        .filter(|result| {
            !text.lines().any(|line| {
                line.starts_with("armor_cache_lookups")
                    && line.contains("name=\"demo\"")
                    && line.contains(&format!("result=\"{result}\""))
            })
        })
        .collect();
    expect(
        "cache lookups by result",
        cache_results.is_empty(),
        format!("missing: {cache_results:?}"),
    );
    expect(
        "histograms with buckets",
        text.contains("http_server_request_duration_seconds_bucket{")
            && text.contains("le=\"+Inf\""),
        String::new(),
    );
    Ok(text)
}

/// The cached route: stored, hit with an `Age`, revalidated by a 304 once
/// stale, and fetched again after a purge.
async fn check_cache(
    client: &Http1,
    url: &impl Fn(&str) -> String,
    expect: &mut impl FnMut(&str, bool, String),
) -> Result<(), BoxError> {
    let fetch = |method: http::Method, path: &'static str| async move {
        let request = http::Request::builder()
            .method(method)
            .uri(url(path))
            .body(Body::empty())?;
        let response = client.request(request).await?;
        let status = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (cache_status, age) = (status("cache-status"), status("age"));
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((
            cache_status,
            age,
            String::from_utf8_lossy(&body).trim().to_owned(),
        ))
    };
    let (miss, _, first) = fetch(http::Method::GET, "/catalogue").await?;
    expect(
        "cache: a miss is stored",
        miss.contains("fwd=uri-miss") && miss.contains("stored"),
        miss,
    );
    let (hit, age, second) = fetch(http::Method::GET, "/catalogue").await?;
    expect(
        "cache: then a hit, with Age",
        hit.starts_with("demo; hit") && !age.is_empty() && second == first,
        format!("{hit}, age {age}"),
    );
    sleep(CATALOGUE_FRESH + Duration::from_millis(100)).await;
    let (revalidated, _, third) = fetch(http::Method::GET, "/catalogue").await?;
    expect(
        "cache: once stale, revalidated by a 304",
        revalidated.contains("fwd=stale; fwd-status=304") && third == first,
        revalidated,
    );
    let (_, _, changed) = fetch(http::Method::POST, "/catalogue/change").await?;
    let (after, _, fourth) = fetch(http::Method::GET, "/catalogue").await?;
    expect(
        "cache: a purge by tag, then the new version",
        changed.contains("1 cached entries purged")
            && after.contains("fwd=uri-miss")
            && fourth.contains("version 2"),
        format!("{changed}; {after}"),
    );
    Ok(())
}

/// Draining, last: readiness and every gRPC service fail at once, liveness
/// and the rest of the traffic carry on.
async fn check_drain(
    http1: &Http1,
    http2: &Http1,
    url: &impl Fn(&str) -> String,
    health: &HealthHandle,
    expect: &mut impl FnMut(&str, bool, String),
) -> Result<(), BoxError> {
    let (ready, _) = statuses_of(http1, url("/readyz"), 1).await?;
    expect(
        "ready before the drain",
        ready == [200],
        format!("{ready:?}"),
    );
    health.drain();
    let (statuses, _) = statuses_of(http1, url("/readyz"), 1).await?;
    let (live, _) = statuses_of(http1, url("/livez"), 1).await?;
    let (other, _) = statuses_of(http1, url("/fast"), 1).await?;
    expect(
        "drain: readiness 503, liveness and traffic 200",
        statuses == [503] && live == [200] && other == [200],
        format!("readyz {statuses:?}, livez {live:?}, /fast {other:?}"),
    );
    let request = http::Request::post(url("/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(vec![0u8; 5]))?;
    let body = http2
        .request(request)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    expect(
        "drain: gRPC health says NOT_SERVING",
        body.ends_with(&[0x08, 2]),
        format!("{:?}", &body[..]),
    );
    Ok(())
}

/// What `--check` does: every behaviour the tour prints, checked with a real
/// client; the `/metrics` it ends with is saved to `save_metrics` if given.
async fn run_checks(
    addr: SocketAddr,
    save_metrics: Option<String>,
    health: HealthHandle,
) -> Result<(), BoxError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let http1 = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let http2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Body>();
    let url = |path: &str| format!("http://{addr}{path}");
    let mut failures = 0;
    let mut expect = |what: &str, ok: bool, detail: String| {
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        failures += usize::from(!ok);
    };

    let get = |path: &str| http::Request::get(url(path)).body(Body::empty());
    let response = http1.request(get("/fast")?).await?;
    expect(
        "fast route",
        response.status() == 200,
        response.status().to_string(),
    );

    let response = http1.request(get("/sleep/1500")?).await?;
    let content_type = response.headers().get("content-type").cloned();
    expect(
        "slow route times out",
        response.status() == 504
            && content_type
                .as_ref()
                .is_some_and(|v| v == "application/problem+json"),
        format!("{} {content_type:?}", response.status()),
    );

    let response = http1.request(get("/deadline")?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    expect(
        "deadline extension",
        body.ends_with(b" ms left\n"),
        String::from_utf8_lossy(&body).trim().to_owned(),
    );

    let grpc = |path: &str, timeout: Option<&str>| {
        let mut request = http::Request::post(url(path))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        request.body(Body::from(vec![0u8; 5]))
    };
    let response = http2
        .request(grpc("/grpc.health.v1.Health/Check", None)?)
        .await?;
    let trailers = response.into_body().collect().await?.trailers().cloned();
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    expect(
        "gRPC health check",
        status.as_ref().is_some_and(|s| s == "0"),
        format!("grpc-status {status:?}"),
    );

    let started = Instant::now();
    let response = http2
        .request(grpc("/demo.Slow/Call", Some("200m"))?)
        .await?;
    let status = response.headers().get("grpc-status").cloned();
    expect(
        "gRPC deadline from grpc-timeout",
        status.as_ref().is_some_and(|s| s == "4") && started.elapsed() < HANDLER_TIMEOUT,
        format!("grpc-status {status:?} after {:?}", started.elapsed()),
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(1);
    let upload = http::Request::post(url("/upload")).body(Body::from_stream(ReceiverStream(rx)))?;
    tx.send(Ok(Bytes::from_static(b"abc"))).await?;
    let response = http1.request(upload).await?;
    expect(
        "stalled upload",
        response.status() == 408,
        response.status().to_string(),
    );
    drop(tx);

    let response = http1.request(get("/stream")?).await?;
    let mut body = response.into_body();
    let mut chunks = 0;
    let cut_off = loop {
        match body.frame().await {
            Some(Ok(_)) => chunks += 1,
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    expect(
        "stream cut at its deadline",
        cut_off && (2..=4).contains(&chunks),
        format!(
            "{chunks} chunks, then {}",
            if cut_off { "cut off" } else { "a clean end" }
        ),
    );

    let (statuses, last) = statuses_of(&http1, url("/limited"), 6).await?;
    expect(
        "shared rate limit",
        statuses == [200, 200, 200, 200, 200, 429] && last.headers().contains_key("retry-after"),
        format!(
            "{statuses:?}, RateLimit: {:?}",
            last.headers().get("ratelimit")
        ),
    );

    let keyed = |key: Option<&str>| {
        let mut request = http::Request::get(url("/per-key"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.body(Body::empty())
    };
    let mut statuses = Vec::new();
    for key in [
        None,
        Some("alice"),
        Some("alice"),
        Some("alice"),
        Some("bob"),
    ] {
        statuses.push(http1.request(keyed(key)?).await?.status().as_u16());
    }
    expect(
        "per-key rate limit",
        statuses == [401, 200, 200, 429, 200],
        format!("{statuses:?}"),
    );

    let (statuses, last) = statuses_of(&http1, url("/flaky"), 4).await?;
    expect(
        "circuit breaker opens",
        statuses == [500, 500, 500, 503] && last.headers().contains_key("retry-after"),
        format!(
            "{statuses:?}, Retry-After: {:?}",
            last.headers().get("retry-after")
        ),
    );
    let operator = http::Request::get(url("/readyz?verbose"))
        .header("x-operator", "1")
        .body(Body::empty())?;
    let response = http1.request(operator).await?;
    let status = response.status();
    let verbose =
        String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
    expect(
        "an open breaker makes readiness warn, not fail",
        status == 200 && verbose.contains("[!]flaky-upstream warn: the breaker is open"),
        format!("{status} {}", verbose.replace('\n', " | ")),
    );
    let open = text_of(&http1, url("/breaker")).await?;
    expect(
        "breaker handle reads open",
        open.contains("\"state\":\"open\""),
        open,
    );

    let heal = http::Request::post(url("/flaky/heal")).body(Body::empty())?;
    http1.request(heal).await?;
    sleep(BREAKER_OPEN).await;
    let (statuses, _) = statuses_of(&http1, url("/flaky"), 3).await?;
    let closed = text_of(&http1, url("/breaker")).await?;
    expect(
        "breaker closes after good probes",
        statuses == [200, 200, 200] && closed.contains("\"state\":\"closed\""),
        format!("{statuses:?}, {closed}"),
    );

    let before = SHAKY_CALLS.load(std::sync::atomic::Ordering::Relaxed);
    let (statuses, _) = statuses_of(&http1, url("/retried"), 2).await?;
    let calls = SHAKY_CALLS.load(std::sync::atomic::Ordering::Relaxed) - before;
    expect(
        "retries ride out a shaky upstream",
        statuses == [200, 200] && calls == 6,
        format!("{statuses:?} after {calls} upstream calls"),
    );

    check_compression(&http1, &url, &mut expect).await?;
    check_cache(&http1, &url, &mut expect).await?;

    let exposition = check_metrics(&http1, &url, &mut expect).await?;
    check_drain(&http1, &http2, &url, &health, &mut expect).await?;
    if let Some(path) = save_metrics {
        std::fs::write(&path, exposition)?;
        println!("saved the last /metrics to {path}");
    }

    if failures > 0 {
        return Err(format!("{failures} demo checks failed").into());
    }
    println!("all demo checks passed");
    Ok(())
}
