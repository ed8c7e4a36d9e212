//! `Cache-Control` as RFC 9111 §5.2 and RFC 9110 §5.6 define it: a
//! comma-separated list of `token [ "=" ( token / quoted-string ) ]`, the
//! field lines of a message combined into one list.

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName};

/// The largest delta-seconds value kept: RFC 9111 §1.2.2 asks a cache to
/// use 2^31 for any value it cannot represent.
pub const MAX_DELTA_SECONDS: u32 = 1 << 31;

/// The directives of a message's `Cache-Control` field lines, in order,
/// names lowercased, quoted values unquoted.
///
/// Parsing never fails: what is not a directive is skipped, and a value a
/// directive cannot use reads as invalid, with the meaning RFC 9111 gives
/// it (an invalid `max-age` makes a response stale).
///
/// ```
/// use http::HeaderMap;
/// use tower_armor::cache::CacheControl;
///
/// let mut headers = HeaderMap::new();
/// headers.append("cache-control", "public, max-age=600".parse().unwrap());
/// headers.append("cache-control", "no-cache=\"Set-Cookie\", x-ext=\"a, b\"".parse().unwrap());
/// let directives = CacheControl::from_headers(&headers);
/// assert!(directives.public());
/// assert_eq!(directives.max_age(), Some(600));
/// assert_eq!(directives.no_cache_fields(), Some(vec!["set-cookie".parse().unwrap()]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    directives: Vec<(Box<str>, Option<Box<str>>)>,
    /// Read from a targeted field (RFC 9213): `Expires` no longer counts.
    targeted: bool,
}

impl CacheControl {
    /// The directives of every `Cache-Control` field line in `headers`.
    pub fn from_headers(headers: &HeaderMap) -> CacheControl {
        let mut directives = Vec::new();
        for value in headers.get_all(CACHE_CONTROL) {
            // A field line that is not text holds no directive we can read.
            if let Ok(text) = std::str::from_utf8(value.as_bytes()) {
                parse_into(text, &mut directives);
            }
        }
        CacheControl {
            directives,
            targeted: false,
        }
    }

    /// Directives read from a targeted field such as `CDN-Cache-Control`.
    pub(crate) fn from_pairs(pairs: Vec<(String, Option<String>)>) -> CacheControl {
        let directives = pairs
            .into_iter()
            .map(|(name, value)| (name.into_boxed_str(), value.map(String::into_boxed_str)))
            .collect();
        CacheControl {
            directives,
            targeted: true,
        }
    }

    /// Whether these came from a targeted field, which overrides
    /// `Expires` as well as `Cache-Control`.
    pub(crate) fn is_targeted(&self) -> bool {
        self.targeted
    }

    /// The directives of one field value.
    pub fn parse(value: &str) -> CacheControl {
        let mut directives = Vec::new();
        parse_into(value, &mut directives);
        CacheControl {
            directives,
            targeted: false,
        }
    }

    /// Whether the directive `name` (lowercase) is present, with or without
    /// a value.
    pub fn has(&self, name: &str) -> bool {
        self.first(name).is_some()
    }

    /// The value of the first `name` directive: `Some(None)` when it has no
    /// value.
    pub fn value(&self, name: &str) -> Option<Option<&str>> {
        self.first(name).map(|(_, value)| value.as_deref())
    }

    fn first(&self, name: &str) -> Option<&(Box<str>, Option<Box<str>>)> {
        self.directives
            .iter()
            .find(|(directive, _)| &**directive == name)
    }

    /// The first `name` directive as delta-seconds: `Some(Ok(n))` (capped
    /// at [`MAX_DELTA_SECONDS`]), `Some(Err(()))` when its value is missing
    /// or not digits, `None` when absent.
    fn seconds(&self, name: &str) -> Option<Result<u32, ()>> {
        self.value(name)
            .map(|value| value.ok_or(()).and_then(delta_seconds))
    }

    /// `max-age`, in seconds; an invalid value reads as 0 (stale), as RFC
    /// 9111 §4.2.1 advises.
    pub fn max_age(&self) -> Option<u32> {
        self.seconds("max-age").map(|seconds| seconds.unwrap_or(0))
    }

    /// `s-maxage`, in seconds; an invalid value reads as 0.
    pub fn s_maxage(&self) -> Option<u32> {
        self.seconds("s-maxage").map(|seconds| seconds.unwrap_or(0))
    }

    /// `max-stale` on a request: `Some(None)` accepts any staleness,
    /// `Some(Some(n))` up to `n` seconds; an invalid value is ignored.
    pub fn max_stale(&self) -> Option<Option<u32>> {
        match self.value("max-stale")? {
            None => Some(None),
            Some(value) => delta_seconds(value).ok().map(Some),
        }
    }

    /// `min-fresh` on a request, in seconds; an invalid value is ignored.
    pub fn min_fresh(&self) -> Option<u32> {
        self.seconds("min-fresh")?.ok()
    }

    /// `stale-while-revalidate` (RFC 5861), in seconds; invalid reads as 0.
    pub fn stale_while_revalidate(&self) -> Option<u32> {
        self.seconds("stale-while-revalidate")
            .map(|seconds| seconds.unwrap_or(0))
    }

    /// `stale-if-error` (RFC 5861), in seconds; invalid reads as 0.
    pub fn stale_if_error(&self) -> Option<u32> {
        self.seconds("stale-if-error")
            .map(|seconds| seconds.unwrap_or(0))
    }

    /// `no-store`.
    pub fn no_store(&self) -> bool {
        self.has("no-store")
    }

    /// `no-cache`, with or without field names.
    pub fn no_cache(&self) -> bool {
        self.has("no-cache")
    }

    /// The field names of `no-cache="…"`; `None` when `no-cache` is absent
    /// or has no value (then it applies to the whole response).
    pub fn no_cache_fields(&self) -> Option<Vec<HeaderName>> {
        self.value("no-cache")?.map(field_names)
    }

    /// `private`, with or without field names.
    pub fn private(&self) -> bool {
        self.has("private")
    }

    /// The field names of `private="…"`; `None` when `private` is absent
    /// or has no value.
    pub fn private_fields(&self) -> Option<Vec<HeaderName>> {
        self.value("private")?.map(field_names)
    }

    /// `public`.
    pub fn public(&self) -> bool {
        self.has("public")
    }

    /// `must-revalidate`.
    pub fn must_revalidate(&self) -> bool {
        self.has("must-revalidate")
    }

    /// `proxy-revalidate`.
    pub fn proxy_revalidate(&self) -> bool {
        self.has("proxy-revalidate")
    }

    /// `must-understand`.
    pub fn must_understand(&self) -> bool {
        self.has("must-understand")
    }

    /// `immutable` (RFC 8246).
    pub fn immutable(&self) -> bool {
        self.has("immutable")
    }

    /// `only-if-cached` on a request.
    pub fn only_if_cached(&self) -> bool {
        self.has("only-if-cached")
    }

    /// Every directive, in order: lowercase name and unquoted value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.directives
            .iter()
            .map(|(name, value)| (&**name, value.as_deref()))
    }
}

/// RFC 9110's `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Delta-seconds (RFC 9111 §1.2.2): one or more digits, capped at 2^31.
pub(crate) fn delta_seconds(value: &str) -> Result<u32, ()> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(value.parse::<u64>().map_or(MAX_DELTA_SECONDS, |n| {
        n.min(u64::from(MAX_DELTA_SECONDS)) as u32
    }))
}

/// The comma-separated field names of a `no-cache` or `private` value,
/// lowercased; what is not a field name is left out.
fn field_names(value: &str) -> Vec<HeaderName> {
    value
        .split(',')
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Parses one field value into `out`: directives separated by commas
/// outside quoted strings, optional whitespace around each. A directive
/// whose name is not a token (`max-age =1`) is skipped whole.
fn parse_into(text: &str, out: &mut Vec<(Box<str>, Option<Box<str>>)>) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        // Skip whitespace and empty list elements.
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t' | b',') {
            at += 1;
        }
        let name_start = at;
        while at < bytes.len() && is_tchar(bytes[at]) {
            at += 1;
        }
        let name = &text[name_start..at];
        let mut value: Option<String> = None;
        let mut valid = !name.is_empty();
        if at < bytes.len() && bytes[at] == b'=' {
            at += 1;
            if at < bytes.len() && bytes[at] == b'"' {
                let (unquoted, next) = quoted_string(text, at + 1);
                valid &= unquoted.is_some();
                value = unquoted;
                at = next;
            } else {
                let start = at;
                while at < bytes.len() && is_tchar(bytes[at]) {
                    at += 1;
                }
                valid &= at > start;
                value = Some(text[start..at].to_owned());
            }
        }
        // Only whitespace may follow before the next comma.
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        if at < bytes.len() && bytes[at] != b',' {
            valid = false;
            // Skip the rest of this element, honouring quoted strings.
            while at < bytes.len() && bytes[at] != b',' {
                if bytes[at] == b'"' {
                    at = quoted_string(text, at + 1).1;
                } else {
                    at += 1;
                }
            }
        }
        if valid {
            out.push((
                name.to_ascii_lowercase().into_boxed_str(),
                value.map(String::into_boxed_str),
            ));
        }
    }
}

/// A quoted string's content from just after its opening quote: the
/// unescaped text (`None` when it never closes) and where parsing goes on.
fn quoted_string(text: &str, start: usize) -> (Option<String>, usize) {
    let mut content = String::new();
    let mut chars = text[start..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return (Some(content), start + offset + 1),
            '\\' => match chars.next() {
                Some((_, escaped)) => content.push(escaped),
                None => break,
            },
            c => content.push(c),
        }
    }
    (None, text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> Vec<(String, Option<String>)> {
        CacheControl::parse(value)
            .iter()
            .map(|(name, value)| (name.to_owned(), value.map(str::to_owned)))
            .collect()
    }

    fn pair(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn directives_are_tokens_with_optional_values() {
        assert_eq!(
            parsed("Public, MAX-AGE=60 ,no-cache=\"Set-Cookie, X-A\",, x-ext=\"a\\\"b\""),
            [
                pair("public", None),
                pair("max-age", Some("60")),
                pair("no-cache", Some("Set-Cookie, X-A")),
                pair("x-ext", Some("a\"b")),
            ]
        );
        assert_eq!(parsed(""), []);
        assert_eq!(parsed(" , ,"), []);
    }

    #[test]
    fn what_is_not_a_directive_is_skipped_whole() {
        // The conformance suite's parsing cases (cache-tests `cc-parse`).
        let max_age = |value: &str| CacheControl::parse(value).max_age();
        assert_eq!(max_age("extension=\"max-age=3600\", max-age=1"), Some(1));
        assert_eq!(max_age("max-age=1, extension=\"max-age=3600\""), Some(1));
        assert_eq!(max_age("max-age =3600"), None);
        assert_eq!(max_age("max-age= 3600"), None);
        assert_eq!(max_age("max-age=003600"), Some(3600));
        assert_eq!(
            max_age("max-age='3600'"),
            Some(0),
            "a token, not digits: stale"
        );
        assert_eq!(max_age("max-age=\"3600\""), Some(3600));
        assert_eq!(
            max_age("max-age=3600.0"),
            Some(0),
            "a token, not digits: stale"
        );
        assert_eq!(max_age("max-age=a3600"), Some(0));
        assert_eq!(
            max_age("max-age=1800, max-age=1"),
            Some(1800),
            "the first counts"
        );
        assert_eq!(max_age("max-age"), Some(0), "no value: stale");
        assert_eq!(max_age("max-age=\"3600"), None, "an unclosed quote");
        assert_eq!(
            max_age("max-age="),
            None,
            "no value after '=': not a directive"
        );
        assert_eq!(max_age("public, max-age=\""), None);
        // A malformed element is skipped to its end, commas in its quoted
        // strings included.
        let skipped = CacheControl::parse("x=1 \"a,no-store,b\", public");
        assert!(!skipped.no_store() && skipped.public());
        assert_eq!(max_age("max-age=99999999999999"), Some(MAX_DELTA_SECONDS));
    }

    #[test]
    fn field_lines_combine_and_the_first_directive_counts() {
        let mut headers = HeaderMap::new();
        headers.append(CACHE_CONTROL, "max-age=1800".parse().unwrap());
        headers.append(CACHE_CONTROL, "max-age=1, private".parse().unwrap());
        headers.append(
            CACHE_CONTROL,
            http::HeaderValue::from_bytes(b"\xffno-store").unwrap(),
        );
        let directives = CacheControl::from_headers(&headers);
        assert_eq!(directives.max_age(), Some(1800));
        assert!(directives.private() && !directives.no_store());
        assert_eq!(directives.private_fields(), None);
    }

    #[test]
    fn request_and_response_directives_read_as_rfc_9111_says() {
        let request = CacheControl::parse("max-stale, min-fresh=20, only-if-cached, no-cache");
        assert_eq!(request.max_stale(), Some(None));
        assert_eq!(request.min_fresh(), Some(20));
        assert!(request.only_if_cached() && request.no_cache());
        assert_eq!(request.no_cache_fields(), None);
        assert_eq!(
            CacheControl::parse("max-stale=5").max_stale(),
            Some(Some(5))
        );
        assert_eq!(CacheControl::parse("max-stale=x").max_stale(), None);
        assert_eq!(CacheControl::parse("min-fresh=x").min_fresh(), None);
        let response = CacheControl::parse(
            "s-maxage=30, must-revalidate, proxy-revalidate, must-understand, immutable, \
             stale-while-revalidate=5, stale-if-error=bad, private=\"Set-Cookie, bad name\"",
        );
        assert_eq!(response.s_maxage(), Some(30));
        assert!(response.must_revalidate() && response.proxy_revalidate());
        assert!(response.must_understand() && response.immutable());
        assert_eq!(response.stale_while_revalidate(), Some(5));
        assert_eq!(response.stale_if_error(), Some(0));
        assert_eq!(
            response.private_fields(),
            Some(vec![HeaderName::from_static("set-cookie")])
        );
        assert!(!response.public() && !response.no_store() && !response.only_if_cached());
        assert_eq!(response.max_age(), None);
    }

    #[test]
    fn each_flag_reads_its_own_directive_only() {
        type Flag = fn(&CacheControl) -> bool;
        let flags: [(&str, Flag); 10] = [
            ("no-store", CacheControl::no_store),
            ("no-cache", CacheControl::no_cache),
            ("private", CacheControl::private),
            ("public", CacheControl::public),
            ("must-revalidate", CacheControl::must_revalidate),
            ("proxy-revalidate", CacheControl::proxy_revalidate),
            ("must-understand", CacheControl::must_understand),
            ("immutable", CacheControl::immutable),
            ("only-if-cached", CacheControl::only_if_cached),
            ("x-unknown", |directives| directives.has("x-unknown")),
        ];
        for (name, _) in flags {
            let directives = CacheControl::parse(name);
            for (other, flag) in flags {
                assert_eq!(flag(&directives), other == name, "{other} in {name:?}");
            }
        }
        let fields = CacheControl::parse("no-cache=\"Set-Cookie\", stale-if-error=7");
        assert_eq!(
            fields.no_cache_fields(),
            Some(vec![HeaderName::from_static("set-cookie")])
        );
        assert_eq!(fields.stale_if_error(), Some(7));
        assert_eq!(fields.value("no-cache"), Some(Some("Set-Cookie")));
        assert_eq!(fields.value("public"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,60}") {
            let directives = CacheControl::parse(&text);
            for (name, _) in directives.iter() {
                proptest::prop_assert!(!name.is_empty() && name.bytes().all(is_tchar));
            }
        }
    }
}
