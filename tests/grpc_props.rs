//! Property tests for the gRPC header parsers: round trips and no panics.

use std::time::Duration;

use http::HeaderMap;
use proptest::prelude::*;
use tower_armor::grpc::{GrpcCode, Protocol, format_grpc_timeout, parse_grpc_timeout};

proptest! {
    #[test]
    fn format_then_parse_never_loses_time_and_gains_less_than_a_unit(nanos in any::<u64>()) {
        let timeout = Duration::from_nanos(nanos);
        let text = format_grpc_timeout(timeout);
        let parsed = parse_grpc_timeout(text.as_bytes()).expect("our own output parses");
        prop_assert!(parsed >= timeout, "{text} is shorter than {timeout:?}");
        let unit = match text.as_bytes()[text.len() - 1] {
            b'n' => Duration::from_nanos(1),
            b'u' => Duration::from_micros(1),
            b'm' => Duration::from_millis(1),
            b'S' => Duration::from_secs(1),
            b'M' => Duration::from_secs(60),
            b'H' => Duration::from_secs(3600),
            other => panic!("unexpected unit {other}"),
        };
        prop_assert!(parsed - timeout < unit);
        prop_assert!(text.len() <= 9);
    }

    #[test]
    fn short_timeouts_round_trip_exactly(nanos in 0u64..=99_999_999) {
        let timeout = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_grpc_timeout(format_grpc_timeout(timeout).as_bytes()), Some(timeout));
    }

    #[test]
    fn parse_then_format_keeps_the_value(value in 0u64..=99_999_999, unit in prop::sample::select(vec!['n', 'u', 'm', 'S', 'M', 'H'])) {
        let text = format!("{value}{unit}");
        let parsed = parse_grpc_timeout(text.as_bytes()).unwrap();
        prop_assert_eq!(parse_grpc_timeout(format_grpc_timeout(parsed).as_bytes()), Some(parsed));
    }

    #[test]
    fn timeout_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
        if let Some(parsed) = parse_grpc_timeout(&bytes) {
            // Whatever is accepted is well formed.
            let (unit, digits) = bytes.split_last().unwrap();
            prop_assert!(b"HMSmun".contains(unit));
            prop_assert!((1..=8).contains(&digits.len()));
            prop_assert!(digits.iter().all(u8::is_ascii_digit));
            prop_assert!(parsed <= Duration::from_secs(99_999_999 * 3600));
        }
    }

    #[test]
    fn status_and_content_type_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = GrpcCode::parse(&bytes);
        let _ = Protocol::from_content_type(&bytes);
        if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", value.clone());
            headers.insert("content-type", value);
            let _ = GrpcCode::from_headers(&headers);
            let _ = Protocol::detect(&headers);
        }
    }
}
