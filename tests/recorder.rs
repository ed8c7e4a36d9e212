//! Metrics reach the recorder installed when each event happens: every layer
//! is built first, the recorder installed afterwards (as applications do
//! when they set up their exporter after the router), and the counts and
//! gauges are all there.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor::ServiceBuilderExt;
use tower_armor::circuit_breaker::CircuitBreakerLayer;
use tower_armor::compression::{CompressionLayer, RequestDecompressionLayer};
use tower_armor::rate_limit::{Quota, RateLimitLayer};
use tower_armor::retry::RetryLayer;
use tower_armor::timeout::TimeoutLayer;

mod support;

/// Every metric the recorder holds, as `name{label=value,...}` and its value.
fn snapshot(recorder: &DebuggingRecorder) -> Vec<(String, f64)> {
    let mut values: Vec<_> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

fn value(values: &[(String, f64)], metric: &str) -> Option<f64> {
    values
        .iter()
        .find(|(name, _)| name == metric)
        .map(|(_, value)| *value)
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_recorder_installed_after_the_layers_are_built_sees_every_event() {
    // Built with no recorder installed at all.
    let timeout = TimeoutLayer::builder(Duration::from_secs(1))
        .name("late")
        .build()
        .unwrap();
    let limit = RateLimitLayer::builder(Quota::per_minute(3))
        .name("late")
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder().name("late").build().unwrap();
    // Alive until the end: a dropped breaker leaves the state gauge.
    let handle = breaker.handle();
    let retry = RetryLayer::builder()
        .name("late")
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    let compression = CompressionLayer::builder().name("late").build().unwrap();
    let decompression = RequestDecompressionLayer::builder()
        .name("late")
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .armor_timeout(timeout)
        .armor_compression(compression)
        .armor_request_decompression(decompression)
        .armor_rate_limit(limit)
        .armor_retry(retry)
        .armor_circuit_breaker(breaker)
        .service_fn(|request: Request<_>| async move {
            // A slow path, a failing path, and an echo of the decoded body.
            let path = request.uri().path().to_owned();
            let body: Bytes = BodyExt::collect(request.into_body())
                .await
                .unwrap()
                .to_bytes();
            match path.as_str() {
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
                "/fail" => Ok(Response::builder()
                    .status(503)
                    .body(Full::new(Bytes::new()))
                    .unwrap()),
                _ => Ok(Response::new(Full::new(Bytes::from(
                    [&body[..], &[b' '; 2048]].concat(),
                )))),
            }
        });

    // Installed only now.
    let recorder = DebuggingRecorder::new();
    support::run_recorded(&recorder, || async move {
        let mut service = service;
        let upload = Request::post("/echo")
            .header("content-encoding", "gzip")
            .header("accept-encoding", "gzip")
            .body(Full::new(Bytes::from(gzip(b"hello"))))
            .unwrap();
        let response = service.ready().await.unwrap().call(upload).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip");
        response.into_body().collect().await.unwrap();
        let fail = Request::get("/fail").body(Full::default()).unwrap();
        let response = service.ready().await.unwrap().call(fail).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        response.into_body().collect().await.unwrap();
        let slow = Request::get("/slow").body(Full::default()).unwrap();
        let response = service.ready().await.unwrap().call(slow).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        let refused = Request::get("/").body(Full::default()).unwrap();
        let response = service.oneshot(refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    });

    let values = snapshot(&recorder);
    assert_eq!(
        handle.state(),
        tower_armor::circuit_breaker::CircuitState::Closed
    );
    let expect = [
        ("armor.timeout.expired{name=late,stage=response}", 1.0),
        (
            "armor.rate_limit.decisions{name=late,decision=allowed}",
            3.0,
        ),
        (
            "armor.rate_limit.decisions{name=late,decision=rejected}",
            1.0,
        ),
        // The echo, three attempts at /fail (the last passed on), the timed-out
        // call cancelled when the timeout dropped it.
        ("armor.retry.attempts{name=late,outcome=success}", 1.0),
        ("armor.retry.attempts{name=late,outcome=retried}", 2.0),
        ("armor.retry.attempts{name=late,outcome=failed}", 1.0),
        (
            "armor.circuit_breaker.calls{name=late,outcome=success}",
            1.0,
        ),
        (
            "armor.circuit_breaker.calls{name=late,outcome=failure}",
            3.0,
        ),
        (
            "armor.circuit_breaker.calls{name=late,outcome=cancelled}",
            1.0,
        ),
        // The breaker's state gauge starts from the truth in a late recorder.
        ("armor.circuit_breaker.state{name=late,state=closed}", 1.0),
        ("armor.circuit_breaker.state{name=late,state=open}", 0.0),
        (
            "armor.compression.uncompressed_bytes{name=late,direction=in,encoding=gzip}",
            5.0,
        ),
        (
            "armor.compression.bytes{name=late,direction=in,encoding=gzip}",
            gzip(b"hello").len() as f64,
        ),
        (
            "armor.compression.uncompressed_bytes{name=late,direction=out,encoding=gzip}",
            (5 + 2048) as f64,
        ),
    ];
    for (metric, expected) in expect {
        assert_eq!(
            value(&values, metric),
            Some(expected),
            "{metric} in {values:#?}"
        );
    }
}
