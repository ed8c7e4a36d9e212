use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use metrics::SharedString;
use tower_layer::Layer;

use super::Timeout;
use super::settings::{Expiry, TimeoutConfig};
use crate::config::{ConfigError, instance_name};
use crate::reject::Renderer;

/// Answers with 504 (gRPC: `DEADLINE_EXCEEDED`) when the inner service has not
/// produced a response head in time. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    config: Arc<TimeoutConfig>,
}

impl TimeoutLayer {
    /// Starts a layer that allows each request `timeout` to produce its
    /// response head.
    pub fn builder(timeout: Duration) -> TimeoutBuilder {
        TimeoutBuilder {
            config: TimeoutConfig {
                timeout,
                honor_grpc_timeout: true,
                propagate_grpc_timeout: false,
                deadline_extension: true,
                expiry: Expiry {
                    name: SharedString::const_str("default"),
                    status: StatusCode::GATEWAY_TIMEOUT,
                    renderer: Renderer::default(),
                },
            },
        }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.clone())
    }
}

impl<S> Timeout<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: TimeoutLayer) -> Self {
        Timeout {
            inner,
            config: layer.config,
        }
    }
}

/// Builds a [`TimeoutLayer`]; made by [`TimeoutLayer::builder`].
#[derive(Debug)]
#[must_use = "call .build() to get the layer"]
pub struct TimeoutBuilder {
    config: TimeoutConfig,
}

impl TimeoutBuilder {
    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.expiry.name = instance_name(name);
        self
    }

    /// The status plain HTTP callers get on expiry (default 504; must be 4xx
    /// or 5xx). gRPC callers always get `DEADLINE_EXCEEDED`.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.config.expiry.status = status;
        self
    }

    /// Whether an incoming `grpc-timeout` shortens the deadline (default
    /// `true`): the effective timeout is the smaller of the two. A malformed
    /// header is ignored.
    pub fn honor_grpc_timeout(mut self, honor: bool) -> Self {
        self.config.honor_grpc_timeout = honor;
        self
    }

    /// Client side: writes the time left as `grpc-timeout` on outgoing gRPC
    /// requests (default `false`), so the server gives up when we do.
    pub fn propagate_grpc_timeout(mut self, propagate: bool) -> Self {
        self.config.propagate_grpc_timeout = propagate;
        self
    }

    /// Whether to put the [`Deadline`](crate::Deadline) into the request
    /// extensions (default `true`). It costs one small allocation per
    /// request; turn it off if nothing inside reads it.
    pub fn deadline_extension(mut self, insert: bool) -> Self {
        self.config.deadline_extension = insert;
        self
    }

    /// Renders the refusal your own way.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.config.expiry.renderer = renderer;
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// Fails when the timeout is zero or longer than 365 days, or the status
    /// is not 4xx/5xx.
    pub fn build(self) -> Result<TimeoutLayer, ConfigError> {
        let config = self.config;
        super::check_duration("timeout", config.timeout)?;
        let status = config.expiry.status;
        if !(status.is_client_error() || status.is_server_error()) {
            return Err(ConfigError::new(
                "timeout",
                format!("status {status} is not a 4xx or 5xx error status"),
            ));
        }
        Ok(TimeoutLayer {
            config: Arc::new(config),
        })
    }
}
