//! Request metrics as OpenTelemetry names them, for servers and clients,
//! HTTP and gRPC, recorded when the response body ends.
//!
//! [`MetricsLayer::server`] records, for every request:
//!
//! * `http.server.request.duration` (seconds, histogram) with
//!   `http.request.method` (the known methods by name, and any you add with
//!   [`extra_methods`](MetricsBuilder::extra_methods); anything else
//!   `_OTHER`), `url.scheme`, `http.route` (only when a [`RouteExtractor`]
//!   supplies one, never the request's own path), `http.response.status_code`,
//!   `network.protocol.version` and `error.type`;
//! * `http.server.active_requests` (up/down) with `http.request.method` and
//!   `url.scheme`, counted down exactly once however the request ends;
//! * for gRPC calls, `rpc.server.call.duration` with `rpc.system.name=grpc`,
//!   `rpc.method` (`package.Service/Method`, or `_OTHER`), `rpc.status_code`
//!   (from the head of a trailers-only answer, else from the trailers) and
//!   `error.type`;
//! * with [`body_sizes`](MetricsBuilder::body_sizes), the request and
//!   response body sizes.
//!
//! [`MetricsLayer::client`] records the `http.client.*` and
//! `rpc.client.call.duration` counterparts, with `server.address` and
//! `server.port`.
//!
//! **When**: the duration runs from `call` to the end of the response body,
//! so a stream or a server-sent-event response is measured to its last
//! event. A body that fails, a caller that hangs up mid-stream and a future
//! dropped before its answer are all recorded (`error.type` `_OTHER`,
//! `cancelled`, `cancelled`).
//!
//! **`error.type`** is set only when the request failed, as the shared
//! [classifier](crate::classify) decides, from this list: the status code
//! (`"503"`; a client also counts 4xx), the gRPC status (`UNAVAILABLE`; a
//! client counts every status but `OK`), `timeout`, `cancelled`, the refusal
//! of one of this crate's layers (`rate_limited`, `circuit_open`,
//! `payload_too_large`, ...) and `_OTHER`.
//!
//! **Bounded labels**: each attribute comes from a fixed list or from a
//! route template, and each instrument has at most
//! [`max_label_sets`](MetricsBuilder::max_label_sets) series; past that,
//! requests go to one series marked `otel.metric.overflow="true"` and are
//! counted in `armor.metrics.label_overflow{name}`.
//!
//! **No globals**: the layer installs no recorder. It reports to the recorder
//! current when each event happens (or the one given to
//! [`recorder`](MetricsBuilder::recorder)), registering each label set once
//! per recorder and caching its handles: after warm-up a request makes no
//! `Key` and no allocation.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::metrics::MetricsLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let service = ServiceBuilder::new()
//!     .layer(MetricsLayer::server().recorder(recorder).build()?)
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! let response = service.oneshot(Request::new(String::new())).await?;
//! drop(response);
//!
//! let durations: Vec<_> = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .filter(|(key, ..)| key.key().name() == "http.server.request.duration")
//!     .collect();
//! assert!(matches!(&durations[0].3, DebugValue::Histogram(samples) if samples.len() == 1));
//! # Ok(())
//! # }
//! ```

mod attributes;
mod body;
mod future;
mod instruments;
mod layer;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod prometheus;
mod service;
mod settings;
mod span;

pub use attributes::{DefaultRoute, NoRoute, RouteExtractor, RouteFn, route_fn};
pub use body::MetricsBody;
pub use future::ResponseFuture;
pub use instruments::Naming;
pub use layer::{MetricsBuilder, MetricsLayer};
pub use service::Metrics;
