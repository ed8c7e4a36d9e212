use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{CompressionBody, DecodeOutcome, DecompressionBody};
use super::codec::Decoder;
use super::future::ResponseFuture;
use super::layer::Shared;
use super::negotiate::{Encoding, Negotiated, negotiate};
use crate::BoxError;
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection};

/// The service made by [`CompressionLayer`](super::CompressionLayer).
#[derive(Clone)]
pub struct Compression<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compression")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Compression<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Compression { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The codings request bodies may use, listed in a 415's `Accept-Encoding`.
const DECODABLE: &str = "gzip, deflate, br, zstd";

/// How a request body reaches the inner service.
enum RequestCoding {
    AsSent,
    Decode(Encoding),
    Unsupported,
}

/// Reads a request's `Content-Encoding`: one supported coding (or identity)
/// is decoded; anything else, including stacked codings, is unsupported.
fn request_coding(headers: &http::HeaderMap) -> RequestCoding {
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
    match Encoding::from_token(value) {
        Some(encoding) => RequestCoding::Decode(encoding),
        None => RequestCoding::Unsupported,
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<DecompressionBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let protocol = Protocol::of_request(&request);
        if protocol.is_grpc() {
            // gRPC compresses its own messages (grpc-encoding).
            let request = request.map(DecompressionBody::identity);
            return ResponseFuture::pass_through(self.inner.call(request));
        }
        let head_request = request.method() == Method::HEAD;
        let negotiated = if head_request {
            Negotiated::Identity
        } else {
            negotiate(request.headers(), &shared.preference)
        };
        if negotiated == Negotiated::NotAcceptable {
            // Decided before the handler runs, so it does no work for nothing.
            let rejection = Rejection::new("compression", Reason::NotAcceptable);
            let mut response = shared.renderer.render_bytes(rejection, protocol);
            super::rules::vary_on_accept_encoding(response.headers_mut());
            return ResponseFuture::refused(response);
        }
        let coding = if shared.decompress_requests {
            request_coding(request.headers())
        } else {
            RequestCoding::AsSent
        };
        let (request, outcome) = match coding {
            RequestCoding::AsSent => (request.map(DecompressionBody::identity), None),
            RequestCoding::Unsupported => {
                let rejection = Rejection::new("compression", Reason::UnsupportedEncoding)
                    .with_detail("request bodies may use gzip, deflate, br or zstd");
                let mut response = shared.renderer.render_bytes(rejection, protocol);
                response
                    .headers_mut()
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static(DECODABLE));
                return ResponseFuture::refused(response);
            }
            RequestCoding::Decode(encoding) => {
                let outcome = Arc::new(DecodeOutcome::default());
                let (mut parts, body) = request.into_parts();
                // The service sees the decoded body: its length is unknown.
                parts.headers.remove(CONTENT_ENCODING);
                parts.headers.remove(CONTENT_LENGTH);
                let body = DecompressionBody::decoding(
                    body,
                    Decoder::new(encoding),
                    shared.max_decompressed_bytes,
                    outcome.clone(),
                    shared.observer.inbound[encoding.index()].clone(),
                );
                (Request::from_parts(parts, body), Some(outcome))
            }
        };
        let encoding = match negotiated {
            Negotiated::Encode(encoding) => Some(encoding),
            _ => None,
        };
        ResponseFuture::new(
            self.inner.call(request),
            shared.clone(),
            encoding,
            head_request,
            outcome,
        )
    }
}
