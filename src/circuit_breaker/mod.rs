//! Circuit breakers: stop calling a failing service for a while, answer in
//! the caller's protocol meanwhile, and probe carefully before trusting it again.
//!
//! [`CircuitBreakerLayer`] watches each call's outcome *at the end of the
//! response body* through the shared [classifier](crate::classify) (HTTP 5xx,
//! gRPC server-error codes from headers or trailers, service errors; a
//! timeout is a failure and a slow call; another layer's local refusal is
//! not counted), and moves between three states:
//!
//! * **Closed**: calls flow. The breaker opens when any configured policy
//!   trips: the failure rate or the slow-call rate over a window (the last N
//!   calls, or the calls of the last T in buckets; both O(1) per call and
//!   lock-free), once the window holds a minimum of calls; or N failures in a row.
//! * **Open**: calls are refused at once, without waiting on the inner
//!   service's readiness: 503 with `Retry-After` (the time until the next
//!   probe) and a problem+json body, or gRPC `UNAVAILABLE` with
//!   `grpc-retry-pushback-ms`. The open period grows (doubling, with jitter)
//!   each time the breaker re-opens, and resets when it closes.
//! * **Half-open**: exactly N probe calls are admitted, whatever the
//!   concurrency. The breaker closes once they have all reported and few
//!   enough failed, and re-opens as soon as too many did. A probe that is
//!   dropped gives its permit back; probes that hang past the probe timeout
//!   re-open the breaker.
//!
//! With [`key`](CircuitBreakerBuilder::key) each key (an upstream
//! [`Authority`](crate::key::Authority) in a client, a route or gRPC method in
//! a server) gets its own breaker, in a bounded registry that forgets idle
//! ones ([`KeyLimits`]); a request without a key gets what
//! [`on_missing_key`](CircuitBreakerBuilder::on_missing_key) says.
//!
//! The [`CircuitHandle`] from [`CircuitBreakerLayer::handle`] reads the state
//! and the time of the next admission, and lets operators isolate the
//! service, close the breaker, disable it, switch it to observe-only, or
//! reset it, for the layer's breaker or any key's. A hook sees every state
//! change.
//!
//! Metrics: `armor.circuit_breaker.state{name,state}` (how many of the
//! layer's breakers are in each state: 1 and 0s for an unkeyed breaker),
//! `armor.circuit_breaker.transitions{name,from,to}` and
//! `armor.circuit_breaker.calls{name,outcome}` with `success`, `failure`,
//! `slow`, `refused`, `cancelled`, `ignored` (refused further in, by another
//! layer) and `shadow_refused` (let through by metrics-only mode), and
//! `armor.circuit_breaker.missing_key{name}`; each reaches the recorder
//! installed when it happens.
//!
//! Time is Tokio's, so `tokio::time::pause()` drives the breaker in tests.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_armor::circuit_breaker::{CircuitBreakerLayer, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(10), Duration::from_secs(60))
//!     .build()?;
//! let handle = breaker.handle();
//!
//! // An upstream that always fails.
//! let mut service = ServiceBuilder::new().layer(breaker).service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::builder().status(500).body(String::new()).unwrap())
//! });
//!
//! for _ in 0..3 {
//!     let response = service.ready().await?.call(Request::new(String::new())).await?;
//!     assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! }
//! assert_eq!(handle.state(), CircuitState::Open);
//!
//! let refused = service.ready().await?.call(Request::new(String::new())).await?;
//! assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert!(refused.headers().contains_key("retry-after"));
//! # Ok(())
//! # }
//! ```

mod breaker;
mod core;
mod future;
mod layer;
mod service;
mod window;

pub use crate::key::{KeyLimits, MissingKey};
#[cfg(feature = "redis")]
pub(crate) use breaker::{Breaker, Observer};
pub use breaker::{CircuitHandle, StateChange, WindowStats};
pub use core::CircuitState;
#[cfg(feature = "redis")]
pub(crate) use core::{Admission, Permit, Policy, WindowSpec};
pub use future::{CircuitBreakerBody, ResponseFuture};
pub use layer::{CircuitBreakerBuilder, CircuitBreakerLayer};
pub use service::CircuitBreaker;
