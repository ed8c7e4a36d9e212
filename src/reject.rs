//! Refusals as responses, in the caller's protocol.
//!
//! Every layer that refuses a request (timed out, rate limited, circuit open,
//! ...) builds a [`Rejection`] and hands it to a [`Renderer`]. The default
//! renderer answers
//!
//! * a **gRPC** call with a trailers-only response: HTTP 200,
//!   `content-type: application/grpc`, `grpc-status`, `grpc-message`, and
//!   `grpc-retry-pushback-ms` when the wait is known;
//! * any **other** request with the reason's status (429, 503, 504, 413, 408),
//!   `Retry-After` when the wait is known, and an RFC 9457
//!   `application/problem+json` body.
//!
//! Either way the response carries the [`Rejection`] in its extensions, so
//! client code can tell a local refusal from an upstream answer:
//!
//! ```
//! use tower_armor::reject::{Reason, Rejection, Renderer};
//! use tower_armor::grpc::Protocol;
//!
//! let rejection = Rejection::new("timeout", Reason::TimedOut);
//! let response = Renderer::default().render::<String>(rejection, Protocol::Http);
//! assert_eq!(response.status(), 504);
//! let why = response.extensions().get::<Rejection>().unwrap();
//! assert_eq!(why.reason(), Reason::TimedOut);
//! ```
//!
//! Because the refusal is a response, a layer keeps its inner service's error
//! type: an axum `Router` (error `Infallible`) takes it without
//! `HandleErrorLayer`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ArmorBody;
use crate::grpc::{self, GrpcCode, Protocol};

/// Why a layer refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A rate limit was hit: 429 / `RESOURCE_EXHAUSTED`.
    RateLimited,
    /// A circuit breaker is open: 503 / `UNAVAILABLE`.
    CircuitOpen,
    /// The response did not arrive before the deadline: 504 / `DEADLINE_EXCEEDED`.
    TimedOut,
    /// The service is shedding load: 503 / `UNAVAILABLE`.
    Overloaded,
    /// The request body is larger than allowed: 413 / `RESOURCE_EXHAUSTED`.
    PayloadTooLarge,
    /// The client sent its request body too slowly: 408 / `DEADLINE_EXCEEDED`.
    RequestBodyTimeout,
    /// The request carries nothing to identify its sender (no API key, no
    /// address): 400 / `INVALID_ARGUMENT`, or whatever status the layer sets.
    Unidentified,
    /// None of the response encodings the client accepts is available:
    /// 406 / `INVALID_ARGUMENT`.
    NotAcceptable,
    /// The request body uses a content coding the service cannot decode:
    /// 415 / `UNIMPLEMENTED`.
    UnsupportedEncoding,
    /// The request body could not be decoded (corrupt or truncated):
    /// 400 / `INVALID_ARGUMENT`.
    MalformedBody,
    /// The request allows only a cached answer (`only-if-cached`) and the
    /// cache has none it may use: 504 / `UNAVAILABLE`.
    NotCached,
    /// A limit could not be decided because its shared store (Redis) is
    /// unreachable, and the store is set to refuse then: 503 / `UNAVAILABLE`.
    StoreUnavailable,
}

impl Reason {
    /// The HTTP status a plain HTTP caller gets by default.
    pub fn http_status(self) -> StatusCode {
        match self {
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Reason::CircuitOpen | Reason::Overloaded | Reason::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Reason::TimedOut | Reason::NotCached => StatusCode::GATEWAY_TIMEOUT,
            Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::Unidentified | Reason::MalformedBody => StatusCode::BAD_REQUEST,
            Reason::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Reason::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// The gRPC status a gRPC caller gets.
    pub fn grpc_code(self) -> GrpcCode {
        match self {
            Reason::RateLimited | Reason::PayloadTooLarge => GrpcCode::ResourceExhausted,
            Reason::CircuitOpen
            | Reason::Overloaded
            | Reason::NotCached
            | Reason::StoreUnavailable => GrpcCode::Unavailable,
            Reason::TimedOut | Reason::RequestBodyTimeout => GrpcCode::DeadlineExceeded,
            Reason::Unidentified | Reason::NotAcceptable | Reason::MalformedBody => {
                GrpcCode::InvalidArgument
            }
            Reason::UnsupportedEncoding => GrpcCode::Unimplemented,
        }
    }

    /// A stable snake_case name, used in problem bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate_limited",
            Reason::CircuitOpen => "circuit_open",
            Reason::TimedOut => "timed_out",
            Reason::Overloaded => "overloaded",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::RequestBodyTimeout => "request_body_timeout",
            Reason::Unidentified => "unidentified",
            Reason::NotAcceptable => "not_acceptable",
            Reason::UnsupportedEncoding => "unsupported_encoding",
            Reason::MalformedBody => "malformed_body",
            Reason::NotCached => "not_cached",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }

    fn default_detail(self) -> &'static str {
        match self {
            Reason::RateLimited => "rate limit exceeded",
            Reason::CircuitOpen => "circuit breaker is open",
            Reason::TimedOut => "request timed out",
            Reason::Overloaded => "service overloaded",
            Reason::PayloadTooLarge => "request body too large",
            Reason::RequestBodyTimeout => "request body was not received in time",
            Reason::Unidentified => "the request does not identify its sender",
            Reason::NotAcceptable => "no acceptable content coding is available",
            Reason::UnsupportedEncoding => "the request body's content coding is not supported",
            Reason::MalformedBody => "the request body could not be decoded",
            Reason::NotCached => "the request allows only a cached response and none is usable",
            Reason::StoreUnavailable => "the limit's shared store is unavailable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal made by one of this crate's layers.
///
/// It travels in the extensions of the response it produced, so a client or
/// an outer layer can ask `response.extensions().get::<Rejection>()` whether
/// the answer came from a local layer or from upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    layer: &'static str,
    reason: Reason,
    retry_after: Option<Duration>,
    status: Option<StatusCode>,
    grpc_code: Option<GrpcCode>,
    detail: Option<Cow<'static, str>>,
}

impl Rejection {
    /// A refusal by `layer` (e.g. `"timeout"`) for `reason`.
    pub fn new(layer: &'static str, reason: Reason) -> Self {
        Rejection {
            layer,
            reason,
            retry_after: None,
            status: None,
            grpc_code: None,
            detail: None,
        }
    }

    /// Tells the caller how long to wait before trying again.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Replaces the HTTP status the reason would give (gRPC callers are unaffected).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Replaces the gRPC status the reason would give (HTTP callers are unaffected).
    pub fn with_grpc_code(mut self, code: GrpcCode) -> Self {
        self.grpc_code = Some(code);
        self
    }

    /// Replaces the human-readable explanation (`detail` / `grpc-message`).
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The layer that refused, e.g. `"timeout"`.
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// Why it refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// How long the caller should wait, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The HTTP status a plain HTTP caller gets.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.reason.http_status())
    }

    /// The gRPC status a gRPC caller gets.
    pub fn grpc_code(&self) -> GrpcCode {
        self.grpc_code.unwrap_or_else(|| self.reason.grpc_code())
    }

    /// The human-readable explanation.
    pub fn detail(&self) -> &str {
        self.detail
            .as_deref()
            .unwrap_or_else(|| self.reason.default_detail())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.layer, self.detail())
    }
}

impl std::error::Error for Rejection {}

/// Renders a [`Rejection`] with the default rules described in the [module docs](self).
pub fn render_default(rejection: &Rejection, protocol: Protocol) -> Response<Bytes> {
    let mut response = if protocol.is_grpc() {
        render_grpc(rejection, protocol)
    } else {
        render_problem(rejection)
    };
    response.extensions_mut().insert(rejection.clone());
    response
}

fn render_grpc(rejection: &Rejection, protocol: Protocol) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol.grpc_content_type()),
    );
    headers.insert(grpc::GRPC_STATUS, rejection.grpc_code().header_value());
    if let Ok(message) = HeaderValue::from_str(&grpc::encode_grpc_message(rejection.detail())) {
        headers.insert(grpc::GRPC_MESSAGE, message);
    }
    if let Some(wait) = rejection.retry_after {
        let millis = wait.as_nanos().div_ceil(1_000_000);
        headers.insert(
            grpc::GRPC_RETRY_PUSHBACK_MS,
            HeaderValue::from(clamp_u64(millis)),
        );
    }
    response
}

fn render_problem(rejection: &Rejection) -> Response<Bytes> {
    let status = rejection.status();
    let mut body = String::with_capacity(160);
    body.push_str("{\"type\":\"about:blank\",\"title\":");
    push_json_string(&mut body, status.canonical_reason().unwrap_or("Error"));
    body.push_str(",\"status\":");
    body.push_str(&status.as_u16().to_string());
    body.push_str(",\"detail\":");
    push_json_string(&mut body, rejection.detail());
    body.push_str(",\"layer\":");
    push_json_string(&mut body, rejection.layer);
    body.push_str(",\"reason\":\"");
    body.push_str(rejection.reason.as_str());
    body.push_str("\"}");

    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(wait) = rejection.retry_after {
        // Retry-After is whole seconds; round up so the client never comes back early.
        let seconds = wait.as_nanos().div_ceil(1_000_000_000);
        headers.insert(RETRY_AFTER, HeaderValue::from(clamp_u64(seconds)));
    }
    response
}

fn clamp_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// 405 with `Allow: GET, HEAD`: what the routes this crate answers itself
/// (`/metrics`, the health probes) say to any other method.
#[cfg(any(feature = "health", feature = "prometheus"))]
pub(crate) fn only_get_and_head() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

pub(crate) fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

type RenderFn = dyn Fn(&Rejection, Protocol) -> Response<Bytes> + Send + Sync;

/// Turns a [`Rejection`] into a response. The default follows the
/// [module docs](self); [`Renderer::custom`] plugs in your own.
///
/// Whatever the renderer returns, the response still carries the
/// [`Rejection`] in its extensions.
#[derive(Clone, Default)]
pub struct Renderer {
    custom: Option<Arc<RenderFn>>,
}

impl Renderer {
    /// Renders refusals with `render`, e.g. to match your API's error format.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_armor::reject::Renderer;
    ///
    /// let renderer = Renderer::custom(|rejection, _protocol| {
    ///     http::Response::builder()
    ///         .status(rejection.status())
    ///         .body(Bytes::from(format!("{{\"error\":\"{}\"}}", rejection.reason())))
    ///         .unwrap()
    /// });
    /// ```
    pub fn custom<F>(render: F) -> Self
    where
        F: Fn(&Rejection, Protocol) -> Response<Bytes> + Send + Sync + 'static,
    {
        Renderer {
            custom: Some(Arc::new(render)),
        }
    }

    /// Renders `rejection` for a caller speaking `protocol`.
    pub fn render<B>(&self, rejection: Rejection, protocol: Protocol) -> Response<ArmorBody<B>> {
        self.render_bytes(rejection, protocol).map(ArmorBody::full)
    }

    /// Renders `rejection` with a plain bytes body.
    pub fn render_bytes(&self, rejection: Rejection, protocol: Protocol) -> Response<Bytes> {
        match &self.custom {
            None => render_default(&rejection, protocol),
            Some(render) => {
                let mut response = render(&rejection, protocol);
                response.extensions_mut().insert(rejection);
                response
            }
        }
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.custom.is_some() {
            "Renderer::Custom"
        } else {
            "Renderer::Default"
        })
    }
}
