//! The scrape route: a tower service answering with the text format, and a
//! layer that answers its path in front of any service.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ArmorBody;

/// The text exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The scrape route [`builder`](super::builder) makes: a tower service that
/// renders the recorder for `GET` (usable as an axum route with
/// `route_service("/metrics", scrape)`), and a layer answering its path in
/// front of another service. Clones share the recorder.
#[derive(Clone)]
pub struct Scrape {
    shared: Arc<Shared>,
}

struct Shared {
    handle: PrometheusHandle,
    path: Arc<str>,
    /// The size of the last rendering, to size the next one's buffer.
    last_len: AtomicUsize,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Scrape {
    pub(super) fn new(handle: PrometheusHandle, path: Arc<str>) -> Self {
        Scrape {
            shared: Arc::new(Shared {
                handle,
                path,
                last_len: AtomicUsize::new(4096),
            }),
        }
    }

    /// The current metrics in the text exposition format.
    pub fn render(&self) -> Bytes {
        let shared = &*self.shared;
        let mut buffer = Vec::with_capacity(shared.last_len.load(Ordering::Relaxed) + 1024);
        shared
            .handle
            .render_to_write(&mut buffer)
            .expect("writing to a Vec does not fail");
        shared.last_len.store(buffer.len(), Ordering::Relaxed);
        Bytes::from(buffer)
    }

    /// The answer to a request for the metrics: the rendering for `GET`,
    /// its headers for `HEAD`, 405 for anything else.
    fn answer(&self, method: &Method) -> Response<Bytes> {
        let mut response = match *method {
            Method::GET => Response::new(self.render()),
            Method::HEAD => Response::new(Bytes::new()),
            _ => return crate::reject::only_get_and_head(),
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
        response
    }
}

impl<B> Service<Request<B>> for Scrape {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.answer(request.method()).map(Full::new)))
    }
}

impl<S> Layer<S> for Scrape {
    type Service = ScrapeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ScrapeService {
            inner,
            scrape: self.clone(),
        }
    }
}

/// The service [`Scrape`] makes as a layer: its path is answered with the
/// metrics, every other request goes to the inner service.
#[derive(Clone, Debug)]
pub struct ScrapeService<S> {
    inner: S,
    scrape: Scrape,
}

impl<S> ScrapeService<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ScrapeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ScrapeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() == &*self.scrape.shared.path {
            let answer = self.scrape.answer(request.method());
            return ScrapeFuture {
                kind: Kind::Answered {
                    answer: Some(answer),
                },
            };
        }
        ScrapeFuture {
            kind: Kind::Inner {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ScrapeService`].
    pub struct ScrapeFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Answered { answer: Option<Response<Bytes>> },
        Inner { #[pin] future: F },
    }
}

impl<F, B, E> std::future::Future for ScrapeFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ArmorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Answered { answer } => {
                let answer = answer.take().expect("polled after completion");
                Poll::Ready(Ok(answer.map(ArmorBody::full)))
            }
            KindProj::Inner { future } => future
                .poll(cx)
                .map_ok(|response| response.map(ArmorBody::inner)),
        }
    }
}
