//! Targeted cache-control fields (RFC 9213), such as `CDN-Cache-Control`:
//! a Structured Field Dictionary (RFC 8941) whose directives, when the
//! field is present and valid, replace `Cache-Control` and `Expires` for
//! the caches it targets. A field that does not parse is ignored whole.

use http::{HeaderMap, HeaderName};

use super::directives::CacheControl;

/// Directives whose value is delta-seconds, an sf-integer here: any other
/// type makes the field invalid.
const SECONDS: [&str; 4] = [
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// The directives of the first of `fields` present with a valid, non-empty
/// value; `None` when there is none (then `Cache-Control` applies).
pub(crate) fn directives(headers: &HeaderMap, fields: &[HeaderName]) -> Option<CacheControl> {
    fields.iter().find_map(|name| {
        let mut combined = String::new();
        for line in headers.get_all(name) {
            let text = line.to_str().ok()?;
            if !combined.is_empty() {
                combined.push(',');
            }
            combined.push_str(text);
        }
        let members = dictionary(&combined)?;
        (!members.is_empty()).then(|| CacheControl::from_pairs(members))
    })
}

/// An sf-dictionary's members as (key, value text), or `None` if it is
/// not a valid one or a delta-seconds directive is not a non-negative
/// integer. Booleans `true` read as no value; parameters are dropped.
fn dictionary(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    parser.skip(b" ");
    let mut members: Vec<(String, Option<String>)> = Vec::new();
    while !parser.done() {
        let key = parser.key()?;
        let value = if parser.eat(b'=') {
            parser.item()?
        } else {
            parser.parameters()?;
            Value::True
        };
        let value = match value {
            Value::Integer(n) if SECONDS.contains(&key.as_str()) && n >= 0 => Some(n.to_string()),
            _ if SECONDS.contains(&key.as_str()) => return None,
            Value::True => None,
            Value::Text(text) => Some(text),
            Value::Integer(n) => Some(n.to_string()),
            Value::Other => Some(String::new()),
        };
        // A later member of the same key replaces an earlier one.
        members.retain(|(existing, _)| *existing != key);
        members.push((key, value));
        parser.skip(b" \t");
        if parser.done() {
            break;
        }
        if !parser.eat(b',') {
            return None;
        }
        parser.skip(b" \t");
        if parser.done() {
            return None;
        }
    }
    Some(members)
}

enum Value {
    True,
    Integer(i64),
    Text(String),
    Other,
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|b| set.contains(&b)) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &str {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("")
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<String> {
        if !self
            .peek()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
        {
            return None;
        }
        let key = self
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        Some(key.to_owned())
    }

    /// An item or an inner list, with its parameters.
    fn item(&mut self) -> Option<Value> {
        let value = if self.eat(b'(') {
            loop {
                self.skip(b" ");
                if self.eat(b')') {
                    break;
                }
                self.bare_item()?;
                self.parameters()?;
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
            Value::Other
        } else {
            self.bare_item()?
        };
        self.parameters()?;
        Some(value)
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip(b" ");
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn bare_item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(Value::Text),
            b'?' => {
                self.at += 1;
                match self.peek()? {
                    b'1' => {
                        self.at += 1;
                        Some(Value::True)
                    }
                    b'0' => {
                        self.at += 1;
                        Some(Value::Other)
                    }
                    _ => None,
                }
            }
            b':' => {
                self.at += 1;
                self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                self.eat(b':').then_some(Value::Other)
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                let token = self
                    .take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
                Some(Value::Text(token.to_owned()))
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let negative = self.eat(b'-');
        let whole = self.take_while(|b| b.is_ascii_digit()).to_owned();
        if whole.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            if whole.len() > 12 || fraction.is_empty() || fraction.len() > 3 {
                return None;
            }
            return Some(Value::Other);
        }
        if whole.len() > 15 {
            return None;
        }
        let value: i64 = whole.parse().ok()?;
        Some(Value::Integer(if negative { -value } else { value }))
    }

    fn string(&mut self) -> Option<String> {
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(text);
                }
                b'\\' => {
                    self.at += 1;
                    let escaped = self.peek().filter(|b| matches!(b, b'"' | b'\\'))?;
                    text.push(char::from(escaped));
                    self.at += 1;
                }
                b @ 0x20..=0x7e => {
                    text.push(char::from(b));
                    self.at += 1;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdn(value: &str) -> Option<CacheControl> {
        let mut headers = HeaderMap::new();
        headers.insert("cdn-cache-control", value.parse().unwrap());
        directives(&headers, &[HeaderName::from_static("cdn-cache-control")])
    }

    #[test]
    fn valid_dictionaries_give_their_directives() {
        let parsed = cdn("max-age=3600, private, foo;a=1, no-cache=\"set-cookie\"").unwrap();
        assert_eq!(parsed.max_age(), Some(3600));
        assert!(parsed.private());
        assert!(parsed.has("foo"));
        assert_eq!(
            parsed.no_cache_fields(),
            Some(vec![http::header::SET_COOKIE])
        );
        assert_eq!(
            cdn("max-age=99999999999").unwrap().max_age(),
            Some(super::super::MAX_DELTA_SECONDS)
        );
        assert_eq!(
            cdn("foobar, max-age=1, x=(a b);q=2, y=?0, z=:aGk=:, w=1.5")
                .unwrap()
                .max_age(),
            Some(1)
        );
    }

    #[test]
    fn an_invalid_field_is_ignored_whole() {
        for value in [
            "max-age =100",
            "max-age= 100",
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age=-1",
            "MaX-aGe=3600",
            "max-age=1,",
            "max-age=1 no-store",
            "a=\"unterminated",
            "a=1234567890123456",
            "",
        ] {
            assert!(cdn(value).is_none(), "{value:?}");
        }
    }

    #[test]
    fn structured_field_items_follow_rfc_8941() {
        // Keys may start with `*`; tokens too; booleans, decimals, strings
        // with escapes, byte sequences and inner lists are all values.
        let valid = [
            "*key=1, max-age=5",
            "a=*token, max-age=5",
            "no-store=?1, max-age=5",
            "a=?0, max-age=5",
            "a=1.5, max-age=5",
            "a=123456789012.123, max-age=5",
            "a=123456789012345, max-age=5",
            "a=\"x\\\"y\\\\z\", max-age=5",
            "a=:aGk=:, max-age=5",
            "a=(1 2);q=1, max-age=5",
            "a;p=\"v\", max-age=5",
        ];
        for value in valid {
            let parsed = cdn(value).unwrap_or_else(|| panic!("{value:?} is valid"));
            assert_eq!(parsed.max_age(), Some(5), "{value:?}");
        }
        assert!(cdn("no-store=?1").unwrap().no_store());
        assert_eq!(cdn("a=\"x\\\"y\"").unwrap().value("a"), Some(Some("x\"y")));
        let invalid = [
            "1key=1",
            "a=?2",
            "a=1234567890123.5",
            "a=1.",
            "a=1.1234",
            "a=\"x\\qy\"",
            "a=:aGk=",
            "a=(1 2",
            "a=%",
        ];
        for value in invalid {
            assert!(cdn(value).is_none(), "{value:?} is invalid");
        }
    }

    #[test]
    fn absent_fields_leave_cache_control_in_charge() {
        assert!(
            directives(
                &HeaderMap::new(),
                &[HeaderName::from_static("cdn-cache-control")]
            )
            .is_none()
        );
    }
}
