//! A Prometheus scrape route that just works (feature `prometheus`): one
//! builder call gives the recorder to install and the `/metrics` route that
//! renders it.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_armor::metrics::{MetricsLayer, prometheus};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (recorder, scrape) = prometheus::builder().build()?;
//! // Yours to install, once per process (or use it locally in tests).
//! # let _ = || {
//! metrics::set_global_recorder(recorder).expect("no recorder installed yet");
//! # };
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(MetricsLayer::default())
//!     // An axum route: `route_service("/metrics", scrape)` also works; as
//!     // a layer it answers its path and passes everything else on.
//!     .layer(scrape);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! It builds on `metrics-exporter-prometheus` 0.18 (re-exported as
//! [`exporter`]) and closes its two traps:
//!
//! * **Histograms, never summaries.** Every histogram gets buckets: the
//!   duration histograms this crate emits get OpenTelemetry's
//!   [`DURATION_BUCKETS`], the body sizes [`BYTE_BUCKETS`], any other
//!   histogram the duration buckets too (change them with
//!   [`configure`](PrometheusBuilder::configure)). A summary cannot be
//!   aggregated across instances; a histogram can.
//! * **Memory stays bounded without a background task.** The exporter keeps
//!   every histogram sample until a scrape or an upkeep drains it, so an
//!   instance nobody scrapes grows without end (metrics-rs #245, #465,
//!   #467). Here the recorder runs the upkeep itself every
//!   [`upkeep_every`](PrometheusBuilder::upkeep_every) samples (default
//!   65,536), so at most that many wait, whatever the scrape interval, and
//!   no runtime or thread is needed.
//!
//! Names follow Prometheus's recommended naming: OpenTelemetry's
//! `http.server.request.duration` in seconds is exposed as
//! `http_server_request_duration_seconds`, counters end in `_total`, as the
//! OpenTelemetry Collector's Prometheus exporter has them.

mod recorder;
mod route;

pub use metrics_exporter_prometheus as exporter;
pub use recorder::PrometheusRecorder;
pub use route::{Scrape, ScrapeService};

use std::sync::Arc;

use exporter::Matcher;

use crate::config::ConfigError;

/// OpenTelemetry's bucket boundaries for durations, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Bucket boundaries for body sizes, in bytes: powers of four from 256 B to
/// 64 MiB.
pub const BYTE_BUCKETS: [f64; 10] = [
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 67108864.0,
];

/// The duration histograms this crate emits, under either naming.
const DURATION_NAMES: [&str; 8] = [
    "http.server.request.duration",
    "http.client.request.duration",
    "rpc.server.call.duration",
    "rpc.client.call.duration",
    "http_server_request_duration_seconds",
    "http_client_request_duration_seconds",
    "rpc_server_call_duration_seconds",
    "rpc_client_call_duration_seconds",
];

/// The body-size histograms this crate emits, under either naming.
const SIZE_NAMES: [&str; 8] = [
    "http.server.request.body.size",
    "http.server.response.body.size",
    "http.client.request.body.size",
    "http.client.response.body.size",
    "http_server_request_body_size_bytes",
    "http_server_response_body_size_bytes",
    "http_client_request_body_size_bytes",
    "http_client_response_body_size_bytes",
];

/// Starts building a Prometheus recorder and its scrape route.
pub fn builder() -> PrometheusBuilder {
    PrometheusBuilder {
        path: "/metrics".into(),
        upkeep_every: DEFAULT_UPKEEP_EVERY,
        configure: None,
    }
}

const DEFAULT_UPKEEP_EVERY: u64 = 65_536;

type Configure = Box<dyn FnOnce(exporter::PrometheusBuilder) -> exporter::PrometheusBuilder>;

/// Builds a [`PrometheusRecorder`] and its [`Scrape`] route; made by
/// [`builder`].
#[must_use = "call .build() to get the recorder and the route"]
pub struct PrometheusBuilder {
    path: String,
    upkeep_every: u64,
    configure: Option<Configure>,
}

impl std::fmt::Debug for PrometheusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusBuilder")
            .field("path", &self.path)
            .field("upkeep_every", &self.upkeep_every)
            .finish_non_exhaustive()
    }
}

impl PrometheusBuilder {
    /// The path the route answers when used as a layer (default `/metrics`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Drains the histogram samples into their buckets after every `samples`
    /// samples recorded (default 65,536: at most half a MiB waiting).
    pub fn upkeep_every(mut self, samples: u64) -> Self {
        self.upkeep_every = samples;
        self
    }

    /// Changes the exporter's settings after this crate's: global labels,
    /// idle timeouts, other buckets. For example
    /// `.configure(|b| b.add_global_label("service", "checkout"))`.
    pub fn configure(
        mut self,
        configure: impl FnOnce(exporter::PrometheusBuilder) -> exporter::PrometheusBuilder + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Builds the recorder (yours to install: `metrics::set_global_recorder`,
    /// or `metrics::with_local_recorder` in a test) and the route that
    /// renders it. Fails on a path that does not start with `/` or an
    /// upkeep period of zero samples.
    pub fn build(self) -> Result<(PrometheusRecorder, Scrape), ConfigError> {
        if !self.path.starts_with('/') {
            return Err(ConfigError::new(
                "prometheus",
                format!("the scrape path {:?} must start with '/'", self.path),
            ));
        }
        if self.upkeep_every == 0 {
            return Err(ConfigError::new(
                "prometheus",
                "upkeep_every must be at least one sample",
            ));
        }
        let mut exporter = exporter::PrometheusBuilder::new()
            .with_recommended_naming(true)
            .set_buckets(&DURATION_BUCKETS)
            .map_err(bucket_error)?;
        for name in DURATION_NAMES {
            exporter = exporter
                .set_buckets_for_metric(Matcher::Full(name.into()), &DURATION_BUCKETS)
                .map_err(bucket_error)?;
        }
        for name in SIZE_NAMES {
            exporter = exporter
                .set_buckets_for_metric(Matcher::Full(name.into()), &BYTE_BUCKETS)
                .map_err(bucket_error)?;
        }
        if let Some(configure) = self.configure {
            exporter = configure(exporter);
        }
        let recorder = PrometheusRecorder::new(exporter.build_recorder(), self.upkeep_every);
        let scrape = Scrape::new(recorder.handle(), Arc::from(self.path));
        Ok((recorder, scrape))
    }
}

fn bucket_error(error: exporter::BuildError) -> ConfigError {
    ConfigError::new("prometheus", error.to_string())
}
