//! A stored response: the head as it will be replayed, its body and
//! trailers, its freshness and variant, and the tags it may be purged by.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{
    AGE, CONNECTION, CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SET_COOKIE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::date;
use super::directives::CacheControl;
use super::policy::{Freshness, Millis};
use super::status::CACHE_STATUS;
use super::vary::Variant;

/// The version of the entry layout; a store that persists entries keeps
/// it, and an entry of another version reads as a miss.
pub const ENTRY_FORMAT: u16 = 1;

/// One stored response.
#[derive(Debug, Clone)]
pub struct Entry {
    pub(crate) status: StatusCode,
    /// The header fields replayed, already without hop-by-hop fields,
    /// `Age`, `Set-Cookie`, and the fields `no-cache`/`private` name.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Arc<[Bytes]>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) freshness: Freshness,
    pub(crate) variant: Variant,
    pub(crate) tags: Arc<[Box<str>]>,
    /// Set by a soft purge: stale from then on, whatever its freshness.
    pub(crate) invalidated: bool,
}

/// Fields never stored (RFC 9111 §3.1): hop-by-hop ones and those we make.
const NOT_STORED: [HeaderName; 9] = [
    CONNECTION,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
    TRAILER,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    AGE,
    SET_COOKIE,
];

/// Obsolete hop-by-hop fields, by name.
const OBSOLETE_HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];

/// A field no stored head keeps, whatever the response says.
fn never_stored(name: &HeaderName) -> bool {
    NOT_STORED.contains(name) || OBSOLETE_HOP_BY_HOP.contains(&name.as_str())
}

/// The header fields of a response as a cache stores them (§3.1): without
/// hop-by-hop fields and those `Connection` names, without `Age` (made on
/// each use) and `Set-Cookie` (never replayed), without the fields that
/// `no-cache="…"` (and in a shared cache `private="…"`) name, and without
/// the tag fields (kept aside).
pub(crate) fn stored_headers(
    headers: &HeaderMap,
    directives: &CacheControl,
    shared: bool,
    tag_fields: &[HeaderName],
) -> HeaderMap {
    // Fields named by Connection or by the directives: rare, so usually
    // no allocation.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        named.extend(
            text.split(',')
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
        );
    }
    named.extend(directives.no_cache_fields().into_iter().flatten());
    if shared {
        named.extend(directives.private_fields().into_iter().flatten());
    }
    // One pass, copying what is kept; the two fields every use sets get
    // their slots first, so a hit's copy of the head is filled in place.
    let mut stored = HeaderMap::with_capacity(headers.len() + 2);
    stored.insert(AGE, HeaderValue::from_static("0"));
    stored.insert(CACHE_STATUS, cache_status_of(headers));
    for (name, value) in headers {
        let dropped = never_stored(name)
            || name == CACHE_STATUS
            || tag_fields.contains(name)
            || named.contains(name);
        if !dropped {
            stored.append(name.clone(), value.clone());
        }
    }
    stored
}

/// The members caches nearer the origin wrote in `Cache-Status`, as one
/// value (empty when none), to which each use adds this cache's.
fn cache_status_of(headers: &HeaderMap) -> HeaderValue {
    let mut lines = headers.get_all(CACHE_STATUS).iter();
    let Some(first) = lines.next() else {
        return HeaderValue::from_static("");
    };
    let mut joined = first.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| first.clone())
}

/// The tags of a response: the space-separated values of its tag fields
/// (`Surrogate-Key`, or comma-separated for `Cache-Tag`).
pub(crate) fn tags(headers: &HeaderMap, tag_fields: &[HeaderName]) -> Vec<Box<str>> {
    let mut tags: Vec<Box<str>> = Vec::new();
    for name in tag_fields {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            for tag in text.split([' ', ',', '\t']).filter(|tag| !tag.is_empty()) {
                if !tags.iter().any(|known| &**known == tag) {
                    tags.push(tag.into());
                }
            }
        }
    }
    tags
}

/// RFC 9111 §3.2 and §4.3.4: a stored response's fields updated with a
/// 304's, but for `Content-Length` and the fields never stored.
pub(crate) fn updated_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in not_modified {
        if name == CONTENT_LENGTH || never_stored(name) {
            continue;
        }
        if !replaced.contains(&name) {
            headers.remove(name);
            replaced.push(name);
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

/// What a store needs to know of an entry it keeps.
impl Entry {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The tags it can be purged by ([`Purge::Tag`](super::Purge::Tag)).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.iter().map(|tag| &**tag)
    }

    /// Whether a soft purge marked it stale.
    pub fn is_marked_stale(&self) -> bool {
        self.invalidated
    }

    /// A copy marked stale, for a soft purge: served only where a stale
    /// response may be (`stale-while-revalidate`, `stale-if-error`).
    pub fn marked_stale(&self) -> Entry {
        Entry {
            invalidated: true,
            ..self.clone()
        }
    }

    /// Whether `other` answers the same requests (the same `Vary` fields
    /// and values), so storing one replaces the other.
    pub fn same_variant(&self, other: &Entry) -> bool {
        self.variant.same_as(&other.variant)
    }

    /// Its variant as bytes, the same for two entries exactly when
    /// [`same_variant`](Self::same_variant) holds: a networked store's
    /// field name for it.
    pub fn variant_id(&self) -> Vec<u8> {
        self.variant.id()
    }

    /// When it stops being of any use, even stale: the end of its freshness
    /// and stale windows. A store may keep entries with a validator longer,
    /// for a 304 to refresh.
    pub fn usable_until(&self) -> std::time::SystemTime {
        let millis = self.freshness.usable_until(0).max(0) as u64;
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis)
    }

    /// Size in the store's byte budget: fields, body and trailers.
    pub fn weight(&self) -> usize {
        let fields = |headers: &HeaderMap| -> usize {
            headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 32)
                .sum()
        };
        let body: usize = self.body.iter().map(Bytes::len).sum();
        fields(&self.headers)
            + body
            + self.trailers.as_ref().map_or(0, fields)
            + self.variant.weight()
            + 128
    }

    /// The body's length in bytes.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// `Age` for a use at `now`, in whole seconds, capped at 2^31.
    pub(crate) fn age_header(&self, now: Millis) -> HeaderValue {
        let seconds =
            (self.freshness.age(now) / 1000).clamp(0, i64::from(super::MAX_DELTA_SECONDS));
        age_value(seconds)
    }

    pub(crate) fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(ETAG)
    }

    pub(crate) fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(LAST_MODIFIED)
    }

    /// Whether the origin can answer a conditional request about it (a
    /// stored `ETag` or `Last-Modified`).
    pub fn has_validator(&self) -> bool {
        self.etag().is_some() || self.last_modified().is_some()
    }

    /// Whether the client's own conditional request (RFC 9110 §13.1.1,
    /// §13.1.3) is satisfied by this entry, so a 304 answers it.
    pub(crate) fn satisfies_conditional(&self, request: &HeaderMap) -> bool {
        let mut if_none_match = request.get_all(IF_NONE_MATCH).iter().peekable();
        if if_none_match.peek().is_some() {
            // Weak comparison (§13.1.2).
            let Some(etag) = self.etag().and_then(|etag| etag.to_str().ok()) else {
                return if_none_match.any(|value| value.as_bytes().trim_ascii() == b"*");
            };
            let ours = opaque_tag(etag);
            return if_none_match
                .filter_map(|value| value.to_str().ok())
                .flat_map(|text| text.split(','))
                .any(|tag| tag.trim() == "*" || opaque_tag(tag.trim()) == ours);
        }
        let Some(since) = request
            .get(IF_MODIFIED_SINCE)
            .and_then(|value| value.to_str().ok())
            .and_then(date::parse)
        else {
            return false;
        };
        // RFC 9111 §4.3.2: Last-Modified, else Date, else when it arrived.
        let header_date = |name| {
            self.headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(date::parse)
        };
        let modified = header_date(LAST_MODIFIED)
            .or_else(|| header_date(http::header::DATE))
            .unwrap_or(self.freshness.response_time.div_euclid(1000));
        modified <= since
    }
}

/// Ages below this are served from one static text: no allocation per hit.
const STATIC_AGES: i64 = 3600;

/// `seconds` as an `Age` value.
fn age_value(seconds: i64) -> HeaderValue {
    static DIGITS: OnceLock<&'static str> = OnceLock::new();
    if !(0..STATIC_AGES).contains(&seconds) {
        return HeaderValue::from(seconds);
    }
    let digits = DIGITS.get_or_init(|| {
        let text: String = (0..STATIC_AGES).map(|n| n.to_string()).collect();
        Box::leak(text.into_boxed_str())
    });
    // Where `seconds` starts: every shorter number, then those of its width.
    let (mut start, mut low, mut width) = (0, 0, 1);
    loop {
        let high = if low == 0 { 10 } else { low * 10 };
        if seconds < high {
            break;
        }
        start += (high - low) * width;
        low = high;
        width += 1;
    }
    let start = (start + (seconds - low) * width) as usize;
    HeaderValue::from_static(&digits[start..start + width as usize])
}

/// An entity tag without its weakness indicator, for weak comparison.
fn opaque_tag(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// The fields of a 304 made from a stored response (RFC 9110 §15.4.5):
/// those a 200 would carry, without the ones describing its content length.
pub(crate) fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut headers = stored.clone();
    headers.remove(CONTENT_LENGTH);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cache::test_headers as headers;

    fn names(map: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_connection_named_and_directive_named_fields_are_not_stored() {
        let response = headers(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("age", "10"),
            ("set-cookie", "id=1"),
            ("x-secret", "s"),
            ("x-user", "u"),
            ("surrogate-key", "a b"),
            ("content-type", "text/plain"),
            (
                "cache-control",
                "max-age=60, no-cache=\"x-secret\", private=\"x-user\"",
            ),
        ]);
        let cc = CacheControl::from_headers(&response);
        let tag_fields = [HeaderName::from_static("surrogate-key")];
        let shared = stored_headers(&response, &cc, true, &tag_fields);
        assert_eq!(
            names(&shared),
            ["age", "cache-control", "cache-status", "content-type"]
        );
        assert_eq!(shared["age"], "0");
        assert_eq!(shared["cache-status"], "");
        let private = stored_headers(&response, &cc, false, &tag_fields);
        assert_eq!(
            names(&private),
            [
                "age",
                "cache-control",
                "cache-status",
                "content-type",
                "x-user"
            ]
        );
    }

    #[test]
    fn earlier_caches_status_lines_are_kept_as_one() {
        let none = stored_headers(&HeaderMap::new(), &CacheControl::default(), true, &[]);
        assert_eq!(none[CACHE_STATUS], "");
        let two = headers(&[
            ("cache-status", "origin; fwd=uri-miss"),
            ("cache-status", "cdn; hit"),
        ]);
        let stored = stored_headers(&two, &CacheControl::default(), true, &[]);
        let lines: Vec<_> = stored.get_all(CACHE_STATUS).iter().collect();
        assert_eq!(lines, ["origin; fwd=uri-miss, cdn; hit"]);
    }

    #[test]
    fn tags_come_from_the_tag_fields() {
        let response = headers(&[
            ("surrogate-key", "a  b"),
            ("cache-tag", "b,c"),
            ("other", "x"),
        ]);
        let fields = [
            HeaderName::from_static("surrogate-key"),
            HeaderName::from_static("cache-tag"),
        ];
        let found = tags(&response, &fields);
        let found: Vec<&str> = found.iter().map(|tag| &**tag).collect();
        assert_eq!(found, ["a", "b", "c"]);
    }

    #[test]
    fn a_304_replaces_fields_it_carries_but_not_content_length() {
        let stored = headers(&[
            ("content-length", "5"),
            ("etag", "\"1\""),
            ("x-a", "old"),
            ("x-b", "kept"),
        ]);
        let not_modified = headers(&[
            ("content-length", "0"),
            ("x-a", "new1"),
            ("x-a", "new2"),
            ("age", "3"),
            ("connection", "close"),
        ]);
        let updated = updated_headers(&stored, &not_modified);
        assert_eq!(updated.get("content-length").unwrap(), "5");
        let a: Vec<_> = updated.get_all("x-a").iter().collect();
        assert_eq!(a, ["new1", "new2"]);
        assert_eq!(updated.get("x-b").unwrap(), "kept");
        assert!(updated.get("age").is_none());
        assert!(updated.get("connection").is_none());
    }

    fn entry(pairs: &[(&str, &str)]) -> Entry {
        crate::cache::test_entry(pairs, b"hello")
    }

    #[test]
    fn client_conditionals_compare_weakly_and_by_date() {
        let tagged = entry(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(tagged.satisfies_conditional(&headers(&[("if-none-match", "\"v1\"")])));
        assert!(tagged.satisfies_conditional(&headers(&[("if-none-match", "\"x\", W/\"v1\"")])));
        assert!(tagged.satisfies_conditional(&headers(&[("if-none-match", "*")])));
        assert!(!tagged.satisfies_conditional(&headers(&[("if-none-match", "\"v2\"")])));
        // If-None-Match decides alone when present.
        assert!(!tagged.satisfies_conditional(&headers(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
        ])));
        assert!(tagged.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:37 GMT"
        )])));
        assert!(!tagged.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:36 GMT"
        )])));
        assert!(!tagged.satisfies_conditional(&headers(&[("if-modified-since", "garbage")])));
        assert!(!tagged.satisfies_conditional(&HeaderMap::new()));
        let untagged = entry(&[]);
        assert!(!untagged.satisfies_conditional(&headers(&[("if-none-match", "\"v1\"")])));
        // No Last-Modified or Date: the time it arrived (the epoch here).
        assert!(untagged.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Thu, 01 Jan 1970 00:00:00 GMT"
        )])));
        let dated = entry(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert!(!dated.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:36 GMT"
        )])));
        assert!(dated.satisfies_conditional(&headers(&[(
            "if-modified-since",
            "Sun, 06 Nov 1994 08:49:37 GMT"
        )])));
        assert!(untagged.satisfies_conditional(&headers(&[("if-none-match", "*")])));
    }

    #[test]
    fn every_age_reads_as_its_number() {
        for seconds in (0..4000).chain([86_400, 1 << 31]) {
            assert_eq!(
                age_value(seconds),
                seconds.to_string().as_str(),
                "{seconds}"
            );
        }
    }

    #[test]
    fn what_a_store_reads_of_an_entry() {
        let mut stored = entry(&[("etag", "\"1\"")]);
        stored.status = StatusCode::NOT_FOUND;
        stored.freshness.response_time = 10_000;
        stored.freshness.initial_age = 2_000;
        stored.freshness.lifetime = 60_000;
        stored.freshness.stale_if_error = 30_000;
        stored.tags = Arc::from(vec![Box::<str>::from("a"), Box::<str>::from("b")]);
        assert_eq!(stored.tags().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(stored.status(), StatusCode::NOT_FOUND);
        assert!(stored.has_validator());
        let until = stored
            .usable_until()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(until.as_millis(), 10_000 - 2_000 + 60_000 + 30_000);
        assert!(!stored.is_marked_stale());
        let stale = stored.marked_stale();
        assert!(stale.is_marked_stale() && stale.same_variant(&stored));
        assert_eq!(stale.body_len(), 5);
    }

    #[test]
    fn the_weight_counts_fields_body_trailers_and_variant() {
        let mut stored = entry(&[("ab", "cde")]);
        stored.trailers = Some(headers(&[("tt", "uv")]));
        stored.variant = crate::cache::vary::Variant {
            fields: vec![(HeaderName::from_static("accept"), Some("x".into()))],
        };
        // Each field: its name, its value and 32 for the map's own slot;
        // 128 for the entry itself.
        let expected = (2 + 3 + 32) + 5 + (2 + 2 + 32) + ("accept".len() + 1) + 128;
        assert_eq!(stored.weight(), expected);
    }

    #[test]
    fn age_is_whole_seconds() {
        let mut stored = entry(&[]);
        stored.freshness.initial_age = 1_500;
        assert_eq!(stored.age_header(2_999), "4");
        assert!(stored.weight() > 5);
        assert_eq!(stored.body_len(), 5);
    }
}
