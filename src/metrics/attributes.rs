//! The attributes of a request's measurements, as OpenTelemetry's semantic
//! conventions name them, each bounded by construction.

use std::borrow::Cow;
use std::fmt;

use http::{Method, Version};

use crate::grpc::GrpcCode;
use crate::key::RequestHead;
use crate::reject::Reason;

/// `http.request.method`: the methods of RFC 9110, PATCH and QUERY by name,
/// and those the user adds with
/// [`extra_methods`](super::MetricsBuilder::extra_methods); anything else
/// is `_OTHER`, so a client cannot mint new series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KnownMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    Query,
    /// The user's extra method at this index.
    Extra(u8),
    Other,
}

impl KnownMethod {
    #[cfg(test)]
    pub(crate) const ALL: [KnownMethod; 11] = [
        KnownMethod::Get,
        KnownMethod::Head,
        KnownMethod::Post,
        KnownMethod::Put,
        KnownMethod::Delete,
        KnownMethod::Connect,
        KnownMethod::Options,
        KnownMethod::Trace,
        KnownMethod::Patch,
        KnownMethod::Query,
        KnownMethod::Other,
    ];

    #[inline]
    pub(crate) fn of(method: &Method, extra: &[Box<str>]) -> KnownMethod {
        match *method {
            Method::GET => KnownMethod::Get,
            Method::POST => KnownMethod::Post,
            Method::HEAD => KnownMethod::Head,
            Method::PUT => KnownMethod::Put,
            Method::DELETE => KnownMethod::Delete,
            Method::OPTIONS => KnownMethod::Options,
            Method::PATCH => KnownMethod::Patch,
            Method::CONNECT => KnownMethod::Connect,
            Method::TRACE => KnownMethod::Trace,
            _ if method.as_str() == "QUERY" => KnownMethod::Query,
            _ => extra
                .iter()
                .position(|known| **known == *method.as_str())
                .and_then(|index| u8::try_from(index).ok())
                .map_or(KnownMethod::Other, KnownMethod::Extra),
        }
    }

    /// The attribute's value; `extra` is the list the method was found in.
    pub(crate) fn name(self, extra: &[Box<str>]) -> &str {
        match self {
            KnownMethod::Extra(index) => {
                extra.get(usize::from(index)).map_or("_OTHER", |name| name)
            }
            standard => standard.standard_name(),
        }
    }

    fn standard_name(self) -> &'static str {
        match self {
            KnownMethod::Get => "GET",
            KnownMethod::Head => "HEAD",
            KnownMethod::Post => "POST",
            KnownMethod::Put => "PUT",
            KnownMethod::Delete => "DELETE",
            KnownMethod::Connect => "CONNECT",
            KnownMethod::Options => "OPTIONS",
            KnownMethod::Trace => "TRACE",
            KnownMethod::Patch => "PATCH",
            KnownMethod::Query => "QUERY",
            KnownMethod::Extra(_) | KnownMethod::Other => "_OTHER",
        }
    }
}

/// A constant, so a lookup does not parse the name each time.
static X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");

/// `url.scheme`: from the URI when it has one (clients), else `http` or,
/// behind a proxy that says so in `X-Forwarded-Proto`, `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    #[inline]
    pub(crate) fn of(request: &RequestHead<'_>) -> Scheme {
        if let Some(scheme) = request.uri.scheme_str() {
            return Scheme::from_name(scheme.as_bytes());
        }
        match request.headers.get(&X_FORWARDED_PROTO) {
            Some(value) => Scheme::from_name(value.as_bytes()),
            None => Scheme::Http,
        }
    }

    fn from_name(name: &[u8]) -> Scheme {
        if name.eq_ignore_ascii_case(b"https") {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// `network.protocol.version`: `1.0`, `1.1`, `2` or `3`.
pub(crate) fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `error.type`: why a request failed, from a fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ErrorType {
    /// An HTTP status that counts as an error (5xx for a server, 4xx and 5xx
    /// for a client).
    Status(u16),
    /// A gRPC status that counts as an error.
    Grpc(GrpcCode),
    /// A layer of this crate refused the request: `timeout`, `rate_limited`,
    /// `circuit_open`, ...
    Refused(Reason),
    /// The caller went away before the answer was complete.
    Cancelled,
    /// The service or the body failed with an error of no known kind.
    Other,
}

impl ErrorType {
    /// The attribute's value. Statuses are their numbers as text, the
    /// only values that are not static.
    pub(crate) fn value(self) -> Cow<'static, str> {
        match self {
            ErrorType::Status(status) => Cow::Owned(status.to_string()),
            ErrorType::Grpc(code) => Cow::Borrowed(code.name()),
            ErrorType::Refused(Reason::TimedOut) => Cow::Borrowed("timeout"),
            ErrorType::Refused(reason) => Cow::Borrowed(reason.as_str()),
            ErrorType::Cancelled => Cow::Borrowed("cancelled"),
            ErrorType::Other => Cow::Borrowed("_OTHER"),
        }
    }
}

/// Where the `http.route` of a request comes from. It must be a template
/// with placeholders (`/users/{id}`), never the request's own path: a
/// request with no route gets no `http.route` at all.
///
/// [`DefaultRoute`] reads axum's `MatchedPath` (feature `axum`); a closure
/// becomes one with [`route_fn`].
pub trait RouteExtractor: Send + Sync + 'static {
    /// The route of this request, if it has one.
    fn route<'a>(&'a self, request: &RequestHead<'a>) -> Option<Cow<'a, str>>;
}

/// The route axum matched, when tower-armor's `axum` feature is on and the
/// layer sits inside the `Router` (`Router::layer`, `route_layer`);
/// otherwise no route.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRoute;

impl RouteExtractor for DefaultRoute {
    #[inline]
    fn route<'a>(&'a self, request: &RequestHead<'a>) -> Option<Cow<'a, str>> {
        #[cfg(feature = "axum")]
        {
            request
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|path| Cow::Borrowed(path.as_str()))
        }
        #[cfg(not(feature = "axum"))]
        {
            let _ = request;
            None
        }
    }
}

/// No `http.route` for any request.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoute;

impl RouteExtractor for NoRoute {
    fn route<'a>(&'a self, _: &RequestHead<'a>) -> Option<Cow<'a, str>> {
        None
    }
}

/// A closure as a [`RouteExtractor`], with its argument's type inferred.
pub fn route_fn<F>(route: F) -> RouteFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<Cow<'static, str>> + Send + Sync + 'static,
{
    RouteFn(route)
}

/// The extractor [`route_fn`] makes.
#[derive(Clone, Copy)]
pub struct RouteFn<F>(F);

impl<F> fmt::Debug for RouteFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteFn")
    }
}

impl<F> RouteExtractor for RouteFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<Cow<'static, str>> + Send + Sync + 'static,
{
    fn route<'a>(&'a self, request: &RequestHead<'a>) -> Option<Cow<'a, str>> {
        (self.0)(request)
    }
}

/// `rpc.method` of a gRPC call: `package.Service/Method` from its path.
///
/// A path that is not a gRPC method, a method outside the list given with
/// [`grpc_methods`](super::MetricsBuilder::grpc_methods), or a call answered
/// `UNIMPLEMENTED` (the server has no such method) is `_OTHER`: only
/// methods that exist get a series of their own.
#[inline]
pub(crate) fn grpc_method<'a>(path: &'a str, allowed: Option<&[Box<str>]>) -> Option<&'a str> {
    let method = path.strip_prefix('/')?;
    let (service, name) = method.split_once('/')?;
    if service.is_empty() || name.is_empty() || name.contains('/') {
        return None;
    }
    match allowed {
        Some(allowed) if !allowed.iter().any(|known| **known == *method) => None,
        _ => Some(method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other_unless_added() {
        for method in KnownMethod::ALL {
            if method == KnownMethod::Other {
                continue;
            }
            let parsed = Method::from_bytes(method.name(&[]).as_bytes()).unwrap();
            assert_eq!(KnownMethod::of(&parsed, &[]), method);
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(KnownMethod::of(&purge, &[]).name(&[]), "_OTHER");
        let extra: Vec<Box<str>> = vec!["PROPFIND".into(), "PURGE".into()];
        assert_eq!(KnownMethod::of(&purge, &extra), KnownMethod::Extra(1));
        assert_eq!(KnownMethod::of(&purge, &extra).name(&extra), "PURGE");
        // Methods are case-sensitive.
        let lower = Method::from_bytes(b"purge").unwrap();
        assert_eq!(KnownMethod::of(&lower, &extra).name(&extra), "_OTHER");
    }

    #[test]
    fn the_scheme_comes_from_the_uri_or_a_forwarding_proxy() {
        let scheme = |request: http::Request<()>| Scheme::of(&RequestHead::of(&request)).as_str();
        assert_eq!(scheme(http::Request::new(())), "http");
        let https = http::Request::get("https://example.com/").body(()).unwrap();
        assert_eq!(scheme(https), "https");
        let proxied = http::Request::get("/")
            .header("x-forwarded-proto", "HTTPS")
            .body(())
            .unwrap();
        assert_eq!(scheme(proxied), "https");
        let odd = http::Request::get("/")
            .header("x-forwarded-proto", "gopher")
            .body(())
            .unwrap();
        assert_eq!(scheme(odd), "http");
    }

    #[test]
    fn protocol_versions_have_their_otel_names() {
        assert_eq!(protocol_version(Version::HTTP_11), "1.1");
        assert_eq!(protocol_version(Version::HTTP_10), "1.0");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
        assert_eq!(protocol_version(Version::HTTP_3), "3");
    }

    #[test]
    fn error_types_are_a_fixed_list() {
        assert_eq!(ErrorType::Status(503).value(), "503");
        assert_eq!(
            ErrorType::Grpc(GrpcCode::Unavailable).value(),
            "UNAVAILABLE"
        );
        assert_eq!(ErrorType::Refused(Reason::TimedOut).value(), "timeout");
        assert_eq!(
            ErrorType::Refused(Reason::RateLimited).value(),
            "rate_limited"
        );
        assert_eq!(
            ErrorType::Refused(Reason::CircuitOpen).value(),
            "circuit_open"
        );
        assert_eq!(ErrorType::Cancelled.value(), "cancelled");
        assert_eq!(ErrorType::Other.value(), "_OTHER");
    }

    #[test]
    fn protocol_versions_are_named_as_opentelemetry_names_them() {
        for (version, name) in [
            (Version::HTTP_09, "0.9"),
            (Version::HTTP_10, "1.0"),
            (Version::HTTP_11, "1.1"),
            (Version::HTTP_2, "2"),
            (Version::HTTP_3, "3"),
        ] {
            assert_eq!(protocol_version(version), name);
        }
    }

    #[test]
    fn grpc_methods_come_from_well_formed_paths_and_the_list() {
        assert_eq!(grpc_method("/pkg.Svc/Call", None), Some("pkg.Svc/Call"));
        for bad in [
            "",
            "/",
            "pkg.Svc/Call",
            "/pkg.Svc",
            "/pkg.Svc/",
            "//Call",
            "/a/b/c",
        ] {
            assert_eq!(grpc_method(bad, None), None, "{bad}");
        }
        let allowed: Vec<Box<str>> = vec!["pkg.Svc/Call".into()];
        assert_eq!(
            grpc_method("/pkg.Svc/Call", Some(&allowed)),
            Some("pkg.Svc/Call")
        );
        assert_eq!(grpc_method("/pkg.Svc/Other", Some(&allowed)), None);
    }
}
