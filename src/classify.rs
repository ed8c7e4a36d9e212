//! One failure classifier for the breaker, retry and metrics layers.
//!
//! A call's [`Outcome`] is decided at the response head when it can be (an
//! HTTP status, a trailers-only gRPC response) and otherwise at the end of the
//! body, where gRPC puts `grpc-status` in the trailers. [`Classify`] models
//! exactly that split, and the layers drive it with [`GuardBody`](crate::body::GuardBody).
//!
//! * [`HttpClassifier`]: 5xx responses and service errors fail.
//! * [`GrpcClassifier`]: `grpc-status` from the headers or the trailers; the
//!   server-error codes fail (configurable).
//! * [`DefaultClassifier`]: picks one of the two by the response's `content-type`.
//! * [`Classify::override_with`]: a closure that decides first, falling back
//!   to the classifier it wraps.
//!
//! Responses made by this crate's own layers carry a
//! [`Rejection`]; every classifier reports those as
//! [`Outcome::TimedOut`] or [`Outcome::Refused`], so a breaker never counts a
//! limiter's refusal as an upstream failure.
//!
//! ```
//! use http::{Response, StatusCode};
//! use tower_armor::classify::{Classification, Classify, DefaultClassifier, FailureKind, Outcome};
//!
//! let classifier = DefaultClassifier::new()
//!     // Treat 429 from upstream as a failure too.
//!     .override_with(|status, _headers| {
//!         (status == StatusCode::TOO_MANY_REQUESTS)
//!             .then_some(Outcome::Failure(FailureKind::Status(status)))
//!     });
//! let response = Response::builder().status(429).body(()).unwrap();
//! assert!(matches!(
//!     classifier.classify_response(&response),
//!     Classification::Done(Outcome::Failure(_))
//! ));
//! ```

use http::{HeaderMap, Response, StatusCode};

use crate::body::BodyEnd;
use crate::grpc::{GrpcCode, Protocol};
use crate::reject::{Reason, Rejection};

/// How a call ended, as far as resilience and metrics are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure(FailureKind),
    /// A timeout layer gave up waiting: a failure, and a slow call.
    TimedOut,
    /// The caller went away (the future or body was dropped early).
    Cancelled,
    /// One of this crate's layers refused the call locally.
    Refused(Reason),
}

impl Outcome {
    /// True for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// True for failures and timeouts: what breakers and retries react to.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure(_) | Outcome::TimedOut)
    }
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// A failing HTTP status.
    Status(StatusCode),
    /// A failing gRPC status.
    Grpc(GrpcCode),
    /// The service returned an error (a connection error, for a client).
    ServiceError,
    /// The response body failed mid-stream.
    BodyError,
}

/// A verdict at the response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// The outcome is known now.
    Done(Outcome),
    /// The outcome is only known at the end of the body (gRPC trailers).
    AtEndOfStream,
}

/// Decides the [`Outcome`] of a call.
pub trait Classify: Clone + Send + Sync + 'static {
    /// Classifies a response head.
    fn classify_response<B>(&self, response: &Response<B>) -> Classification;

    /// Classifies the end of a body whose head said [`Classification::AtEndOfStream`].
    fn classify_end_of_stream(&self, trailers: Option<&HeaderMap>) -> Outcome;

    /// Classifies a response head knowing the protocol of the request it
    /// answers (see [`Protocol::of_request`]). Layers call this one; the
    /// default ignores the request, and [`DefaultClassifier`] uses it to skip
    /// looking for gRPC in answers to plain HTTP requests.
    fn classify_response_to<B>(&self, request: Protocol, response: &Response<B>) -> Classification {
        let _ = request;
        self.classify_response(response)
    }

    /// Classifies an error returned by the service. Errors fail by default.
    fn classify_error<E>(&self, _error: &E) -> Outcome {
        Outcome::Failure(FailureKind::ServiceError)
    }

    /// Classifies how a body ended: errors fail, early drops are cancellations,
    /// and a complete body goes to [`classify_end_of_stream`](Classify::classify_end_of_stream).
    fn classify_body_end(&self, end: BodyEnd<'_>) -> Outcome {
        match end {
            BodyEnd::Complete { trailers } => self.classify_end_of_stream(trailers),
            BodyEnd::Error => Outcome::Failure(FailureKind::BodyError),
            BodyEnd::Dropped => Outcome::Cancelled,
        }
    }

    /// Lets `decide` classify response heads first; where it returns `None`,
    /// `self` decides.
    fn override_with<F>(self, decide: F) -> Overridden<Self, F>
    where
        Self: Sized,
        F: Fn(StatusCode, &HeaderMap) -> Option<Outcome> + Clone + Send + Sync + 'static,
    {
        Overridden {
            fallback: self,
            decide,
        }
    }
}

/// A response made by one of our layers is classified by its [`Rejection`].
fn local_refusal<B>(response: &Response<B>) -> Option<Outcome> {
    let rejection = response.extensions().get::<Rejection>()?;
    Some(match rejection.reason() {
        Reason::TimedOut => Outcome::TimedOut,
        reason => Outcome::Refused(reason),
    })
}

/// Plain HTTP: 5xx responses and service errors fail; everything else succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpClassifier {
    _private: (),
}

impl HttpClassifier {
    /// The classifier.
    pub fn new() -> Self {
        HttpClassifier::default()
    }
}

impl Classify for HttpClassifier {
    fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        if let Some(outcome) = local_refusal(response) {
            return Classification::Done(outcome);
        }
        let status = response.status();
        Classification::Done(if status.is_server_error() {
            Outcome::Failure(FailureKind::Status(status))
        } else {
            Outcome::Success
        })
    }

    fn classify_end_of_stream(&self, _trailers: Option<&HeaderMap>) -> Outcome {
        Outcome::Success
    }
}

/// gRPC: reads `grpc-status` from the headers (trailers-only responses) or
/// from the trailers. By default the server-error codes fail (see
/// [`GrpcCode::is_server_error`]); a stream that ends without any
/// `grpc-status` fails as `UNKNOWN`, as gRPC clients treat it.
#[derive(Debug, Clone, Copy)]
pub struct GrpcClassifier {
    failures: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        let failures = (0..=16u32)
            .filter_map(GrpcCode::from_u32)
            .filter(|code| code.is_server_error())
            .fold(0, |mask, code| mask | 1 << code.as_u8());
        GrpcClassifier { failures }
    }
}

impl GrpcClassifier {
    /// The classifier with the server-error failure set.
    pub fn new() -> Self {
        GrpcClassifier::default()
    }

    /// Replaces the set of codes that count as failures.
    pub fn with_failure_codes(codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        GrpcClassifier {
            failures: codes
                .into_iter()
                .fold(0, |mask, code| mask | 1 << code.as_u8()),
        }
    }

    fn outcome(&self, code: GrpcCode) -> Outcome {
        if self.failures & (1 << code.as_u8()) != 0 {
            Outcome::Failure(FailureKind::Grpc(code))
        } else {
            Outcome::Success
        }
    }
}

impl Classify for GrpcClassifier {
    fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        if let Some(outcome) = local_refusal(response) {
            return Classification::Done(outcome);
        }
        if response.status() != StatusCode::OK {
            return Classification::Done(
                self.outcome(GrpcCode::from_http_status(response.status())),
            );
        }
        match GrpcCode::from_headers(response.headers()) {
            Some(code) => Classification::Done(self.outcome(code)),
            None => Classification::AtEndOfStream,
        }
    }

    fn classify_end_of_stream(&self, trailers: Option<&HeaderMap>) -> Outcome {
        let code = trailers
            .and_then(GrpcCode::from_headers)
            .unwrap_or(GrpcCode::Unknown);
        self.outcome(code)
    }
}

/// Classifies gRPC responses (by `content-type`) with [`GrpcClassifier`] and
/// everything else with [`HttpClassifier`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier {
    grpc: GrpcClassifier,
    http: HttpClassifier,
}

impl DefaultClassifier {
    /// The classifier with default HTTP and gRPC rules.
    pub fn new() -> Self {
        DefaultClassifier::default()
    }

    /// Uses `grpc` for gRPC responses.
    pub fn with_grpc(mut self, grpc: GrpcClassifier) -> Self {
        self.grpc = grpc;
        self
    }
}

impl Classify for DefaultClassifier {
    #[inline]
    fn classify_response_to<B>(&self, request: Protocol, response: &Response<B>) -> Classification {
        // A plain HTTP request never gets a gRPC answer.
        if request.is_grpc() {
            self.classify_response(response)
        } else {
            self.http.classify_response(response)
        }
    }

    fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        if Protocol::detect(response.headers()).is_grpc() {
            self.grpc.classify_response(response)
        } else {
            self.http.classify_response(response)
        }
    }

    fn classify_end_of_stream(&self, trailers: Option<&HeaderMap>) -> Outcome {
        // Only gRPC heads defer to the end of the stream.
        self.grpc.classify_end_of_stream(trailers)
    }
}

/// A closure that classifies response heads before a fallback classifier;
/// made by [`Classify::override_with`].
#[derive(Debug, Clone)]
pub struct Overridden<C, F> {
    fallback: C,
    decide: F,
}

impl<C, F> Classify for Overridden<C, F>
where
    C: Classify,
    F: Fn(StatusCode, &HeaderMap) -> Option<Outcome> + Clone + Send + Sync + 'static,
{
    fn classify_response<B>(&self, response: &Response<B>) -> Classification {
        if let Some(outcome) = local_refusal(response) {
            return Classification::Done(outcome);
        }
        match (self.decide)(response.status(), response.headers()) {
            Some(outcome) => Classification::Done(outcome),
            None => self.fallback.classify_response(response),
        }
    }

    fn classify_end_of_stream(&self, trailers: Option<&HeaderMap>) -> Outcome {
        self.fallback.classify_end_of_stream(trailers)
    }

    fn classify_error<E>(&self, error: &E) -> Outcome {
        self.fallback.classify_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::Protocol;
    use crate::reject::Renderer;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response<()> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn trailers(status: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", status.parse().unwrap());
        map
    }

    #[test]
    fn only_success_is_success_and_timeouts_are_failures() {
        assert!(Outcome::Success.is_success());
        assert!(!Outcome::Success.is_failure());
        for outcome in [
            Outcome::Failure(FailureKind::ServiceError),
            Outcome::TimedOut,
            Outcome::Cancelled,
            Outcome::Refused(Reason::RateLimited),
        ] {
            assert!(!outcome.is_success(), "{outcome:?}");
        }
        assert!(Outcome::TimedOut.is_failure());
        assert!(!Outcome::Cancelled.is_failure());
        assert!(!Outcome::Refused(Reason::RateLimited).is_failure());
    }

    #[test]
    fn a_proxys_http_status_maps_to_the_grpc_code_clients_derive() {
        let every_code = GrpcClassifier::with_failure_codes(GrpcCode::ALL);
        let grpc = [("content-type", "application/grpc")];
        // The map itself is `GrpcCode::from_http_status`'s, tested there.
        for (status, code) in [
            (404, GrpcCode::Unimplemented),
            (503, GrpcCode::Unavailable),
            (500, GrpcCode::Unknown),
        ] {
            assert_eq!(
                every_code.classify_response(&response(status, &grpc)),
                Classification::Done(Outcome::Failure(FailureKind::Grpc(code))),
                "{status}"
            );
        }
    }

    #[test]
    fn failure_codes_can_be_chosen_and_repeated() {
        let custom = GrpcClassifier::with_failure_codes([
            GrpcCode::NotFound,
            GrpcCode::Aborted,
            GrpcCode::NotFound,
        ]);
        let failed = |code: &str| {
            custom
                .classify_end_of_stream(Some(&trailers(code)))
                .is_failure()
        };
        assert!(failed("5"), "NOT_FOUND, listed twice, still fails");
        assert!(failed("10"), "ABORTED");
        assert!(!failed("14"), "UNAVAILABLE is not in the set");
        // The default classifier uses a chosen gRPC classifier for gRPC only.
        let default = DefaultClassifier::new().with_grpc(custom);
        assert!(
            default
                .classify_end_of_stream(Some(&trailers("5")))
                .is_failure()
        );
        assert!(
            !default
                .classify_end_of_stream(Some(&trailers("14")))
                .is_failure()
        );
    }

    #[test]
    fn http_fails_on_5xx_only() {
        let c = HttpClassifier::new();
        for (status, failed) in [
            (200, false),
            (404, false),
            (429, false),
            (500, true),
            (503, true),
        ] {
            let verdict = c.classify_response(&response(status, &[]));
            let Classification::Done(outcome) = verdict else {
                panic!("HTTP is decided at the head")
            };
            assert_eq!(outcome.is_failure(), failed, "{status}");
        }
        assert_eq!(
            c.classify_error(&"connection refused"),
            Outcome::Failure(FailureKind::ServiceError)
        );
    }

    #[test]
    fn grpc_reads_status_from_headers_or_trailers() {
        let c = DefaultClassifier::new();
        let grpc = [("content-type", "application/grpc")];
        assert_eq!(
            c.classify_response(&response(200, &grpc)),
            Classification::AtEndOfStream
        );
        assert_eq!(
            c.classify_end_of_stream(Some(&trailers("0"))),
            Outcome::Success
        );
        assert_eq!(
            c.classify_end_of_stream(Some(&trailers("14"))),
            Outcome::Failure(FailureKind::Grpc(GrpcCode::Unavailable))
        );
        // Client errors are not server failures.
        assert_eq!(
            c.classify_end_of_stream(Some(&trailers("3"))),
            Outcome::Success
        );
        // A stream that ends without a status is broken.
        assert!(c.classify_end_of_stream(None).is_failure());
        // Trailers-only: decided at the head.
        let head = response(
            200,
            &[("content-type", "application/grpc"), ("grpc-status", "13")],
        );
        assert_eq!(
            c.classify_response(&head),
            Classification::Done(Outcome::Failure(FailureKind::Grpc(GrpcCode::Internal)))
        );
        // A proxy's 503 in front of a gRPC service.
        assert!(matches!(
            c.classify_response(&response(503, &grpc)),
            Classification::Done(Outcome::Failure(FailureKind::Grpc(GrpcCode::Unavailable)))
        ));
    }

    #[test]
    fn grpc_failure_set_is_configurable() {
        let c = GrpcClassifier::with_failure_codes([GrpcCode::ResourceExhausted]);
        assert!(c.classify_end_of_stream(Some(&trailers("8"))).is_failure());
        assert!(c.classify_end_of_stream(Some(&trailers("14"))).is_success());
    }

    #[test]
    fn local_refusals_are_not_upstream_failures() {
        let c = DefaultClassifier::new();
        for protocol in [Protocol::Http, Protocol::Grpc] {
            let timed_out = Renderer::default()
                .render::<()>(Rejection::new("timeout", Reason::TimedOut), protocol);
            assert_eq!(
                c.classify_response(&timed_out),
                Classification::Done(Outcome::TimedOut)
            );
            let limited = Renderer::default()
                .render::<()>(Rejection::new("rate_limit", Reason::RateLimited), protocol);
            assert_eq!(
                c.classify_response(&limited),
                Classification::Done(Outcome::Refused(Reason::RateLimited))
            );
        }
    }

    #[test]
    fn body_end_maps_to_outcomes() {
        let c = DefaultClassifier::new();
        assert_eq!(c.classify_body_end(BodyEnd::Dropped), Outcome::Cancelled);
        assert_eq!(
            c.classify_body_end(BodyEnd::Error),
            Outcome::Failure(FailureKind::BodyError)
        );
        let t = trailers("0");
        assert_eq!(
            c.classify_body_end(BodyEnd::Complete { trailers: Some(&t) }),
            Outcome::Success
        );
    }

    #[test]
    fn override_decides_first_and_falls_back() {
        let c = HttpClassifier::new().override_with(|status, _| {
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some(Outcome::Success)
        });
        assert_eq!(
            c.classify_response(&response(503, &[])),
            Classification::Done(Outcome::Success)
        );
        assert!(matches!(
            c.classify_response(&response(500, &[])),
            Classification::Done(Outcome::Failure(_))
        ));
    }
}
