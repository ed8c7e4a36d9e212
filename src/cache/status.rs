//! `Cache-Status` (RFC 9211): what the cache did with each response, one
//! list member per cache, the one nearest the client last.

use std::fmt::Write as _;

use http::header::HeaderName;
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
}

impl Forward {
    fn as_str(self) -> &'static str {
        match self {
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Stale => "stale",
            Forward::Request => "request",
            Forward::Method => "method",
        }
    }
}

/// One `Cache-Status` member being written.
pub(crate) struct CacheStatus {
    text: String,
}

impl CacheStatus {
    /// `name` is written as a token when it is one, else as a string.
    pub(crate) fn new(name: &str) -> CacheStatus {
        let mut text = String::with_capacity(64);
        let token = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
        if token {
            text.push_str(name);
        } else {
            text.push('"');
            for c in name.chars().filter(|c| (' '..='~').contains(c)) {
                if c == '"' || c == '\\' {
                    text.push('\\');
                }
                text.push(c);
            }
            text.push('"');
        }
        CacheStatus { text }
    }

    pub(crate) fn hit(mut self) -> Self {
        self.text.push_str("; hit");
        self
    }

    pub(crate) fn forward(mut self, why: Forward) -> Self {
        let _ = write!(self.text, "; fwd={}", why.as_str());
        self
    }

    pub(crate) fn forward_status(mut self, status: StatusCode) -> Self {
        let _ = write!(self.text, "; fwd-status={}", status.as_u16());
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
        let _ = write!(self.text, "; ttl={}", fresh_left.div_euclid(1000));
        self
    }

    pub(crate) fn key(mut self, key: &str) -> Self {
        self.text.push_str("; key=\"");
        for c in key.chars().filter(|c| (' '..='~').contains(c)) {
            if c == '"' || c == '\\' {
                self.text.push('\\');
            }
            self.text.push(c);
        }
        self.text.push('"');
        self
    }

    /// A `detail` token (our own vocabulary: `no-store`, `private`...).
    pub(crate) fn detail(mut self, detail: &str) -> Self {
        let _ = write!(self.text, "; detail={detail}");
        self
    }

    /// Adds the member after those of caches nearer the origin.
    pub(crate) fn write_to(self, headers: &mut HeaderMap) {
        let value = match headers
            .get(CACHE_STATUS)
            .and_then(|existing| existing.to_str().ok())
        {
            Some(existing) if !existing.trim().is_empty() => format!("{existing}, {}", self.text),
            _ => self.text,
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(CACHE_STATUS, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        CacheStatus::new("edge cache")
            .forward(Forward::UriMiss)
            .forward_status(StatusCode::OK)
            .stored()
            .collapsed()
            .ttl(-1)
            .key("http://h/\"q\"")
            .detail("no-store")
            .write_to(&mut headers);
        assert_eq!(
            headers[CACHE_STATUS],
            "origin-cdn; hit, \"edge cache\"; fwd=uri-miss; fwd-status=200; stored; collapsed; ttl=-1; key=\"http://h/\\\"q\\\"\"; detail=no-store"
        );
        for (why, text) in [
            (Forward::VaryMiss, "vary-miss"),
            (Forward::Stale, "stale"),
            (Forward::Request, "request"),
            (Forward::Method, "method"),
        ] {
            let mut headers = HeaderMap::new();
            CacheStatus::new("c").forward(why).write_to(&mut headers);
            assert_eq!(headers[CACHE_STATUS], format!("c; fwd={text}"));
        }
    }
}
