//! The IETF `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers, structured-field syntax).
//!
//! ```text
//! RateLimit-Policy: "10-per-1s";q=10;w=1, "daily";q=1000;w=86400
//! RateLimit: "10-per-1s";r=3;t=1, "daily";r=880;t=3600
//! ```

use bytes::Bytes;
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

/// What a layer knows of its two fields before any request: the whole
/// `RateLimit-Policy` value, and each quota's part of `RateLimit` up to its
/// numbers, so a response only writes a few integers.
#[derive(Debug, Clone)]
pub(crate) struct HeaderTemplate {
    policy: HeaderValue,
    /// Per quota: `"name";r=` (with `, ` before all but the first).
    prefixes: Box<[Box<[u8]>]>,
    /// The longest `RateLimit` value: the prefixes, `;t=`, two u64s each.
    capacity: usize,
}

impl HeaderTemplate {
    pub(crate) fn new(limits: &[Limit]) -> HeaderTemplate {
        let prefixes: Box<[Box<[u8]>]> = limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                let mut prefix = Vec::new();
                if i > 0 {
                    prefix.extend_from_slice(b", ");
                }
                push_name(&mut prefix, &limit.name);
                prefix.extend_from_slice(b";r=");
                prefix.into_boxed_slice()
            })
            .collect();
        let capacity = prefixes
            .iter()
            .map(|prefix| prefix.len() + 3 + 2 * 20)
            .sum();
        HeaderTemplate {
            policy: policy(limits),
            prefixes,
            capacity,
        }
    }

    /// Both fields for quotas in `states` (in the layer's order).
    pub(crate) fn fields(&self, states: &[QuotaState]) -> RateHeaders {
        RateHeaders {
            policy: self.policy.clone(),
            remaining: self.remaining(states),
        }
    }

    /// The `RateLimit` value: `r` = units left, `t` = seconds until the
    /// quota is whole again, rounded up.
    fn remaining(&self, states: &[QuotaState]) -> HeaderValue {
        let mut value = Vec::with_capacity(self.capacity);
        for (prefix, state) in self.prefixes.iter().zip(states) {
            value.extend_from_slice(prefix);
            push_integer(&mut value, state.remaining);
            value.extend_from_slice(b";t=");
            let seconds = state.reset.as_secs() + u64::from(state.reset.subsec_nanos() > 0);
            push_integer(&mut value, seconds);
        }
        header_value(value)
    }
}

/// The `RateLimit-Policy` value: one item per quota, `q` = burst, `w` = window seconds.
fn policy(limits: &[Limit]) -> HeaderValue {
    let mut value = Vec::new();
    for (i, limit) in limits.iter().enumerate() {
        if i > 0 {
            value.extend_from_slice(b", ");
        }
        push_name(&mut value, &limit.name);
        value.extend_from_slice(b";q=");
        push_integer(&mut value, u64::from(limit.burst));
        value.extend_from_slice(b";w=");
        push_integer(&mut value, limit.window_secs);
    }
    header_value(value)
}

/// A structured-field String: printable ASCII, with `"` and `\` escaped;
/// anything else in a name is replaced by `_`.
fn push_name(out: &mut Vec<u8>, name: &str) {
    out.push(b'"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            _ => out.push(b'_'),
        }
    }
    out.push(b'"');
}

/// `n` in decimal, without going through `fmt`.
fn push_integer(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn header_value(value: Vec<u8>) -> HeaderValue {
    // Only printable ASCII is ever written above.
    HeaderValue::from_maybe_shared(Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
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
        let template = HeaderTemplate::new(&limits);
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
        let fields = template.fields(&states);
        assert_eq!(
            fields.policy,
            r#""10-per-1s";q=10;w=1, "da\"ily _";q=1000;w=86400"#
        );
        assert_eq!(
            fields.remaining,
            r#""10-per-1s";r=3;t=1, "da\"ily _";r=880;t=3601"#
        );
        // Whole seconds stay as they are; the largest numbers fit.
        let states = [
            QuotaState {
                remaining: 0,
                reset: Duration::from_secs(2),
            },
            QuotaState {
                remaining: u64::MAX,
                reset: Duration::ZERO,
            },
        ];
        assert_eq!(
            template.fields(&states).remaining,
            r#""10-per-1s";r=0;t=2, "da\"ily _";r=18446744073709551615;t=0"#
        );
    }
}
