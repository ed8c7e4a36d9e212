//! Range requests answered from a stored complete response (RFC 9110
//! §14): one byte range becomes a 206, a range past the end a 416; several
//! ranges, or an `If-Range` that does not match, get the whole response,
//! which a server may always send instead.

use bytes::Bytes;
use http::header::{IF_RANGE, RANGE};
use http::{HeaderMap, StatusCode};

use super::date;
use super::entry::Entry;

/// What a stored response answers to a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// The whole response.
    Whole,
    /// Bytes `first..=last` of `length`.
    Part { first: u64, last: u64, length: u64 },
    /// Nothing of `length` bytes is in the range.
    Unsatisfiable { length: u64 },
}

pub(crate) fn answer(request: &HeaderMap, entry: &Entry) -> RangeAnswer {
    let Some(range) = request.get(RANGE).and_then(|value| value.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    if entry.status != StatusCode::OK || !if_range_holds(request, entry) {
        return RangeAnswer::Whole;
    }
    let length = entry.body.iter().map(|chunk| chunk.len() as u64).sum();
    parse(range, length)
}

fn parse(range: &str, length: u64) -> RangeAnswer {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    let Some((first, last)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return RangeAnswer::Whole;
    };
    // Digits only (u64's parser would take a sign); an empty text fails to parse.
    let number = |text: &str| -> Option<u64> {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // bytes=-N: the last N bytes.
        let Some(suffix) = number(last) else {
            return RangeAnswer::Whole;
        };
        if suffix == 0 || length == 0 {
            return RangeAnswer::Unsatisfiable { length };
        }
        let first = length.saturating_sub(suffix);
        return RangeAnswer::Part {
            first,
            last: length - 1,
            length,
        };
    }
    let Some(first) = number(first) else {
        return RangeAnswer::Whole;
    };
    let last = match (last.is_empty(), number(last)) {
        (true, _) => None,
        (false, Some(last)) if last >= first => Some(last),
        (false, _) => return RangeAnswer::Whole,
    };
    if first >= length {
        return RangeAnswer::Unsatisfiable { length };
    }
    let last = last.map_or(length - 1, |last| last.min(length - 1));
    RangeAnswer::Part {
        first,
        last,
        length,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the stored
/// response is the one the client has: same strong entity tag, or a
/// `Last-Modified` equal to the date given.
fn if_range_holds(request: &HeaderMap, entry: &Entry) -> bool {
    let Some(condition) = request.get(IF_RANGE).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let condition = condition.trim();
    if condition.starts_with('"') {
        return entry
            .etag()
            .and_then(|etag| etag.to_str().ok())
            .is_some_and(|etag| !etag.starts_with("W/") && etag == condition);
    }
    let modified = entry
        .last_modified()
        .and_then(|value| value.to_str().ok())
        .and_then(date::parse);
    modified.is_some() && modified == date::parse(condition)
}

/// The stored chunks that make bytes `first..=last`.
pub(crate) fn slice(chunks: &[Bytes], first: u64, last: u64) -> Vec<Bytes> {
    let mut parts = Vec::new();
    let mut offset = 0u64;
    for chunk in chunks {
        let end = offset + chunk.len() as u64;
        if end > first && offset <= last {
            let from = first.saturating_sub(offset) as usize;
            let to = ((last + 1).min(end) - offset) as usize;
            parts.push(chunk.slice(from..to));
        }
        offset = end;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_of_each_form() {
        assert_eq!(
            parse("bytes=0-1", 11),
            RangeAnswer::Part {
                first: 0,
                last: 1,
                length: 11
            }
        );
        assert_eq!(
            parse("bytes=5-", 11),
            RangeAnswer::Part {
                first: 5,
                last: 10,
                length: 11
            }
        );
        assert_eq!(
            parse("bytes=-3", 11),
            RangeAnswer::Part {
                first: 8,
                last: 10,
                length: 11
            }
        );
        assert_eq!(
            parse("bytes=-30", 11),
            RangeAnswer::Part {
                first: 0,
                last: 10,
                length: 11
            }
        );
        assert_eq!(
            parse("bytes=5-100", 11),
            RangeAnswer::Part {
                first: 5,
                last: 10,
                length: 11
            }
        );
        assert_eq!(
            parse("bytes=11-", 11),
            RangeAnswer::Unsatisfiable { length: 11 }
        );
        assert_eq!(
            parse("bytes=-0", 11),
            RangeAnswer::Unsatisfiable { length: 11 }
        );
        // Nothing can be taken from an empty body.
        assert_eq!(
            parse("bytes=-5", 0),
            RangeAnswer::Unsatisfiable { length: 0 }
        );
        assert_eq!(
            parse("bytes=0-", 0),
            RangeAnswer::Unsatisfiable { length: 0 }
        );
        for whole in [
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(parse(whole, 11), RangeAnswer::Whole, "{whole}");
        }
    }

    fn stored(pairs: &[(&str, &str)]) -> Entry {
        crate::cache::test_entry(pairs, b"0123456789")
    }

    #[test]
    fn if_range_needs_the_same_strong_tag_or_date() {
        let range = |if_range: &str| {
            crate::cache::test_headers(&[("range", "bytes=0-1"), ("if-range", if_range)])
        };
        let part = RangeAnswer::Part {
            first: 0,
            last: 1,
            length: 10,
        };
        let tagged = stored(&[("etag", "\"e\"")]);
        assert_eq!(answer(&range("\"e\""), &tagged), part);
        assert_eq!(answer(&range("\"f\""), &tagged), RangeAnswer::Whole);
        let weak = stored(&[("etag", "W/\"e\"")]);
        assert_eq!(answer(&range("W/\"e\""), &weak), RangeAnswer::Whole);
        let dated = stored(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(
            answer(&range("Sun, 06 Nov 1994 08:49:37 GMT"), &dated),
            part
        );
        assert_eq!(
            answer(&range("Sun, 06 Nov 1994 08:49:38 GMT"), &dated),
            RangeAnswer::Whole
        );
        let undated = stored(&[]);
        assert_eq!(answer(&range("not a date"), &undated), RangeAnswer::Whole);
        assert_eq!(
            answer(
                &crate::cache::test_headers(&[("range", "bytes=0-1")]),
                &undated
            ),
            part
        );
    }

    #[test]
    fn slices_cross_chunks() {
        let chunks = [
            Bytes::from_static(b"0123"),
            Bytes::from_static(b"4567"),
            Bytes::from_static(b"89"),
        ];
        let joined = |parts: Vec<Bytes>| {
            parts
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect::<Vec<u8>>()
        };
        assert_eq!(joined(slice(&chunks, 2, 5)), b"2345");
        assert_eq!(joined(slice(&chunks, 0, 9)), b"0123456789");
        assert_eq!(joined(slice(&chunks, 8, 9)), b"89");
        assert_eq!(joined(slice(&chunks, 4, 4)), b"4");
        // Only the chunks the range touches, never an empty one.
        assert_eq!(slice(&chunks, 4, 5).len(), 1);
        assert_eq!(slice(&chunks, 3, 4).len(), 2);
    }
}
