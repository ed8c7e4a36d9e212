//! One request's measurement, kept until its response body ends, and the
//! body that carries it there.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use metrics::Gauge;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tracing::Span;

use super::attributes::ErrorType;
use super::instruments::{Instruments, Series, Side};
use crate::BoxError;
use crate::body::{BodyEnd, GuardBody, OnBodyEnd};
use crate::classify::{Classification, Classify, FailureKind, Outcome};
use crate::grpc::GrpcCode;
use crate::reject::{Reason, Rejection};

/// One request in flight: what its series will be, when it started, and the
/// active-requests gauge it counts in. It records exactly once: when the
/// response body ends, when the service fails, or when it is dropped first
/// (the caller went away: `error.type=cancelled`).
pub(crate) struct Observation<C: Classify> {
    instruments: Arc<Instruments>,
    classifier: C,
    started: Instant,
    active: Gauge,
    series: Series,
    /// The head's verdict, for a body that ends later.
    head: Classification,
    /// The request's body size, from its `Content-Length` or its exact size.
    request_bytes: Option<u64>,
    response_bytes: u64,
    /// The request's `tracing` span, when the layer opens one (behind a
    /// pointer: most layers open none, and every request moves this struct
    /// a few times; shared with the body, which enters it).
    span: Option<Arc<Span>>,
    done: bool,
}

impl<C: Classify> Observation<C> {
    /// Starts measuring: the request now counts as active.
    pub(crate) fn start(
        instruments: Arc<Instruments>,
        classifier: C,
        active: Gauge,
        series: Series,
        request_bytes: Option<u64>,
        span: Option<Arc<Span>>,
    ) -> Self {
        active.increment(1.0);
        Observation {
            instruments,
            classifier,
            started: Instant::now(),
            active,
            series,
            head: Classification::AtEndOfStream,
            request_bytes,
            response_bytes: 0,
            span,
            done: false,
        }
    }

    /// The answer's head arrived: its status, and for gRPC the status in
    /// the head of a trailers-only answer.
    pub(crate) fn head<B>(&mut self, protocol: crate::grpc::Protocol, response: &Response<B>) {
        self.series.status = Some(response.status().as_u16());
        self.head = self.classifier.classify_response_to(protocol, response);
        if self.series.grpc.is_some() {
            let headers = response.headers();
            let code = if response.status() == http::StatusCode::OK {
                GrpcCode::from_headers(headers)
            } else {
                Some(GrpcCode::from_http_status(response.status()))
            };
            if let Some(code) = code {
                self.set_grpc(code);
            }
        }
        if let Some(rejection) = response.extensions().get::<Rejection>() {
            self.series.error = Some(ErrorType::Refused(rejection.reason()));
        }
    }

    fn set_grpc(&mut self, code: GrpcCode) {
        self.series.grpc = Some(code);
        if code == GrpcCode::Unimplemented {
            // No such method here: it gets no series of its own.
            self.series.route = None;
        }
    }

    /// The service failed before any answer.
    pub(crate) fn failed<E>(mut self, error: &E) {
        let outcome = self.classifier.classify_error(error);
        if self.series.grpc.is_some() {
            self.series.grpc = Some(GrpcCode::Unknown);
        }
        self.finish(outcome);
    }

    /// Records the request, once.
    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.active.decrement(1.0);
        if self.series.error.is_none() {
            self.series.error = self.error_type(outcome);
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let (response_bytes, request_bytes) = (self.response_bytes, self.request_bytes);
        self.instruments.record(&self.series, |handles| {
            handles.duration.record(seconds);
            if let Some(size) = &handles.response_size {
                size.record(response_bytes as f64);
            }
            if let (Some(size), Some(bytes)) = (&handles.request_size, request_bytes) {
                size.record(bytes as f64);
            }
        });
        if let Some(span) = self.span.take() {
            super::span::record_end(&span, &self.series);
        }
    }

    /// The request's span, to enter while its future and body are polled.
    pub(crate) fn span(&self) -> Option<&Span> {
        self.span.as_deref()
    }

    /// `error.type` from the shared classifier's verdict; a client also
    /// counts 4xx answers and every gRPC status but OK, as OpenTelemetry's
    /// client conventions do.
    fn error_type(&self, outcome: Outcome) -> Option<ErrorType> {
        let error = match outcome {
            Outcome::Success => None,
            Outcome::Failure(FailureKind::Status(status)) => {
                Some(ErrorType::Status(status.as_u16()))
            }
            Outcome::Failure(FailureKind::Grpc(code)) => Some(ErrorType::Grpc(code)),
            Outcome::Failure(_) => Some(ErrorType::Other),
            Outcome::TimedOut => Some(ErrorType::Refused(Reason::TimedOut)),
            Outcome::Refused(reason) => Some(ErrorType::Refused(reason)),
            Outcome::Cancelled => Some(ErrorType::Cancelled),
        };
        if error.is_some() || self.instruments.side == Side::Server {
            return error;
        }
        match (self.series.grpc, self.series.status) {
            (Some(GrpcCode::Ok), _) => None,
            (Some(code), _) => Some(ErrorType::Grpc(code)),
            (None, Some(status)) if status >= 400 => Some(ErrorType::Status(status)),
            _ => None,
        }
    }
}

impl<C: Classify> Drop for Observation<C> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before any answer: the caller went away.
            if self.series.grpc.is_some() {
                self.series.grpc = Some(GrpcCode::Cancelled);
            }
            self.finish(Outcome::Cancelled);
        }
    }
}

impl<C: Classify> OnBodyEnd for Observation<C> {
    #[inline]
    fn on_data(&mut self, len: usize) {
        self.response_bytes += len as u64;
    }

    fn on_body_end(mut self, end: BodyEnd<'_>) {
        if self.series.grpc.is_some() {
            match end {
                BodyEnd::Complete { trailers } => {
                    if let Some(code) = trailers.and_then(GrpcCode::from_headers) {
                        self.set_grpc(code);
                    } else if matches!(self.head, Classification::AtEndOfStream) {
                        // A stream that ended without a status is broken.
                        self.set_grpc(GrpcCode::Unknown);
                    }
                }
                BodyEnd::Error => self.set_grpc(GrpcCode::Unknown),
                BodyEnd::Dropped => self.set_grpc(GrpcCode::Cancelled),
            }
        }
        let outcome = match (self.head, end) {
            (_, BodyEnd::Dropped) => Outcome::Cancelled,
            (_, BodyEnd::Error) => Outcome::Failure(FailureKind::BodyError),
            (Classification::Done(outcome), BodyEnd::Complete { .. }) => outcome,
            (Classification::AtEndOfStream, end) => self.classifier.classify_body_end(end),
        };
        self.finish(outcome);
    }
}

pin_project! {
    /// The response body of [`Metrics`](super::Metrics): the inner body,
    /// watched to its end, when the request's duration and outcome are
    /// recorded (gRPC trailers included).
    pub struct MetricsBody<B, C>
    where
        C: Classify,
    {
        #[pin]
        inner: GuardBody<B, Observation<C>>,
        span: Option<Arc<Span>>,
    }
}

impl<B: Body, C: Classify> MetricsBody<B, C> {
    pub(crate) fn new(body: B, observation: Observation<C>) -> Self {
        let span = observation.span.clone();
        MetricsBody {
            inner: GuardBody::new(body, observation),
            span,
        }
    }
}

impl<B, C: Classify> std::fmt::Debug for MetricsBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBody").finish_non_exhaustive()
    }
}

impl<B, C> Body for MetricsBody<B, C>
where
    B: Body,
    B::Error: Into<BoxError>,
    C: Classify,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let _entered = this.span.as_deref().map(Span::enter);
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
