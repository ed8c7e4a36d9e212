//! A bounded soak through the server preset over loopback, with faults
//! injected by the handler (errors, slow answers, bodies that fail midway,
//! an error storm that opens the breaker) and clients that hang up
//! mid-body. Afterwards every level is back to idle: no request in flight,
//! no fetch or revalidation in the cache, the breaker closed again (no probe
//! permit leaked), no limiter key kept, no task left, and the heap no larger
//! than after warm-up.
//!
//! CI runs it for 3 seconds; `ARMOR_SOAK_SECONDS=60 cargo test --all-features
//! --test soak` runs it for a minute (at most 60).

#[path = "support/live_bytes.rs"]
mod live_bytes;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::{Instant, sleep};
use tower_armor::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use tower_armor::key::PeerIp;
use tower_armor::metrics::MetricsLayer;
use tower_armor::preset::ServerPreset;
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::timeout::TimeoutLayer;

#[global_allocator]
static ALLOCATOR: live_bytes::Counting = live_bytes::Counting;

/// The preset's timeout; a slow answer takes twice as long.
const TIMEOUT: Duration = Duration::from_millis(100);
/// How long the breaker stays open.
const BREAKER_OPEN: Duration = Duration::from_millis(200);
/// Clients sending at once.
const CLIENTS: usize = 16;

/// What the handler does with a request, chosen by the client.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 200, 4 KiB of JSON (compressed on the way).
    Ok,
    /// 200, fresh for a second, one of 32 URLs (the cache's hits and
    /// revalidations).
    Cached,
    /// 500.
    Error,
    /// An answer after twice the timeout (the timeout answers 504).
    Slow,
    /// A body that fails after its first chunk.
    BodyError,
    /// Five chunks 20 ms apart; the client hangs up after the first.
    Hangup,
}

impl Fault {
    fn path(self, n: u64) -> String {
        match self {
            Fault::Ok => format!("/ok/{n}"),
            Fault::Cached => format!("/cached/{}", n % 32),
            Fault::Error => format!("/error/{n}"),
            Fault::Slow => format!("/slow/{n}"),
            Fault::BodyError => format!("/body-error/{n}"),
            Fault::Hangup => format!("/hangup/{n}"),
        }
    }
}

/// xorshift64: the clients' choices, reproducible from their seeds.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A fault: mostly healthy traffic, or mostly errors during a storm.
    fn fault(&mut self, storm: bool) -> Fault {
        let roll = self.next() % 100;
        if storm {
            return if roll < 70 { Fault::Error } else { Fault::Ok };
        }
        match roll {
            0..40 => Fault::Ok,
            40..70 => Fault::Cached,
            70..78 => Fault::Error,
            78..86 => Fault::Slow,
            86..93 => Fault::BodyError,
            _ => Fault::Hangup,
        }
    }
}

fn chunks(count: usize, every: Duration, fail: bool) -> Body {
    let stream = futures::stream::unfold(0, move |i| async move {
        if i == count {
            return None;
        }
        if i > 0 {
            sleep(every).await;
        }
        let item = if fail && i == 1 {
            Err(std::io::Error::other("the handler's body failed"))
        } else {
            Ok(Bytes::from(vec![b'x'; 512]))
        };
        Some((item, i + 1))
    });
    Body::from_stream(stream)
}

fn app(version: Arc<AtomicU64>) -> Router {
    Router::new()
        .route(
            "/ok/{n}",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    "[1,2,3,4]".repeat(455),
                )
            }),
        )
        .route(
            "/cached/{n}",
            get(move |Path(n): Path<u64>| {
                let version = version.load(Ordering::Relaxed);
                async move {
                    (
                        [
                            ("cache-control", "max-age=1".to_owned()),
                            ("etag", format!("\"{n}-{version}\"")),
                        ],
                        format!("entry {n} version {version}"),
                    )
                }
            }),
        )
        .route(
            "/error/{n}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/slow/{n}",
            get(|| async {
                sleep(2 * TIMEOUT).await;
                "late"
            }),
        )
        .route(
            "/body-error/{n}",
            get(|| async { Response::new(chunks(3, Duration::from_millis(5), true)) }),
        )
        .route(
            "/hangup/{n}",
            get(|| async {
                Response::new(chunks(5, Duration::from_millis(20), false)).into_response()
            }),
        )
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// One client's loop until `until`; a storm while `storm` is set.
async fn client(addr: SocketAddr, seed: u64, until: Instant, storm: Arc<AtomicBool>) -> u64 {
    let client: Client = support::hyper_client();
    let mut random = Random(seed);
    let mut sent = 0;
    while Instant::now() < until {
        let fault = random.fault(storm.load(Ordering::Relaxed));
        let mut request = http::Request::get(format!("http://{addr}{}", fault.path(random.next())));
        if random.next() % 2 == 0 {
            request = request.header("accept-encoding", "gzip, br");
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let Ok(response) = client.request(request).await else {
            continue;
        };
        sent += 1;
        let mut body = response.into_body();
        match fault {
            // Hang up after the first chunk.
            Fault::Hangup => drop(body.frame().await),
            _ => while let Some(Ok(_)) = body.frame().await {},
        }
    }
    sent
}

/// The sum of a gauge's series; `None` if nothing recorded it.
fn gauge(snapshotter: &Snapshotter, name: &str) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            DebugValue::Gauge(value) => value.into_inner(),
            _ => 0.0,
        })
        .reduce(|a, b| a + b)
}

/// Waits (at most 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not idle after 10 s");
        sleep(Duration::from_millis(20)).await;
    }
}

fn soak_seconds() -> u64 {
    std::env::var("ARMOR_SOAK_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3)
        .clamp(1, 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_preset_returns_to_idle_after_a_soak_with_faults() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let breaker_opened = Arc::new(AtomicU64::new(0));
    let opened = breaker_opened.clone();
    let preset = ServerPreset::builder()
        .name("soak")
        .metrics(MetricsLayer::server().recorder(recorder).build().unwrap())
        .timeout(TimeoutLayer::builder(TIMEOUT).build().unwrap())
        .rate_limit(
            RateLimitLayer::builder(Quota::per_second(5_000))
                .key(PeerIp)
                .build()
                .unwrap(),
        )
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .on_state_change(move |change| {
                    if change.to == CircuitState::Open {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .consecutive_failures(20)
                .open_duration(BREAKER_OPEN, BREAKER_OPEN)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let cache = preset.cache().unwrap().handle();
    let breaker = preset.circuit_breaker().unwrap().handle();
    let limiter = preset.rate_limit().unwrap().handle();
    let version = Arc::new(AtomicU64::new(0));
    let addr = support::serve_axum(app(version.clone()).layer(preset)).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let idle_tasks = tasks();

    let seconds = soak_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let storm = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|seed| tokio::spawn(client(addr, seed * 7919 + 1, until, storm.clone())))
        .collect();

    // Warm-up is the first third; then an error storm opens the breaker,
    // and the cached entries change version every 200 ms.
    sleep(Duration::from_secs(seconds) / 3).await;
    let warm = live_bytes::live();
    storm.store(true, Ordering::Relaxed);
    sleep(Duration::from_millis(300)).await;
    storm.store(false, Ordering::Relaxed);
    while Instant::now() < until {
        version.fetch_add(1, Ordering::Relaxed);
        sleep(Duration::from_millis(200)).await;
    }
    let mut sent = 0;
    for client in clients {
        sent += client.await.unwrap();
    }
    assert!(sent > 100 * seconds, "only {sent} requests in {seconds} s");
    assert!(
        breaker_opened.load(Ordering::Relaxed) > 0,
        "the storm opened the breaker"
    );

    // Every level back to idle.
    eventually("requests in flight", || {
        gauge(&snapshotter, "http.server.active_requests").expect("the gauge is recorded") == 0.0
    })
    .await;
    eventually("cache fetches", || {
        cache.fetches_in_flight() == 0 && cache.background_revalidations() == 0
    })
    .await;
    // The breaker closes again once healthy calls come (a probe permit
    // that leaked would keep it half-open).
    let client = support::hyper_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker.state() != CircuitState::Closed {
        assert!(
            Instant::now() < deadline,
            "the breaker: not closed after 10 s"
        );
        support::get_status(&client, format!("http://{addr}/ok/0")).await;
        sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    sleep(Duration::from_secs(1)).await; // every client's quota whole again
    limiter.evict_idle();
    assert_eq!(limiter.live_keys(), 0, "limiter keys");
    eventually("tasks", || tasks() <= idle_tasks).await;
    let end = live_bytes::live();
    eprintln!(
        "{sent} requests in {seconds} s, the breaker opened {} times, heap {warm} bytes after warm-up, {end} at the end",
        breaker_opened.load(Ordering::Relaxed)
    );
    assert!(
        end <= warm + 1024 * 1024,
        "heap grew after warm-up: {warm} -> {end} bytes"
    );
}
