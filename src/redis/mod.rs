//! State shared by every instance of a service, in Redis or Valkey (feature
//! `redis`): the rate limiter's quotas and the cache's entries.
//!
//! With ten instances each allowing 100 requests a second, a fleet allows
//! 1,000; with a [`RedisRateStore`] the ten enforce one limit together. Every
//! store talks to Redis through one [`RedisConnection`] (a single server or
//! a Cluster), gives each call a short timeout, and puts this crate's own
//! circuit breaker in front of it: while Redis is down, requests are decided
//! by the store's [`Fallback`] at once instead of each waiting out a timeout,
//! and a Redis that is back is used again within a second.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_armor::ConfigError> {
//! use tower_armor::key::PeerIp;
//! use tower_armor::rate_limit::{Quota, RateLimitLayer};
//! use tower_armor::redis::{RedisConnection, RedisRateStore};
//!
//! let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
//! let limit = RateLimitLayer::builder(Quota::per_second(100))
//!     .key(PeerIp)
//!     // The one line that moves the limit from this process to Redis:
//!     .store_with(RedisRateStore::builder(redis))
//!     .build()?;
//! # drop(limit);
//! # Ok(())
//! # }
//! ```
//!
//! Metrics: `armor.rate_limit.store{name,result}` counts decisions by
//! where they were made (`ok`: Redis; `cached`: a refusal known here;
//! `error`, `timeout`, `fallback`: the fallback, after an error, a timeout,
//! or with the breaker open), and `armor.rate_limit.store_duration{name}`
//! is Redis's round trip in seconds. The breaker reports as
//! `armor.circuit_breaker.*{name}`.

#[cfg(feature = "rate-limit")]
mod batch;
#[cfg(feature = "cache")]
mod cache;
mod connection;
#[cfg_attr(not(any(feature = "rate-limit", feature = "cache")), allow(dead_code))]
mod guard;
mod key;
#[cfg(feature = "rate-limit")]
mod rate;

#[cfg(feature = "cache")]
pub use cache::{RedisCacheStore, RedisCacheStoreBuilder};
pub use connection::RedisConnection;
pub use key::StoreKey;
#[cfg(feature = "rate-limit")]
pub use rate::{Fallback, RedisDecision, RedisRateStore, RedisRateStoreBuilder};
