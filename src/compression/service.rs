use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use super::body::CompressionBody;
use super::future::ResponseFuture;
use super::negotiate::{Negotiated, negotiate};
use super::settings::Shared;
use crate::grpc::Protocol;
use crate::reject::{Reason, Rejection};

/// The service made by [`CompressionLayer`](super::CompressionLayer):
/// compresses responses, leaves requests as they are. Built with
/// [`Compression::new`] or by the layer.
#[derive(Clone)]
pub struct Compression<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compression")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Compression<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
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
            return ResponseFuture::pass_through(self.inner.call(request));
        }
        let head_request = request.method() == Method::HEAD;
        let negotiated = if head_request {
            Negotiated::Identity
        } else {
            negotiate(request.headers(), &shared.preference)
        };
        let encoding = match negotiated {
            Negotiated::Encode(encoding) => Some(encoding),
            Negotiated::Identity => None,
            Negotiated::NotAcceptable => {
                // Decided before the handler runs, so it does no work for nothing.
                let rejection = Rejection::new("compression", Reason::NotAcceptable);
                let mut response = shared.renderer.render_bytes(rejection, protocol);
                super::rules::vary_on_accept_encoding(response.headers_mut());
                return ResponseFuture::refused(response);
            }
        };
        ResponseFuture::new(
            self.inner.call(request),
            shared.clone(),
            encoding,
            head_request,
        )
    }
}
