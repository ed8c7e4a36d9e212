//! What the retry layer decides on its own: which requests may be sent twice,
//! how long to wait between attempts, and what the server asked for.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method};

// Header names as constants: looking one up by `&str` parses it on every call.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Methods RFC 9110 defines as idempotent: sending them twice does no more
/// harm than sending them once.
#[inline]
pub(crate) fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key(&IDEMPOTENCY_KEY)
}

/// How the wait before each retry grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Exponential with full jitter (the AWS recommendation): before retry
    /// `n`, a random wait in `[0, min(max, base × 2^(n−1))]`.
    FullJitter {
        /// The first retry's ceiling.
        base: Duration,
        /// The ceiling for every retry.
        max: Duration,
    },
    /// Decorrelated jitter: a random wait in `[base, previous × 3]`, at most `max`.
    Decorrelated {
        /// The shortest wait, and the first retry's ceiling.
        base: Duration,
        /// The ceiling for every retry.
        max: Duration,
    },
}

impl Backoff {
    pub(crate) fn limits(self) -> (Duration, Duration) {
        match self {
            Backoff::FullJitter { base, max } | Backoff::Decorrelated { base, max } => (base, max),
        }
    }

    /// The wait before retry number `retry` (1 for the first), given the
    /// previous wait and a random number.
    pub(crate) fn delay(self, retry: u32, previous: Duration, random: u64) -> Duration {
        let pick = |low: u128, high: u128| -> Duration {
            let span = high.saturating_sub(low) + 1;
            let nanos = low + u128::from(random) % span;
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        match self {
            Backoff::FullJitter { base, max } => {
                let ceiling = base
                    .as_nanos()
                    .saturating_mul(1u128 << (retry.saturating_sub(1)).min(64))
                    .min(max.as_nanos());
                pick(0, ceiling)
            }
            Backoff::Decorrelated { base, max } => {
                let high = previous
                    .as_nanos()
                    .saturating_mul(3)
                    .max(base.as_nanos())
                    .min(max.as_nanos());
                pick(base.as_nanos().min(high), high)
            }
        }
    }
}

/// What a server said about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Nothing.
    None,
    /// Wait this long first.
    After(Duration),
    /// Do not retry (`grpc-retry-pushback-ms` negative or malformed).
    Stop,
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A value
/// that is neither is ignored, as if absent; a date in the past means now.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Hint {
    let Some(value) = headers.get(http::header::RETRY_AFTER) else {
        return Hint::None;
    };
    let Ok(text) = value.to_str() else {
        return Hint::None;
    };
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit is "a very long time".
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Hint::After(Duration::from_secs(seconds));
    }
    match httpdate::parse_http_date(text) {
        Ok(at) => Hint::After(at.duration_since(now).unwrap_or(Duration::ZERO)),
        Err(_) => Hint::None,
    }
}

/// `grpc-retry-pushback-ms` (gRPC A6): a non-negative integer of
/// milliseconds to wait; anything else tells the client not to retry.
pub(crate) fn grpc_pushback(headers: &HeaderMap) -> Hint {
    let Some(value) = headers.get(crate::grpc::GRPC_RETRY_PUSHBACK_MS) else {
        return Hint::None;
    };
    let text = value.as_bytes();
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Hint::Stop;
    }
    let millis = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Hint::After(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn idempotency_follows_the_method_or_the_key() {
        let none = HeaderMap::new();
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(&method.parse().unwrap(), &none), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT"] {
            assert!(!is_idempotent(&method.parse().unwrap(), &none), "{method}");
        }
        let keyed = headers("idempotency-key", "8e03978e");
        assert!(is_idempotent(&Method::POST, &keyed));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            retry_after(&headers("retry-after", "120"), now),
            Hint::After(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(
                &headers("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
                now
            ),
            Hint::After(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT"),
                now
            ),
            Hint::After(Duration::ZERO)
        );
        for bad in ["soon", "-5", "1.5", ""] {
            assert_eq!(
                retry_after(&headers("retry-after", bad), now),
                Hint::None,
                "{bad:?}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), Hint::None);
    }

    #[test]
    fn pushback_says_wait_or_stop() {
        assert_eq!(
            grpc_pushback(&headers("grpc-retry-pushback-ms", "250")),
            Hint::After(Duration::from_millis(250))
        );
        for stop in ["-1", "abc", "1.5", ""] {
            assert_eq!(
                grpc_pushback(&headers("grpc-retry-pushback-ms", stop)),
                Hint::Stop,
                "{stop:?}"
            );
        }
        assert_eq!(grpc_pushback(&HeaderMap::new()), Hint::None);
    }

    #[test]
    fn full_jitter_stays_under_the_growing_ceiling() {
        let backoff = Backoff::FullJitter {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        assert_eq!(
            backoff.delay(1, Duration::ZERO, u64::MAX),
            Duration::from_nanos(u64::MAX % 10_000_001)
        );
        for (retry, ceiling) in [(1, 10), (2, 20), (3, 40), (4, 50), (40, 50), (u32::MAX, 50)] {
            let ceiling = Duration::from_millis(ceiling);
            assert_eq!(
                backoff.delay(retry, Duration::ZERO, ceiling.as_nanos() as u64),
                ceiling
            );
            assert_eq!(backoff.delay(retry, Duration::ZERO, 0), Duration::ZERO);
        }
    }

    proptest! {
        #[test]
        fn waits_stay_within_their_bounds(retry in 1u32..100, previous_ms in 0u64..10_000, random: u64) {
            let (base, max) = (Duration::from_millis(25), Duration::from_millis(800));
            let full = Backoff::FullJitter { base, max }.delay(retry, Duration::from_millis(previous_ms), random);
            prop_assert!(full <= max);
            let decorrelated = Backoff::Decorrelated { base, max }.delay(retry, Duration::from_millis(previous_ms), random);
            prop_assert!(decorrelated >= base && decorrelated <= max);
            prop_assert!(decorrelated <= Duration::from_millis(previous_ms * 3).max(base));
        }

        #[test]
        fn hints_never_panic(value in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(value) = http::HeaderValue::from_bytes(&value) {
                let mut map = HeaderMap::new();
                map.insert("retry-after", value.clone());
                map.insert("grpc-retry-pushback-ms", value);
                let _ = retry_after(&map, SystemTime::now());
                let _ = grpc_pushback(&map);
            }
        }
    }
}
