//! Which responses are compressed, and how their headers change.

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, HeaderValue, VARY,
};
use http::{HeaderMap, StatusCode};
use http_body::SizeHint;

use super::negotiate::Encoding;

/// Whether a response could be compressed at all, whatever the client accepts.
///
/// Not compressed: answers to HEAD, 1xx, 204, 206 and 304; bodies that are
/// already coded or are a range; `Cache-Control: no-transform`; gRPC; types
/// that are compressed already; bodies known to be under `min_size`.
pub(crate) fn compressible(
    head_request: bool,
    status: StatusCode,
    headers: &HeaderMap,
    size: &SizeHint,
    min_size: u64,
) -> bool {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    // The size first: small answers are common and skip the header lookups.
    let known_size = size.exact().or_else(|| {
        headers
            .get(CONTENT_LENGTH)
            .and_then(|length| length.to_str().ok()?.parse().ok())
    });
    if known_size.is_some_and(|size| size < min_size) {
        return false;
    }
    let coded = headers
        .get(CONTENT_ENCODING)
        .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"));
    !(coded
        || headers.contains_key(CONTENT_RANGE)
        || has_token(headers, CACHE_CONTROL, "no-transform")
        || headers
            .get(CONTENT_TYPE)
            .is_some_and(|content_type| is_precompressed(content_type.as_bytes())))
}

/// Media types whose bytes are compressed already (or are gRPC, which has
/// its own message compression); compressing them again only costs time.
fn is_precompressed(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let is = |name: &str| essence.eq_ignore_ascii_case(name.as_bytes());
    let starts = |prefix: &str| {
        essence.len() >= prefix.len()
            && essence[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if starts("image/") {
        // SVG is XML text and compresses well.
        return !is("image/svg+xml");
    }
    starts("audio/")
        || starts("video/")
        || starts("font/woff")
        || (starts("application/grpc") && !starts("application/grpc-web-text"))
        || [
            "application/zip",
            "application/gzip",
            "application/x-gzip",
            "application/zstd",
            "application/x-bzip2",
            "application/x-xz",
            "application/x-7z-compressed",
            "application/vnd.rar",
            "application/x-rar-compressed",
            "application/font-woff",
            "application/pdf",
        ]
        .iter()
        .any(|name| is(name))
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let item = item.trim();
            let item = item.split(['=', ';']).next().unwrap_or_default().trim();
            item.eq_ignore_ascii_case(token)
        })
}

/// Adds `accept-encoding` to `Vary` unless it (or `*`) is there already.
pub(crate) fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    if has_token(headers, VARY, "accept-encoding") || has_token(headers, VARY, "*") {
        return;
    }
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
}

/// The headers of a response whose body is being compressed with `encoding`.
pub(crate) fn mark_encoded(headers: &mut HeaderMap, encoding: Encoding) {
    headers.insert(
        CONTENT_ENCODING,
        HeaderValue::from_static(encoding.as_str()),
    );
    // The length changes, and byte ranges of the coded body mean nothing.
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    // The bytes changed, so a strong validator no longer holds (RFC 9110 §8.8.1).
    if let Some(etag) = headers.get(ETAG) {
        if etag.as_bytes().first() == Some(&b'"') {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
            .collect()
    }

    fn compressible_with(pairs: &[(&str, &str)]) -> bool {
        compressible(
            false,
            StatusCode::OK,
            &headers(pairs),
            &SizeHint::default(),
            1024,
        )
    }

    #[test]
    fn content_types() {
        for (content_type, expected) in [
            ("text/html; charset=utf-8", true),
            ("application/json", true),
            ("image/svg+xml", true),
            ("IMAGE/SVG+XML", true),
            ("application/grpc-web-text", true),
            ("text/event-stream", true),
            ("image/png", false),
            ("Image/JPEG", false),
            ("video/mp4", false),
            ("audio/ogg", false),
            ("font/woff2", false),
            ("application/zip", false),
            ("application/gzip", false),
            ("application/grpc", false),
            ("application/grpc+proto", false),
            ("application/pdf", false),
        ] {
            assert_eq!(
                compressible_with(&[("content-type", content_type)]),
                expected,
                "{content_type}"
            );
        }
    }

    #[test]
    fn header_rules() {
        assert!(!compressible_with(&[("content-encoding", "br")]));
        assert!(compressible_with(&[("content-encoding", "identity")]));
        assert!(!compressible_with(&[("content-range", "bytes 0-9/100")]));
        assert!(!compressible_with(&[(
            "cache-control",
            "public, No-Transform"
        )]));
        assert!(compressible_with(&[("cache-control", "no-cache")]));
        assert!(!compressible_with(&[("content-length", "1023")]));
        assert!(compressible_with(&[("content-length", "1024")]));
        assert!(compressible_with(&[("content-length", "junk")]));
    }

    #[test]
    fn statuses_methods_and_sizes() {
        let none = HeaderMap::new();
        let any = SizeHint::default();
        for status in [100, 101, 204, 206, 304] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!compressible(false, status, &none, &any, 0), "{status}");
        }
        assert!(compressible(false, StatusCode::NOT_FOUND, &none, &any, 0));
        assert!(!compressible(true, StatusCode::OK, &none, &any, 0));
        let small = SizeHint::with_exact(100);
        assert!(!compressible(false, StatusCode::OK, &none, &small, 101));
        assert!(compressible(false, StatusCode::OK, &none, &small, 100));
    }

    #[test]
    fn vary_is_merged_not_duplicated() {
        for (before, after) in [
            (vec![], vec!["accept-encoding"]),
            (vec!["origin"], vec!["origin", "accept-encoding"]),
            (
                vec!["Origin, Accept-Encoding"],
                vec!["Origin, Accept-Encoding"],
            ),
            (vec!["*"], vec!["*"]),
        ] {
            let mut map = HeaderMap::new();
            for value in before {
                map.append(VARY, value.parse().unwrap());
            }
            vary_on_accept_encoding(&mut map);
            let values: Vec<_> = map
                .get_all(VARY)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(values, after);
        }
    }

    #[test]
    fn encoded_headers() {
        let mut map = headers(&[
            ("content-length", "5000"),
            ("accept-ranges", "bytes"),
            ("etag", "\"v1\""),
        ]);
        mark_encoded(&mut map, Encoding::Brotli);
        assert_eq!(map["content-encoding"], "br");
        assert!(!map.contains_key("content-length"));
        assert!(!map.contains_key("accept-ranges"));
        assert_eq!(map["etag"], "W/\"v1\"");
        let mut weak = headers(&[("etag", "W/\"v1\"")]);
        mark_encoded(&mut weak, Encoding::Gzip);
        assert_eq!(weak["etag"], "W/\"v1\"");
    }
}
