//! The metrics layer through its service, under paused time, with a local
//! debugging recorder: the exact names, attributes and values a Prometheus or
//! OpenTelemetry exporter would receive.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use std::sync::Arc;

use metrics::Unit;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_armor::metrics::{
    MetricsBuilder, MetricsLayer, Naming, NoRoute, RouteExtractor, route_fn,
};

mod support;

use support::recording::{Recording, Value, active, durations, labels, series};

type Body = Full<Bytes>;

/// A layer recording into a fresh recorder, and what it recorded.
fn recorded<R: RouteExtractor>(builder: MetricsBuilder<R>) -> (MetricsLayer<R>, Recording) {
    let recording = Recording::new();
    (
        builder.recorder(recording.clone()).build().unwrap(),
        recording,
    )
}

fn answering(
    status: u16,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    tower::service_fn(move |_req: Request<Body>| async move {
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"answer")))
                .unwrap(),
        )
    })
}

async fn send<S, B>(service: S, request: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    service.oneshot(request).await.unwrap()
}

/// A `GET /events` through `layer` to a handler answering with a stream,
/// and the sender that feeds the stream.
async fn streamed(
    layer: &MetricsLayer,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug> + use<>>,
) {
    let (sender, events) = support::channel_body(8);
    let mut events = Some(events);
    let streaming = layer.layer(tower::service_fn(move |_req: Request<Body>| {
        let body = events.take().expect("one request");
        async move { Ok::<_, Infallible>(Response::new(body)) }
    }));
    let response = send(
        streaming,
        Request::get("/events").body(Body::default()).unwrap(),
    )
    .await;
    (sender, response)
}

async fn read<B: http_body::Body>(response: Response<B>) -> StatusCode
where
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test(start_paused = true)]
async fn a_request_is_measured_to_the_end_of_its_body_with_its_attributes() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let service = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let request = Request::get("/items").body(Body::default()).unwrap();
    let response = send(service.clone(), request).await;
    // Active while the body is out.
    assert_eq!(
        active(&recording, "http.server.active_requests"),
        [(labels(&["http.request.method=GET", "url.scheme=http"]), 1.0)]
    );
    tokio::time::advance(Duration::from_millis(50)).await;
    read(response).await;
    assert_eq!(
        durations(&recording, "http.server.request.duration"),
        [(
            labels(&[
                "http.request.method=GET",
                "url.scheme=http",
                "http.response.status_code=200",
                "network.protocol.version=1.1",
            ]),
            vec![0.3]
        )]
    );
    assert_eq!(
        active(&recording, "http.server.active_requests"),
        [(labels(&["http.request.method=GET", "url.scheme=http"]), 0.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_error_types_and_client_errors_are_not() {
    let (layer, recording) = recorded(MetricsLayer::server());
    for status in [503, 404] {
        let request = Request::post("/orders").body(Body::default()).unwrap();
        read(send(layer.layer(answering(status)), request).await).await;
    }
    let recorded = durations(&recording, "http.server.request.duration");
    assert_eq!(
        recorded
            .iter()
            .map(|(labels, _)| labels.clone())
            .collect::<Vec<_>>(),
        [
            labels(&[
                "http.request.method=POST",
                "url.scheme=http",
                "http.response.status_code=404",
                "network.protocol.version=1.1",
            ]),
            labels(&[
                "http.request.method=POST",
                "url.scheme=http",
                "http.response.status_code=503",
                "network.protocol.version=1.1",
                "error.type=503",
            ]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_counts_4xx_and_names_its_upstream() {
    let (layer, recording) = recorded(MetricsLayer::client());
    let request = Request::get("https://inventory.internal:8443/items/7")
        .body(Body::default())
        .unwrap();
    read(send(layer.layer(answering(404)), request).await).await;
    assert_eq!(
        durations(&recording, "http.client.request.duration")[0].0,
        labels(&[
            "http.request.method=GET",
            "url.scheme=https",
            "http.response.status_code=404",
            "network.protocol.version=1.1",
            "server.address=inventory.internal",
            "server.port=8443",
            "error.type=404",
        ])
    );
    assert_eq!(
        active(&recording, "http.client.active_requests"),
        [(
            labels(&[
                "http.request.method=GET",
                "url.scheme=https",
                "server.address=inventory.internal",
                "server.port=8443",
            ]),
            0.0
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_methods_are_other_and_routes_come_only_from_the_extractor() {
    let (layer, recording) = recorded(MetricsLayer::server().route(route_fn(|request| {
        request
            .uri
            .path()
            .starts_with("/users/")
            .then_some("/users/{id}".into())
    })));
    let purge = Request::builder()
        .method(Method::from_bytes(b"PURGE").unwrap())
        .uri("/users/42")
        .body(Body::default())
        .unwrap();
    read(send(layer.layer(answering(200)), purge).await).await;
    // A path with no route gets no http.route at all, never its own path.
    let scan = Request::get("/wp-admin/setup.php")
        .body(Body::default())
        .unwrap();
    read(send(layer.layer(answering(404)), scan).await).await;
    let recorded: Vec<_> = durations(&recording, "http.server.request.duration")
        .into_iter()
        .map(|(labels, _)| labels)
        .collect();
    assert_eq!(
        recorded,
        [
            labels(&[
                "http.request.method=GET",
                "url.scheme=http",
                "http.response.status_code=404",
                "network.protocol.version=1.1",
            ]),
            labels(&[
                "http.request.method=_OTHER",
                "url.scheme=http",
                "http.route=/users/{id}",
                "http.response.status_code=200",
                "network.protocol.version=1.1",
            ]),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_leaves_is_cancelled_and_no_longer_active() {
    let (layer, recording) = recorded(MetricsLayer::server());
    // Hangs up mid-stream.
    let (sender, response) = streamed(&layer).await;
    sender
        .send(Bytes::from_static(b"data: 1\n\n"))
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    // Leaves before the answer.
    let slow = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        std::future::pending::<Result<Response<Body>, Infallible>>().await
    }));
    let mut future = Box::pin(slow.oneshot(Request::get("/slow").body(Body::default()).unwrap()));
    assert!(futures_poll_once(future.as_mut()).await);
    drop(future);
    let recorded: Vec<_> = durations(&recording, "http.server.request.duration")
        .into_iter()
        .map(|(labels, _)| labels)
        .collect();
    assert_eq!(
        recorded,
        [
            labels(&[
                "http.request.method=GET",
                "url.scheme=http",
                "http.response.status_code=200",
                "network.protocol.version=1.1",
                "error.type=cancelled",
            ]),
            labels(&[
                "http.request.method=GET",
                "url.scheme=http",
                "network.protocol.version=1.1",
                "error.type=cancelled",
            ]),
        ]
    );
    assert_eq!(
        active(&recording, "http.server.active_requests"),
        [(labels(&["http.request.method=GET", "url.scheme=http"]), 0.0)]
    );
}

/// Polls a future once; true if it is still pending.
async fn futures_poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut future = Some(future);
    std::future::poll_fn(|cx| {
        let pending = future.take().unwrap().poll(cx).is_pending();
        std::task::Poll::Ready(pending)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_server_sent_event_stream_is_measured_to_its_last_event() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let (sender, response) = streamed(&layer).await;
    let reader = tokio::spawn(read(response));
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        sender
            .send(Bytes::from_static(b"data: tick\n\n"))
            .await
            .unwrap();
    }
    drop(sender);
    reader.await.unwrap();
    let recorded = durations(&recording, "http.server.request.duration");
    assert_eq!(recorded[0].1, vec![30.0]);
}

#[tokio::test(start_paused = true)]
async fn our_layers_refusals_are_their_error_types() {
    let (layer, recording) = recorded(MetricsLayer::server().route(NoRoute));
    let limited = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(
            tower_armor::rate_limit::RateLimitLayer::builder(
                tower_armor::rate_limit::Quota::per_minute(1),
            )
            .build()
            .unwrap(),
        )
        .service(answering(200));
    for _ in 0..2 {
        read(
            send(
                limited.clone(),
                Request::get("/").body(Body::default()).unwrap(),
            )
            .await,
        )
        .await;
    }
    let breaker = tower_armor::circuit_breaker::CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    breaker.handle().force_open();
    let open = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(breaker)
        .service(answering(200));
    read(send(open, Request::get("/").body(Body::default()).unwrap()).await).await;
    let timed = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(
            tower_armor::timeout::TimeoutLayer::builder(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .service(tower::service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(Body::default()))
        }));
    read(send(timed, Request::get("/").body(Body::default()).unwrap()).await).await;
    let retried = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(
            tower_armor::retry::RetryLayer::builder()
                .per_try_timeout(Duration::from_secs(1))
                .max_attempts(2)
                .build()
                .unwrap(),
        )
        .service(tower::service_fn(|_req| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(Body::default()))
        }));
    read(send(retried, Request::get("/").body(Body::default()).unwrap()).await).await;
    let compressed = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(tower_armor::compression::CompressionLayer::default())
        .service(answering(200));
    let refuses_all = Request::get("/")
        .header("accept-encoding", "identity;q=0, *;q=0")
        .body(Body::default())
        .unwrap();
    read(send(compressed, refuses_all).await).await;
    let decompressed = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(tower_armor::compression::RequestDecompressionLayer::default())
        .service(tower::service_fn(|_req| async {
            Ok::<_, Infallible>(Response::new(Body::default()))
        }));
    let unknown_coding = Request::post("/")
        .header("content-encoding", "lzma")
        .body(Full::new(Bytes::from_static(b"\x5d\0\0")))
        .unwrap();
    read(send(decompressed, unknown_coding).await).await;
    let mut errors: Vec<String> = durations(&recording, "http.server.request.duration")
        .into_iter()
        .flat_map(|(labels, samples)| {
            let error = labels
                .iter()
                .find_map(|l| l.strip_prefix("error.type="))
                .unwrap_or("none")
                .to_owned();
            std::iter::repeat_n(error, samples.len())
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            "circuit_open",
            "none",
            "not_acceptable",
            "rate_limited",
            "timeout",
            "timeout",
            "unsupported_encoding"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_requests_go_to_one_overflow_series_and_are_counted() {
    let (layer, recording) = recorded(
        MetricsLayer::server()
            .name("capped")
            .max_label_sets(2)
            .route(route_fn(|request| {
                Some(request.uri.path().to_owned().into())
            })),
    );
    for path in ["/a", "/b", "/c", "/d"] {
        read(
            send(
                layer.layer(answering(200)),
                Request::get(path).body(Body::default()).unwrap(),
            )
            .await,
        )
        .await;
    }
    let recorded = durations(&recording, "http.server.request.duration");
    let overflow: Vec<_> = recorded
        .iter()
        .filter(|(set, _)| set == &labels(&["otel.metric.overflow=true"]))
        .collect();
    assert_eq!(
        recorded.len(),
        3,
        "two series and the overflow: {recorded:?}"
    );
    assert_eq!(overflow[0].1.len(), 2);
    let overflowed = series(&recording)
        .into_iter()
        .find(|s| s.name == "armor.metrics.label_overflow")
        .unwrap();
    assert_eq!(overflowed.labels, labels(&["name=capped"]));
    assert_eq!(overflowed.value, Value::Count(2));
}

#[tokio::test(start_paused = true)]
async fn prometheus_naming_puts_the_unit_in_the_name() {
    let (layer, recording) = recorded(MetricsLayer::server().naming(Naming::Prometheus));
    read(
        send(
            layer.layer(answering(200)),
            Request::get("/").body(Body::default()).unwrap(),
        )
        .await,
    )
    .await;
    let recorded = durations(&recording, "http_server_request_duration_seconds");
    assert_eq!(
        recorded[0].0,
        labels(&[
            "http_request_method=GET",
            "url_scheme=http",
            "http_response_status_code=200",
            "network_protocol_version=1.1",
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn body_sizes_are_recorded_when_asked() {
    let (layer, recording) = recorded(MetricsLayer::server().body_sizes(true));
    let upload = Request::post("/upload")
        .header("content-length", "11")
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    read(send(layer.layer(answering(200)), upload).await).await;
    assert_eq!(
        durations(&recording, "http.server.request.body.size")[0].1,
        vec![11.0]
    );
    assert_eq!(
        durations(&recording, "http.server.response.body.size")[0].1,
        vec![6.0]
    );
    // Described once, with their units, for an exporter's HELP and UNIT.
    read(
        send(
            layer.layer(answering(200)),
            Request::get("/").body(Body::default()).unwrap(),
        )
        .await,
    )
    .await;
    let described = recording.1.lock().unwrap().clone();
    let unit = |name: &str| {
        let units: Vec<_> = described
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, u)| *u)
            .collect();
        assert_eq!(units.len(), 1, "{name} described once: {described:?}");
        units[0]
    };
    assert_eq!(unit("http.server.request.duration"), Some(Unit::Seconds));
    assert_eq!(unit("rpc.server.call.duration"), Some(Unit::Seconds));
    assert_eq!(unit("http.server.active_requests"), Some(Unit::Count));
    assert_eq!(unit("http.server.request.body.size"), Some(Unit::Bytes));
    assert_eq!(unit("http.server.response.body.size"), Some(Unit::Bytes));
    assert_eq!(unit("armor.metrics.label_overflow"), Some(Unit::Count));
}

fn grpc_request(path: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/grpc")
        .body(Body::default())
        .unwrap()
}

/// A gRPC answer: a status in the head (trailers-only) or in the trailers.
fn grpc_answer(
    head: Option<&'static str>,
    trailer: Option<&'static str>,
) -> Response<impl http_body::Body<Data = Bytes, Error = Infallible>> {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = vec![Ok(
        http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0")),
    )];
    if let Some(code) = trailer {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", code.parse().unwrap());
        frames.push(Ok(http_body::Frame::trailers(trailers)));
    }
    let mut response = Response::builder().header("content-type", "application/grpc");
    if let Some(code) = head {
        response = response.header("grpc-status", code);
        frames.clear();
    }
    response
        .body(StreamBody::new(Frames(frames.into())))
        .unwrap()
}

struct Frames(std::collections::VecDeque<Result<http_body::Frame<Bytes>, Infallible>>);

impl futures_core::Stream for Frames {
    type Item = Result<http_body::Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front())
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_calls_are_measured_with_their_status_from_head_or_trailers() {
    let (layer, recording) = recorded(MetricsLayer::server());
    for (head, trailer) in [
        (None, Some("0")),
        (None, Some("14")),
        (Some("5"), None),
        (None, None),
    ] {
        let service = layer.layer(tower::service_fn(move |_req: Request<Body>| async move {
            Ok::<_, Infallible>(grpc_answer(head, trailer))
        }));
        read(send(service, grpc_request("/shop.Orders/Place")).await).await;
    }
    // No such method: UNIMPLEMENTED, and no series of its own.
    let unknown = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(grpc_answer(Some("12"), None))
    }));
    read(send(unknown, grpc_request("/scan.Random/Probe")).await).await;
    let recorded: Vec<_> = durations(&recording, "rpc.server.call.duration")
        .into_iter()
        .map(|(labels, _)| labels)
        .collect();
    let call = |method: &str, code: &str, error: Option<&str>| {
        let mut labels = labels(&[
            "rpc.system.name=grpc",
            &format!("rpc.method={method}"),
            &format!("rpc.status_code={code}"),
        ]);
        if let Some(error) = error {
            labels.push(format!("error.type={error}"));
        }
        labels
    };
    assert_eq!(
        recorded,
        [
            call("_OTHER", "UNIMPLEMENTED", Some("UNIMPLEMENTED")),
            call("shop.Orders/Place", "NOT_FOUND", None),
            call("shop.Orders/Place", "OK", None),
            call("shop.Orders/Place", "UNAVAILABLE", Some("UNAVAILABLE")),
            call("shop.Orders/Place", "UNKNOWN", Some("UNKNOWN")),
        ]
    );
    assert!(durations(&recording, "http.server.request.duration").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_recorder_installed_after_the_layer_sees_everything() {
    let layer = MetricsLayer::server().build().unwrap();
    let service = layer.layer(answering(200));
    let recording = Recording::new();
    metrics::with_local_recorder(&recording, || {
        let mut future =
            std::pin::pin!(service.oneshot(Request::get("/").body(Body::default()).unwrap()));
        let waker = std::task::Waker::noop();
        let std::task::Poll::Ready(Ok(response)) = future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        else {
            panic!("answers at once")
        };
        drop(response);
    });
    assert_eq!(
        durations(&recording, "http.server.request.duration").len(),
        1
    );
}

/// A `tracing` subscriber that keeps each span's fields and whether it closed.
#[derive(Clone, Default)]
struct Spans(Arc<std::sync::Mutex<Vec<SpanRecord>>>);

#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: &'static str,
    fields: std::collections::BTreeMap<String, String>,
    closed: bool,
}

struct FieldVisitor<'a>(&'a mut std::collections::BTreeMap<String, String>);

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Spans {
    fn all(&self) -> Vec<SpanRecord> {
        self.0.lock().unwrap().clone()
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut spans = self.0.lock().unwrap();
        let mut record = SpanRecord {
            name: attributes.metadata().name(),
            ..Default::default()
        };
        attributes.record(&mut FieldVisitor(&mut record.fields));
        spans.push(record);
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        values.record(&mut FieldVisitor(
            &mut spans[span.into_u64() as usize - 1].fields,
        ));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, span: &tracing::span::Id) {
        let mut spans = self.0.lock().unwrap();
        let record = &mut spans[span.into_u64() as usize - 1];
        let entered = record
            .fields
            .entry("#entered".into())
            .or_insert_with(|| "0".into());
        *entered = (entered.parse::<u64>().unwrap() + 1).to_string();
    }
    fn exit(&self, _: &tracing::span::Id) {}
    fn try_close(&self, span: tracing::span::Id) -> bool {
        // Each span here has one handle at a time but for clones; closing
        // is reported when the last clone goes, which `clone_span` tracks.
        let mut spans = self.0.lock().unwrap();
        let record = &mut spans[span.into_u64() as usize - 1];
        let clones = record
            .fields
            .entry("#clones".into())
            .or_insert_with(|| "0".into());
        let left: i64 = clones.parse::<i64>().unwrap() - 1;
        *clones = left.to_string();
        if left < 0 {
            record.closed = true;
        }
        record.closed
    }
    fn clone_span(&self, span: &tracing::span::Id) -> tracing::span::Id {
        let mut spans = self.0.lock().unwrap();
        let record = &mut spans[span.into_u64() as usize - 1];
        let clones = record
            .fields
            .entry("#clones".into())
            .or_insert_with(|| "0".into());
        *clones = (clones.parse::<i64>().unwrap() + 1).to_string();
        span.clone()
    }
}

/// The fields of a span, without the bookkeeping.
fn fields(record: &SpanRecord) -> Vec<(String, String)> {
    record
        .fields
        .iter()
        .filter(|(name, _)| !name.starts_with('#'))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = list
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test(start_paused = true)]
async fn a_span_per_request_carries_the_same_attributes_until_the_body_ends() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let (layer, _recording) = recorded(
        MetricsLayer::server()
            .spans(true)
            .route(route_fn(|_| Some("/users/{id}".into()))),
    );
    let response = send(
        layer.layer(answering(503)),
        Request::get("/users/7").body(Body::default()).unwrap(),
    )
    .await;
    assert!(!spans.all()[0].closed, "open while the body is out");
    assert_eq!(
        spans.all()[0].fields.get("#entered").map(String::as_str),
        Some("1"),
        "entered while the handler ran"
    );
    read(response).await;
    let all = spans.all();
    assert_eq!(all.len(), 1);
    assert!(all[0].closed);
    assert_eq!(all[0].name, "request");
    assert_eq!(
        fields(&all[0]),
        pairs(&[
            ("otel.name", "GET /users/{id}"),
            ("otel.kind", "server"),
            ("otel.status_code", "ERROR"),
            ("http.request.method", "GET"),
            ("http.route", "/users/{id}"),
            ("http.response.status_code", "503"),
            ("url.scheme", "http"),
            ("network.protocol.version", "1.1"),
            ("error.type", "503"),
        ])
    );

    let purge = Request::builder()
        .method(Method::from_bytes(b"PURGE").unwrap())
        .uri("https://cache.internal/items")
        .body(Body::default())
        .unwrap();
    let (client, _recording) = recorded(MetricsLayer::client().spans(true).route(NoRoute));
    read(send(client.layer(answering(200)), purge).await).await;
    assert_eq!(
        fields(&spans.all()[1]),
        pairs(&[
            ("otel.name", "HTTP"),
            ("otel.kind", "client"),
            ("http.request.method", "_OTHER"),
            ("http.request.method_original", "PURGE"),
            ("http.response.status_code", "200"),
            ("url.scheme", "https"),
            ("network.protocol.version", "1.1"),
            ("server.address", "cache.internal"),
            ("server.port", "443"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_span_takes_its_status_from_the_trailers() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let (layer, _recording) = recorded(MetricsLayer::server().spans(true));
    let service = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(grpc_answer(None, Some("14")))
    }));
    read(send(service, grpc_request("/shop.Orders/Place")).await).await;
    let unknown = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(grpc_answer(Some("0"), None))
    }));
    let (listed, _recording) = recorded(
        MetricsLayer::server()
            .spans(true)
            .grpc_methods(["shop.Orders/Place"]),
    );
    read(send(listed.layer(unknown), grpc_request("/shop.Orders/Peek")).await).await;
    let all = spans.all();
    assert_eq!(
        fields(&all[0]),
        pairs(&[
            ("otel.name", "shop.Orders/Place"),
            ("otel.kind", "server"),
            ("otel.status_code", "ERROR"),
            ("rpc.system.name", "grpc"),
            ("rpc.method", "shop.Orders/Place"),
            ("rpc.status_code", "UNAVAILABLE"),
            ("error.type", "UNAVAILABLE"),
        ])
    );
    assert_eq!(
        fields(&all[1]),
        pairs(&[
            ("otel.name", "grpc"),
            ("otel.kind", "server"),
            ("rpc.system.name", "grpc"),
            ("rpc.method", "_OTHER"),
            ("rpc.method_original", "shop.Orders/Peek"),
            ("rpc.status_code", "OK"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn without_spans_asked_for_none_is_opened() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let (layer, recording) = recorded(MetricsLayer::server());
    read(
        send(
            layer.layer(answering(200)),
            Request::get("/").body(Body::default()).unwrap(),
        )
        .await,
    )
    .await;
    assert!(spans.all().is_empty());
    assert_eq!(
        durations(&recording, "http.server.request.duration").len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_error_is_recorded_as_its_error_not_as_cancelled() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let failing = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Err::<Response<Body>, std::io::Error>(std::io::Error::other("connection reset"))
    }));
    let result = failing
        .oneshot(Request::get("/").body(Body::default()).unwrap())
        .await;
    assert!(result.is_err());
    assert_eq!(
        durations(&recording, "http.server.request.duration")[0].0,
        labels(&[
            "http.request.method=GET",
            "url.scheme=http",
            "network.protocol.version=1.1",
            "error.type=_OTHER",
        ])
    );
    assert_eq!(active(&recording, "http.server.active_requests")[0].1, 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_client_counts_every_status_but_ok() {
    let (layer, recording) = recorded(MetricsLayer::client().server_address("orders", 50051));
    for code in ["0", "5"] {
        let service = layer.layer(tower::service_fn(move |_req: Request<Body>| async move {
            Ok::<_, Infallible>(grpc_answer(None, Some(code)))
        }));
        read(send(service, grpc_request("/shop.Orders/Get")).await).await;
    }
    let recorded: Vec<_> = durations(&recording, "rpc.client.call.duration")
        .into_iter()
        .map(|(labels, _)| labels)
        .collect();
    let call = |code: &str| {
        labels(&[
            "rpc.system.name=grpc",
            "rpc.method=shop.Orders/Get",
            &format!("rpc.status_code={code}"),
            "server.address=orders",
            "server.port=50051",
        ])
    };
    let mut not_found = call("NOT_FOUND");
    not_found.push("error.type=NOT_FOUND".to_owned());
    assert_eq!(recorded, [not_found, call("OK")]);
}

#[tokio::test(start_paused = true)]
async fn the_body_passes_its_size_and_end_through() {
    let (layer, _recording) = recorded(MetricsLayer::server());
    let response = send(
        layer.layer(answering(200)),
        Request::get("/").body(Body::default()).unwrap(),
    )
    .await;
    let mut body = response.into_body();
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(6));
    assert!(!http_body::Body::is_end_stream(&body));
    body.frame().await.unwrap().unwrap();
    assert!(http_body::Body::is_end_stream(&body));
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services() {
    support::readiness_follows_the_inner_service(MetricsLayer::default());
}

#[tokio::test(start_paused = true)]
async fn repeated_requests_reuse_their_series_and_stay_under_the_cap() {
    let (layer, recording) = recorded(MetricsLayer::server().max_label_sets(300).route(route_fn(
        |request| Some(request.uri.path().to_owned().into()),
    )));
    // 200 routes, three requests each: 200 series, no overflow.
    for _round in 0..3 {
        for route in 0..200 {
            let request = Request::get(format!("/r{route}"))
                .body(Body::default())
                .unwrap();
            read(send(layer.layer(answering(200)), request).await).await;
        }
    }
    let recorded = durations(&recording, "http.server.request.duration");
    assert_eq!(recorded.len(), 200);
    assert!(recorded.iter().all(|(_, samples)| samples.len() == 3));
    assert!(
        series(&recording)
            .iter()
            .all(|s| s.name != "armor.metrics.label_overflow")
    );
}

#[tokio::test(start_paused = true)]
async fn without_body_sizes_no_size_is_recorded() {
    let (layer, recording) = recorded(MetricsLayer::server());
    let upload = Request::post("/upload")
        .header("content-length", "11")
        .body(Full::new(Bytes::from_static(b"hello world")))
        .unwrap();
    read(send(layer.layer(answering(200)), upload).await).await;
    let names: Vec<_> = series(&recording).into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().all(|name| !name.contains("body.size")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|name| name == "http.server.request.duration")
    );
}

#[test]
fn malformed_grpc_methods_are_refused_at_build() {
    for bad in ["pkg.Svc/", "/Call", "pkg.Svc/a/b", "/pkg.Svc", "/Call/"] {
        assert!(
            MetricsLayer::server().grpc_methods([bad]).build().is_err(),
            "{bad}"
        );
    }
    assert!(
        MetricsLayer::server()
            .grpc_methods(["/pkg.Svc/Call", "pkg.Svc/Other"])
            .build()
            .is_ok()
    );
    assert!(MetricsLayer::server().max_label_sets(0).build().is_err());
}

#[test]
fn debug_output_names_the_type_and_instance() {
    let builder = MetricsLayer::client().name("upstream");
    assert!(format!("{builder:?}").contains("upstream"));
    let layer = builder.build().unwrap();
    assert!(format!("{layer:?}").starts_with("MetricsLayer"));
    #[derive(Debug)]
    struct Handler;
    let service = layer.layer(Handler);
    assert!(format!("{service:?}").starts_with("Metrics"));
    let route = route_fn(|_| None);
    assert!(format!("{route:?}").starts_with("RouteFn"));
}

#[tokio::test(start_paused = true)]
async fn the_response_body_has_a_debug_form() {
    let response = send(
        MetricsLayer::default().layer(answering(200)),
        Request::get("/").body(Body::default()).unwrap(),
    )
    .await;
    assert!(format!("{:?}", response.body()).starts_with("MetricsBody"));
}

#[tokio::test(start_paused = true)]
async fn extra_methods_are_named_and_others_stay_other() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let (layer, recording) = recorded(
        MetricsLayer::server()
            .extra_methods(["PURGE", "PROPFIND", "GET"])
            .spans(true),
    );
    for method in ["PURGE", "purge", "BREW"] {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/cache")
            .body(Body::default())
            .unwrap();
        read(send(layer.layer(answering(200)), request).await).await;
    }
    let methods: Vec<_> = durations(&recording, "http.server.request.duration")
        .into_iter()
        .map(|(labels, samples)| (labels[0].clone(), samples.len()))
        .collect();
    assert_eq!(
        methods,
        [
            ("http.request.method=PURGE".to_owned(), 1),
            ("http.request.method=_OTHER".to_owned(), 2),
        ]
    );
    let span = |index: usize| {
        let all = spans.all();
        let fields = &all[index].fields;
        (
            fields["http.request.method"].clone(),
            fields.get("http.request.method_original").cloned(),
        )
    };
    assert_eq!(span(0), ("PURGE".to_owned(), None));
    assert_eq!(span(1), ("_OTHER".to_owned(), Some("purge".to_owned())));
    assert!(
        MetricsLayer::server()
            .extra_methods(["NOT A METHOD"])
            .build()
            .is_err()
    );
    let many: Vec<String> = (0..65).map(|n| format!("M{n}")).collect();
    assert!(
        MetricsLayer::server()
            .extra_methods(many.clone())
            .build()
            .is_err()
    );
    // 64 is the most; standard methods and repeats do not count.
    let mut most = many[..64].to_vec();
    most.extend(["GET".to_owned(), "M0".to_owned()]);
    assert!(MetricsLayer::server().extra_methods(most).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn active_requests_stay_under_the_cap_too() {
    let (layer, recording) = recorded(MetricsLayer::server().max_label_sets(2));
    for method in [Method::GET, Method::POST, Method::PUT, Method::GET] {
        let request = Request::builder()
            .method(method)
            .uri("/")
            .body(Body::default())
            .unwrap();
        read(send(layer.layer(answering(200)), request).await).await;
    }
    let gauges: Vec<_> = active(&recording, "http.server.active_requests")
        .into_iter()
        .map(|(labels, value)| (labels[0].clone(), value))
        .collect();
    assert_eq!(
        gauges,
        [
            ("http.request.method=GET".to_owned(), 0.0),
            ("http.request.method=POST".to_owned(), 0.0),
        ]
    );
}
