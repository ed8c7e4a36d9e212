//! Rate limits per key, with GCRA, that refuse in the caller's protocol.
//!
//! [`RateLimitLayer`] counts each request against one or more [`Quota`]s of
//! its key: one bucket for everyone ([`Global`], the default), the peer
//! address ([`PeerIp`]), the client address behind trusted proxies
//! ([`ClientIp`]), a header such as an API key ([`Header`]), the method and
//! path ([`MethodAndPath`]) or route template (`MatchedRoute`, feature
//! `axum`), or any closure over the [`RequestHead`] through
//! [`key::from_fn`](crate::key::from_fn); `a.or(b)` tries `b` when `a`
//! finds nothing. A request without a key gets what
//! [`on_missing_key`](RateLimitBuilder::on_missing_key) says ([`MissingKey`]:
//! one shared bucket by default), and is counted and logged.
//!
//! * **Refusal**: 429 with `Retry-After` (seconds, rounded up) and an RFC 9457
//!   problem body; gRPC callers get `RESOURCE_EXHAUSTED` with
//!   `grpc-retry-pushback-ms`. The IETF `RateLimit-Policy` and `RateLimit`
//!   headers go on allowed and refused responses (switch off with
//!   [`headers(false)`](RateLimitBuilder::headers)).
//! * **Several quotas** (10/s *and* 1000/h) are checked together and spent
//!   together: a request refused by one quota spends nothing of the others.
//!   A [`cost`](RateLimitBuilder::cost) closure weighs requests.
//! * **Modes**: reject (default), [`Mode::Wait`] up to a bound inside the
//!   response future, or [`Mode::Shadow`] to only count would-be refusals.
//! * **One state per layer value**: every clone and every `layer()` call of
//!   the same [`RateLimitLayer`] shares it, so `route_layer`, cloned services
//!   and many connections all see one limit.
//! * **Bounded memory**: keys whose quotas have been whole again for the
//!   idle time are forgotten a shard at a time as new keys arrive (no
//!   background task); at most the [`KeyLimits`] maximum are held, beyond
//!   which new keys share an overflow bucket (or are refused, see [`Overflow`]).
//! * **A handle** ([`RateLimitLayer::handle`]) reads a key's quotas, resets a
//!   key and forgets idle keys on demand.
//! * **Stores**: state lives in a [`MemoryStore`] unless
//!   [`store_with`](RateLimitBuilder::store_with) plugs in another
//!   [`RateStore`] (an async one, e.g. distributed). Time is Tokio's, so
//!   `tokio::time::pause()` in your tests drives the limiter exactly.
//! * **Metrics**: `armor.rate_limit.decisions{name, decision}` with
//!   `allowed`, `rejected` or `shadow_rejected`,
//!   `armor.rate_limit.missing_key{name}`, and the gauge
//!   `armor.rate_limit.keys{name}`, reported to the recorder installed when
//!   each happens.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_armor::rate_limit::{PeerIp, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = RateLimitLayer::builder(Quota::per_second(2))
//!     .key(PeerIp)
//!     .name("api")
//!     .build()?;
//!
//! let mut service = ServiceBuilder::new().layer(limit).service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! });
//!
//! let from = |addr: &str| {
//!     let mut request = Request::new(String::new());
//!     request.extensions_mut().insert(addr.parse::<SocketAddr>().unwrap());
//!     request
//! };
//! for _ in 0..2 {
//!     let response = service.ready().await?.call(from("192.0.2.1:5000")).await?;
//!     assert_eq!(response.status(), StatusCode::OK);
//! }
//! let refused = service.ready().await?.call(from("192.0.2.1:5001")).await?;
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! // Another client has its own budget.
//! let other = service.ready().await?.call(from("192.0.2.2:5000")).await?;
//! assert_eq!(other.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod decision;
mod future;
mod gcra;
mod headers;
mod layer;
mod limiter;
mod quota;
mod service;
mod store;

#[cfg(feature = "axum")]
pub use crate::key::MatchedRoute;
pub use crate::key::{
    ClientIp, ForwardedHeader, Global, Header, IpNetwork, KeyExtractor, KeyLimits, MethodAndPath,
    MissingKey, Or, PeerIp, RequestHead,
};
pub use decision::{Check, Decision, Placement, QuotaState, Verdict};
pub use future::ResponseFuture;
#[cfg(feature = "redis")]
pub(crate) use gcra::MAX_QUOTAS;
pub use gcra::Overflow;
pub use layer::{InMemory, MakeStore, RateLimitBuilder, RateLimitHandle, RateLimitLayer};
pub use limiter::Mode;
pub use quota::Quota;
pub use service::RateLimit;
pub use store::{MemoryStore, RateStore};
