//! The timeout layer as a caller sees it, under paused Tokio time.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::ChannelBody;
use tokio::time::{Instant, advance, sleep};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_armor::Deadline;
use tower_armor::reject::{Reason, Rejection, Renderer};
mod support;

use tower_armor::timeout::{
    IdleTimeoutBody, RequestBodyTimeoutLayer, ResponseBodyDeadlineLayer, TimeoutLayer,
};

fn layer(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::builder(timeout).build().unwrap()
}

/// A handler that answers after `delay`.
fn answers_after(
    delay: Duration,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| async move {
        sleep(delay).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
    })
}

fn grpc_request(timeout_header: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder =
        Request::post("/grpc.health.v1.Health/Check").header("content-type", "application/grpc");
    if let Some(value) = timeout_header {
        builder = builder.header("grpc-timeout", value);
    }
    builder.body(Full::default()).unwrap()
}

/// A handler that waits `delay`, then answers with the milliseconds left
/// before the request's deadline.
fn reports_time_left(
    delay: Duration,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<Full<Bytes>>| async move {
        sleep(delay).await;
        let left = Deadline::from_request(&req).unwrap().remaining();
        Ok::<_, Infallible>(Response::new(format!("{}", left.as_millis())))
    })
}

async fn body_text<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_response_just_under_the_deadline_passes_through() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(1)))
        .service(answers_after(Duration::from_millis(999)));
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<Rejection>().is_none());
    assert_eq!(body_text(response).await, "done");
}

#[tokio::test(start_paused = true)]
async fn a_response_just_over_the_deadline_gets_504_problem_json() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(1)))
        .service(answers_after(Duration::from_millis(1001)));
    let started = Instant::now();
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let rejection = response.extensions().get::<Rejection>().unwrap().clone();
    assert_eq!(rejection.layer(), "timeout");
    assert_eq!(rejection.reason(), Reason::TimedOut);
    let problem: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(problem["status"], 504);
    assert_eq!(problem["title"], "Gateway Timeout");
    assert_eq!(problem["reason"], "timed_out");
}

#[tokio::test(start_paused = true)]
async fn a_grpc_call_times_out_with_a_trailers_only_deadline_exceeded() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(1)))
        .service(answers_after(Duration::from_secs(5)));
    let response = service.oneshot(grpc_request(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "4");
    assert!(response.headers().contains_key("grpc-message"));
    assert_eq!(body_text(response).await, "");
}

#[tokio::test(start_paused = true)]
async fn the_smaller_of_the_configured_and_the_grpc_timeout_wins() {
    // (configured, grpc-timeout header, when the caller gets DEADLINE_EXCEEDED)
    let cases = [
        (Duration::from_secs(10), "200m", Duration::from_millis(200)),
        (Duration::from_secs(1), "60S", Duration::from_secs(1)),
        (Duration::from_secs(1), "1000000u", Duration::from_secs(1)),
    ];
    for (configured, header, expected) in cases {
        let service = ServiceBuilder::new()
            .layer(layer(configured))
            .service(answers_after(Duration::from_secs(30)));
        let started = Instant::now();
        let response = service.oneshot(grpc_request(Some(header))).await.unwrap();
        assert_eq!(started.elapsed(), expected, "{configured:?} vs {header}");
        assert_eq!(response.headers()["grpc-status"], "4");
    }
}

#[tokio::test(start_paused = true)]
async fn a_malformed_grpc_timeout_is_ignored() {
    for bad in [
        &b""[..],
        b"1",
        b"abcS",
        b"123456789m",
        b"-5S",
        b"5s",
        b"1.5S",
        b"5\xffS",
    ] {
        let service = ServiceBuilder::new()
            .layer(layer(Duration::from_secs(2)))
            .service(answers_after(Duration::from_secs(1)));
        let request = Request::post("/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("grpc-timeout", http::HeaderValue::from_bytes(bad).unwrap())
            .body(Full::default())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert!(
            !response.headers().contains_key("grpc-status"),
            "{bad:?} shortened the deadline"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_well_formed_grpc_timeout_in_the_same_setup_does_shorten() {
    // The control for the malformed cases above: same stack, valid header.
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(2)))
        .service(answers_after(Duration::from_secs(1)));
    let response = service.oneshot(grpc_request(Some("500m"))).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4");
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_ignored_when_honouring_is_off() {
    let service = ServiceBuilder::new()
        .layer(
            TimeoutLayer::builder(Duration::from_secs(2))
                .honor_grpc_timeout(false)
                .build()
                .unwrap(),
        )
        .service(answers_after(Duration::from_secs(1)));
    let response = service.oneshot(grpc_request(Some("10m"))).await.unwrap();
    assert!(!response.headers().contains_key("grpc-status"));
}

#[tokio::test(start_paused = true)]
async fn handlers_read_the_time_left_from_the_deadline_extension() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(3)))
        .service(reports_time_left(Duration::from_millis(500)));
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "2500");
}

#[tokio::test(start_paused = true)]
async fn nested_timeouts_expose_the_earliest_deadline() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(1)))
        .layer(layer(Duration::from_secs(30)))
        .service(reports_time_left(Duration::ZERO));
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "1000");
}

#[tokio::test(start_paused = true)]
async fn a_client_stack_propagates_the_time_left_as_grpc_timeout() {
    let client = ServiceBuilder::new()
        .layer(
            TimeoutLayer::builder(Duration::from_millis(750))
                .propagate_grpc_timeout(true)
                .build()
                .unwrap(),
        )
        .service_fn(|req: Request<Full<Bytes>>| async move {
            let sent = req.headers().get("grpc-timeout").cloned();
            Ok::<_, Infallible>(Response::new(format!("{sent:?}")))
        });
    let response = client.clone().oneshot(grpc_request(None)).await.unwrap();
    assert_eq!(body_text(response).await, "Some(\"750000u\")");
    // An incoming shorter deadline is what goes out.
    let response = client
        .clone()
        .oneshot(grpc_request(Some("20m")))
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "Some(\"20000000n\")");
    // Plain HTTP requests get no gRPC header.
    let response = client.oneshot(Request::new(Full::default())).await.unwrap();
    assert_eq!(body_text(response).await, "None");
}

#[derive(Debug, PartialEq)]
struct UpstreamDown;

#[tokio::test(start_paused = true)]
async fn the_inner_error_type_and_value_pass_through() {
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(1)))
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Err::<Response<Full<Bytes>>, _>(UpstreamDown)
        });
    let result: Result<_, UpstreamDown> = service.oneshot(Request::new(Full::default())).await;
    assert_eq!(result.unwrap_err(), UpstreamDown);
}

#[tokio::test(start_paused = true)]
async fn status_and_renderer_are_configurable() {
    let service = ServiceBuilder::new()
        .layer(
            TimeoutLayer::builder(Duration::from_secs(1))
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .renderer(Renderer::custom(|rejection, _| {
                    Response::builder()
                        .status(rejection.status())
                        .header("x-why", rejection.reason().as_str())
                        .body(Bytes::from_static(b"custom"))
                        .unwrap()
                }))
                .build()
                .unwrap(),
        )
        .service(answers_after(Duration::from_secs(2)));
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-why"], "timed_out");
    assert!(response.extensions().get::<Rejection>().is_some());
    assert_eq!(body_text(response).await, "custom");
}

#[test]
fn bad_configuration_fails_at_build() {
    let zero = TimeoutLayer::builder(Duration::ZERO).build().unwrap_err();
    assert_eq!(zero.layer(), "timeout");
    assert!(zero.to_string().contains("greater than zero"));
    let ok_status = TimeoutLayer::builder(Duration::from_secs(1))
        .status(StatusCode::OK)
        .build()
        .unwrap_err();
    assert!(ok_status.to_string().contains("200"));
    assert!(
        ResponseBodyDeadlineLayer::builder(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(
        RequestBodyTimeoutLayer::builder(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn clones_and_layer_calls_share_one_configuration() {
    let layer = TimeoutLayer::builder(Duration::from_millis(100))
        .build()
        .unwrap();
    let a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(answers_after(Duration::from_secs(1)));
    let b = a.clone();
    for service in [a, b] {
        let response = service
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}

#[test]
fn expiries_are_counted_by_name_and_stage() {
    let counters = support::counters_recorded(|| async {
        let service = ServiceBuilder::new()
            .layer(
                TimeoutLayer::builder(Duration::from_secs(1))
                    .name("checkout")
                    .build()
                    .unwrap(),
            )
            .service(answers_after(Duration::from_secs(2)));
        for _ in 0..3 {
            service
                .clone()
                .oneshot(Request::new(Full::default()))
                .await
                .unwrap();
        }
    });
    assert_eq!(
        counters,
        vec![(
            "armor.timeout.expired".to_string(),
            vec!["name=checkout".to_string(), "stage=response".to_string()],
            3
        )]
    );
}

/// The chunks a stalling client or stream sends: few, each awaited.
fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    support::channel_body(4)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stalls_while_sending_its_body_gets_408() {
    let service = ServiceBuilder::new()
        .layer(
            RequestBodyTimeoutLayer::builder(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .service_fn(|req: Request<IdleTimeoutBody<ChannelBody>>| async move {
            // The handler reads the whole body, and reports a failed read as 400.
            match req.into_body().collect().await {
                Ok(body) => Ok::<_, Infallible>(Response::new(Full::new(body.to_bytes()))),
                Err(_) => Ok(Response::builder()
                    .status(400)
                    .body(Full::default())
                    .unwrap()),
            }
        });

    // A client that sends promptly is served.
    let (tx, body) = channel_body();
    let call = tokio::spawn(service.clone().oneshot(Request::new(body)));
    for chunk in ["a", "b", "c"] {
        advance(Duration::from_secs(4)).await;
        tx.send(Bytes::from(chunk)).await.unwrap();
    }
    drop(tx);
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "abc");

    // A client that goes quiet mid-body is answered 408, not the handler's 400.
    let (tx, body) = channel_body();
    let call = tokio::spawn(service.oneshot(Request::new(body)));
    tx.send(Bytes::from("a")).await.unwrap();
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().reason(),
        Reason::RequestBodyTimeout
    );
    drop(tx);
}

/// A response body that sends one chunk, then stalls for a minute.
fn stalling_stream(
    content_type: &'static str,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<ChannelBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| async move {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            tx.send(Bytes::from("first")).await.unwrap();
            sleep(Duration::from_secs(60)).await;
            let _ = tx.send(Bytes::from("late")).await;
        });
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", content_type)
                .body(body)
                .unwrap(),
        )
    })
}

#[tokio::test(start_paused = true)]
async fn a_response_body_past_its_deadline_fails_instead_of_truncating() {
    let service = ServiceBuilder::new()
        .layer(
            ResponseBodyDeadlineLayer::builder(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .service(stalling_stream("text/plain"));
    let response = service
        .oneshot(Request::new(Full::default()))
        .await
        .unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    let started = Instant::now();
    let error = body.frame().await.unwrap().unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(error.to_string(), "response body deadline elapsed");
}

#[tokio::test(start_paused = true)]
async fn a_grpc_stream_past_its_deadline_ends_with_deadline_exceeded() {
    let service = ServiceBuilder::new()
        .layer(
            ResponseBodyDeadlineLayer::builder(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .service(stalling_stream("application/grpc"));
    let response = service.oneshot(grpc_request(None)).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "4");
    assert_eq!(collected.to_bytes(), "first");
}

/// An inner service that fails after `delay`, as a client whose transport
/// gives up would.
fn fails_after(
    delay: Duration,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = &'static str> + Clone
{
    service_fn(move |_req: Request<Full<Bytes>>| async move {
        sleep(delay).await;
        Err::<Response<Full<Bytes>>, _>("transport gave up")
    })
}

#[tokio::test(start_paused = true)]
async fn an_error_at_the_deadline_is_the_deadline_and_one_before_it_is_passed_on() {
    // At the deadline itself (the transport enforced the grpc-timeout we
    // sent): the caller hears of the deadline.
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(2)))
        .service(fails_after(Duration::from_secs(2)));
    let response = service.oneshot(grpc_request(None)).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().reason(),
        Reason::TimedOut
    );
    // Before the deadline: the inner service's own error, untouched.
    let service = ServiceBuilder::new()
        .layer(layer(Duration::from_secs(2)))
        .service(fails_after(Duration::from_secs(1)));
    let error = service.oneshot(grpc_request(None)).await.unwrap_err();
    assert_eq!(error, "transport gave up");
}
