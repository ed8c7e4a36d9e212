//! How a layer's key names state outside the process.

use std::net::IpAddr;
use std::sync::Arc;

use http::Method;

/// A key that can name shared state: written as bytes, the same on every
/// instance, different for different keys.
///
/// Implemented for the keys of the built-in extractors (`()`, IP addresses,
/// header values, method and path, authorities), strings and integers.
/// Implement it for your own key type to keep its limits in Redis.
pub trait StoreKey {
    /// Appends the key's bytes to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl StoreKey for () {
    fn write_key(&self, _: &mut Vec<u8>) {}
}

impl StoreKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(out, "{self}");
    }
}

impl StoreKey for str {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoreKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoreKey for Arc<str> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoreKey for http::HeaderValue {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoreKey for http::uri::Authority {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
}

/// A method has no space in it, so `METHOD path` cannot be read two ways.
impl<P: StoreKey> StoreKey for (Method, P) {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.as_str().as_bytes());
        out.push(b' ');
        self.1.write_key(out);
    }
}

macro_rules! integer_keys {
    ($($integer:ty),*) => {$(
        impl StoreKey for $integer {
            fn write_key(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

integer_keys!(u32, u64, i32, i64, u128);

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(key: &(impl StoreKey + ?Sized)) -> Vec<u8> {
        let mut out = Vec::new();
        key.write_key(&mut out);
        out
    }

    #[test]
    fn keys_are_written_as_their_text() {
        assert_eq!(bytes(&()), b"");
        assert_eq!(bytes("a key"), b"a key");
        assert_eq!(bytes(&"a key".to_owned()), b"a key");
        assert_eq!(bytes(&"10.0.0.1".parse::<IpAddr>().unwrap()), b"10.0.0.1");
        assert_eq!(
            bytes(&"2001:db8::1".parse::<IpAddr>().unwrap()),
            b"2001:db8::1"
        );
        assert_eq!(bytes(&(Method::GET, "/items".to_owned())), b"GET /items");
        assert_eq!(
            bytes(&(Method::POST, Arc::<str>::from("/a b"))),
            b"POST /a b"
        );
        assert_eq!(bytes(&http::HeaderValue::from_static("k-1")), b"k-1");
        assert_eq!(
            bytes(&"api.example:443".parse::<http::uri::Authority>().unwrap()),
            b"api.example:443"
        );
        assert_eq!(bytes(&42u64), b"42");
        assert_eq!(bytes(&-7i64), b"-7");
    }
}
