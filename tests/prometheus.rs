//! The Prometheus recorder and scrape route: what a Prometheus server would
//! scrape, checked line by line as its text-format parser reads it.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_armor::metrics::{MetricsLayer, NoRoute, prometheus, route_fn};

mod support;

type Body = Full<Bytes>;

/// One sample of the exposition: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A family: its `# TYPE`, whether it has `# HELP`, and its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    samples: Vec<Sample>,
}

/// Parses the text exposition format (version 0.0.4) strictly: every line
/// a comment or a sample, every sample after its family's `# TYPE`, every
/// name and label well-formed, every histogram's buckets cumulative and
/// ending with `+Inf` equal to `_count`. Panics with the line at fault.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, _) = help.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            families.entry(name.to_owned()).or_default().help = true;
            continue;
        }
        if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            let family = families.entry(name.to_owned()).or_default();
            assert!(family.kind.is_empty(), "a second TYPE: {line}");
            family.kind = kind.to_owned();
            current = Some(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "an unknown comment: {line}");
        let sample = parse_sample(line);
        let family = current.as_deref().expect("a sample before any TYPE");
        let kind = &families[family].kind;
        let expected: &[&str] = match kind.as_str() {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        assert!(
            expected
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}")),
            "{line} is not of family {family} ({kind})"
        );
        families.get_mut(family).unwrap().samples.push(sample);
    }
    for (name, family) in &families {
        if family.kind == "histogram" {
            check_histogram(name, family);
        }
    }
    families
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect(line);
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        value => value.parse().unwrap_or_else(|_| panic!("a value: {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, labels.strip_suffix('}').expect(line)),
        None => (series, ""),
    };
    assert!(valid_name(name), "{line}");
    let mut parsed = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect(line);
        assert!(valid_name(key) && !key.starts_with("__"), "{line}");
        // The value runs to the first quote not escaped.
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect(line) {
                (_, '\\') => match chars.next().expect(line).1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    other => panic!("a bad escape \\{other}: {line}"),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        assert!(parsed.insert(key.to_owned(), value).is_none(), "{line}");
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Sample {
        name: name.to_owned(),
        labels: parsed,
        value,
    }
}

/// A series' labels, `le` aside.
type Labels = Vec<(String, String)>;

fn check_histogram(name: &str, family: &Family) {
    // Each series' buckets: (le, cumulative count).
    let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        if sample.name.ends_with("_bucket") {
            let le = labels.remove("le").expect("a bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            series
                .entry(labels.into_iter().collect())
                .or_default()
                .push((le, sample.value));
        } else if sample.name.ends_with("_count") {
            counts.insert(labels.into_iter().collect::<Labels>(), sample.value);
        }
    }
    for (labels, buckets) in &series {
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{labels:?}: buckets in order and cumulative: {buckets:?}"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY, "{name}{labels:?} ends with +Inf");
        assert_eq!(
            Some(&last.1),
            counts.get(labels),
            "{name}{labels:?}: +Inf is _count"
        );
    }
}

fn answering(
    status: u16,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(move |_req: Request<Body>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"answer")))
                .unwrap(),
        )
    })
}

async fn call<S, B>(service: S, method: Method, path: &str) -> (StatusCode, http::HeaderMap, Bytes)
where
    S: tower::Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let (head, body) = response.into_parts();
    (
        head.status,
        head.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn text(body: &Bytes) -> &str {
    std::str::from_utf8(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_scrape_shows_real_histograms_with_opentelemetry_buckets() {
    let (recorder, scrape) = prometheus::builder().build().unwrap();
    let metrics = MetricsLayer::server()
        .recorder(recorder.clone())
        .body_sizes(true)
        .route(route_fn(|_| Some("/orders/{id}".into())))
        .build()
        .unwrap();
    let app = ServiceBuilder::new()
        .layer(scrape)
        .layer(metrics)
        .service(answering(200));
    for _ in 0..3 {
        call(app.clone(), Method::GET, "/orders/1").await;
    }
    call(app.clone(), Method::GET, "/orders/2").await;

    let (status, headers, body) = call(app.clone(), Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let families = parse(text(&body));
    let duration = &families["http_server_request_duration_seconds"];
    assert_eq!(duration.kind, "histogram");
    assert!(duration.help);
    let bounds: Vec<&str> = duration
        .samples
        .iter()
        .filter(|s| s.name.ends_with("_bucket"))
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        bounds,
        [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5",
            "5", "7.5", "10", "+Inf"
        ]
    );
    let count = duration
        .samples
        .iter()
        .find(|s| s.name.ends_with("_count"))
        .unwrap();
    assert_eq!(count.value, 4.0);
    assert_eq!(
        count.labels,
        BTreeMap::from([
            ("http_request_method".into(), "GET".into()),
            ("http_response_status_code".into(), "200".into()),
            ("http_route".into(), "/orders/{id}".into()),
            ("network_protocol_version".into(), "1.1".into()),
            ("url_scheme".into(), "http".into()),
        ])
    );
    let sizes = &families["http_server_response_body_size_bytes"];
    assert_eq!(sizes.kind, "histogram");
    let first = sizes
        .samples
        .iter()
        .find(|s| s.name.ends_with("_bucket"))
        .unwrap();
    assert_eq!((first.labels["le"].as_str(), first.value), ("256", 4.0));
    // Bodiless GETs: their request bodies are zero bytes.
    let uploads = &families["http_server_request_body_size_bytes"];
    let sum = uploads
        .samples
        .iter()
        .find(|s| s.name.ends_with("_sum"))
        .unwrap();
    let count = uploads
        .samples
        .iter()
        .find(|s| s.name.ends_with("_count"))
        .unwrap();
    assert_eq!((sum.value, count.value), (0.0, 4.0));
    let active = &families["http_server_active_requests"];
    assert_eq!(active.kind, "gauge");
    assert_eq!(active.samples[0].value, 0.0);
}

#[tokio::test(start_paused = true)]
async fn counters_end_in_total_and_a_users_own_histogram_is_a_histogram() {
    let (recorder, scrape) = prometheus::builder().build().unwrap();
    let limited = tower_armor::rate_limit::RateLimitLayer::builder(
        tower_armor::rate_limit::Quota::per_minute(1),
    )
    .build()
    .unwrap();
    let app = ServiceBuilder::new()
        .layer(scrape.clone())
        .layer(limited)
        .service(answering(200));
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("checkout.basket.items").record(3.0);
    });
    // Our other layers report to the recorder current at each event.
    let calls = std::pin::pin!(async {
        call(app.clone(), Method::GET, "/").await;
        call(app.clone(), Method::GET, "/").await;
    });
    drive_with(&recorder, calls).await;
    let families = parse(text(&scrape.render()));
    assert_eq!(families["armor_rate_limit_decisions_total"].kind, "counter");
    assert!(families["armor_rate_limit_decisions_total"].help);
    let items = &families["checkout_basket_items"];
    assert_eq!(items.kind, "histogram");
    assert_eq!(items.samples.len(), 14 + 1 + 2);
}

/// Every family the layers emit carries `# HELP` (`promtool check metrics`
/// reports a family without it), including counters that are registered
/// when their event happens, such as a timeout's expiry.
#[cfg(all(
    feature = "timeout",
    feature = "circuit-breaker",
    feature = "compression-gzip"
))]
#[tokio::test(start_paused = true)]
async fn every_family_has_help_text() {
    use std::time::Duration;
    use tower_armor::circuit_breaker::CircuitBreakerLayer;
    use tower_armor::compression::CompressionLayer;
    use tower_armor::timeout::TimeoutLayer;

    let (recorder, scrape) = prometheus::builder().build().unwrap();
    let slow = tower::service_fn(|request: Request<Body>| async move {
        if request.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'a'; 4096]))))
    });
    // No metrics layer: it describes every family itself, and the layers
    // must not depend on it.
    let app = ServiceBuilder::new()
        .layer(
            tower_armor::rate_limit::RateLimitLayer::builder(
                tower_armor::rate_limit::Quota::per_minute(100),
            )
            .build()
            .unwrap(),
        )
        .layer(
            TimeoutLayer::builder(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .layer(CircuitBreakerLayer::new())
        .layer(CompressionLayer::new())
        .service(slow);
    let calls = std::pin::pin!(async {
        call(app.clone(), Method::GET, "/").await;
        call(app.clone(), Method::GET, "/slow").await;
        let gzip = Request::get("/")
            .header("accept-encoding", "gzip")
            .body(Body::default())
            .unwrap();
        let response = app.clone().oneshot(gzip).await.unwrap();
        response.into_body().collect().await.unwrap();
    });
    drive_with(&recorder, calls).await;
    let families = parse(text(&scrape.render()));
    for name in [
        "armor_rate_limit_decisions_total",
        "armor_timeout_expired_total",
        "armor_circuit_breaker_calls_total",
        "armor_compression_bytes_total",
    ] {
        assert!(families.contains_key(name), "{name} in {families:?}");
    }
    let without: Vec<_> = families
        .iter()
        .filter(|(_, family)| !family.help)
        .map(|(name, _)| name)
        .collect();
    assert!(without.is_empty(), "families with no # HELP: {without:?}");
}

/// A timeout registers its counter when it fires, not through cached
/// handles: it describes it too.
#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn a_lone_timeout_describes_its_counter() {
    use std::time::Duration;

    let (recorder, scrape) = prometheus::builder().build().unwrap();
    let slow = tower::service_fn(|_request: Request<Body>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let app = tower_armor::timeout::TimeoutLayer::builder(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(slow);
    drive_with(&recorder, std::pin::pin!(call(app, Method::GET, "/"))).await;
    let families = parse(text(&scrape.render()));
    assert!(families["armor_timeout_expired_total"].help, "{families:?}");
}

/// Polls `future` to its end with `recorder` as the current recorder during
/// each poll, as an installed global recorder would be.
async fn drive_with<F: std::future::Future>(
    recorder: &prometheus::PrometheusRecorder,
    mut future: std::pin::Pin<&mut F>,
) -> F::Output {
    std::future::poll_fn(|cx| metrics::with_local_recorder(recorder, || future.as_mut().poll(cx)))
        .await
}

#[tokio::test(start_paused = true)]
async fn the_route_answers_get_and_head_and_refuses_other_methods() {
    let (_recorder, scrape) = prometheus::builder()
        .path("/internal/metrics")
        .build()
        .unwrap();
    let app = scrape.layer(answering(201));
    let (status, headers, body) = call(app.clone(), Method::HEAD, "/internal/metrics").await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let (status, headers, _) = call(app.clone(), Method::POST, "/internal/metrics").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    // Every other path is the inner service's.
    let (status, _, body) = call(app.clone(), Method::GET, "/metrics").await;
    assert_eq!((status, text(&body)), (StatusCode::CREATED, "answer"));
    // As a service of its own (an axum `route_service`), any path renders.
    let (status, _, body) = call(scrape, Method::GET, "/anything").await;
    assert_eq!(status, StatusCode::OK);
    parse(text(&body));
}

#[test]
fn bad_settings_are_refused_at_build() {
    let error = prometheus::builder().path("metrics").build().unwrap_err();
    assert_eq!(error.layer(), "prometheus");
    assert!(error.to_string().contains("must start with '/'"), "{error}");
    let error = prometheus::builder().upkeep_every(0).build().unwrap_err();
    assert!(error.to_string().contains("upkeep_every"), "{error}");
}

#[test]
fn debug_output_shows_the_settings() {
    let builder = prometheus::builder()
        .path("/internal/metrics")
        .upkeep_every(4096);
    let shown = format!("{builder:?}");
    assert!(
        shown.contains("/internal/metrics") && shown.contains("4096"),
        "{shown}"
    );
    let (recorder, scrape) = builder.build().unwrap();
    assert!(format!("{recorder:?}").contains("4096"));
    assert!(format!("{scrape:?}").contains("/internal/metrics"));
}

#[test]
fn samples_recorded_many_at_once_all_count() {
    let (recorder, scrape) = prometheus::builder().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("batch.sizes").record_many(0.2, 5);
    });
    let families = parse(text(&scrape.render()));
    let count = families["batch_sizes"]
        .samples
        .iter()
        .find(|sample| sample.name == "batch_sizes_count")
        .unwrap();
    assert_eq!(count.value, 5.0);
}

#[tokio::test(start_paused = true)]
async fn as_a_layer_readiness_is_the_inner_services() {
    let (_recorder, scrape) = prometheus::builder().build().unwrap();
    support::readiness_follows_the_inner_service(scrape);
}

#[tokio::test(start_paused = true)]
async fn configure_changes_the_exporter_after_our_defaults() {
    let (recorder, scrape) = prometheus::builder()
        .configure(|exporter| exporter.add_global_label("service", "checkout"))
        .build()
        .unwrap();
    let metrics = MetricsLayer::server()
        .recorder(recorder)
        .route(NoRoute)
        .build()
        .unwrap();
    call(metrics.layer(answering(200)), Method::GET, "/").await;
    let families = parse(text(&scrape.render()));
    let duration = &families["http_server_request_duration_seconds"];
    assert!(
        duration
            .samples
            .iter()
            .all(|s| s.labels.get("service").map(String::as_str) == Some("checkout"))
    );
}
