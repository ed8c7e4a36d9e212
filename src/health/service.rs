//! [`HealthService`]: answers the probe paths, passes everything else on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::render::{self, Details, Query};
use super::settings::Shared;
use crate::body::ArmorBody;
use crate::key::RequestHead;

/// The service made by [`HealthLayer`](super::HealthLayer); built with
/// [`HealthService::new`] or by the layer.
#[derive(Clone)]
pub struct HealthService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for HealthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> HealthService<S> {
    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HealthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ArmorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let Some((probe, check)) = self.shared.routes.find(request.uri().path()) else {
            return ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            };
        };
        let answer: Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> = match *request.method()
        {
            Method::GET | Method::HEAD => {
                let shared = self.shared.clone();
                let head = RequestHead::of(&request);
                let details = match &shared.full_details_when {
                    Some(allowed) if allowed(&head) => Details::Full,
                    _ => shared.details,
                };
                let query = request.uri().query().map(str::to_owned);
                let json = render::wants_json(request.headers());
                let check = check.map(str::to_owned);
                let head_only = request.method() == Method::HEAD;
                Box::pin(async move {
                    let query = Query::parse(query.as_deref());
                    let registry = &shared.registry;
                    if let Some(name) = &check {
                        if !registry.has_check(probe, name) {
                            return not_found();
                        }
                    }
                    let include = |name: &str| {
                        check.as_deref().is_none_or(|only| only == name)
                            && !query.exclude.contains(&name)
                    };
                    let report = registry.report(probe, include).await;
                    render::answer(
                        probe,
                        &report,
                        details,
                        &query,
                        json || query.json,
                        head_only,
                    )
                })
            }
            _ => Box::pin(std::future::ready(crate::reject::only_get_and_head())),
        };
        ResponseFuture {
            kind: Kind::Answer { future: answer },
        }
    }
}

fn not_found() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(b"no such check\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

pin_project! {
    /// The response future of [`HealthService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { future: Pin<Box<dyn Future<Output = Response<Bytes>> + Send>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ArmorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ArmorBody::inner))),
            KindProj::Answer { future } => future
                .as_mut()
                .poll(cx)
                .map(|response| Ok(response.map(ArmorBody::full))),
        }
    }
}
