//! Refusals render correctly for HTTP and gRPC callers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use tower_armor::grpc::Protocol;
use tower_armor::reject::{Reason, Rejection, Renderer};

async fn render(
    rejection: Rejection,
    protocol: Protocol,
) -> (StatusCode, HeaderMap, String, Rejection) {
    let response = Renderer::default().render::<Full<Bytes>>(rejection, protocol);
    let status = response.status();
    let headers = response.headers().clone();
    let carried = response.extensions().get::<Rejection>().cloned().unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8(body.to_vec()).unwrap(),
        carried,
    )
}

#[tokio::test]
async fn http_refusals_get_status_retry_after_and_problem_json() {
    let cases = [
        (Reason::RateLimited, 429, "Too Many Requests"),
        (Reason::CircuitOpen, 503, "Service Unavailable"),
        (Reason::Overloaded, 503, "Service Unavailable"),
        (Reason::TimedOut, 504, "Gateway Timeout"),
        (Reason::PayloadTooLarge, 413, "Payload Too Large"),
        (Reason::RequestBodyTimeout, 408, "Request Timeout"),
        (Reason::Unidentified, 400, "Bad Request"),
    ];
    for (reason, status, title) in cases {
        let rejection =
            Rejection::new("test", reason).with_retry_after(Duration::from_millis(1500));
        let (got, headers, body, carried) = render(rejection.clone(), Protocol::Http).await;
        assert_eq!(got.as_u16(), status, "{reason}");
        // 1.5 s rounds up: the client must not come back early.
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(!headers.contains_key("grpc-status"));
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "about:blank");
        assert_eq!(problem["status"], status);
        assert_eq!(problem["title"], title);
        assert_eq!(problem["layer"], "test");
        assert_eq!(problem["reason"], reason.as_str());
        assert_eq!(carried, rejection);
    }
}

#[tokio::test]
async fn no_retry_after_when_the_wait_is_unknown() {
    let (_, headers, ..) =
        render(Rejection::new("timeout", Reason::TimedOut), Protocol::Http).await;
    assert!(!headers.contains_key("retry-after"));
    let (_, headers, ..) =
        render(Rejection::new("timeout", Reason::TimedOut), Protocol::Grpc).await;
    assert!(!headers.contains_key("grpc-retry-pushback-ms"));
}

#[tokio::test]
async fn details_are_escaped_into_valid_json() {
    let rejection = Rejection::new("test", Reason::Overloaded)
        .with_detail("quote \" backslash \\ newline \n tab \t bell \u{7} é");
    let (_, _, body, _) = render(rejection.clone(), Protocol::Http).await;
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["detail"], rejection.detail());
}

#[tokio::test]
async fn grpc_refusals_are_trailers_only() {
    let cases = [
        (Reason::RateLimited, "8"),
        (Reason::CircuitOpen, "14"),
        (Reason::Overloaded, "14"),
        (Reason::TimedOut, "4"),
        (Reason::PayloadTooLarge, "8"),
    ];
    for (reason, code) in cases {
        let rejection = Rejection::new("test", reason)
            .with_retry_after(Duration::from_micros(2500))
            .with_status(StatusCode::IM_A_TEAPOT);
        let (status, headers, body, _) = render(rejection, Protocol::Grpc).await;
        // gRPC always rides on HTTP 200; the HTTP status override does not apply.
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-status"], code);
        assert!(headers.contains_key("grpc-message"));
        assert_eq!(headers["grpc-retry-pushback-ms"], "3");
        assert_eq!(body, "");
    }
}

#[tokio::test]
async fn the_grpc_code_can_be_overridden() {
    let rejection = Rejection::new("rate_limit", Reason::Unidentified)
        .with_status(StatusCode::UNAUTHORIZED)
        .with_grpc_code(tower_armor::grpc::GrpcCode::Unauthenticated);
    let (status, ..) = render(rejection.clone(), Protocol::Http).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, headers, ..) = render(rejection, Protocol::Grpc).await;
    assert_eq!(headers["grpc-status"], "16");
}

#[tokio::test]
async fn grpc_web_callers_get_their_own_content_type_and_encoded_messages() {
    let rejection = Rejection::new("test", Reason::RateLimited).with_detail("100% used, ünïcode");
    let (_, headers, ..) = render(rejection, Protocol::GrpcWeb).await;
    assert_eq!(headers["content-type"], "application/grpc-web");
    assert_eq!(headers["grpc-message"], "100%25 used, %C3%BCn%C3%AFcode");
}

#[tokio::test]
async fn a_custom_renderer_still_carries_the_rejection() {
    let renderer = Renderer::custom(|rejection, protocol| {
        http::Response::builder()
            .status(if protocol.is_grpc() { 200 } else { 418 })
            .body(Bytes::from(rejection.detail().to_owned()))
            .unwrap()
    });
    let response =
        renderer.render::<Full<Bytes>>(Rejection::new("test", Reason::Overloaded), Protocol::Http);
    assert_eq!(response.status(), 418);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().reason(),
        Reason::Overloaded
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "service overloaded");
}
