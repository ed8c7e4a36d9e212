use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::ResponseFuture;
use super::settings::TimeoutConfig;
use crate::body::ArmorBody;
use crate::deadline::Deadline;
use crate::grpc::{self, Protocol};

/// The service made by [`TimeoutLayer`](super::TimeoutLayer); built with
/// [`Timeout::new`] or by the layer.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<TimeoutConfig>,
}

impl<S> Timeout<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let protocol = Protocol::of_request(&request);
        let mut timeout = config.timeout;
        if protocol.is_grpc() && config.honor_grpc_timeout {
            if let Some(asked) = grpc::grpc_timeout_from_headers(request.headers()) {
                timeout = timeout.min(asked);
            }
        }
        // `build()` bounds the timeout, so this addition cannot overflow.
        let ours = Deadline::at(Instant::now() + timeout);

        // What inner layers and the upstream see is the earliest deadline of all.
        let mut earliest = ours;
        if config.deadline_extension || config.propagate_grpc_timeout {
            match request.extensions_mut().get_mut::<Deadline>() {
                // An outer timeout's deadline is updated in place: no allocation.
                Some(outer) => {
                    earliest = earliest.min(*outer);
                    *outer = earliest;
                }
                None if config.deadline_extension => {
                    request.extensions_mut().insert(earliest);
                }
                None => {}
            }
        }
        if config.propagate_grpc_timeout && protocol.is_grpc() {
            let value = grpc::format_grpc_timeout(earliest.remaining());
            if let Ok(value) = HeaderValue::from_str(&value) {
                request.headers_mut().insert(grpc::GRPC_TIMEOUT, value);
            }
        }

        ResponseFuture::new(
            self.inner.call(request),
            ours.instant(),
            protocol,
            config.expiry.clone(),
        )
    }
}
