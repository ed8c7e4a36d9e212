//! The IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers, structured-field syntax).
//!
//! ```text
//! RateLimit-Policy: "10-per-1s";q=10;w=1, "daily";q=1000;w=86400
//! RateLimit: "10-per-1s";r=3;t=1, "daily";r=880;t=3600
//! ```

use std::fmt::Write;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};

use super::decision::QuotaState;
use super::quota::Limit;

/// The `RateLimit-Policy` and `RateLimit` values for one response.
#[derive(Debug, Clone)]
pub(crate) struct RateHeaders {
    pub(crate) policy: HeaderValue,
    pub(crate) remaining: HeaderValue,
}

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl RateHeaders {
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY.clone(), self.policy);
        headers.insert(RATELIMIT.clone(), self.remaining);
    }
}

/// The `RateLimit-Policy` value: one item per quota, `q` = burst, `w` = window seconds.
pub(crate) fn policy(limits: &[Limit]) -> HeaderValue {
    let mut value = String::new();
    for (i, limit) in limits.iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        push_name(&mut value, &limit.name);
        let _ = write!(value, ";q={};w={}", limit.burst, limit.window_secs);
    }
    header_value(value)
}

/// The `RateLimit` value: `r` = units left, `t` = seconds until the quota is
/// whole again, rounded up.
pub(crate) fn remaining(limits: &[Limit], states: &[QuotaState]) -> HeaderValue {
    let mut value = String::new();
    for (i, (limit, state)) in limits.iter().zip(states).enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        push_name(&mut value, &limit.name);
        let _ = write!(
            value,
            ";r={};t={}",
            state.remaining,
            state.reset.as_nanos().div_ceil(1_000_000_000)
        );
    }
    header_value(value)
}

/// A structured-field String: printable ASCII, with `"` and `\` escaped;
/// anything else in a name is replaced by `_`.
fn push_name(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
}

fn header_value(value: String) -> HeaderValue {
    // Only printable ASCII is ever written above.
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;
    use std::time::Duration;

    #[test]
    fn fields_follow_the_draft_syntax() {
        let limits = [
            Quota::per_second(10).compile().unwrap(),
            Quota::new(1000, Duration::from_secs(86_400))
                .named("da\"ily é")
                .compile()
                .unwrap(),
        ];
        assert_eq!(
            policy(&limits),
            r#""10-per-1s";q=10;w=1, "da\"ily _";q=1000;w=86400"#
        );
        let states = [
            QuotaState {
                remaining: 3,
                reset: Duration::from_millis(700),
            },
            QuotaState {
                remaining: 880,
                reset: Duration::from_nanos(3_600_000_000_001),
            },
        ];
        assert_eq!(
            remaining(&limits, &states),
            r#""10-per-1s";r=3;t=1, "da\"ily _";r=880;t=3601"#
        );
    }
}
