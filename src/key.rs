//! Who a request belongs to: the keys that rate limits, circuit breakers and
//! retry budgets keep separate state for, and the rules every keyed layer
//! shares.
//!
//! Every keyed layer's builder takes the same three things:
//!
//! * `.key(extractor)`: a [`KeyExtractor`] looks at a [`RequestHead`] and
//!   returns a key, or `None` when the request has none. Built in:
//!   [`Global`] (one key for all, the default), [`PeerIp`], [`ClientIp`],
//!   [`Header`], [`MethodAndPath`], [`Authority`] and `MatchedRoute`
//!   (feature `axum`). A closure becomes one with [`from_fn`], which lets
//!   Rust infer its argument: `.key(key::from_fn(|request| ...))`.
//!   `a.or(b)` tries `b` when `a` finds nothing.
//! * `.on_missing_key(MissingKey)`: what a request without a key gets (by
//!   default one state shared by all such requests). Whatever the choice,
//!   each such request is counted in `armor.<layer>.missing_key{name}` and
//!   logged as a `tracing` error (at most once a minute per layer), so a
//!   misconfigured key never goes unnoticed.
//! * `.key_limits(KeyLimits)`: how many keys the layer keeps and when it
//!   forgets one; one default for every layer.

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{FORWARDED, HeaderName};
use http::{Extensions, HeaderMap, Method, StatusCode, Uri};

use crate::config::ConfigError;
use crate::grpc::GrpcCode;
use crate::reject::{Reason, Rejection};

/// How many keys a keyed layer keeps, and when it forgets one. The same
/// default for every keyed layer: at most 100,000 keys, each forgotten as
/// soon as it is as good as new.
///
/// A key is only forgotten when its state is again that of a new key (a rate
/// limit full again, a breaker closed and clean, a retry budget with nothing
/// in its window) *and* it has been so for `idle`, so forgetting never
/// changes a decision. A longer `idle` keeps returning clients' keys instead
/// of making them again, for more memory; with the default, 0, the table
/// holds only keys that carry state, which is also the fastest table to
/// search. Forgetting happens a little at a time as new keys arrive (a
/// breaker or retry registry sweeps at most once a second): no task is
/// spawned. Past `max_keys`, each layer says what new keys get (a shared
/// state, or a refusal for the rate limiter's
/// [`Overflow::Refuse`](crate::rate_limit::Overflow)).
///
/// Memory at the cap is roughly 100 bytes a key for a rate limit on IP
/// addresses, and a few hundred for a breaker with a count window of 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    max_keys: usize,
    idle: Duration,
}

#[cfg_attr(not(armor_keyed), allow(dead_code))]
impl KeyLimits {
    /// The default cap on keys.
    pub const DEFAULT_MAX_KEYS: usize = 100_000;
    /// The default time a key that is as good as new is kept: none.
    pub const DEFAULT_IDLE: Duration = Duration::ZERO;
    /// The longest idle time accepted.
    const MAX_IDLE: Duration = Duration::from_secs(86_400);

    /// At most `max_keys` keys, each forgotten after `idle` (checked by the
    /// layer's `build()`: at least one key, idle at most a day).
    pub fn new(max_keys: usize, idle: Duration) -> Self {
        KeyLimits { max_keys, idle }
    }

    /// The most keys held at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// How long a key stays after its state is back to that of a new key.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Checks the limits for `layer`'s `build()`.
    pub(crate) fn check(&self, layer: &'static str) -> Result<(), ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(layer, "key limits need at least one key"));
        }
        if self.idle > Self::MAX_IDLE {
            return Err(ConfigError::new(
                layer,
                format!(
                    "the idle time of key limits is at most a day, got {:?}",
                    self.idle
                ),
            ));
        }
        Ok(())
    }
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits::new(Self::DEFAULT_MAX_KEYS, Self::DEFAULT_IDLE)
    }
}

/// What a keyed layer does with a request whose key cannot be computed (no
/// peer address, the header missing). See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingKey {
    /// All such requests share one state (default): one bucket of the rate
    /// limit's quotas, one breaker, one retry budget.
    #[default]
    Shared,
    /// The layer steps aside for such requests: not limited, not guarded by
    /// a breaker, not retried.
    Allow,
    /// Refuse them with this status (4xx or 5xx, checked at `build()`), e.g.
    /// 401 for a missing API key. gRPC callers get `UNAUTHENTICATED` for 401,
    /// `PERMISSION_DENIED` for 403, `INTERNAL` for 5xx and
    /// `INVALID_ARGUMENT` for other statuses.
    Refuse(StatusCode),
}

#[cfg_attr(not(armor_keyed), allow(dead_code))]
impl MissingKey {
    /// Checks the policy for `layer`'s `build()`.
    pub(crate) fn check(&self, layer: &'static str) -> Result<(), ConfigError> {
        match self {
            MissingKey::Refuse(status)
                if !(status.is_client_error() || status.is_server_error()) =>
            {
                Err(ConfigError::new(
                    layer,
                    format!("the missing-key status {status} is not 4xx or 5xx"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The refusal for `Refuse(status)`, made by `layer`.
    pub(crate) fn rejection(status: StatusCode, layer: &'static str) -> Rejection {
        let code = match status {
            StatusCode::UNAUTHORIZED => GrpcCode::Unauthenticated,
            StatusCode::FORBIDDEN => GrpcCode::PermissionDenied,
            status if status.is_server_error() => GrpcCode::Internal,
            _ => GrpcCode::InvalidArgument,
        };
        Rejection::new(layer, Reason::Unidentified)
            .with_status(status)
            .with_grpc_code(code)
            .with_detail(format!("the request has no {layer} key"))
    }
}

/// Logs requests without a key as an error, at most once a minute per layer
/// instance (the layer counts every one in its `missing_key` metric).
#[cfg_attr(not(armor_keyed), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct MissingKeyLog {
    epoch: std::time::Instant,
    /// Seconds since `epoch` of the last log line, plus one (0: never).
    logged_at: AtomicU64,
}

impl Default for MissingKeyLog {
    fn default() -> Self {
        MissingKeyLog {
            epoch: std::time::Instant::now(),
            logged_at: AtomicU64::new(0),
        }
    }
}

#[cfg_attr(not(armor_keyed), allow(dead_code))]
impl MissingKeyLog {
    const EVERY_SECS: u64 = 60;

    /// Logs, unless this layer logged within the last minute.
    pub(crate) fn log(&self, layer: &'static str, name: &str, policy: MissingKey) {
        let now = self.epoch.elapsed().as_secs() + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if last != 0 && now < last + Self::EVERY_SECS {
            return;
        }
        if self
            .logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        tracing::error!(
            layer,
            name,
            policy = ?policy,
            "a request had no key for this layer (counted in armor.{layer}.missing_key); \
             for PeerIp or ClientIp behind axum or tonic, serve with connect info and enable \
             tower-armor's `axum` or `tonic` feature (logged at most once a minute)"
        );
    }
}

/// The parts of a request a key extractor may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (connection info lives here).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// A view of `request`.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// Picks the key a request is counted against; `None` when it has none (see
/// [`MissingKey`]).
///
/// Closures `Fn(&RequestHead<'_>) -> Option<K>` are extractors; wrap one in
/// [`from_fn`] so that Rust infers its argument's type.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of this request, if it has one.
    fn extract(&self, request: &RequestHead<'_>) -> Option<Self::Key>;

    /// Tries `self`, then `other`.
    fn or<E>(self, other: E) -> Or<Self, E>
    where
        Self: Sized,
        E: KeyExtractor<Key = Self::Key>,
    {
        Or(self, other)
    }
}

impl<F, K> KeyExtractor for F
where
    F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, request: &RequestHead<'_>) -> Option<K> {
        self(request)
    }
}

/// A closure as a [`KeyExtractor`], with its argument's type inferred:
///
/// ```
/// use tower_armor::key;
/// use tower_armor::rate_limit::{Quota, RateLimitLayer};
///
/// let per_tenant = RateLimitLayer::builder(Quota::per_second(100))
///     .key(key::from_fn(|request| request.headers.get("x-tenant").cloned()))
///     .build()?;
/// # Ok::<(), tower_armor::ConfigError>(())
/// ```
pub fn from_fn<F, K>(extract: F) -> FromFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    FromFn(extract)
}

/// The extractor [`from_fn`] makes.
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, K> KeyExtractor for FromFn<F>
where
    F: Fn(&RequestHead<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    #[inline]
    fn extract(&self, request: &RequestHead<'_>) -> Option<K> {
        (self.0)(request)
    }
}

/// `a.or(b)`: the first key found.
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<A, B> KeyExtractor for Or<A, B>
where
    A: KeyExtractor,
    B: KeyExtractor<Key = A::Key>,
{
    type Key = A::Key;

    fn extract(&self, request: &RequestHead<'_>) -> Option<A::Key> {
        self.0.extract(request).or_else(|| self.1.extract(request))
    }
}

/// One limit shared by every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    type Key = ();

    fn extract(&self, _: &RequestHead<'_>) -> Option<()> {
        Some(())
    }
}

/// The address of the connection's peer.
///
/// Read from the request extensions, where servers put it: a `SocketAddr` or
/// `IpAddr` extension (insert one in a hyper server), axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or tonic's
/// `TcpConnectInfo` (feature `tonic`). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract(&self, request: &RequestHead<'_>) -> Option<IpAddr> {
        peer_ip(request.extensions)
    }
}

fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    let ip = None
        .or_else(|| extensions.get::<SocketAddr>().map(SocketAddr::ip))
        .or_else(|| extensions.get::<IpAddr>().copied());
    #[cfg(feature = "axum")]
    let ip = ip.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
    });
    #[cfg(feature = "tonic")]
    let ip = ip.or_else(|| {
        extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip())
    });
    ip.map(|ip| ip.to_canonical())
}

/// A network in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8`; a bare
/// address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNetwork {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::new("key", format!("{text:?} is not an IP network"));
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address = IpAddr::from_str(address).map_err(|_| bad())?.to_canonical();
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
        };
        Ok(IpNetwork { address, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Which header a trusted proxy writes the client address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (default; nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
    /// `X-Real-IP: client`, a single address.
    XRealIp,
}

/// The client's address behind trusted proxies.
///
/// A forwarding header is believed only when the connection's peer is one of
/// the trusted networks; a header sent by anyone else is ignored, so forging
/// it gains nothing. The header is walked from the right (the hop nearest to
/// us), skipping trusted proxies, and the first untrusted address is the
/// client. If every hop is trusted, the leftmost one is. A malformed entry
/// (`unknown`, an obfuscated `_name`, garbage) stops the walk and the key is
/// the peer itself, the nearest proxy: safe, if coarse.
///
/// Configure the one header your proxy writes: trusting a header the proxy
/// merely passes through would let clients choose their own key.
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Vec<IpNetwork>,
    header: ForwardedHeader,
}

impl ClientIp {
    /// Trusts forwarding headers from peers in `networks` (e.g. `["10.0.0.0/8"]`).
    pub fn trusting<I, S>(networks: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let trusted = networks
            .into_iter()
            .map(|n| n.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientIp {
            trusted,
            header: ForwardedHeader::default(),
        })
    }

    /// Reads `header` (default `X-Forwarded-For`).
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<&[u8]> = Vec::new();
        match self.header {
            ForwardedHeader::XForwardedFor => {
                for value in headers.get_all(&X_FORWARDED_FOR) {
                    hops.extend(value.as_bytes().split(|b| *b == b','));
                }
            }
            ForwardedHeader::XRealIp => {
                // One value, set by the proxy; several mean someone else added one.
                let mut values = headers.get_all(&X_REAL_IP).iter();
                if let (Some(value), None) = (values.next(), values.next()) {
                    hops.push(value.as_bytes());
                }
            }
            ForwardedHeader::Forwarded => {
                for value in headers.get_all(FORWARDED) {
                    for element in value.as_bytes().split(|b| *b == b',') {
                        match forwarded_for(element) {
                            Some(node) => hops.push(node),
                            // An element without `for=` says nothing about the client: stop there.
                            None => hops.push(b""),
                        }
                    }
                }
            }
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_node(hop) else {
                return peer;
            };
            client = ip;
            if !self.is_trusted(ip) {
                return ip;
            }
        }
        client
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract(&self, request: &RequestHead<'_>) -> Option<IpAddr> {
        let peer = peer_ip(request.extensions)?;
        Some(self.client_ip(peer, request.headers))
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The `for=` value of one `Forwarded` element, quotes included.
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    element.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (name, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
        name.eq_ignore_ascii_case(b"for").then_some(&value[1..])
    })
}

/// Parses one hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`,
/// optionally in double quotes, with surrounding white space.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node).ok()?.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        return address
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // IPv4 with a port.
    let (address, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The value of a request header, e.g. an API key or a tenant id.
#[derive(Debug, Clone)]
pub struct Header(HeaderName);

impl Header {
    /// Keys on `name`'s value.
    pub fn named(name: HeaderName) -> Self {
        Header(name)
    }
}

impl KeyExtractor for Header {
    type Key = http::HeaderValue;

    fn extract(&self, request: &RequestHead<'_>) -> Option<http::HeaderValue> {
        request.headers.get(&self.0).cloned()
    }
}

/// The method and path, e.g. to give every endpoint its own budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodAndPath;

impl KeyExtractor for MethodAndPath {
    type Key = (Method, String);

    fn extract(&self, request: &RequestHead<'_>) -> Option<(Method, String)> {
        Some((request.method.clone(), request.uri.path().to_owned()))
    }
}

/// The upstream a client request goes to: the URI's authority, else the
/// `Host` header. For a client stack, one breaker or budget per upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Authority;

impl KeyExtractor for Authority {
    type Key = http::uri::Authority;

    fn extract(&self, request: &RequestHead<'_>) -> Option<http::uri::Authority> {
        if let Some(authority) = request.uri.authority() {
            return Some(authority.clone());
        }
        let host = request.headers.get(http::header::HOST)?;
        http::uri::Authority::try_from(host.as_bytes()).ok()
    }
}

/// The method and the route template axum matched (`/users/{id}`, not
/// `/users/42`), so every route gets its own budget without one key per
/// distinct path. Requests axum did not route have no key. Feature `axum`.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchedRoute;

#[cfg(feature = "axum")]
impl KeyExtractor for MatchedRoute {
    type Key = (Method, std::sync::Arc<str>);

    fn extract(&self, request: &RequestHead<'_>) -> Option<Self::Key> {
        let route = request.extensions.get::<axum::extract::MatchedPath>()?;
        Some((request.method.clone(), std::sync::Arc::from(route.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let v6: IpNetwork = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let one: IpNetwork = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", ""] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad}");
        }
    }

    #[test]
    fn x_forwarded_for_walks_from_the_right_past_trusted_proxies() {
        let client = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        let proxy = ip("10.0.0.1");
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.2, 10.0.0.7")]);
        // The spoofed leftmost entry is never reached: 198.51.100.2 is the first untrusted hop.
        assert_eq!(client.client_ip(proxy, &h), ip("198.51.100.2"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(client.client_ip(proxy, &h), ip("1.1.1.1"));
        // No header from a trusted peer: the peer itself.
        assert_eq!(client.client_ip(proxy, &HeaderMap::new()), proxy);
        // Every hop trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.7")]);
        assert_eq!(client.client_ip(proxy, &h), ip("10.9.9.9"));
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let client = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        let attacker = ip("203.0.113.50");
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(client.client_ip(attacker, &h), attacker);
        assert_eq!(
            client
                .clone()
                .header(ForwardedHeader::XRealIp)
                .client_ip(attacker, &h),
            attacker
        );
    }

    #[test]
    fn malformed_hops_fall_back_to_the_peer() {
        let client = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        let proxy = ip("10.0.0.1");
        for value in [
            "garbage",
            "1.2.3.4, unknown",
            "1.2.3.4,,",
            "300.1.1.1",
            "[::1",
            "1.2.3.4:99999",
        ] {
            let h = headers(&[("x-forwarded-for", value)]);
            assert_eq!(client.client_ip(proxy, &h), proxy, "{value}");
        }
    }

    #[test]
    fn ipv6_and_ports_are_understood() {
        let client = ClientIp::trusting(["fd00::/8", "10.0.0.0/8"]).unwrap();
        let h = headers(&[(
            "x-forwarded-for",
            "[2001:db8::7]:443, 198.51.100.4:8080, fd00::2",
        )]);
        assert_eq!(client.client_ip(ip("fd00::1"), &h), ip("198.51.100.4"));
        let h = headers(&[("x-forwarded-for", "2001:db8::9")]);
        assert_eq!(client.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::9"));
    }

    #[test]
    fn forwarded_with_quotes_ports_and_parameters() {
        let client = ClientIp::trusting(["10.0.0.0/8"])
            .unwrap()
            .header(ForwardedHeader::Forwarded);
        let proxy = ip("10.0.0.1");
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#,
        )]);
        assert_eq!(client.client_ip(proxy, &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", r#"for="192.0.2.61:8080";proto=https"#)]);
        assert_eq!(client.client_ip(proxy, &h), ip("192.0.2.61"));
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(client.client_ip(proxy, &h), proxy);
        let h = headers(&[("forwarded", "proto=https")]);
        assert_eq!(client.client_ip(proxy, &h), proxy);
    }

    #[test]
    fn x_real_ip_is_a_single_address() {
        let client = ClientIp::trusting(["10.0.0.0/8"])
            .unwrap()
            .header(ForwardedHeader::XRealIp);
        let proxy = ip("10.0.0.1");
        assert_eq!(
            client.client_ip(proxy, &headers(&[("x-real-ip", "192.0.2.1")])),
            ip("192.0.2.1")
        );
        let two = headers(&[("x-real-ip", "192.0.2.1"), ("x-real-ip", "192.0.2.2")]);
        assert_eq!(client.client_ip(proxy, &two), proxy);
    }

    #[test]
    fn peer_ip_reads_the_connection_info() {
        let mut request = http::Request::new(());
        assert_eq!(PeerIp.extract(&RequestHead::of(&request)), None);
        request
            .extensions_mut()
            .insert("[::ffff:192.0.2.1]:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            PeerIp.extract(&RequestHead::of(&request)),
            Some(ip("192.0.2.1"))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn forwarding_headers_never_panic_and_cannot_be_forged(
                bytes in prop::collection::vec(any::<u8>(), 0..80),
                header in 0..3usize,
                trusted_peer in any::<bool>(),
            ) {
                let which = [
                    ForwardedHeader::XForwardedFor,
                    ForwardedHeader::Forwarded,
                    ForwardedHeader::XRealIp,
                ][header];
                let client = ClientIp::trusting(["10.0.0.0/8", "fd00::/8"]).unwrap().header(which);
                let peer = if trusted_peer { ip("10.0.0.1") } else { ip("203.0.113.1") };
                if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
                    let mut headers = HeaderMap::new();
                    for name in [&X_FORWARDED_FOR, &FORWARDED, &X_REAL_IP] {
                        headers.insert(name.clone(), value.clone());
                    }
                    let key = client.client_ip(peer, &headers);
                    if !trusted_peer {
                        prop_assert_eq!(key, peer);
                    }
                }
            }
        }
    }
}
