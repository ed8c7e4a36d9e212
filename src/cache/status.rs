//! `Cache-Status` (RFC 9211): what the cache did with each response, one
//! list member per cache, the one nearest the client last.

use http::header::{Entry, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::policy::Millis;

pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went to the origin (`fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// Nothing stored for the URL.
    UriMiss,
    /// Something stored for the URL, but not for this request's variant.
    VaryMiss,
    /// The stored response was stale and had to be validated.
    Stale,
    /// The request asked for it (`no-cache`, `max-age=0`...).
    Request,
    /// The method is not one the cache answers.
    Method,
    /// The cache was told not to handle this request (its bypass rule).
    Bypass,
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
            Forward::Method => "method",
            Forward::Bypass => "bypass",
        }
    }
}

/// One `Cache-Status` member being written.
pub(crate) struct CacheStatus {
    text: String,
    /// The `key` parameter, written last.
    key: Option<String>,
}

/// A cache's name as a `Cache-Status` list member: a token when it is one,
/// else a quoted string. Made once per layer.
pub(crate) fn member_name(name: &str) -> String {
    let token = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
    if token {
        return name.to_owned();
    }
    let mut text = String::from('"');
    for c in name.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
    text
}

impl CacheStatus {
    /// A member for the cache whose [`member_name`] is `name`.
    pub(crate) fn new(name: &str) -> CacheStatus {
        let mut text = String::with_capacity(name.len() + 48);
        text.push_str(name);
        CacheStatus { text, key: None }
    }

    pub(crate) fn hit(mut self) -> Self {
        self.text.push_str("; hit");
        self
    }

    pub(crate) fn forward(mut self, why: Forward) -> Self {
        self.text.push_str("; fwd=");
        self.text.push_str(why.as_str());
        self
    }

    pub(crate) fn forward_status(mut self, status: StatusCode) -> Self {
        self.text.push_str("; fwd-status=");
        push_integer(&mut self.text, i64::from(status.as_u16()));
        self
    }

    pub(crate) fn stored(mut self) -> Self {
        self.text.push_str("; stored");
        self
    }

    pub(crate) fn collapsed(mut self) -> Self {
        self.text.push_str("; collapsed");
        self
    }

    /// Freshness left, in whole seconds (negative when stale).
    pub(crate) fn ttl(mut self, fresh_left: Millis) -> Self {
        self.text.push_str("; ttl=");
        push_integer(&mut self.text, fresh_left.div_euclid(1000));
        self
    }

    /// The cache key, written after the other parameters.
    pub(crate) fn key(mut self, key: &str) -> Self {
        let mut text = String::from("; key=\"");
        for c in key.chars().filter(|c| (' '..='~').contains(c)) {
            if c == '"' || c == '\\' {
                text.push('\\');
            }
            text.push(c);
        }
        text.push('"');
        self.key = Some(text);
        self
    }

    /// A `detail` token (our own vocabulary: `no-store`, `private`...).
    pub(crate) fn detail(mut self, detail: &str) -> Self {
        self.text.push_str("; detail=");
        self.text.push_str(detail);
        self
    }

    /// Adds the member after those of caches nearer the origin.
    pub(crate) fn write_to(mut self, headers: &mut HeaderMap) {
        if let Some(key) = self.key.take() {
            self.text.push_str(&key);
        }
        append_member(headers, &[self.text.as_bytes()]);
    }
}

/// The member of a plain hit, `name; hit; ttl=N`, added after those of
/// caches nearer the origin: the hot path, built in one exact allocation.
pub(crate) fn write_hit(headers: &mut HeaderMap, name: &str, fresh_left: Millis) {
    const HIT: &[u8] = b"; hit; ttl=";
    let mut digits = [0u8; 21];
    let ttl = integer_digits(fresh_left.div_euclid(1000), &mut digits);
    append_member(headers, &[name.as_bytes(), HIT, ttl]);
}

/// Adds a member made of `parts` after those already in `Cache-Status`
/// (the caches nearer the origin), in one allocation of the exact size.
#[inline]
fn append_member(headers: &mut HeaderMap, parts: &[&[u8]]) {
    let joined = |before: &[u8]| {
        let separator: &[u8] = if before.is_empty() { b"" } else { b", " };
        let mut length = before.len() + separator.len();
        for part in parts {
            length += part.len();
        }
        let mut value = Vec::with_capacity(length);
        value.extend_from_slice(before);
        value.extend_from_slice(separator);
        for part in parts {
            value.extend_from_slice(part);
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
    };
    match headers.entry(CACHE_STATUS) {
        Entry::Occupied(mut existing) => {
            if let Some(value) = joined(existing.get().as_bytes().trim_ascii()) {
                existing.insert(value);
            }
        }
        Entry::Vacant(slot) => {
            if let Some(value) = joined(b"") {
                slot.insert(value);
            }
        }
    }
}

/// `n` in decimal, written at the end of `buffer`.
fn integer_digits(n: i64, buffer: &mut [u8; 21]) -> &[u8] {
    let mut at = buffer.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

/// Writes `n` in decimal without the formatting machinery.
fn push_integer(out: &mut String, n: i64) {
    let mut buffer = [0u8; 21];
    for &byte in integer_digits(n, &mut buffer) {
        out.push(char::from(byte));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_in_full() {
        for n in [0, 7, -1, 59, -3600, i64::MAX, i64::MIN] {
            let mut text = String::new();
            push_integer(&mut text, n);
            assert_eq!(text, n.to_string());
        }
        assert_eq!(member_name("armor"), "armor");
        assert_eq!(member_name("*edge"), "*edge");
        assert_eq!(member_name("1st"), "\"1st\"");
        assert_eq!(member_name("a \"b\""), "\"a \\\"b\\\"\"");
    }

    #[test]
    fn a_plain_hit_is_written_after_earlier_members() {
        let mut headers = HeaderMap::new();
        write_hit(&mut headers, "armor", 59_500);
        assert_eq!(headers[CACHE_STATUS], "armor; hit; ttl=59");
        headers.insert(CACHE_STATUS, HeaderValue::from_static(""));
        write_hit(&mut headers, "armor", -1);
        assert_eq!(headers[CACHE_STATUS], "armor; hit; ttl=-1");
        headers.insert(CACHE_STATUS, HeaderValue::from_static("origin; fwd=miss "));
        write_hit(&mut headers, "armor", 0);
        assert_eq!(headers[CACHE_STATUS], "origin; fwd=miss, armor; hit; ttl=0");
    }

    #[test]
    fn members_follow_rfc_9211() {
        let mut headers = HeaderMap::new();
        CacheStatus::new("armor")
            .hit()
            .ttl(59_500)
            .write_to(&mut headers);
        assert_eq!(headers[CACHE_STATUS], "armor; hit; ttl=59");
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_STATUS, HeaderValue::from_static("origin-cdn; hit"));
        CacheStatus::new(&member_name("edge cache"))
            .forward(Forward::UriMiss)
            .forward_status(StatusCode::OK)
            .stored()
            .collapsed()
            .key("http://h/\"q\"")
            .ttl(-1)
            .detail("no-store")
            .write_to(&mut headers);
        assert_eq!(
            headers[CACHE_STATUS],
            "origin-cdn; hit, \"edge cache\"; fwd=uri-miss; fwd-status=200; stored; collapsed; ttl=-1; detail=no-store; key=\"http://h/\\\"q\\\"\""
        );
        for (why, text) in [
            (Forward::VaryMiss, "vary-miss"),
            (Forward::Stale, "stale"),
            (Forward::Request, "request"),
            (Forward::Method, "method"),
            (Forward::Bypass, "bypass"),
        ] {
            let mut headers = HeaderMap::new();
            CacheStatus::new("c").forward(why).write_to(&mut headers);
            assert_eq!(headers[CACHE_STATUS], format!("c; fwd={text}"));
        }
    }
}
