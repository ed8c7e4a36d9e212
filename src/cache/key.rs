//! Cache keys: the effective request URI (RFC 9111 §2), which a user may
//! normalise (drop tracking parameters, sort the query).

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderMap, Uri};

/// The parts of a request's effective URI that make its cache key.
///
/// A key normaliser (`CacheLayerBuilder::key_normalizer`) gets one to
/// change before the key is made, so requests that differ only in what
/// does not change the response share an entry:
///
/// ```
/// use tower_armor::cache::CacheKey;
///
/// let mut key = CacheKey::new("https", "shop.example", "/items", Some("utm_source=x&b=2&a=1"));
/// key.remove_query_params(|name| name.starts_with("utm_"));
/// key.sort_query();
/// assert_eq!(key.to_string(), "https://shop.example/items?a=1&b=2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// Host and port, lowercase.
    pub authority: String,
    /// The path, as sent.
    pub path: String,
    /// The query without `?`; `None` when the URI has none.
    pub query: Option<String>,
}

impl CacheKey {
    /// A key from its parts; scheme and authority are lowercased.
    pub fn new(scheme: &str, authority: &str, path: &str, query: Option<&str>) -> CacheKey {
        CacheKey {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_ascii_lowercase(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            query: query.map(str::to_owned),
        }
    }

    /// The key of a request: its URI's scheme and authority when absolute
    /// (a client's request), else `http` and the `Host` field (a server's).
    pub(crate) fn of(uri: &Uri, headers: &HeaderMap) -> CacheKey {
        let (scheme, authority) = scheme_and_authority(uri, headers);
        CacheKey::new(scheme, authority, uri.path(), uri.query())
    }

    /// Drops the query parameters whose name `remove` accepts (an empty
    /// query becomes none).
    pub fn remove_query_params(&mut self, remove: impl Fn(&str) -> bool) {
        if let Some(query) = &self.query {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !remove(pair.split('=').next().unwrap_or("")))
                .collect();
            self.query = (!kept.is_empty()).then(|| kept.join("&"));
        }
    }

    /// Sorts the query's `name=value` pairs, so their order does not matter.
    pub fn sort_query(&mut self) {
        if let Some(query) = &self.query {
            let mut pairs: Vec<&str> = query.split('&').collect();
            pairs.sort_unstable();
            self.query = Some(pairs.join("&"));
        }
    }

    /// The key as stored: `scheme://authority/path?query`.
    pub(crate) fn to_shared(&self) -> Arc<str> {
        Arc::from(self.to_string())
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(query) = &self.query {
            f.write_char('?')?;
            f.write_str(query)?;
        }
        Ok(())
    }
}

/// A user's key normaliser.
pub(crate) type KeyNormalizer = Arc<dyn Fn(&mut CacheKey) + Send + Sync>;

thread_local! {
    /// The buffer lookup keys are written in, so a hit allocates none.
    static KEY_BUFFER: Cell<String> = const { Cell::new(String::new()) };
}

/// A request's key, in this thread's key buffer (given back on drop).
pub(crate) struct LookupKey(String);

impl std::ops::Deref for LookupKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for LookupKey {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        KEY_BUFFER.with(|cell| cell.set(buffer));
    }
}

/// The stored key of a request, normalised. Without a normaliser it is
/// written in a reused buffer: no allocation on the path of every lookup.
pub(crate) fn primary_key(parts: &Parts, normalizer: Option<&KeyNormalizer>) -> LookupKey {
    if let Some(normalize) = normalizer {
        let mut key = CacheKey::of(&parts.uri, &parts.headers);
        normalize(&mut key);
        return LookupKey(key.to_string());
    }
    let (scheme, authority) = scheme_and_authority(&parts.uri, &parts.headers);
    let path = parts.uri.path();
    let query = parts.uri.query();
    let mut key = KEY_BUFFER.with(Cell::take);
    key.clear();
    push_lowercase(&mut key, scheme);
    key.push_str("://");
    push_lowercase(&mut key, authority);
    key.push_str(if path.is_empty() { "/" } else { path });
    if let Some(query) = query {
        key.push('?');
        key.push_str(query);
    }
    LookupKey(key)
}

fn push_lowercase(out: &mut String, text: &str) {
    let start = out.len();
    out.push_str(text);
    out[start..].make_ascii_lowercase();
}

/// A request's scheme (`http` unless its URI is absolute) and authority
/// (its URI's, else its `Host` field's).
fn scheme_and_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> (&'a str, &'a str) {
    let authority = uri
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| headers.get(HOST).and_then(|host| host.to_str().ok()))
        .unwrap_or("");
    (uri.scheme_str().unwrap_or("http"), authority)
}

/// The key a `Location` or `Content-Location` value names, when it is the
/// same origin as `base` (RFC 9111 §4.4 invalidates only those).
pub(crate) fn same_origin_key(
    base: &CacheKey,
    location: &str,
    normalizer: Option<&KeyNormalizer>,
) -> Option<Arc<str>> {
    let mut key = if location.contains("://") {
        let uri: Uri = location.parse().ok()?;
        let key = CacheKey::new(
            uri.scheme_str()?,
            uri.authority()?.as_str(),
            uri.path(),
            uri.query(),
        );
        if key.scheme != base.scheme || key.authority != base.authority {
            return None;
        }
        key
    } else {
        // A path, or a reference relative to the base's directory.
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let directory = base
                .path
                .rsplit_once('/')
                .map_or("", |(directory, _)| directory);
            format!("{directory}/{location}")
        };
        let uri: Uri = path.parse().ok()?;
        CacheKey::new(&base.scheme, &base.authority, uri.path(), uri.query())
    };
    if let Some(normalize) = normalizer {
        normalize(&mut key);
    }
    Some(key.to_shared())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_key_is_the_effective_uri() {
        let server = request("/a/b?x=1", Some("Example.COM:8080"));
        assert_eq!(
            &*primary_key(&server, None),
            "http://example.com:8080/a/b?x=1"
        );
        let client = request("https://api.example/v1", None);
        assert_eq!(&*primary_key(&client, None), "https://api.example/v1");
        // The method plays no part: GET and HEAD share entries.
        let no_host = request("/", None);
        assert_eq!(&*primary_key(&no_host, None), "http:///");
    }

    #[test]
    fn the_fast_key_is_the_key_spelled_out() {
        for (uri, host) in [
            ("/a?b", Some("H:1")),
            ("https://X.example", None),
            ("/p", None),
        ] {
            let parts = request(uri, host);
            let spelled = CacheKey::of(&parts.uri, &parts.headers).to_string();
            assert_eq!(&*primary_key(&parts, None), spelled, "{uri}");
        }
    }

    #[test]
    fn the_key_buffer_is_given_back_for_the_next_request() {
        drop(primary_key(
            &request("/a-path-long-enough-to-matter", Some("h")),
            None,
        ));
        let kept = KEY_BUFFER.with(|cell| {
            let buffer = cell.take();
            let capacity = buffer.capacity();
            cell.set(buffer);
            capacity
        });
        assert!(kept >= "http://h/a-path-long-enough-to-matter".len());
    }

    #[test]
    fn a_normaliser_changes_the_key() {
        let normalize: KeyNormalizer = Arc::new(|key: &mut CacheKey| {
            key.remove_query_params(|name| name.starts_with("utm_"));
            key.sort_query();
        });
        let parts = request("/p?utm_a=1&z=2&a=3", Some("h"));
        assert_eq!(
            &*primary_key(&parts, Some(&normalize)),
            "http://h/p?a=3&z=2"
        );
        let only_tracking = request("/p?utm_a=1", Some("h"));
        assert_eq!(
            &*primary_key(&only_tracking, Some(&normalize)),
            "http://h/p"
        );
    }

    #[test]
    fn locations_resolve_against_the_request_and_must_share_its_origin() {
        let base = CacheKey::new("http", "h", "/dir/page", None);
        assert_eq!(
            same_origin_key(&base, "/other?q", None).as_deref(),
            Some("http://h/other?q")
        );
        assert_eq!(
            same_origin_key(&base, "sibling", None).as_deref(),
            Some("http://h/dir/sibling")
        );
        assert_eq!(
            same_origin_key(&base, "http://H/abs", None).as_deref(),
            Some("http://h/abs")
        );
        assert_eq!(same_origin_key(&base, "http://elsewhere/abs", None), None);
        assert_eq!(same_origin_key(&base, "https://h/abs", None), None);
        assert_eq!(same_origin_key(&base, "not a uri", None), None);
    }
}
