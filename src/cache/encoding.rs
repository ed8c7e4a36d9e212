//! Entries as bytes, for stores outside the process (Redis): a magic
//! prefix and [`ENTRY_FORMAT`] version, then every part length-prefixed.
//! Decoding checks everything and gives `None` for anything it cannot
//! read, so a store treats a corrupt, truncated or foreign entry as a miss.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::entry::{ENTRY_FORMAT, Entry};
use super::policy::Freshness;
use super::vary::Variant;

const MAGIC: &[u8; 4] = b"TAce";

impl Entry {
    /// The entry as bytes, in format [`ENTRY_FORMAT`].
    pub fn encode(&self) -> Bytes {
        let body_len: usize = self.body.iter().map(Bytes::len).sum();
        let mut out = Writer(BytesMut::with_capacity(body_len + 512));
        out.0.extend_from_slice(MAGIC);
        out.u16(ENTRY_FORMAT);
        out.u16(self.status.as_u16());
        let f = &self.freshness;
        for time in [
            f.request_time,
            f.response_time,
            f.initial_age,
            f.lifetime,
            f.stale_while_revalidate,
            f.stale_if_error,
        ] {
            out.i64(time);
        }
        out.0.extend_from_slice(&[u8::from(f.always_validate)
            | u8::from(f.no_stale) << 1
            | u8::from(self.invalidated) << 2]);
        out.headers(&self.headers);
        out.u32(self.variant.fields.len() as u32);
        for (name, value) in &self.variant.fields {
            out.bytes(name.as_str().as_bytes());
            match value {
                Some(value) => {
                    out.0.extend_from_slice(&[1]);
                    out.bytes(value.as_bytes());
                }
                None => out.0.extend_from_slice(&[0]),
            }
        }
        out.u32(self.tags.len() as u32);
        for tag in self.tags.iter() {
            out.bytes(tag.as_bytes());
        }
        out.0.extend_from_slice(&(body_len as u64).to_be_bytes());
        for chunk in self.body.iter() {
            out.0.extend_from_slice(chunk);
        }
        match &self.trailers {
            Some(trailers) => {
                out.0.extend_from_slice(&[1]);
                out.headers(trailers);
            }
            None => out.0.extend_from_slice(&[0]),
        }
        out.0.freeze()
    }

    /// An entry from [`encode`](Self::encode)'s bytes; `None` for another
    /// format version or bytes that are not a whole, valid entry.
    pub fn decode(bytes: &Bytes) -> Option<Entry> {
        let mut input = Reader { bytes, at: 0 };
        if input.take(4)? != MAGIC || input.u16()? != ENTRY_FORMAT {
            return None;
        }
        let status = StatusCode::from_u16(input.u16()?).ok()?;
        let mut times = [0i64; 6];
        for time in &mut times {
            *time = input.i64()?;
        }
        let flags = input.take(1)?[0];
        if flags > 0b111 {
            return None;
        }
        let headers = input.headers()?;
        let mut fields = Vec::new();
        for _ in 0..input.u32()? {
            let name = HeaderName::from_bytes(input.bytes()?).ok()?;
            let value = match input.take(1)?[0] {
                0 => None,
                1 => Some(String::from_utf8(input.bytes()?.to_vec()).ok()?),
                _ => return None,
            };
            fields.push((name, value));
        }
        let mut tags: Vec<Box<str>> = Vec::new();
        for _ in 0..input.u32()? {
            tags.push(std::str::from_utf8(input.bytes()?).ok()?.into());
        }
        let body_len = usize::try_from(u64::from_be_bytes(input.take(8)?.try_into().ok()?)).ok()?;
        let start = input.at;
        input.take(body_len)?;
        let body = bytes.slice(start..start + body_len);
        let trailers = match input.take(1)?[0] {
            0 => None,
            1 => Some(input.headers()?),
            _ => return None,
        };
        if input.at != bytes.len() {
            return None;
        }
        let [
            request_time,
            response_time,
            initial_age,
            lifetime,
            stale_while_revalidate,
            stale_if_error,
        ] = times;
        Some(Entry {
            status,
            headers,
            body: Arc::from(if body.is_empty() {
                Vec::new()
            } else {
                vec![body]
            }),
            trailers,
            freshness: Freshness {
                request_time,
                response_time,
                initial_age,
                lifetime,
                stale_while_revalidate,
                stale_if_error,
                always_validate: flags & 1 != 0,
                no_stale: flags & 2 != 0,
            },
            variant: Variant { fields },
            tags: Arc::from(tags),
            invalidated: flags & 4 != 0,
        })
    }
}

struct Writer(BytesMut);

impl Writer {
    fn u16(&mut self, n: u16) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn i64(&mut self, n: i64) {
        self.0.extend_from_slice(&n.to_be_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u32(bytes.len() as u32);
        self.0.extend_from_slice(bytes);
    }

    fn headers(&mut self, headers: &HeaderMap) {
        self.u32(headers.len() as u32);
        for (name, value) in headers {
            self.bytes(name.as_str().as_bytes());
            self.bytes(value.as_bytes());
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(count)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    fn headers(&mut self) -> Option<HeaderMap> {
        let count = self.u32()? as usize;
        // Each field takes at least 8 bytes: a count past that is corrupt.
        if count > self.bytes.len().saturating_sub(self.at) / 8 {
            return None;
        }
        let mut headers = HeaderMap::with_capacity(count);
        for _ in 0..count {
            let name = HeaderName::from_bytes(self.bytes()?).ok()?;
            let value = HeaderValue::from_bytes(self.bytes()?).ok()?;
            headers.append(name, value);
        }
        Some(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("1"));
        Entry {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Arc::from(vec![
                Bytes::from_static(b"hello "),
                Bytes::from_static(b"world"),
            ]),
            trailers: Some(trailers),
            freshness: Freshness {
                request_time: 1,
                response_time: 2,
                initial_age: 3,
                lifetime: -4,
                stale_while_revalidate: 5,
                stale_if_error: 6,
                always_validate: true,
                no_stale: true,
            },
            variant: Variant {
                fields: vec![
                    (HeaderName::from_static("accept"), Some("x".into())),
                    (HeaderName::from_static("cookie"), None),
                ],
            },
            tags: Arc::from(vec![Box::<str>::from("t1")]),
            invalidated: true,
        }
    }

    #[test]
    fn entries_round_trip() {
        let entry = sample();
        let decoded = Entry::decode(&entry.encode()).unwrap();
        assert_eq!(decoded.status, entry.status);
        assert_eq!(decoded.headers, entry.headers);
        assert_eq!(decoded.body.concat(), b"hello world");
        assert_eq!(decoded.trailers, entry.trailers);
        assert_eq!(decoded.freshness, entry.freshness);
        assert_eq!(decoded.variant, entry.variant);
        assert_eq!(decoded.tags, entry.tags);
        assert!(decoded.invalidated);
    }

    #[test]
    fn each_flag_and_the_smallest_trailers_survive() {
        for (always_validate, no_stale, invalidated) in [
            (true, false, false),
            (false, true, false),
            (false, false, true),
        ] {
            let mut entry = sample();
            entry.freshness.always_validate = always_validate;
            entry.freshness.no_stale = no_stale;
            entry.invalidated = invalidated;
            // The tightest block there is: one field of one byte each way.
            let mut trailers = HeaderMap::new();
            trailers.insert("x", HeaderValue::from_static("y"));
            entry.trailers = Some(trailers.clone());
            let decoded = Entry::decode(&entry.encode()).unwrap();
            assert_eq!(decoded.freshness, entry.freshness);
            assert_eq!(decoded.invalidated, invalidated);
            assert_eq!(decoded.trailers, Some(trailers));
        }
    }

    #[test]
    fn anything_else_is_none() {
        let encoded = entry_bytes();
        for cut in [0, 3, 5, 20, encoded.len() - 1] {
            assert!(
                Entry::decode(&encoded.slice(..cut)).is_none(),
                "cut at {cut}"
            );
        }
        let mut longer = encoded.to_vec();
        longer.push(0);
        assert!(Entry::decode(&Bytes::from(longer)).is_none());
        let mut other_version = encoded.to_vec();
        other_version[5] = other_version[5].wrapping_add(1);
        assert!(Entry::decode(&Bytes::from(other_version)).is_none());
        let mut bad_name = encoded.to_vec();
        let at = bad_name
            .windows(12)
            .position(|w| w == b"content-type")
            .unwrap();
        bad_name[at] = b' ';
        assert!(Entry::decode(&Bytes::from(bad_name)).is_none());
    }

    #[test]
    fn a_huge_field_count_is_refused_before_anything_is_allocated() {
        let mut bytes = entry_bytes().to_vec();
        // The header count follows magic, version, status, six times and flags.
        let at = 4 + 2 + 2 + 6 * 8 + 1;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Entry::decode(&Bytes::from(bytes)).is_none());
    }

    fn entry_bytes() -> Bytes {
        sample().encode()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Entry::decode(&Bytes::from(bytes));
        }

        #[test]
        fn flipped_bytes_never_panic(at in 0usize..200, value in any::<u8>()) {
            let mut bytes = entry_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = value;
            let _ = Entry::decode(&Bytes::from(bytes));
        }
    }
}
