use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use metrics::{Recorder, SharedString};
use tower_layer::Layer;

use super::Metrics;
use super::attributes::{DefaultRoute, KnownMethod, RouteExtractor};
use super::instruments::{Instruments, Names, Naming, Routes, Server, Side, Target};
use super::settings::Settings;
use crate::classify::{Classify, DefaultClassifier};
use crate::config::{ConfigError, instance_name};
use crate::observe::PerRecorder;

/// Records OpenTelemetry-named request metrics. See the [module docs](super).
///
/// [`MetricsLayer::server`] for services, [`MetricsLayer::client`] for
/// client stacks; every clone, and every service it makes, shares one set of
/// instruments.
pub struct MetricsLayer<R = DefaultRoute, C = DefaultClassifier> {
    settings: Arc<Settings<R, C>>,
}

impl<R, C> Clone for MetricsLayer<R, C> {
    fn clone(&self) -> Self {
        MetricsLayer {
            settings: self.settings.clone(),
        }
    }
}

impl<R, C> fmt::Debug for MetricsLayer<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsLayer")
            .field("name", &self.settings.instruments.name)
            .field("side", &self.settings.instruments.side)
            .finish_non_exhaustive()
    }
}

impl MetricsLayer {
    /// Server metrics: `http.server.request.duration`,
    /// `http.server.active_requests` and, for gRPC calls,
    /// `rpc.server.call.duration`. The same as `MetricsLayer::default()`.
    pub fn server() -> MetricsBuilder {
        MetricsBuilder::new(Side::Server)
    }

    /// Client metrics: `http.client.request.duration`,
    /// `http.client.active_requests` and `rpc.client.call.duration`, with
    /// `server.address` and `server.port` of each upstream.
    pub fn client() -> MetricsBuilder {
        MetricsBuilder::new(Side::Client)
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer::server()
            .build()
            .expect("the default metrics settings are valid")
    }
}

impl<S, R, C> Layer<S> for MetricsLayer<R, C> {
    type Service = Metrics<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::new(inner, self.clone())
    }
}

impl<S, R, C> Metrics<S, R, C> {
    /// Wraps `inner` with the instruments of `layer`.
    pub fn new(inner: S, layer: MetricsLayer<R, C>) -> Self {
        Metrics {
            inner,
            settings: layer.settings,
        }
    }
}

/// The default cap on label sets per instrument, as OpenTelemetry SDKs have it.
const DEFAULT_MAX_LABEL_SETS: usize = 2000;

/// Builds a [`MetricsLayer`]; made by [`MetricsLayer::server`] or
/// [`MetricsLayer::client`].
#[must_use = "call .build() to get the layer"]
pub struct MetricsBuilder<R = DefaultRoute, C = DefaultClassifier> {
    route: R,
    classifier: C,
    options: Options,
}

/// The builder's settings that do not change its type.
struct Options {
    side: Side,
    name: SharedString,
    naming: Naming,
    body_sizes: bool,
    max_label_sets: usize,
    grpc_methods: Option<Vec<String>>,
    extra_methods: Vec<String>,
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    spans: bool,
    server: Option<(String, u16)>,
}

impl<R, C> fmt::Debug for MetricsBuilder<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsBuilder")
            .field("side", &self.options.side)
            .field("name", &self.options.name)
            .finish_non_exhaustive()
    }
}

impl MetricsBuilder {
    fn new(side: Side) -> Self {
        MetricsBuilder {
            route: DefaultRoute,
            classifier: DefaultClassifier::new(),
            options: Options {
                side,
                name: SharedString::const_str("default"),
                naming: Naming::default(),
                body_sizes: false,
                max_label_sets: DEFAULT_MAX_LABEL_SETS,
                grpc_methods: None,
                extra_methods: Vec::new(),
                recorder: None,
                spans: false,
                server: None,
            },
        }
    }
}

impl<R, C> MetricsBuilder<R, C> {
    /// Names this instance in its own metrics and traces (default
    /// `"default"`). The request metrics themselves carry no such label, as
    /// OpenTelemetry names them.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.options.name = instance_name(name);
        self
    }

    /// Where `http.route` comes from (default: axum's `MatchedPath` with
    /// the `axum` feature, else none); see [`RouteExtractor`].
    pub fn route<R2: RouteExtractor>(self, route: R2) -> MetricsBuilder<R2, C> {
        MetricsBuilder {
            route,
            classifier: self.classifier,
            options: self.options,
        }
    }

    /// Decides which answers are errors (default: the crate's shared
    /// [`DefaultClassifier`]).
    pub fn classifier<C2: Classify>(self, classifier: C2) -> MetricsBuilder<R, C2> {
        MetricsBuilder {
            route: self.route,
            classifier,
            options: self.options,
        }
    }

    /// The gRPC methods (`package.Service/Method`) that get an `rpc.method`
    /// of their own; any other is `_OTHER`. Without a list, every method the
    /// service does not answer `UNIMPLEMENTED` gets its own.
    pub fn grpc_methods<I, M>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        self.options.grpc_methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// Methods beyond RFC 9110's, PATCH and QUERY that `http.request.method`
    /// names rather than calling `_OTHER` (`PURGE`, WebDAV's `PROPFIND`...),
    /// as OpenTelemetry asks instrumentations to allow. Case-sensitive, at
    /// most 64; each must be a valid method token.
    pub fn extra_methods<I, M>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        self.options.extra_methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// Also records `*.request.body.size` (from `Content-Length`, or the
    /// body's exact size when it knows it; a body of unknown size is not
    /// recorded) and
    /// `*.response.body.size` (bytes sent) for HTTP requests (default off,
    /// as OpenTelemetry has them opt-in).
    pub fn body_sizes(mut self, on: bool) -> Self {
        self.options.body_sizes = on;
        self
    }

    /// The most label sets each instrument gets (default 2,000). Past it,
    /// requests are recorded under one series marked
    /// `otel.metric.overflow="true"`, and counted in
    /// `armor.metrics.label_overflow{name}`.
    pub fn max_label_sets(mut self, max: usize) -> Self {
        self.options.max_label_sets = max;
        self
    }

    /// OpenTelemetry names (default) or Prometheus-style ones; see [`Naming`].
    pub fn naming(mut self, naming: Naming) -> Self {
        self.options.naming = naming;
        self
    }

    /// The `server.address` and `server.port` of every request of a client
    /// (default: each request's own, from its URI or `Host`). For clients
    /// whose requests carry no authority at this layer: a tonic `Channel`
    /// adds it below.
    pub fn server_address(mut self, address: impl Into<String>, port: u16) -> Self {
        self.options.server = Some((address.into(), port));
        self
    }

    /// Also opens a `tracing` span (`INFO`, target `tower_armor::metrics`)
    /// per request, from the call to the end of the response body, with the
    /// same attributes under OpenTelemetry's names and `otel.name`,
    /// `otel.kind` and `otel.status_code` for `tracing-opentelemetry`
    /// (default off).
    pub fn spans(mut self, on: bool) -> Self {
        self.options.spans = on;
        self
    }

    /// Records into `recorder` instead of the recorder current when each
    /// event happens.
    pub fn recorder(mut self, recorder: impl Recorder + Send + Sync + 'static) -> Self {
        self.options.recorder = Some(Arc::new(recorder));
        self
    }

    /// Checks the settings and builds the layer. Fails on a cap of no label
    /// set, or a gRPC method that is not `package.Service/Method`.
    pub fn build(self) -> Result<MetricsLayer<R, C>, ConfigError> {
        let options = self.options;
        if options.max_label_sets == 0 {
            return Err(ConfigError::new(
                "metrics",
                "max_label_sets must be at least 1",
            ));
        }
        let grpc_methods = match options.grpc_methods {
            None => None,
            Some(methods) => Some(
                methods
                    .into_iter()
                    .map(|method| {
                        let method = method.trim_start_matches('/');
                        let well_formed = method.split_once('/').is_some_and(|(service, name)| {
                            !service.is_empty() && !name.is_empty() && !name.contains('/')
                        });
                        if well_formed {
                            Ok(Box::from(method))
                        } else {
                            Err(ConfigError::new(
                                "metrics",
                                format!("{method:?} is not a gRPC method: package.Service/Method"),
                            ))
                        }
                    })
                    .collect::<Result<Box<[_]>, _>>()?,
            ),
        };
        let extra_methods = extra_methods(options.extra_methods)?;
        let target = match options.recorder {
            Some(recorder) => Target::Fixed {
                recorder,
                registered: Default::default(),
            },
            None => Target::Current(PerRecorder::default()),
        };
        Ok(MetricsLayer {
            settings: Arc::new(Settings {
                instruments: Arc::new(Instruments {
                    names: Names::new(options.side, options.naming),
                    side: options.side,
                    body_sizes: options.body_sizes,
                    max_series: options.max_label_sets,
                    extra_methods,
                    target,
                    name: options.name,
                }),
                route: self.route,
                classifier: self.classifier,
                grpc_methods,
                routes: Default::default(),
                servers: Default::default(),
                spans: options.spans,
                server: options.server.map(|(address, port)| Server {
                    address: Routes::single(&address),
                    port,
                }),
            }),
        })
    }
}

/// The most extra methods: enough for WebDAV and a cache's verbs, and few
/// enough that each is a label value of its own without worry.
const MAX_EXTRA_METHODS: usize = 64;

/// Checks the user's extra methods: valid tokens, not too many; standard
/// methods and repeats are dropped.
fn extra_methods(methods: Vec<String>) -> Result<Box<[Box<str>]>, ConfigError> {
    let mut kept: Vec<Box<str>> = Vec::new();
    for method in methods {
        let parsed = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
            ConfigError::new("metrics", format!("{method:?} is not an HTTP method"))
        })?;
        if KnownMethod::of(&parsed, &[]) == KnownMethod::Other
            && !kept.iter().any(|m| **m == *method)
        {
            kept.push(method.into());
        }
    }
    if kept.len() > MAX_EXTRA_METHODS {
        return Err(ConfigError::new(
            "metrics",
            format!("{} extra methods; at most {MAX_EXTRA_METHODS}", kept.len()),
        ));
    }
    Ok(kept.into())
}
