//! Content codings and `Accept-Encoding` negotiation (RFC 9110 §12.5.3).

use std::fmt;

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

/// A content coding this layer can produce and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: zlib framing (RFC 1950), as HTTP defines it.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
}

impl Encoding {
    /// Every coding, in the default server preference: the best ratio for
    /// the time first. Only those [compiled in](Self::compiled) can be used.
    pub const ALL: [Encoding; 4] = [
        Encoding::Zstd,
        Encoding::Brotli,
        Encoding::Gzip,
        Encoding::Deflate,
    ];

    /// The codings compiled into this build (one cargo feature each:
    /// `compression-zstd`, `-br`, `-gzip`, `-deflate`), in the default
    /// server preference.
    pub fn compiled() -> impl Iterator<Item = Encoding> {
        Encoding::ALL
            .into_iter()
            .filter(|encoding| encoding.is_compiled())
    }

    /// Whether this coding's feature is on.
    pub fn is_compiled(self) -> bool {
        match self {
            Encoding::Gzip => cfg!(feature = "compression-gzip"),
            Encoding::Deflate => cfg!(feature = "compression-deflate"),
            Encoding::Brotli => cfg!(feature = "compression-br"),
            Encoding::Zstd => cfg!(feature = "compression-zstd"),
        }
    }

    /// The cargo feature that compiles this coding in.
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Encoding::Gzip => "compression-gzip",
            Encoding::Deflate => "compression-deflate",
            Encoding::Brotli => "compression-br",
            Encoding::Zstd => "compression-zstd",
        }
    }

    /// The token used in `Content-Encoding` and `Accept-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Reads a coding token, case-insensitively; `x-gzip` is gzip.
    pub fn from_token(token: &str) -> Option<Encoding> {
        Encoding::from_bytes(token.trim().as_bytes())
    }

    fn from_bytes(token: &[u8]) -> Option<Encoding> {
        let is = |name: &[u8]| token.eq_ignore_ascii_case(name);
        // The length picks the one candidate to compare.
        match token.len() {
            2 if is(b"br") => Some(Encoding::Brotli),
            4 if is(b"gzip") => Some(Encoding::Gzip),
            4 if is(b"zstd") => Some(Encoding::Zstd),
            6 if is(b"x-gzip") => Some(Encoding::Gzip),
            7 if is(b"deflate") => Some(Encoding::Deflate),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the client accepts, decided before the inner service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// Compress with this coding if the response allows it.
    Encode(Encoding),
    /// Send the response as it is.
    Identity,
    /// The client excludes identity and every coding on offer: 406.
    NotAcceptable,
}

/// The q-values (in thousandths) a request's `Accept-Encoding` gives.
#[derive(Debug, Default)]
struct Accepted {
    codings: [Option<u16>; 4],
    identity: Option<u16>,
    star: Option<u16>,
}

impl Accepted {
    /// Notes one `coding[;q=x]` entry; malformed or unknown ones are skipped.
    fn add(&mut self, entry: &[u8]) {
        let (token, params) = match entry.iter().position(|&b| b == b';') {
            Some(semicolon) => (&entry[..semicolon], &entry[semicolon + 1..]),
            None => (entry, &[][..]),
        };
        let token = token.trim_ascii();
        if token.is_empty() {
            return;
        }
        let Some(q) = quality(params) else {
            return;
        };
        let slot = if token == b"*" {
            &mut self.star
        } else if let Some(encoding) = Encoding::from_bytes(token) {
            &mut self.codings[encoding.index()]
        } else if token.eq_ignore_ascii_case(b"identity") {
            &mut self.identity
        } else {
            return;
        };
        // A coding listed twice keeps its highest q-value.
        *slot = Some(slot.map_or(q, |seen| seen.max(q)));
    }
}

/// Picks the coding for a response to a request with these headers.
///
/// The highest q-value wins; among equals, the first in `preference`; a coding
/// loses to identity only if identity is named with a higher q-value. Without an
/// `Accept-Encoding` header nothing is compressed. Malformed entries (a bad
/// q-value, bytes that are not a known token) are skipped, as if absent.
pub(crate) fn negotiate(headers: &HeaderMap, preference: &[Encoding]) -> Negotiated {
    let mut values = headers.get_all(ACCEPT_ENCODING).iter().peekable();
    if values.peek().is_none() {
        return Negotiated::Identity;
    }
    let mut accepted = Accepted::default();
    for value in values {
        let mut rest = value.as_bytes();
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            let entry = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            accepted.add(entry);
        }
    }
    // Identity is acceptable unless excluded by name, or by `*;q=0`; it is
    // preferred over a coding only when named with a higher q-value.
    let identity_acceptable = accepted.identity.or(accepted.star).is_none_or(|q| q > 0);
    let identity_rank = accepted.identity.unwrap_or(0);
    let best = preference
        .iter()
        .filter_map(|&encoding| {
            let q = accepted.codings[encoding.index()].or(accepted.star)?;
            (q > 0).then_some((encoding, q))
        })
        .fold(
            None,
            |best: Option<(Encoding, u16)>, (encoding, q)| match best {
                Some((_, best_q)) if best_q >= q => best,
                _ => Some((encoding, q)),
            },
        );
    match best {
        Some((encoding, q)) if q >= identity_rank => Negotiated::Encode(encoding),
        _ if identity_acceptable => Negotiated::Identity,
        Some((encoding, _)) => Negotiated::Encode(encoding),
        None => Negotiated::NotAcceptable,
    }
}

/// The entry's q-value in thousandths from its `;`-separated parameters:
/// 1000 when absent, `None` when malformed.
fn quality(params: &[u8]) -> Option<u16> {
    let mut q = 1000;
    if params.is_empty() {
        return Some(q);
    }
    for param in params.split(|&b| b == b';') {
        let Some(equals) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&param[..equals], &param[equals + 1..]);
        if name.trim_ascii().eq_ignore_ascii_case(b"q") {
            q = parse_qvalue(value.trim_ascii())?;
        }
    }
    Some(q)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_qvalue(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &[][..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = fraction
        .iter()
        .copied()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, digit| acc * 10 + u16::from(digit - b'0'));
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pick(accept: &[&str]) -> Negotiated {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(ACCEPT_ENCODING, value.parse().unwrap());
        }
        negotiate(&headers, &Encoding::ALL)
    }

    use Encoding::*;
    use Negotiated::*;

    #[test]
    fn q_values_and_server_preference() {
        let cases: &[(&[&str], Negotiated)] = &[
            (&[], Identity),
            (&[""], Identity),
            (&["gzip"], Encode(Gzip)),
            (&["gzip, deflate, br"], Encode(Brotli)),
            (&["gzip, deflate, br, zstd"], Encode(Zstd)),
            (&["GZIP"], Encode(Gzip)),
            (&["x-gzip"], Encode(Gzip)),
            (&["gzip;q=0.5, br;q=0.4"], Encode(Gzip)),
            (&["gzip;q=0.5", "br;q=0.9"], Encode(Brotli)),
            (&["gzip;q=0, br;q=0"], Identity),
            (&["br;q=0.2, identity;q=0.5"], Identity),
            (&["br;q=0.5, identity;q=0.5"], Encode(Brotli)),
            (&["gzip ; q=1.000"], Encode(Gzip)),
            (&["gzip;q=0.001"], Encode(Gzip)),
            (&["compress, snappy"], Identity),
        ];
        for (accept, expected) in cases {
            assert_eq!(pick(accept), *expected, "Accept-Encoding: {accept:?}");
        }
    }

    #[test]
    fn star_and_identity_exclusion() {
        let cases: &[(&[&str], Negotiated)] = &[
            (&["*"], Encode(Zstd)),
            (&["*;q=0.5, gzip"], Encode(Gzip)),
            (&["*, zstd;q=0, br;q=0"], Encode(Gzip)),
            (&["*;q=0"], NotAcceptable),
            (&["identity;q=0"], NotAcceptable),
            (&["identity;q=0, gzip;q=0.1"], Encode(Gzip)),
            (&["*;q=0, identity"], Identity),
            (&["*;q=0, br"], Encode(Brotli)),
            (&["gzip;q=0, identity;q=0"], NotAcceptable),
        ];
        for (accept, expected) in cases {
            assert_eq!(pick(accept), *expected, "Accept-Encoding: {accept:?}");
        }
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let cases: &[(&[&str], Negotiated)] = &[
            (&["gzip;q=2"], Identity),
            (&["gzip;q=1.5, br"], Encode(Brotli)),
            (&["gzip;q=.5"], Identity),
            (&["gzip;q=0.5555"], Identity),
            (&["gzip;q=abc, deflate"], Encode(Deflate)),
            (&["identity;q=-1"], Identity),
            (&[",,, ;q=1, gzip"], Encode(Gzip)),
            (&[";q=1, br"], Encode(Brotli)),
            (&["gzip;q=1.5"], Identity),
            (&["gzip;q=1.0, br;q=1.00"], Encode(Brotli)),
        ];
        for (accept, expected) in cases {
            assert_eq!(pick(accept), *expected, "Accept-Encoding: {accept:?}");
        }
    }

    #[test]
    fn tokens_are_known_by_name_not_by_length() {
        for (token, expected) in [
            ("br", Some(Brotli)),
            ("gzip", Some(Gzip)),
            ("zstd", Some(Zstd)),
            ("x-gzip", Some(Gzip)),
            ("deflate", Some(Deflate)),
            (" Deflate ", Some(Deflate)),
            ("xx", None),
            ("abcd", None),
            ("abcdef", None),
            ("abcdefg", None),
            ("identity", None),
        ] {
            assert_eq!(Encoding::from_token(token), expected, "{token:?}");
        }
        for encoding in Encoding::ALL {
            assert_eq!(encoding.to_string(), encoding.as_str());
            assert_eq!(Encoding::from_token(encoding.as_str()), Some(encoding));
        }
    }

    #[test]
    fn each_coding_names_its_feature() {
        let features = [
            (Gzip, "compression-gzip", cfg!(feature = "compression-gzip")),
            (
                Deflate,
                "compression-deflate",
                cfg!(feature = "compression-deflate"),
            ),
            (Brotli, "compression-br", cfg!(feature = "compression-br")),
            (Zstd, "compression-zstd", cfg!(feature = "compression-zstd")),
        ];
        for (encoding, feature, on) in features {
            assert_eq!(encoding.feature(), feature);
            assert_eq!(encoding.is_compiled(), on, "{encoding}");
        }
    }

    #[test]
    fn the_preference_order_breaks_ties() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, "zstd, br, gzip".parse().unwrap());
        assert_eq!(negotiate(&headers, &[Gzip, Brotli]), Encode(Gzip));
        assert_eq!(negotiate(&headers, &[Deflate]), Identity);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                headers.insert(ACCEPT_ENCODING, value);
            }
            let _ = negotiate(&headers, &Encoding::ALL);
        }
    }
}
