//! [`HealthService`]: answers the probe paths, passes everything else on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::ALLOW;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::{HealthLayer, Shared};
use super::render::{self, Details, Query};
use super::status::Probe;
use crate::body::ArmorBody;
use crate::key::RequestHead;

/// The service made by [`HealthLayer`]; built with [`HealthService::new`]
/// or by the layer.
#[derive(Clone)]
pub struct HealthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for HealthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> HealthService<S> {
    /// Wraps `inner` with the probe routes of `layer`.
    pub fn new(inner: S, layer: HealthLayer) -> Self {
        HealthService {
            inner,
            shared: layer.shared,
        }
    }

    inner_service_accessors!();
}

/// The probe paths, with what turns most other paths away in a few
/// instructions: every request is asked whether it is a probe.
pub(crate) struct Routes {
    entries: Box<[(Box<str>, Probe)]>,
    /// The shortest path's length (at least 2: `build()` sees to it).
    shortest: usize,
    /// The second bytes of the paths, as a set (the first is always `/`).
    second_bytes: [u64; 4],
}

impl Routes {
    pub(crate) fn new(entries: Box<[(Box<str>, Probe)]>) -> Routes {
        let mut second_bytes = [0u64; 4];
        for (path, _) in &entries {
            if let Some(&byte) = path.as_bytes().get(1) {
                second_bytes[usize::from(byte >> 6)] |= 1 << (byte & 63);
            }
        }
        Routes {
            shortest: entries
                .iter()
                .map(|(path, _)| path.len())
                .min()
                .unwrap_or(usize::MAX),
            entries,
            second_bytes,
        }
    }

    /// Which probe `path` asks about, and which one check, if any.
    #[inline]
    pub(crate) fn find<'p>(&self, path: &'p str) -> Option<(Probe, Option<&'p str>)> {
        let bytes = path.as_bytes();
        if bytes.len() < self.shortest.max(2) {
            return None;
        }
        let second = bytes[1];
        if self.second_bytes[usize::from(second >> 6)] & (1 << (second & 63)) == 0 {
            return None;
        }
        route(&self.entries, path)
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(path, probe)| (path, probe)))
            .finish()
    }
}

/// Which probe a path asks about, and which one check, if any, by its
/// length and one byte before any comparison of text.
#[inline]
fn route<'p>(routes: &[(Box<str>, Probe)], path: &'p str) -> Option<(Probe, Option<&'p str>)> {
    let bytes = path.as_bytes();
    routes.iter().find_map(|(prefix, probe)| {
        let prefix = prefix.as_bytes();
        match bytes.len().cmp(&prefix.len()) {
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => (bytes == prefix).then_some((*probe, None)),
            std::cmp::Ordering::Greater => {
                if bytes[prefix.len()] != b'/' || !bytes.starts_with(prefix) {
                    return None;
                }
                let check = &path[prefix.len() + 1..];
                (!check.is_empty() && !check.contains('/')).then_some((*probe, Some(check)))
            }
        }
    })
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
                        if registry.find(probe, name).is_none()
                            && !(probe == Probe::Readiness
                                && name == super::registry::SHUTDOWN_CHECK
                                && registry.is_draining())
                        {
                            return not_found();
                        }
                    }
                    let report = registry
                        .report(probe, check.as_deref(), &query.exclude)
                        .await;
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
            _ => Box::pin(std::future::ready(method_not_allowed())),
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

fn method_not_allowed() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_probe_and_maybe_one_check() {
        let routes: Vec<(Box<str>, Probe)> = vec![
            ("/livez".into(), Probe::Liveness),
            ("/readyz".into(), Probe::Readiness),
        ];
        let routes = Routes::new(routes.into());
        let route = |routes: &Routes, path| routes.find(path);
        assert_eq!(route(&routes, "/readyz"), Some((Probe::Readiness, None)));
        assert_eq!(
            route(&routes, "/readyz/database"),
            Some((Probe::Readiness, Some("database")))
        );
        assert_eq!(route(&routes, "/livez"), Some((Probe::Liveness, None)));
        for other in [
            "/",
            "",
            "/ready",
            "/readyzz",
            "/readyz/",
            "/readyz/a/b",
            "/api/readyz",
        ] {
            assert_eq!(route(&routes, other), None, "{other}");
        }
    }
}
