//! The optional `tracing` span of a request: the attributes of its metrics,
//! under the names OpenTelemetry gives them, so spans exported through
//! `tracing-opentelemetry` and the metrics agree.

use http::Method;
use tracing::Span;
use tracing::field::Empty;

use super::attributes::KnownMethod;
use super::instruments::{Series, Side};

/// Opens the span of a request about to be called. `original` is the
/// request's own method (kept when the series says `_OTHER`), `path` its
/// path (kept as `rpc.method_original` for a gRPC method with no series of
/// its own). The span is named `request`; `otel.name` carries the name
/// OpenTelemetry gives it (`GET /users/{id}`, `shop.Orders/Place`).
pub(crate) fn request_span(side: Side, series: &Series, original: &Method, path: &str) -> Span {
    let kind = match side {
        Side::Server => "server",
        Side::Client => "client",
    };
    let span = if series.grpc.is_some() {
        let method = series.route.as_deref().unwrap_or("_OTHER");
        tracing::info_span!(
            target: "tower_armor::metrics",
            "request",
            otel.name = series.route.as_deref().unwrap_or("grpc"),
            otel.kind = kind,
            otel.status_code = Empty,
            rpc.system.name = "grpc",
            rpc.method = method,
            rpc.method_original = Empty,
            rpc.status_code = Empty,
            server.address = Empty,
            server.port = Empty,
            error.type = Empty,
        )
    } else {
        let method = match series.method {
            // The user's own method: the request's name is the value.
            KnownMethod::Extra(_) => original.as_str(),
            known => known.name(&[]),
        };
        // OpenTelemetry names a span of an unknown method `HTTP`.
        let verb = match series.method {
            KnownMethod::Other => "HTTP",
            _ => method,
        };
        tracing::info_span!(
            target: "tower_armor::metrics",
            "request",
            otel.name = %HttpSpanName { verb, route: series.route.as_deref() },
            otel.kind = kind,
            otel.status_code = Empty,
            http.request.method = method,
            http.request.method_original = Empty,
            http.route = series.route.as_deref(),
            http.response.status_code = Empty,
            url.scheme = series.scheme.as_str(),
            network.protocol.version = super::attributes::protocol_version(series.version),
            server.address = Empty,
            server.port = Empty,
            error.type = Empty,
        )
    };
    if series.grpc.is_some() && series.route.is_none() {
        span.record("rpc.method_original", path.trim_start_matches('/'));
    }
    if series.grpc.is_none() && series.method == KnownMethod::Other {
        span.record("http.request.method_original", original.as_str());
    }
    if let Some(server) = &series.server {
        span.record("server.address", &*server.address);
        span.record("server.port", server.port);
    }
    span
}

/// Records how the request ended on its span.
pub(crate) fn record_end(span: &Span, series: &Series) {
    match series.grpc {
        Some(code) => {
            span.record("rpc.status_code", code.name());
            if series.route.is_none() {
                span.record("rpc.method", "_OTHER");
            }
        }
        None => {
            if let Some(status) = series.status {
                span.record("http.response.status_code", status);
            }
        }
    }
    if let Some(error) = series.error {
        span.record("error.type", &*error.value());
        span.record("otel.status_code", "ERROR");
    }
}

/// `{method} {route}`, or the method alone when there is no route.
struct HttpSpanName<'a> {
    verb: &'a str,
    route: Option<&'a str>,
}

impl std::fmt::Display for HttpSpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.route {
            Some(route) => write!(f, "{} {route}", self.verb),
            None => f.write_str(self.verb),
        }
    }
}
