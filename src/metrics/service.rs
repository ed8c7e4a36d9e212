use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use tower_service::Service;

use super::attributes::{KnownMethod, RouteExtractor, Scheme, grpc_method};
use super::body::{MetricsBody, Observation};
use super::future::ResponseFuture;
use super::instruments::{ActiveSeries, Series, Server, Side};
use super::settings::Settings;
use crate::classify::Classify;
use crate::grpc::{GrpcCode, Protocol};
use crate::key::{Authority, KeyExtractor, RequestHead};

/// The service made by [`MetricsLayer`](super::MetricsLayer); built with
/// [`Metrics::new`] or by the layer.
pub struct Metrics<S, R, C> {
    pub(crate) inner: S,
    pub(crate) settings: Arc<Settings<R, C>>,
}

impl<S: Clone, R, C> Clone for Metrics<S, R, C> {
    fn clone(&self) -> Self {
        Metrics {
            inner: self.inner.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: std::fmt::Debug, R, C> std::fmt::Debug for Metrics<S, R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, C> Metrics<S, R, C> {
    inner_service_accessors!();
}

impl<S, R, C, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S, R, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ResBody: http_body::Body,
    R: RouteExtractor,
    C: Classify,
{
    type Response = Response<MetricsBody<ResBody, C>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        let instruments = &settings.instruments;
        let protocol = Protocol::of_request(&request);
        let head = RequestHead::of(&request);
        let method = KnownMethod::of(request.method(), &instruments.extra_methods);
        let scheme = Scheme::of(&head);
        let server = match instruments.side {
            Side::Client => settings.server_of(&head),
            Side::Server => None,
        };
        let route = if protocol.is_grpc() {
            grpc_method(request.uri().path(), settings.grpc_methods.as_deref())
                .and_then(|method| settings.routes.intern(method, instruments.max_series))
        } else {
            settings
                .route
                .route(&head)
                .and_then(|route| settings.routes.intern(&route, instruments.max_series))
        };
        let request_bytes = if instruments.body_sizes {
            request
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|length| length.to_str().ok()?.parse().ok())
                .or_else(|| request.body().size_hint().exact())
        } else {
            None
        };
        let active = instruments.active(&ActiveSeries {
            method,
            scheme,
            server: server.clone(),
        });
        let series = Series {
            method,
            scheme,
            version: request.version(),
            route,
            status: None,
            // Known for sure only from the answer; a call that never gets
            // one is `UNKNOWN` (or `CANCELLED`, if the caller left).
            grpc: protocol.is_grpc().then_some(GrpcCode::Unknown),
            error: None,
            server,
        };
        let span = settings.spans.then(|| {
            Arc::new(super::span::request_span(
                instruments.side,
                &series,
                request.method(),
                request.uri().path(),
            ))
        });
        let observation = Observation::start(
            instruments.clone(),
            settings.classifier.clone(),
            active,
            series,
            request_bytes,
            span,
        );
        ResponseFuture::new(self.inner.call(request), observation, protocol)
    }
}

impl<R, C> Settings<R, C> {
    /// `server.address` and `server.port` of a client request, from its URI
    /// or `Host` (interned, and bounded like routes).
    fn server_of(&self, head: &RequestHead<'_>) -> Option<Server> {
        if let Some(server) = &self.server {
            return Some(server.clone());
        }
        let authority = Authority.extract(head)?;
        let secure = head.uri.scheme_str() == Some("https");
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let address = self
            .servers
            .intern(authority.host(), self.instruments.max_series)?;
        Some(Server { address, port })
    }
}
