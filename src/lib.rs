//! # tower-armor
//!
//! Tower layers that a production HTTP or gRPC service needs, server or
//! client, each correct for both protocols, fast, observable and safe by
//! default:
//!
//! | layer | what it does | feature |
//! |---|---|---|
//! | [`timeout`] | 504 / `DEADLINE_EXCEEDED` on expiry, honours and propagates `grpc-timeout`, body deadlines | `timeout` |
//! | [`rate_limit`] | keyed GCRA limits, several quotas, 429 / `RESOURCE_EXHAUSTED` with `Retry-After` and `RateLimit` headers | `rate-limit` |
//! | [`circuit_breaker`] | lock-free breaker: count or time window, 503 / `UNAVAILABLE` with `Retry-After`, exactly N half-open probes, keyed breakers, operator handle | `circuit-breaker` |
//! | [`retry`] | retries real (non-`Clone`) requests: idempotency-aware, body replay, budgets, jittered backoff, `Retry-After` / pushback, deadlines | `retry` |
//! | [`compression`] | negotiated zstd / br / gzip / deflate that streams, and request decompression with a bomb cap | `compression-gzip`, `-deflate`, `-br`, `-zstd` |
//!
//! The default features are every layer with the codings that build no C
//! code; `full` adds zstd. `axum` and `tonic` read those frameworks'
//! connection info and box retried bodies into their body types.
//!
//! ## One shape for every layer
//!
//! * `XLayer::builder(required)...build() -> Result<XLayer, ConfigError>`,
//!   and `XLayer::default()` where nothing is required; every builder takes
//!   `.name(..)`, the `name` label of the layer's metrics.
//! * Keyed layers (rate limit, breaker, retry budget) take `.key(..)`,
//!   `.on_missing_key(..)` and `.key_limits(..)`: see [`key`].
//! * Layers with state hand out a cloneable `handle()` to read it and reset it.
//! * Every service is built by its layer or by `XService::new(inner, layer)`,
//!   and has `get_ref`, `get_mut` and `into_inner`.
//! * Bodies follow one [rule](body): any body whose error converts into
//!   [`BoxError`] goes in; every body of ours yields `Bytes` and fails with
//!   [`BoxError`]. So every layer composes with every other in any order.
//! * [`ServiceBuilderExt`] has one `armor_*` method per layer.
//!
//! ## Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::ServiceBuilderExt;
//! use tower_armor::timeout::TimeoutLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .armor_timeout(TimeoutLayer::builder(Duration::from_secs(10)).build()?)
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! The same layer values go into an axum `Router::layer` / `route_layer`, a
//! tonic `Server::builder().layer(..)` or client channel, and hyper stacks.
//!
//! ## The contract every layer keeps
//!
//! 1. **HTTP-typed, generic**: wraps any `Service<http::Request<B>>` returning
//!    `http::Response<R>`; no axum, tonic or hyper types required.
//! 2. **The error type is preserved**: refusals are *responses*
//!    ([`reject`]), so `Infallible` stays `Infallible` and axum needs no
//!    `HandleErrorLayer`.
//! 3. **Refusals speak the caller's protocol**: gRPC callers get a
//!    trailers-only `grpc-status`; others get 429/503/504/... with
//!    `Retry-After` and `application/problem+json`. The response carries a
//!    [`Rejection`](reject::Rejection) extension naming the layer and reason.
//! 4. **State is made once**, in the layer, behind an `Arc`: clones share it.
//! 5. **`poll_ready` reserves nothing**; permits are taken in `call`.
//! 6. **Outcomes are recorded at the end of the body** ([`body::GuardBody`]).
//! 7. **One classifier** ([`classify`]) for breaker and retry.
//! 8. **Bad configuration fails at `build()`** with a [`ConfigError`]; bad
//!    input never panics.
//! 9. **Observable without globals**: `metrics` facade and `tracing`, named
//!    instances, no global recorder, no spawned tasks; events reach the
//!    recorder installed when they happen.
//! 10. **Cheap on the hot path**: named futures, no per-request boxing.
//!
//! A layer needs a Tokio runtime with the time driver when it keeps time, as
//! axum, tonic and hyper servers have.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps its inner
/// service `S` in a field named `inner`; called inside the service's `impl`.
#[cfg_attr(not(armor_layer), allow(unused_macros))]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub mod body;
mod builder;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
pub mod classify;
mod config;
mod deadline;
pub mod grpc;
#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub mod health;
pub mod key;
#[cfg(any(
    armor_keyed,
    armor_compression,
    feature = "metrics",
    feature = "timeout",
    feature = "health",
    feature = "cache"
))]
mod observe;
#[cfg(any(feature = "circuit-breaker", feature = "retry"))]
mod random;
pub mod reject;
#[cfg(any(
    armor_keyed,
    feature = "metrics",
    feature = "health",
    feature = "cache"
))]
#[allow(dead_code)] // each layer uses some of the three helpers, none all
mod sync;
#[cfg_attr(not(any(feature = "timeout", feature = "retry")), allow(dead_code))]
mod timer;

#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
#[cfg(armor_compression)]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "compression-gzip",
        feature = "compression-deflate",
        feature = "compression-br",
        feature = "compression-zstd"
    )))
)]
pub mod compression;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(armor_presets)]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "cache",
        feature = "metrics",
        feature = "health",
        feature = "timeout",
        feature = "rate-limit",
        feature = "circuit-breaker",
        feature = "retry",
        any(
            feature = "compression-gzip",
            feature = "compression-deflate",
            feature = "compression-br",
            feature = "compression-zstd"
        )
    )))
)]
pub mod preset;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "timeout")]
#[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
pub mod timeout;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use builder::ServiceBuilderExt;
pub use config::ConfigError;
pub use deadline::Deadline;

/// The error type of every body this crate hands on, and of body errors it
/// accepts after conversion: the one axum, tonic and hyper use too. See the
/// [body rule](body).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
