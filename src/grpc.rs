//! gRPC plumbing shared by every layer: telling a gRPC call from plain HTTP,
//! the status code set, and the `grpc-timeout` header.
//!
//! Layers refuse a gRPC call differently from an HTTP request (a trailers-only
//! response with `grpc-status` instead of a 4xx/5xx), read its outcome from
//! `grpc-status`, and honour its deadline; all of that starts here.

use std::fmt;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName};

// Header names are `HeaderName` constants, as `http::header`'s are: a
// lookup by `&str` parses the name on every call.

/// The `grpc-status` header (or trailer) name.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer) name.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-timeout` request header name.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The `grpc-retry-pushback-ms` header name (gRPC A6: how long the client should wait).
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

/// Which wire protocol a request speaks, judged from its `content-type`.
///
/// Refusals are rendered for the protocol the caller speaks: gRPC callers get a
/// trailers-only response, everyone else a plain HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP (anything that is not gRPC).
    Http,
    /// gRPC over HTTP/2: `application/grpc`, `application/grpc+proto`, `application/grpc+json`, ...
    Grpc,
    /// gRPC-Web, binary framing: `application/grpc-web`, `application/grpc-web+proto`, ...
    GrpcWeb,
    /// gRPC-Web, base64 text framing: `application/grpc-web-text`, ...
    GrpcWebText,
}

impl Protocol {
    /// Detects the protocol from a request's (or response's) headers.
    ///
    /// The check is on the media type only, case-insensitively, so parameters
    /// (`; charset=...`) and the `+proto`/`+json` suffixes do not matter.
    pub fn detect(headers: &HeaderMap) -> Protocol {
        match headers.get(CONTENT_TYPE) {
            Some(value) => Protocol::from_content_type(value.as_bytes()),
            None => Protocol::Http,
        }
    }

    /// Detects the protocol of a request. gRPC and gRPC-Web calls are always
    /// `POST`, so any other method is plain HTTP without a header lookup.
    #[inline]
    pub fn of_request<B>(request: &http::Request<B>) -> Protocol {
        if request.method() == http::Method::POST {
            Protocol::detect(request.headers())
        } else {
            Protocol::Http
        }
    }

    /// Detects the protocol from a `content-type` value.
    pub fn from_content_type(value: &[u8]) -> Protocol {
        const GRPC: &[u8] = b"application/grpc";
        if value.len() < GRPC.len() || !value[..GRPC.len()].eq_ignore_ascii_case(GRPC) {
            return Protocol::Http;
        }
        let rest = &value[GRPC.len()..];
        let subtype_end = rest
            .iter()
            .position(|b| *b == b';' || *b == b' ')
            .unwrap_or(rest.len());
        let rest = &rest[..subtype_end];
        if rest.is_empty() || rest[0] == b'+' {
            return Protocol::Grpc;
        }
        let starts = |prefix: &[u8]| {
            rest.len() >= prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix)
        };
        if starts(b"-web-text") {
            let tail = &rest[b"-web-text".len()..];
            if tail.is_empty() || tail[0] == b'+' {
                return Protocol::GrpcWebText;
            }
        } else if starts(b"-web") {
            let tail = &rest[b"-web".len()..];
            if tail.is_empty() || tail[0] == b'+' {
                return Protocol::GrpcWeb;
            }
        }
        // `application/grpcfoo` is not gRPC.
        Protocol::Http
    }

    /// True for gRPC and both gRPC-Web framings.
    pub fn is_grpc(self) -> bool {
        !matches!(self, Protocol::Http)
    }

    /// The `content-type` a trailers-only response should carry for this protocol.
    pub fn grpc_content_type(self) -> &'static str {
        match self {
            Protocol::GrpcWeb => "application/grpc-web",
            Protocol::GrpcWebText => "application/grpc-web-text",
            Protocol::Grpc | Protocol::Http => "application/grpc",
        }
    }
}

/// A gRPC status code (the 17 codes of the gRPC spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: the caller cancelled the call.
    Cancelled = 1,
    /// 2: unknown error.
    Unknown = 2,
    /// 3: the client sent an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// 5: an entity was not found.
    NotFound = 5,
    /// 6: an entity already exists.
    AlreadyExists = 6,
    /// 7: the caller lacks permission.
    PermissionDenied = 7,
    /// 8: a resource (quota, rate) is exhausted.
    ResourceExhausted = 8,
    /// 9: the system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// 10: the operation was aborted (e.g. a concurrency conflict).
    Aborted = 10,
    /// 11: the operation went past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or supported.
    Unimplemented = 12,
    /// 13: internal error.
    Internal = 13,
    /// 14: the service is currently unavailable; usually transient.
    Unavailable = 14,
    /// 15: unrecoverable data loss.
    DataLoss = 15,
    /// 16: the request lacks valid credentials.
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in numeric order.
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code for a number, or `None` outside 0..=16.
    pub fn from_u32(code: u32) -> Option<GrpcCode> {
        GrpcCode::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Parses a `grpc-status` value (ASCII decimal). Anything else is `None`.
    pub fn parse(value: &[u8]) -> Option<GrpcCode> {
        if value.is_empty() || value.len() > 2 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = value.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        GrpcCode::from_u32(number)
    }

    /// Reads `grpc-status` from a header (or trailer) map.
    pub fn from_headers(headers: &HeaderMap) -> Option<GrpcCode> {
        GrpcCode::parse(headers.get(GRPC_STATUS)?.as_bytes())
    }

    /// The numeric value sent on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The canonical upper-case name, e.g. `DEADLINE_EXCEEDED`.
    pub fn name(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code a gRPC client reports for a response whose HTTP status is not
    /// 200, as gRPC's HTTP-to-gRPC status mapping says: a proxy's 429, 502,
    /// 503 and 504 are `UNAVAILABLE`, 400 is `INTERNAL`, 401
    /// `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, 404 `UNIMPLEMENTED`,
    /// anything else `UNKNOWN`.
    pub fn from_http_status(status: http::StatusCode) -> GrpcCode {
        match status.as_u16() {
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502..=504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }

    /// The `grpc-status` header value for this code (`"0"` ..= `"16"`).
    pub fn header_value(self) -> http::HeaderValue {
        const VALUES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        http::HeaderValue::from_static(VALUES[self as usize])
    }

    /// True for the codes that mean the server failed, as OpenTelemetry's
    /// semantic conventions count them: `UNKNOWN`, `DEADLINE_EXCEEDED`,
    /// `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`.
    pub fn is_server_error(self) -> bool {
        matches!(
            self,
            GrpcCode::Unknown
                | GrpcCode::DeadlineExceeded
                | GrpcCode::Unimplemented
                | GrpcCode::Internal
                | GrpcCode::Unavailable
                | GrpcCode::DataLoss
        )
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Percent-encodes a `grpc-message` value as the gRPC spec asks: every byte
/// outside printable ASCII (0x20..=0x7E), and `%` itself, becomes `%XX`.
pub fn encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7E).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 0x0F)]));
        }
    }
    out
}

/// The largest value a `grpc-timeout` may carry: at most 8 ASCII digits.
const MAX_TIMEOUT_VALUE: u64 = 99_999_999;

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by one unit
/// (`H`, `M`, `S`, `m`, `u`, `n`).
///
/// Returns `None` for anything else (empty, too many digits, a sign, white
/// space, an unknown unit); callers then ignore the header, as the gRPC
/// implementations do. Never panics.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(number * 3600),
        b'M' => Duration::from_secs(number * 60),
        b'S' => Duration::from_secs(number),
        b'm' => Duration::from_millis(number),
        b'u' => Duration::from_micros(number),
        b'n' => Duration::from_nanos(number),
        _ => return None,
    })
}

/// Reads and parses the `grpc-timeout` header; a missing or malformed header is `None`.
pub fn grpc_timeout_from_headers(headers: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get(GRPC_TIMEOUT)?.as_bytes())
}

/// Formats a duration as a `grpc-timeout` value in the finest unit whose
/// value fits in 8 digits, rounding up so the peer never sees less time than
/// is left. Durations of at most 99,999,999 ns round-trip exactly.
///
/// Durations beyond 99,999,999 hours are clamped to that maximum.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = timeout.as_nanos();
    for (unit_nanos, unit) in UNITS {
        let value = nanos.div_ceil(unit_nanos);
        if value <= u128::from(MAX_TIMEOUT_VALUE) {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_TIMEOUT_VALUE}H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_grpc_content_types() {
        let cases: &[(&str, Protocol)] = &[
            ("application/grpc", Protocol::Grpc),
            ("application/grpc+proto", Protocol::Grpc),
            ("application/grpc+json", Protocol::Grpc),
            ("Application/GRPC; charset=utf-8", Protocol::Grpc),
            ("application/grpc-web", Protocol::GrpcWeb),
            ("application/grpc-web+proto", Protocol::GrpcWeb),
            ("application/grpc-web-text", Protocol::GrpcWebText),
            ("application/grpc-web-text+proto", Protocol::GrpcWebText),
            ("application/grpcx", Protocol::Http),
            ("application/grpc-webby", Protocol::Http),
            ("application/json", Protocol::Http),
            ("", Protocol::Http),
        ];
        for (value, expected) in cases {
            assert_eq!(
                Protocol::from_content_type(value.as_bytes()),
                *expected,
                "{value}"
            );
        }
    }

    #[test]
    fn only_post_requests_can_be_grpc() {
        let post = http::Request::post("/svc/Method")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(Protocol::of_request(&post), Protocol::Grpc);
        let get = http::Request::get("/svc/Method")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(Protocol::of_request(&get), Protocol::Http);
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout(b"1S"), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_grpc_timeout(b"500m"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_grpc_timeout(b"30000000u"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        for bad in [
            &b""[..],
            b"S",
            b"123456789S",
            b"-1S",
            b"1 S",
            b"1s",
            b"1.5S",
            b"10",
            b"+1m",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits() {
        assert_eq!(format_grpc_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(50)), "50000000n");
        assert_eq!(format_grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000000u");
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(86_400)),
            "86400000m"
        );
        // Rounds up, never down.
        assert_eq!(
            format_grpc_timeout(Duration::from_nanos(100_000_001)),
            "100001u"
        );
        assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn status_codes_round_trip_through_headers() {
        for code in GrpcCode::ALL {
            assert_eq!(GrpcCode::parse(code.header_value().as_bytes()), Some(code));
        }
        assert_eq!(GrpcCode::parse(b"17"), None);
        assert_eq!(GrpcCode::parse(b"007"), None);
        assert_eq!(GrpcCode::parse(b"x"), None);
    }

    #[test]
    fn http_statuses_map_to_the_codes_clients_report() {
        for (status, code) in [
            (400, GrpcCode::Internal),
            (401, GrpcCode::Unauthenticated),
            (403, GrpcCode::PermissionDenied),
            (404, GrpcCode::Unimplemented),
            (429, GrpcCode::Unavailable),
            (502, GrpcCode::Unavailable),
            (503, GrpcCode::Unavailable),
            (504, GrpcCode::Unavailable),
            (500, GrpcCode::Unknown),
            (501, GrpcCode::Unknown),
            (505, GrpcCode::Unknown),
            (418, GrpcCode::Unknown),
        ] {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert_eq!(GrpcCode::from_http_status(status), code, "{status}");
        }
    }

    #[test]
    fn codes_have_their_canonical_names() {
        let names = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        for (code, name) in GrpcCode::ALL.into_iter().zip(names) {
            assert_eq!(code.name(), name);
            assert_eq!(code.to_string(), name);
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(encode_grpc_message("deadline 100%"), "deadline 100%25");
        assert_eq!(encode_grpc_message("é\n"), "%C3%A9%0A");
    }
}
