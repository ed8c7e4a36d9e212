//! A part of a preset: a layer that is there or not, as one type, so a
//! preset with some parts turned off is still the same `Layer`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::poll_as_bytes;

/// A layer or nothing. `None` hands the inner service on untouched.
#[derive(Debug, Clone)]
pub(super) struct Part<L>(pub(super) Option<L>);

impl<L, S> Layer<S> for Part<L>
where
    L: Layer<S>,
{
    type Service = PartService<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => PartService::On {
                service: layer.layer(inner),
            },
            None => PartService::Off { service: inner },
        }
    }
}

/// One part of a preset: the part's service (`On`), or the inner service
/// itself when the part is turned off (`Off`).
///
/// Both answer with a [`PartBody`]; the error type is the inner service's,
/// which every layer of this crate keeps.
#[derive(Debug, Clone)]
pub enum PartService<On, Off> {
    /// The part is on: its layer's service.
    On {
        /// The layer's service.
        service: On,
    },
    /// The part is off: the inner service, called directly.
    Off {
        /// The inner service.
        service: Off,
    },
}

impl<On, Off, B, OnBody, OffBody> Service<Request<B>> for PartService<On, Off>
where
    On: Service<Request<B>, Response = Response<OnBody>>,
    Off: Service<Request<B>, Response = Response<OffBody>, Error = On::Error>,
{
    type Response = Response<PartBody<OnBody, OffBody>>;
    type Error = On::Error;
    type Future = PartFuture<On::Future, Off::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            PartService::On { service } => service.poll_ready(cx),
            PartService::Off { service } => service.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self {
            PartService::On { service } => PartFuture {
                kind: FutureKind::On {
                    future: service.call(request),
                },
            },
            PartService::Off { service } => PartFuture {
                kind: FutureKind::Off {
                    future: service.call(request),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of a [`PartService`].
    pub struct PartFuture<On, Off> {
        #[pin]
        kind: FutureKind<On, Off>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<On, Off> {
        On { #[pin] future: On },
        Off { #[pin] future: Off },
    }
}

impl<On, Off, OnBody, OffBody, E> Future for PartFuture<On, Off>
where
    On: Future<Output = Result<Response<OnBody>, E>>,
    Off: Future<Output = Result<Response<OffBody>, E>>,
{
    type Output = Result<Response<PartBody<OnBody, OffBody>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.project().kind.project() {
            FutureKindProj::On { future } => {
                ready!(future.poll(cx)).map(|response| response.map(PartBody::on))
            }
            FutureKindProj::Off { future } => {
                ready!(future.poll(cx)).map(|response| response.map(PartBody::off))
            }
        })
    }
}

impl<On, Off> std::fmt::Debug for PartFuture<On, Off> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            FutureKind::On { .. } => "PartFuture::On",
            FutureKind::Off { .. } => "PartFuture::Off",
        })
    }
}

pin_project! {
    /// The response body of a [`PartService`]: the part's body or the inner
    /// service's. It follows the [body rule](crate::body).
    pub struct PartBody<On, Off> {
        #[pin]
        kind: Kind<On, Off>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<On, Off> {
        On { #[pin] body: On },
        Off { #[pin] body: Off },
    }
}

impl<On, Off> PartBody<On, Off> {
    fn on(body: On) -> Self {
        PartBody {
            kind: Kind::On { body },
        }
    }

    fn off(body: Off) -> Self {
        PartBody {
            kind: Kind::Off { body },
        }
    }
}

impl<On, Off> Body for PartBody<On, Off>
where
    On: Body,
    On::Error: Into<BoxError>,
    Off: Body,
    Off::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::On { body } => poll_as_bytes(body, cx),
            KindProj::Off { body } => poll_as_bytes(body, cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::On { body } => body.is_end_stream(),
            Kind::Off { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::On { body } => body.size_hint(),
            Kind::Off { body } => body.size_hint(),
        }
    }
}

impl<On, Off> std::fmt::Debug for PartBody<On, Off> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::On { .. } => "PartBody::On",
            Kind::Off { .. } => "PartBody::Off",
        })
    }
}
