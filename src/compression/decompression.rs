//! [`RequestDecompressionLayer`]: request bodies decoded for the inner
//! service, under a cap.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue, Request, Response};
use metrics::SharedString;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{CodingCounters, DecodeOutcome, DecompressionBody, DecompressionError};
use super::codec::Decoder;
use super::negotiate::Encoding;
use crate::body::ArmorBody;
use crate::config::{ConfigError, instance_name};
use crate::grpc::Protocol;
use crate::observe::PerRecorder;
use crate::reject::{Reason, Rejection, Renderer};

/// Decodes request bodies sent with `Content-Encoding` gzip, deflate, br or
/// zstd for the inner service, up to a cap. See the [module docs](super).
///
/// The inner service reads a [`DecompressionBody`] and no longer sees
/// `Content-Encoding` or `Content-Length`. Any other coding, or several
/// stacked, is answered 415 with `Accept-Encoding` before the inner service
/// runs. Past [`max_decompressed_bytes`](RequestDecompressionBuilder::max_decompressed_bytes)
/// the service's read fails with [`DecompressionError`] and the caller gets
/// 413; nothing beyond the cap is decoded or kept. A corrupt body gets 400.
/// gRPC requests pass through: gRPC compresses its own messages.
#[derive(Clone)]
pub struct RequestDecompressionLayer {
    shared: Arc<Shared>,
}

struct Shared {
    max_decompressed_bytes: u64,
    renderer: Renderer,
    name: SharedString,
    /// `direction=in` byte counters, per recorder.
    counters: PerRecorder<CodingCounters>,
}

impl fmt::Debug for RequestDecompressionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDecompressionLayer")
            .field("name", &self.shared.name)
            .field(
                "max_decompressed_bytes",
                &self.shared.max_decompressed_bytes,
            )
            .finish_non_exhaustive()
    }
}

/// The default cap on a decoded request body.
const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 8 * 1024 * 1024;

impl RequestDecompressionLayer {
    /// The defaults: request bodies decoded up to 8 MiB. The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a layer with the defaults, to change some of them.
    pub fn builder() -> RequestDecompressionBuilder {
        RequestDecompressionBuilder {
            name: SharedString::const_str("default"),
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            renderer: Renderer::default(),
        }
    }
}

impl Default for RequestDecompressionLayer {
    fn default() -> Self {
        RequestDecompressionLayer::builder()
            .build()
            .expect("the default decompression settings are valid")
    }
}

impl<S> Layer<S> for RequestDecompressionLayer {
    type Service = RequestDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDecompression::new(inner, self.clone())
    }
}

/// Builds a [`RequestDecompressionLayer`]; made by [`RequestDecompressionLayer::builder`].
#[must_use = "call .build() to get the layer"]
pub struct RequestDecompressionBuilder {
    name: SharedString,
    max_decompressed_bytes: u64,
    renderer: Renderer,
}

impl fmt::Debug for RequestDecompressionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDecompressionBuilder")
            .field("name", &self.name)
            .field("max_decompressed_bytes", &self.max_decompressed_bytes)
            .finish_non_exhaustive()
    }
}

impl RequestDecompressionBuilder {
    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = instance_name(name);
        self
    }

    /// The most a request body may grow to once decoded (default 8 MiB).
    /// Past it the service gets a body error and the caller 413; nothing
    /// beyond the cap is decoded or kept.
    pub fn max_decompressed_bytes(mut self, bytes: u64) -> Self {
        self.max_decompressed_bytes = bytes;
        self
    }

    /// Renders the 413, 415 and 400 answers (default: problem+json).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// Checks the settings and makes the layer. Fails on a cap of zero.
    pub fn build(self) -> Result<RequestDecompressionLayer, ConfigError> {
        if self.max_decompressed_bytes == 0 {
            return Err(ConfigError::new(
                "compression",
                "max_decompressed_bytes must be at least 1",
            ));
        }
        Ok(RequestDecompressionLayer {
            shared: Arc::new(Shared {
                max_decompressed_bytes: self.max_decompressed_bytes,
                renderer: self.renderer,
                name: self.name,
                counters: PerRecorder::default(),
            }),
        })
    }
}

/// The service made by [`RequestDecompressionLayer`].
#[derive(Clone)]
pub struct RequestDecompression<S> {
    inner: S,
    layer: RequestDecompressionLayer,
}

impl<S: fmt::Debug> fmt::Debug for RequestDecompression<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDecompression")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RequestDecompression<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: RequestDecompressionLayer) -> Self {
        RequestDecompression { inner, layer }
    }

    inner_service_accessors!();
}

/// The codings request bodies may use (those compiled in), listed in a
/// 415's `Accept-Encoding`.
fn decodable() -> HeaderValue {
    let codings: Vec<&str> = [
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Brotli,
        Encoding::Zstd,
    ]
    .into_iter()
    .filter(|encoding| encoding.is_compiled())
    .map(Encoding::as_str)
    .collect();
    HeaderValue::from_str(&codings.join(", ")).expect("coding names are valid header text")
}

/// How a request body reaches the inner service. Lives on the stack for a
/// moment in `call`; the decoder moves into the body's boxed state.
#[allow(clippy::large_enum_variant)]
enum RequestCoding {
    AsSent,
    Decode(Decoder),
    Unsupported,
}

/// Reads a request's `Content-Encoding`: one supported coding (or identity)
/// is decoded; anything else, including stacked codings, is unsupported.
fn request_coding(headers: &HeaderMap) -> RequestCoding {
    let mut values = headers.get_all(CONTENT_ENCODING).iter();
    let Some(value) = values.next() else {
        return RequestCoding::AsSent;
    };
    if values.next().is_some() {
        return RequestCoding::Unsupported;
    }
    let Ok(value) = value.to_str() else {
        return RequestCoding::Unsupported;
    };
    let value = value.trim();
    if value.is_empty() || value.eq_ignore_ascii_case("identity") {
        return RequestCoding::AsSent;
    }
    match Encoding::from_token(value).and_then(Decoder::new) {
        Some(decoder) => RequestCoding::Decode(decoder),
        None => RequestCoding::Unsupported,
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestDecompression<S>
where
    S: Service<Request<DecompressionBody<ReqBody>>, Response = Response<ResBody>>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = RequestDecompressionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.layer.shared;
        let protocol = Protocol::of_request(&request);
        let coding = if protocol.is_grpc() {
            // gRPC compresses its own messages (grpc-encoding).
            RequestCoding::AsSent
        } else {
            request_coding(request.headers())
        };
        let (request, outcome) = match coding {
            RequestCoding::AsSent => (request.map(DecompressionBody::identity), None),
            RequestCoding::Unsupported => {
                let accepted = decodable();
                let detail = format!(
                    "request bodies may use {}",
                    accepted.to_str().unwrap_or_default()
                );
                let rejection =
                    Rejection::new("compression", Reason::UnsupportedEncoding).with_detail(detail);
                let mut response = shared.renderer.render_bytes(rejection, protocol);
                response.headers_mut().insert(ACCEPT_ENCODING, accepted);
                return RequestDecompressionFuture {
                    kind: Kind::Refused {
                        response: Some(response),
                    },
                };
            }
            RequestCoding::Decode(decoder) => {
                let encoding = decoder.encoding();
                let outcome = Arc::new(DecodeOutcome::default());
                let (mut parts, body) = request.into_parts();
                // The service sees the decoded body: its length is unknown.
                parts.headers.remove(CONTENT_ENCODING);
                parts.headers.remove(CONTENT_LENGTH);
                let counters = shared.counters.with(
                    || CodingCounters::register(&shared.name, "in"),
                    |counters| counters.of(encoding),
                );
                let body = DecompressionBody::decoding(
                    body,
                    decoder,
                    shared.max_decompressed_bytes,
                    outcome.clone(),
                    counters,
                );
                (Request::from_parts(parts, body), Some(outcome))
            }
        };
        RequestDecompressionFuture {
            kind: Kind::Called {
                future: self.inner.call(request),
                decoding: outcome.map(|outcome| (outcome, self.layer.shared.clone())),
            },
        }
    }
}

pin_project! {
    /// The response future of [`RequestDecompression`].
    pub struct RequestDecompressionFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // Only for a body being decoded: how its decoding went.
            decoding: Option<(Arc<DecodeOutcome>, Arc<Shared>)>,
        },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F, B, E> Future for RequestDecompressionFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ArmorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, decoding) = match self.project().kind.project() {
            KindProj::Called { future, decoding } => (future, decoding),
            KindProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                return Poll::Ready(Ok(response.map(ArmorBody::full)));
            }
        };
        let response = ready!(future.poll(cx))?;
        let Some((outcome, shared)) = decoding else {
            return Poll::Ready(Ok(response.map(ArmorBody::inner)));
        };
        let Some(failure) = outcome.failure(shared.max_decompressed_bytes) else {
            return Poll::Ready(Ok(response.map(ArmorBody::inner)));
        };
        // The handler read a body that could not be decoded: whatever it
        // answered, the caller learns why.
        let reason = match failure {
            DecompressionError::TooLarge { .. } => Reason::PayloadTooLarge,
            _ => Reason::MalformedBody,
        };
        let rejection = Rejection::new("compression", reason).with_detail(failure.to_string());
        Poll::Ready(Ok(shared.renderer.render(rejection, Protocol::Http)))
    }
}
