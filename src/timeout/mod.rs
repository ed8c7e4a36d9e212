//! Timeouts that answer in the caller's protocol and keep the error type.
//!
//! [`TimeoutLayer`] gives each request a deadline from `call` to its response
//! head. On expiry a plain HTTP caller gets **504 Gateway Timeout** with an
//! RFC 9457 problem body (never 408, which browsers take as "resend"), and a
//! gRPC caller gets a trailers-only `DEADLINE_EXCEEDED`. The refusal is a
//! response, so the inner service's error type is kept: an axum `Router`
//! takes the layer without `HandleErrorLayer`.
//!
//! * **gRPC deadlines**: an incoming `grpc-timeout` shortens the deadline (the
//!   smaller of the two wins); a malformed one is ignored.
//! * **Deadline propagation**: the deadline is put into the request extensions
//!   as a [`Deadline`](crate::Deadline), so inner layers and handlers can read
//!   the time left. On a client stack, [`TimeoutBuilder::propagate_grpc_timeout`]
//!   also writes it as `grpc-timeout` on outgoing gRPC requests.
//! * **Client deadlines**: an error from the inner service once the deadline
//!   has passed is answered as the deadline (504 / `DEADLINE_EXCEEDED`):
//!   a tonic `Channel` enforces the `grpc-timeout` we send itself and fails
//!   at the same instant with "Timeout expired", which tonic's client reports
//!   as `CANCELLED`. With this layer around the channel the caller gets
//!   `DEADLINE_EXCEEDED`. tonic's own `Endpoint::timeout` still reports
//!   `CANCELLED`; use this layer instead. An error before the deadline is
//!   passed on untouched.
//! * **Bodies**: [`ResponseBodyDeadlineLayer`] caps the time a response body
//!   takes to stream, and [`RequestBodyTimeoutLayer`] answers **408** when a
//!   client stalls while sending its body. They are separate layers because
//!   they change the body types, which most stacks need not pay for.
//!
//! Every expiry increments `armor.timeout.expired{name, stage}` with `stage`
//! one of `response`, `response_body` or `request_body`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::timeout::TimeoutLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let timeout = TimeoutLayer::builder(Duration::from_secs(2))
//!     .name("api")
//!     .build()?;
//!
//! let slow = ServiceBuilder::new().layer(timeout).service_fn(|_req: Request<String>| async {
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//!     Ok::<_, Infallible>(Response::new(String::from("too late")))
//! });
//!
//! let response = slow.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod request_body;
mod response_body;
mod service;
mod settings;

pub use future::ResponseFuture;
pub use layer::{TimeoutBuilder, TimeoutLayer};
pub use request_body::{
    IdleFuture, IdleTimeoutBody, RequestBodyTimedOut, RequestBodyTimeout,
    RequestBodyTimeoutBuilder, RequestBodyTimeoutLayer,
};
pub use response_body::{
    BodyDeadlineElapsed, DeadlineBody, DeadlineFuture, ResponseBodyDeadline,
    ResponseBodyDeadlineBuilder, ResponseBodyDeadlineLayer,
};
pub use service::Timeout;

use std::time::Duration;

use metrics::SharedString;

use crate::config::ConfigError;

/// The longest duration any timer here accepts. Tokio's timer wheel tops out
/// at about two years; a year is plenty for any request, and the bound keeps
/// `now + duration` from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Checks a configured duration: more than zero, at most [`MAX_DURATION`].
fn check_duration(what: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        return Err(ConfigError::new(
            "timeout",
            format!("the {what} must be greater than zero"),
        ));
    }
    if duration > MAX_DURATION {
        return Err(ConfigError::new(
            "timeout",
            format!("the {what} {duration:?} is longer than the supported maximum of 365 days"),
        ));
    }
    Ok(duration)
}

/// Counts one expiry; `stage` says which timer fired.
fn record_expired(name: &SharedString, stage: &'static str) {
    tracing::debug!(name = &**name, stage, "timeout expired");
    crate::observe::describe_current_once();
    metrics::counter!("armor.timeout.expired", "name" => name.clone(), "stage" => stage)
        .increment(1);
}
