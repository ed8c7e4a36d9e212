//! Retries that work on real HTTP and gRPC requests: no `Clone` bound on the
//! request, a ready policy, budgets, backoff and server hints.
//!
//! [`RetryLayer`] sends a failed call again when that is safe and useful:
//!
//! * **Only safe requests**: idempotent methods (GET, HEAD, OPTIONS, TRACE,
//!   PUT, DELETE), any request with an `Idempotency-Key` header, and gRPC
//!   calls (always POST: for them the retryable codes are the safety rule),
//!   unless [`retry_requests_when`](RetryBuilder::retry_requests_when) says otherwise.
//! * **Only useful answers**: what the shared [classifier](crate::classify)
//!   calls a failure (HTTP 5xx, service errors such as a refused
//!   connection), HTTP 429, and for gRPC the retryable codes (`UNAVAILABLE`
//!   by default) when the status comes with the response head. Once a
//!   response has been passed on, nothing is retried. A timeout further in
//!   (or the [per-try timeout](RetryBuilder::per_try_timeout)) is retried;
//!   other refusals by this crate's layers (an open breaker, a rate limit)
//!   are passed on: they exist to protect the service.
//! * **Bodies that are not `Clone`**: the request body is kept while the
//!   first attempt streams it, up to a cap (64 KiB by default); a retry
//!   replays the same bytes and trailers. A longer body is sent once, never
//!   retried. Any request body keeping the crate's [body rule](crate::body)
//!   is replayed. The inner service receives a [`ReplayBody`], or with
//!   [`inner_body`](RetryBuilder::inner_body) a type-erased body such as a
//!   tonic `Channel`'s `tonic::body::Body`.
//! * **Waits**: exponential backoff with full jitter (25 ms base, 250 ms cap
//!   by default) or decorrelated jitter. A server's `Retry-After` (seconds
//!   or an HTTP date) or `grpc-retry-pushback-ms` replaces it; a negative or
//!   malformed pushback, or a hint longer than
//!   [`max_server_delay`](RetryBuilder::max_server_delay), ends the retries.
//! * **Budget**: retries may be at most a ratio of recent requests (20% over
//!   10 s, plus 10 per second, by default), shared by every clone of the
//!   layer, or per key with [`key`](RetryBuilder::key). An outage cannot
//!   multiply the load on the service. [`RetryLayer::handle`] reads and
//!   refills the budgets.
//! * **Deadlines**: the [`Deadline`](crate::Deadline) a timeout layer put in
//!   the request is respected: no backoff is started that would end after
//!   it. gRPC retries carry `grpc-previous-rpc-attempts`.
//!
//! Metrics: `armor.retry.attempts{name,outcome}` with `success`, `retried`,
//! `failed` (passed on as it was: nothing left to try or not retryable) and
//! `refused` (a local refusal further in), `armor.retry.budget_exhausted{name}`
//! and `armor.retry.missing_key{name}`, each reaching the recorder installed
//! when it happens.
//!
//! Time is Tokio's, so `tokio::time::pause()` drives the waits in tests.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::retry::{ReplayBody, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let retry = RetryLayer::builder()
//!     .name("inventory")
//!     .max_attempts(3)
//!     .backoff(Duration::from_millis(10), Duration::from_millis(100))
//!     .build()?;
//!
//! // An upstream that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = {
//!     let calls = calls.clone();
//!     move |_request: Request<ReplayBody<Full<Bytes>>>| {
//!         let call = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let status = if call < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!             Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap())
//!         }
//!     }
//! };
//! let client = ServiceBuilder::new().layer(retry).service_fn(upstream);
//!
//! let request = Request::get("http://inventory/items").body(Full::new(Bytes::new()))?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```

mod body;
mod budget;
mod future;
mod layer;
mod policy;
mod service;
mod shared;

pub use crate::body::BoxedBody;
pub use crate::key::{KeyLimits, MissingKey};
pub use body::{AsReplayBody, AttemptBody, Boxed, NotReplayable, ReplayBody};
pub use future::ResponseFuture;
pub use layer::{MAX_ATTEMPTS_CAP, RetryBuilder, RetryHandle, RetryLayer};
pub use policy::Backoff;
pub use service::Retry;
pub use shared::RetryCheck;
