//! Health routes for Kubernetes and load balancers: liveness, readiness and
//! startup, answered from checks that run on a schedule or on demand, never
//! once per probe request.
//!
//! [`HealthLayer`] answers `/livez`, `/readyz`, `/startupz` and `/healthz`
//! (readiness) itself, and passes every other request to the service it
//! wraps:
//!
//! * **200** while the probe passes or warns, **503** when it fails;
//!   `Cache-Control: no-store`; `GET` and `HEAD` only (405 otherwise).
//! * `text/plain` `ok` by default; `application/health+json` (the IETF
//!   health-check draft) with `Accept: application/health+json` or
//!   `?format=json`; Kubernetes' `?verbose` (a line per check) and
//!   `?exclude=<check>`; `/readyz/<check>` for one check.
//! * **Nothing leaks by default**: the public sees the status alone. Names,
//!   outputs and measured values are shown as [`Details`] allows, or to the
//!   requests [`full_details_when`](HealthBuilder::full_details_when) picks.
//!
//! A probe's status is the worst of its critical checks; a non-critical
//! check that fails makes it `warn`. Each [`Check`] has a timeout
//! (required), the probes it counts in (readiness by default), and runs
//! either on demand, its result kept for a TTL and one run shared by every
//! probe that arrives meanwhile, or in the background at an interval, by the
//! [`prober`](HealthHandle::prober) you spawn. A check that times out or
//! panics fails, with that reason.
//!
//! [`HealthHandle::drain`] fails readiness at once (liveness keeps passing)
//! so load balancers stop sending traffic before a graceful shutdown.
//!
//! Put the layer outermost, outside the rate limiter and the request
//! metrics, so probes are never refused and never counted as traffic.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use tower_armor::health::{Check, CheckResult, HealthLayer, check_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let health = HealthLayer::builder()
//!     .check(
//!         Check::new("database", check_fn(|| async {
//!             // e.g. `SELECT 1` through your pool
//!             CheckResult::pass()
//!         }))
//!         .timeout(Duration::from_millis(500)),
//!     )
//!     .build()?;
//! let handle = health.handle();
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(health);
//!
//! // On SIGTERM: fail readiness, wait for the load balancer, then stop.
//! handle.drain();
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod check;
pub mod checks;
mod grpc;
mod handle;
mod layer;
mod registry;
mod render;
mod routes;
mod service;
mod settings;
mod status;

pub use check::{Check, CheckFn, CheckFuture, CheckResult, ComponentType, HealthCheck, check_fn};
pub use grpc::{GrpcHealthBody, GrpcHealthFuture, GrpcHealthService, SERVICE_NAME};
pub use handle::HealthHandle;
pub use layer::{HealthBuilder, HealthLayer};
pub use render::Details;
pub use service::{HealthService, ResponseFuture};
pub use status::{Probe, Probes, Status};
