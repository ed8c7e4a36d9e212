//! The health layer through its service, under paused time: what a
//! Kubernetes probe, a load balancer or an operator would see.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_armor::health::{
    Check, CheckResult, ComponentType, Details, HealthLayer, Probe, Status, check_fn,
};

mod support;

use support::recording::{Recording, Value, series};

type Body = Full<Bytes>;

/// The inner service: answers `app` to anything that gets through.
fn app() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"app"))))
    })
}

/// A check counting its runs, taking `takes` and answering `status`.
fn counted(
    status: Status,
    takes: Duration,
) -> (Arc<AtomicUsize>, impl tower_armor::health::HealthCheck) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let check = check_fn(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(takes).await;
            match status {
                Status::Pass => CheckResult::pass(),
                Status::Warn => CheckResult::warn("slow replies"),
                Status::Fail => CheckResult::fail("connection refused"),
            }
        }
    });
    (runs, check)
}

fn check(name: &'static str, status: Status) -> Check {
    Check::new(name, counted(status, Duration::ZERO).1).timeout(Duration::from_secs(1))
}

/// GETs `uri` through `service`: the status, content type and body text.
async fn get<S, B>(service: &S, uri: &str) -> (StatusCode, String, String)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    send(service, Request::get(uri).body(Body::default()).unwrap()).await
}

async fn send<S, B>(service: &S, request: Request<Body>) -> (StatusCode, String, String)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn probes_answer_and_everything_else_passes_through() {
    let service = HealthLayer::builder()
        .check(check("database", Status::Pass))
        .build()
        .unwrap()
        .layer(app());
    for path in ["/readyz", "/healthz", "/livez", "/startupz"] {
        let (status, content_type, body) = get(&service, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(content_type, "text/plain; charset=utf-8");
        assert_eq!(body, "ok\n");
    }
    for path in ["/", "/readyz/", "/readyzz", "/api/livez", "/livez/a/b"] {
        assert_eq!(get(&service, path).await.2, "app", "{path}");
    }
    let response = service
        .clone()
        .oneshot(Request::get("/readyz").body(Body::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let head = send(
        &service,
        Request::head("/readyz").body(Body::default()).unwrap(),
    )
    .await;
    assert_eq!((head.0, head.2.as_str()), (StatusCode::OK, ""));
    let post = service
        .clone()
        .oneshot(Request::post("/readyz").body(Body::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test(start_paused = true)]
async fn an_on_demand_check_runs_once_per_ttl_however_many_probes_ask() {
    let (runs, slow) = counted(Status::Pass, Duration::from_millis(200));
    let service = HealthLayer::builder()
        .check(
            Check::new("database", slow)
                .timeout(Duration::from_secs(1))
                .cache_for(Duration::from_secs(1)),
        )
        .build()
        .unwrap()
        .layer(app());
    let probes: Vec<_> = (0..1000)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { get(&service, "/readyz").await.0 })
        })
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one run for 1,000 probes");
    tokio::time::advance(Duration::from_millis(500)).await;
    get(&service, "/readyz").await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "still fresh");
    tokio::time::advance(Duration::from_millis(600)).await;
    get(&service, "/readyz").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "expired: one more run");
    // Liveness does not include it, so it never runs it.
    get(&service, "/livez").await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn interval_checks_run_in_the_background_and_go_stale_without_the_prober() {
    let (runs, check) = counted(Status::Pass, Duration::from_millis(10));
    let layer = HealthLayer::builder()
        .check(
            Check::new("queue", check)
                .timeout(Duration::from_secs(1))
                .every(Duration::from_secs(10)),
        )
        .details(Details::Full)
        .build()
        .unwrap();
    let service = layer.layer(app());
    let (status, _, body) = get(&service, "/readyz?verbose").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("[-]queue failed: not run yet"), "{body}");

    let prober = tokio::spawn(layer.handle().prober());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "at once");
    assert_eq!(get(&service, "/readyz").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "then every interval");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    for _ in 0..50 {
        get(&service, "/readyz").await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 4, "probes only read");

    prober.abort();
    // The last run was at 30 s: stale after three intervals and the
    // timeout, 31 s later.
    tokio::time::sleep(Duration::from_millis(30_900)).await;
    assert_eq!(get(&service, "/readyz").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = get(&service, "/readyz?verbose").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("[-]queue failed: stale"), "{body}");
}

#[tokio::test(start_paused = true)]
async fn a_check_that_hangs_or_panics_fails_with_that_reason() {
    let hangs = check_fn(|| async {
        std::future::pending::<()>().await;
        CheckResult::pass()
    });
    let panics = check_fn(|| async {
        panic!("pool poisoned");
        #[allow(unreachable_code)]
        CheckResult::pass()
    });
    let service = HealthLayer::builder()
        .check(Check::new("hangs", hangs).timeout(Duration::from_millis(300)))
        .check(Check::new("panics", panics).timeout(Duration::from_secs(1)))
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    let started = tokio::time::Instant::now();
    let (status, _, body) = get(&service, "/readyz?verbose").await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "no longer than the timeout"
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "[-]hangs failed: timed out after 300ms\n\
         [-]panics failed: the check panicked: pool poisoned\n\
         readyz check failed\n"
    );
    // The process and the layer carry on.
    assert_eq!(get(&service, "/livez").await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_probe_is_the_worst_of_its_critical_checks() {
    let probe = |checks: Vec<Check>| async move {
        let mut builder = HealthLayer::builder();
        for check in checks {
            builder = builder.check(check);
        }
        let (status, _, body) = get(&builder.build().unwrap().layer(app()), "/readyz").await;
        (status, body)
    };
    assert_eq!(probe(vec![]).await, (StatusCode::OK, "ok\n".into()));
    assert_eq!(
        probe(vec![check("a", Status::Pass), check("b", Status::Warn)]).await,
        (StatusCode::OK, "warn\n".into())
    );
    assert_eq!(
        probe(vec![
            check("a", Status::Pass),
            check("b", Status::Fail).critical(false)
        ])
        .await,
        (StatusCode::OK, "warn\n".into())
    );
    assert_eq!(
        probe(vec![check("a", Status::Fail), check("b", Status::Warn)]).await,
        (StatusCode::SERVICE_UNAVAILABLE, "fail\n".into())
    );
}

#[tokio::test(start_paused = true)]
async fn verbose_exclude_and_one_check_as_kubernetes_has_them() {
    let service = HealthLayer::builder()
        .check(check("database", Status::Pass))
        .check(check("cache", Status::Fail))
        .check(check("disk", Status::Pass).probes(Probe::Liveness))
        .details(Details::Names)
        .build()
        .unwrap()
        .layer(app());
    assert_eq!(
        get(&service, "/readyz?verbose").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8".into(),
            "[+]database ok\n[-]cache failed: reason withheld\nreadyz check failed\n".into()
        )
    );
    assert_eq!(
        get(&service, "/readyz?verbose&exclude=cache").await.2,
        "[+]database ok\nreadyz check passed\n"
    );
    assert_eq!(
        get(&service, "/readyz?exclude=cache").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&service, "/readyz/database").await,
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".into(),
            "ok\n".into()
        )
    );
    assert_eq!(
        get(&service, "/readyz/cache").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&service, "/livez/disk").await.0, StatusCode::OK);
    // A check of another probe, or none at all: 404.
    assert_eq!(get(&service, "/readyz/disk").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&service, "/readyz/nothing").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(start_paused = true)]
async fn the_public_sees_the_status_alone_and_operators_see_why() {
    let service = HealthLayer::builder()
        .check(check("database", Status::Fail))
        .full_details_when(|request| request.headers.contains_key("x-operator"))
        .build()
        .unwrap()
        .layer(app());
    assert_eq!(get(&service, "/readyz?verbose").await.2, "fail\n");
    assert_eq!(
        get(&service, "/readyz?format=json").await.2,
        "{\"status\":\"fail\"}\n"
    );
    let operator = Request::get("/readyz?verbose")
        .header("x-operator", "1")
        .body(Body::default())
        .unwrap();
    assert_eq!(
        send(&service, operator).await.2,
        "[-]database failed: connection refused\nreadyz check failed\n"
    );
}

#[tokio::test(start_paused = true)]
async fn the_json_document_follows_the_health_check_draft() {
    let measured = check_fn(|| async { CheckResult::warn("replication lag").observed(2.5, "s") });
    let service = HealthLayer::builder()
        .check(
            Check::new("replica", measured)
                .timeout(Duration::from_secs(1))
                .component_type(ComponentType::Datastore),
        )
        .check(check("cache", Status::Pass).critical(false))
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    let request = Request::get("/readyz")
        .header("accept", "application/health+json")
        .body(Body::default())
        .unwrap();
    let (status, content_type, body) = send(&service, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/health+json");
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["status"], "warn");
    let checks = document["checks"].as_object().unwrap();
    assert_eq!(checks.keys().collect::<Vec<_>>(), ["cache", "replica"]);
    let replica = &checks["replica"].as_array().unwrap()[0];
    assert_eq!(replica["componentType"], "datastore");
    assert_eq!(replica["status"], "warn");
    assert_eq!(replica["observedValue"], 2.5);
    assert_eq!(replica["observedUnit"], "s");
    assert_eq!(replica["output"], "replication lag");
    let time = replica["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    let cache = &checks["cache"].as_array().unwrap()[0];
    assert_eq!(cache["status"], "pass");
    assert!(
        cache.get("output").is_none(),
        "no output on a pass: {cache}"
    );

    // Names only: no output, no values.
    let names = HealthLayer::builder()
        .check(
            Check::new(
                "replica",
                check_fn(|| async { CheckResult::fail("secret dsn in here") }),
            )
            .timeout(Duration::from_secs(1)),
        )
        .details(Details::Names)
        .build()
        .unwrap()
        .layer(app());
    let (status, _, body) = get(&names, "/readyz?format=json").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "{\"status\":\"fail\",\"checks\":{\"replica\":[{\"componentType\":\"component\",\"status\":\"fail\"}]}}\n"
    );
}

#[tokio::test(start_paused = true)]
async fn draining_fails_readiness_and_keeps_liveness() {
    let layer = HealthLayer::builder()
        .check(check("database", Status::Pass).probes(Probe::Readiness | Probe::Liveness))
        .details(Details::Names)
        .build()
        .unwrap();
    let handle = layer.handle();
    let service = layer.layer(app());
    assert_eq!(handle.status(Probe::Readiness).await, Status::Pass);
    assert!(!handle.is_draining());
    handle.drain();
    assert!(handle.is_draining());
    assert_eq!(
        get(&service, "/readyz?verbose").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8".into(),
            "[+]database ok\n[-]shutdown failed: reason withheld\nreadyz check failed\n".into()
        )
    );
    assert_eq!(
        get(&service, "/readyz/shutdown").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&service, "/livez").await.0, StatusCode::OK);
    assert_eq!(
        get(&service, "/livez/shutdown").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&service, "/startupz").await.0, StatusCode::OK);
    assert_eq!(handle.status(Probe::Liveness).await, Status::Pass);
    // Other traffic still flows while draining.
    assert_eq!(get(&service, "/orders").await.2, "app");
}

#[tokio::test(start_paused = true)]
async fn paths_and_aliases_are_configurable() {
    let service = HealthLayer::builder()
        .path(Probe::Readiness, "/health/ready")
        .path(Probe::Liveness, "/health/live")
        .no_aliases()
        .alias("/ping", Probe::Liveness)
        .build()
        .unwrap()
        .layer(app());
    assert_eq!(get(&service, "/health/ready").await.2, "ok\n");
    assert_eq!(get(&service, "/health/live").await.2, "ok\n");
    assert_eq!(get(&service, "/ping").await.2, "ok\n");
    assert_eq!(get(&service, "/readyz").await.2, "app");
    assert_eq!(get(&service, "/healthz").await.2, "app");
    assert_eq!(get(&service, "/startupz").await.2, "ok\n");

    // Paths whose second bytes fall in different quarters of the byte set.
    let spread = HealthLayer::builder()
        .path(Probe::Readiness, "/ready")
        .path(Probe::Liveness, "/0live")
        .path(Probe::Startup, "/~start")
        .no_aliases()
        .build()
        .unwrap()
        .layer(app());
    for path in ["/ready", "/0live", "/~start"] {
        assert_eq!(get(&spread, path).await.2, "ok\n", "{path}");
    }
    assert_eq!(get(&spread, "/1live").await.2, "app");
}

#[tokio::test(start_paused = true)]
async fn readiness_to_take_requests_is_the_inner_services() {
    support::readiness_follows_the_inner_service(HealthLayer::default());
}

#[test]
fn bad_settings_are_refused_at_build() {
    let fine = || check_fn(|| async { CheckResult::pass() });
    let refused =
        |builder: tower_armor::health::HealthBuilder| builder.build().unwrap_err().to_string();
    let timed = |name: &'static str| Check::new(name, fine()).timeout(Duration::from_secs(1));
    assert!(refused(HealthLayer::builder().check(Check::new("db", fine()))).contains("no timeout"));
    for name in ["", "a b", "db:latency", "a/b", "shutdown"] {
        assert!(
            HealthLayer::builder().check(timed(name)).build().is_err(),
            "{name:?}"
        );
    }
    assert!(
        refused(HealthLayer::builder().check(timed("db")).check(timed("db"))).contains("taken")
    );
    assert!(
        refused(
            HealthLayer::builder().check(timed("db").probes(tower_armor::health::Probes::NONE))
        )
        .contains("no probe")
    );
    assert!(
        HealthLayer::builder()
            .check(timed("db").every(Duration::ZERO))
            .build()
            .is_err()
    );
    assert!(
        HealthLayer::builder()
            .check(timed("db").timeout(Duration::ZERO))
            .build()
            .is_err()
    );
    assert!(
        HealthLayer::builder()
            .check(timed("db").cache_for(Duration::from_secs(2 * 86_400)))
            .build()
            .is_err()
    );
    assert!(
        HealthLayer::builder()
            .check(timed("db").cache_for(Duration::ZERO))
            .build()
            .is_ok()
    );
    // Names up to 64 bytes; the shortest path.
    assert!(
        HealthLayer::builder()
            .check(timed(&*"n".repeat(64).leak()))
            .build()
            .is_ok()
    );
    assert!(
        HealthLayer::builder()
            .check(timed(&*"n".repeat(65).leak()))
            .build()
            .is_err()
    );
    assert!(
        HealthLayer::builder()
            .path(Probe::Liveness, "/l")
            .build()
            .is_ok()
    );
    // gRPC services: a new name, depending on readiness checks only.
    let with_liveness = || {
        HealthLayer::builder()
            .check(timed("db"))
            .check(timed("disk").probes(Probe::Liveness))
    };
    assert!(
        with_liveness()
            .grpc_service("shop.Orders", ["db"])
            .build()
            .is_ok()
    );
    for (service, check) in [
        ("", "db"),
        ("liveness", "db"),
        ("readiness", "db"),
        ("shop.Orders", "disk"),
        ("shop.Orders", "nothing"),
    ] {
        assert!(
            with_liveness()
                .grpc_service(service, [check])
                .build()
                .is_err(),
            "{service:?} on {check:?}"
        );
    }
    assert!(
        with_liveness()
            .grpc_service("shop.Orders", ["db"])
            .grpc_service("shop.Orders", ["db"])
            .build()
            .is_err()
    );
    // Up to a day is fine.
    let two_hours = Duration::from_secs(2 * 3600);
    let day = Duration::from_secs(86_400);
    assert!(
        HealthLayer::builder()
            .check(timed("db").timeout(two_hours).every(day))
            .build()
            .is_ok()
    );
    for path in ["ready", "/", "/ready/"] {
        assert!(
            HealthLayer::builder()
                .path(Probe::Readiness, path)
                .build()
                .is_err(),
            "{path}"
        );
    }
    assert!(refused(HealthLayer::builder().alias("/livez", Probe::Readiness)).contains("twice"));
}

#[test]
fn statuses_reach_the_recorder() {
    let recording = Recording::new();
    support::run_recorded(&recording, || async {
        let layer = HealthLayer::builder()
            .name("api")
            .check(check("database", Status::Fail).critical(false))
            .build()
            .unwrap();
        let service = layer.layer(app());
        get(&service, "/readyz").await;
        layer.handle().drain();
    });
    let all = series(&recording);
    let level = |probe: &str| probe_status(&recording, probe);
    assert_eq!(level("liveness"), Some(Value::Level(1.0)));
    assert_eq!(level("readiness"), Some(Value::Level(0.0)), "drained");
    let failures = all
        .iter()
        .find(|s| s.name == "armor.health.check.failures")
        .unwrap();
    assert_eq!(failures.labels, ["name=api", "check=database"]);
    assert_eq!(failures.value, Value::Count(1));
    assert!(all.iter().any(|s| s.name == "armor.health.check.duration"
        && matches!(&s.value, Value::Samples(samples) if samples.len() == 1)));
}

proptest::proptest! {
    #[test]
    fn odd_paths_and_queries_never_panic(path in "/[a-z/]{0,12}", query in "[ -~]{0,40}") {
        let service = HealthLayer::builder()
            .check(check("db", Status::Pass))
            .build()
            .unwrap()
            .layer(app());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let uri = format!("{path}?{}", query.replace(['#', ' '], ""));
        if let Ok(request) = Request::get(uri.as_str()).body(Body::default()) {
            let (status, _, _) = runtime.block_on(send(&service, request));
            proptest::prop_assert!(status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::SERVICE_UNAVAILABLE);
        }
    }
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn a_circuit_breaker_warns_when_open_and_fails_only_if_asked() {
    use tower_armor::circuit_breaker::CircuitBreakerLayer;
    use tower_armor::health::checks;

    let breaker = CircuitBreakerLayer::default();
    let handle = breaker.handle();
    let layer = |open_is: Status| {
        HealthLayer::builder()
            .check(
                Check::new("payments", checks::breaker(handle.clone()).open_is(open_is))
                    .timeout(Duration::from_millis(10))
                    .cache_for(Duration::ZERO),
            )
            .details(Details::Full)
            .build()
            .unwrap()
            .layer(app())
    };
    let (default, strict) = (layer(Status::Warn), layer(Status::Fail));
    assert_eq!(get(&default, "/readyz").await.2, "ok\n");
    handle.force_open();
    assert_eq!(
        get(&default, "/readyz?verbose").await,
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".into(),
            "[!]payments warn: the breaker is forced_open\nreadyz check passed\n".into()
        )
    );
    assert_eq!(
        get(&strict, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    handle.force_closed();
    assert_eq!(get(&strict, "/readyz").await.0, StatusCode::OK);
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn keyed_breakers_warn_per_key_and_fail_past_the_share() {
    use tower_armor::circuit_breaker::CircuitBreakerLayer;
    use tower_armor::health::checks;
    use tower_armor::key::Authority;

    let breaker = CircuitBreakerLayer::builder()
        .key(Authority)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let service = HealthLayer::builder()
        .check(
            Check::new(
                "upstreams",
                checks::breaker(handle.clone())
                    .open_is(Status::Fail)
                    .open_share(0.5),
            )
            .timeout(Duration::from_millis(10))
            .cache_for(Duration::ZERO),
        )
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    let keys: Vec<_> = ["a:80", "b:80", "c:80"]
        .into_iter()
        .map(|authority| handle.for_key(&authority.parse().unwrap()))
        .collect();
    assert_eq!(get(&service, "/readyz").await.0, StatusCode::OK);
    keys[0].force_open();
    assert_eq!(
        get(&service, "/readyz?verbose").await.2,
        "[!]upstreams warn: 1 of 3 breakers open, 0 half-open\nreadyz check passed\n"
    );
    keys[1].force_open();
    assert_eq!(
        get(&service, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn tcp_and_http_checks_reach_their_targets() {
    use tower_armor::health::checks;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = {
        let spare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        spare.local_addr().unwrap().to_string()
    };
    let upstream = |status: u16| {
        tower::service_fn(move |request: Request<Body>| async move {
            assert_eq!(request.uri().path(), "/livez");
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Body::default())
                    .unwrap(),
            )
        })
    };
    let uri: http::Uri = "http://inventory/livez".parse().unwrap();
    let service = HealthLayer::builder()
        .check(Check::new("open", checks::tcp(open)).timeout(Duration::from_secs(5)))
        .check(Check::new("closed", checks::tcp(closed)).timeout(Duration::from_secs(5)))
        .check(
            Check::new("up", checks::http_get(upstream(204), uri.clone()))
                .timeout(Duration::from_secs(1)),
        )
        .check(
            Check::new("down", checks::http_get(upstream(502), uri))
                .timeout(Duration::from_secs(1)),
        )
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    let (status, _, body) = get(&service, "/readyz?verbose").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let lines: Vec<_> = body.lines().collect();
    assert_eq!(lines[0], "[+]open ok");
    assert!(
        lines[1].starts_with("[-]closed failed: connect to 127.0.0.1:"),
        "{body}"
    );
    assert_eq!(lines[2], "[+]up ok");
    assert_eq!(
        lines[3],
        "[-]down failed: GET http://inventory/livez answered 502 Bad Gateway"
    );
}

/// Calls the gRPC health service directly: the status in the head (a
/// trailers-only refusal) or the trailers, and the messages' bytes.
async fn grpc_call(
    service: &tower_armor::health::GrpcHealthService,
    path: &str,
    body: &'static [u8],
) -> (String, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let head = response.headers().get("grpc-status").cloned();
    let collected = response.into_body().collect().await.unwrap();
    let status = head
        .or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
        })
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, collected.to_bytes().to_vec())
}

#[tokio::test(start_paused = true)]
async fn the_grpc_service_refuses_what_it_cannot_read() {
    let grpc = HealthLayer::default().handle().grpc();
    let check = "/grpc.health.v1.Health/Check";
    assert_eq!(
        grpc_call(&grpc, check, &[0, 0, 0, 0, 0]).await,
        ("0".into(), vec![0, 0, 0, 0, 2, 8, 1])
    );
    // Unknown method or service path: UNIMPLEMENTED.
    assert_eq!(
        grpc_call(&grpc, "/grpc.health.v1.Health/Poke", &[0, 0, 0, 0, 0])
            .await
            .0,
        "12"
    );
    assert_eq!(
        grpc_call(&grpc, "/other.Service/Check", &[0, 0, 0, 0, 0])
            .await
            .0,
        "12"
    );
    // Compressed: UNIMPLEMENTED; not one frame, or a broken message: INTERNAL.
    assert_eq!(grpc_call(&grpc, check, &[1, 0, 0, 0, 0]).await.0, "12");
    assert_eq!(grpc_call(&grpc, check, &[0, 0, 0]).await.0, "13");
    assert_eq!(
        grpc_call(&grpc, check, &[0, 0, 0, 0, 2, 0x0a, 5]).await.0,
        "13"
    );
    // An unknown service: NOT_FOUND for Check.
    assert_eq!(
        grpc_call(&grpc, check, &[0, 0, 0, 0, 3, 0x0a, 1, b'x'])
            .await
            .0,
        "5"
    );
}

proptest::proptest! {
    #[test]
    fn any_grpc_request_bytes_get_an_answer(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let grpc = HealthLayer::default().handle().grpc();
        let request = Request::post("/grpc.health.v1.Health/Check")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = runtime.block_on(grpc.oneshot(request)).unwrap();
        proptest::prop_assert_eq!(response.status(), StatusCode::OK);
    }
}

#[test]
fn results_and_debug_forms_say_what_they_hold() {
    let failed = CheckResult::fail("refused").observed(3.0, "ms");
    assert_eq!(
        (failed.status(), failed.output()),
        (Status::Fail, Some("refused"))
    );
    assert_eq!(CheckResult::pass().output(), None);
    assert_eq!(CheckResult::from(Status::Warn).status(), Status::Warn);
    assert_eq!(
        CheckResult::from(Err::<(), _>("no route to host")).output(),
        Some("no route to host")
    );
    assert_eq!(CheckResult::from(Ok::<(), String>(())), CheckResult::pass());

    let closure = check_fn(|| async { CheckResult::pass() });
    assert_eq!(format!("{closure:?}"), "CheckFn");
    let check = Check::new("database", closure).timeout(Duration::from_secs(1));
    assert!(format!("{check:?}").contains("database"));
    let builder = HealthLayer::builder().name("api").check(check);
    assert!(format!("{builder:?}").contains("database"));
    let layer = builder.build().unwrap();
    assert!(format!("{layer:?}").contains("/readyz"));
    let handle = layer.handle();
    assert!(format!("{handle:?}").contains("draining: false"));
    assert!(format!("{:?}", handle.grpc()).contains("api"));
    #[derive(Debug)]
    struct Inner;
    assert!(format!("{:?}", tower::Layer::layer(&layer, Inner)).contains("Inner"));
    let tcp = tower_armor::health::checks::tcp("db:5432");
    assert!(format!("{tcp:?}").contains("db:5432"));
    let get = tower_armor::health::checks::http_get(app(), "http://up/livez".parse().unwrap());
    assert!(format!("{get:?}").contains("http://up/livez"));
}

#[tokio::test(start_paused = true)]
async fn each_interval_check_keeps_its_own_interval() {
    let (fast_runs, fast) = counted(Status::Pass, Duration::ZERO);
    let (slow_runs, slow) = counted(Status::Pass, Duration::ZERO);
    let every = |check: Check, seconds| {
        check
            .timeout(Duration::from_secs(1))
            .every(Duration::from_secs(seconds))
    };
    let layer = HealthLayer::builder()
        .check(every(Check::new("fast", fast), 10))
        .check(every(Check::new("slow", slow), 30))
        .build()
        .unwrap();
    let runs = || {
        (
            fast_runs.load(Ordering::SeqCst),
            slow_runs.load(Ordering::SeqCst),
        )
    };
    let prober = tokio::spawn(layer.handle().prober());
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(runs(), (1, 1));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs(), (2, 1));
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(runs(), (4, 2));
    prober.abort();
}

#[tokio::test(start_paused = true)]
async fn a_unary_grpc_answer_knows_its_size_and_end() {
    let grpc = HealthLayer::default().handle().grpc();
    let request = Request::post("/grpc.health.v1.Health/Check")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let mut body = grpc.oneshot(request).await.unwrap().into_body();
    assert!(format!("{body:?}").starts_with("GrpcHealthBody"));
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(7));
    assert!(!http_body::Body::is_end_stream(&body));
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    assert!(http_body::Body::is_end_stream(&body));
    assert!(body.frame().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_http_check_reports_how_long_the_answer_took() {
    let slow = tower::service_fn(|_request: Request<Body>| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok::<_, Infallible>(Response::new(Body::default()))
    });
    let service = HealthLayer::builder()
        .check(
            Check::new(
                "upstream",
                tower_armor::health::checks::http_get(slow, "http://up/livez".parse().unwrap()),
            )
            .timeout(Duration::from_secs(1)),
        )
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    let body = get(&service, "/readyz?format=json").await.2;
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    let upstream = &document["checks"]["upstream"][0];
    assert_eq!(upstream["observedValue"], 250.0);
    assert_eq!(upstream["observedUnit"], "ms");
}

#[cfg(feature = "circuit-breaker")]
#[tokio::test(start_paused = true)]
async fn keyed_breakers_pass_while_all_are_closed_and_warn_half_open() {
    use tower_armor::circuit_breaker::CircuitBreakerLayer;
    use tower_armor::health::checks;
    use tower_armor::key::Authority;

    let breaker = CircuitBreakerLayer::builder()
        .key(Authority)
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1), Duration::from_secs(1))
        .jitter(0.0)
        .build()
        .unwrap();
    let handle = breaker.handle();
    let check = checks::breaker(handle.clone())
        .open_is(Status::Fail)
        .open_share(0.0);
    assert!(format!("{check:?}").contains("open_share"));
    let service = HealthLayer::builder()
        .check(
            Check::new("upstreams", check)
                .timeout(Duration::from_millis(10))
                .cache_for(Duration::ZERO),
        )
        .details(Details::Full)
        .build()
        .unwrap()
        .layer(app());
    // The first call fails; later ones hang, so a probe stays in flight.
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = tower::Layer::layer(
        &breaker,
        tower::service_fn(move |_request: Request<Body>| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if !first {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(500)
                        .body(Body::default())
                        .unwrap(),
                )
            }
        }),
    );
    let closed = handle.for_key(&"a:80".parse().unwrap());
    assert_eq!(
        closed.state(),
        tower_armor::circuit_breaker::CircuitState::Closed
    );
    assert_eq!(
        get(&service, "/readyz").await.2,
        "ok\n",
        "all closed, share 0"
    );
    // One failure opens b:80; past its open period it lets a probe in.
    get(&failing, "http://b:80/").await;
    assert_eq!(
        get(&service, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::advance(Duration::from_millis(1100)).await;
    let probe = tokio::spawn({
        let failing = failing.clone();
        async move { get(&failing, "http://b:80/").await }
    });
    tokio::task::yield_now().await;
    let b = handle.for_key(&"b:80".parse().unwrap());
    assert_eq!(
        b.state(),
        tower_armor::circuit_breaker::CircuitState::HalfOpen
    );
    assert_eq!(
        get(&service, "/readyz?verbose").await.2,
        "[!]upstreams warn: 0 of 2 breakers open, 1 half-open\nreadyz check passed\n"
    );
    probe.abort();
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_up_to_16_kib_are_read() {
    let grpc = HealthLayer::default().handle().grpc();
    let request = |length: usize| {
        // A service name of `length - 3` bytes: 0x0a, a two-byte varint length, the name.
        let name = length - 3;
        let mut message = vec![0x0a, (name as u8 & 0x7f) | 0x80, (name >> 7) as u8];
        message.resize(length, b'x');
        let mut frame = vec![0];
        frame.extend_from_slice(&(length as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        Request::post("/grpc.health.v1.Health/Check")
            .body(Full::new(Bytes::from(frame)))
            .unwrap()
    };
    let status = |response: Response<tower_armor::health::GrpcHealthBody>| {
        response.headers()["grpc-status"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let most = grpc.clone().oneshot(request(16 * 1024)).await.unwrap();
    assert_eq!(status(most), "5", "read, and no such service");
    let over = grpc.clone().oneshot(request(16 * 1024 + 1)).await.unwrap();
    assert_eq!(status(over), "8", "RESOURCE_EXHAUSTED");
}

#[test]
fn the_status_gauge_follows_the_prober_without_any_probe() {
    let recording = Recording::new();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = healthy.clone();
    let readiness = |recording: &Recording| probe_status(recording, "readiness");
    support::run_recorded(&recording, || async {
        let layer = HealthLayer::builder()
            .check(
                Check::new(
                    "queue",
                    check_fn(move || {
                        let healthy = flag.load(Ordering::SeqCst);
                        async move {
                            if healthy {
                                CheckResult::pass()
                            } else {
                                CheckResult::fail("gone")
                            }
                        }
                    }),
                )
                .timeout(Duration::from_secs(1))
                .every(Duration::from_secs(10)),
            )
            .build()
            .unwrap();
        let prober = tokio::spawn(layer.handle().prober());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(readiness(&recording), Some(Value::Level(1.0)));
        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(readiness(&recording), Some(Value::Level(0.0)));
        prober.abort();
    });
}

/// The `armor.health.status` gauge of `probe`.
fn probe_status(recording: &Recording, probe: &str) -> Option<Value> {
    series(recording)
        .into_iter()
        .find(|s| s.name == "armor.health.status" && s.labels.contains(&format!("probe={probe}")))
        .map(|s| s.value)
}
