//! The instruments a [`MetricsLayer`](super::MetricsLayer) records into: their
//! names, the label sets of their series, and the handles of each series,
//! registered once per recorder and label set and cached, up to a cap.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use metrics::{Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};

use super::attributes::{ErrorType, KnownMethod, Scheme, protocol_version};
use crate::grpc::GrpcCode;
use crate::observe::PerRecorder;
use crate::sync::{read, write};

/// How the layer names its instruments and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Naming {
    /// OpenTelemetry's semantic conventions, as they are
    /// (`http.server.request.duration`, `http.request.method`, ...): what an
    /// OpenTelemetry exporter expects, and what Prometheus exporters turn
    /// into `http_server_request_duration{http_request_method=…}` (default).
    #[default]
    OpenTelemetry,
    /// Prometheus style: underscores, and the unit in the name
    /// (`http_server_request_duration_seconds`, `http_request_method`).
    Prometheus,
}

/// Whether the layer measures a server or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The names of the instruments one layer records into.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) http_duration: &'static str,
    pub(crate) grpc_duration: &'static str,
    pub(crate) active: &'static str,
    pub(crate) response_size: &'static str,
    pub(crate) request_size: &'static str,
    /// Attribute keys, in [`Names::label`] order.
    labels: [&'static str; LABELS],
}

const LABELS: usize = 12;

/// The attributes, as indexes into [`Names::labels`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Attr {
    Method,
    Scheme,
    Route,
    Status,
    Version,
    Error,
    ServerAddress,
    ServerPort,
    RpcSystem,
    RpcMethod,
    RpcStatus,
    Overflow,
}

impl Names {
    pub(crate) fn new(side: Side, naming: Naming) -> Names {
        let otel = naming == Naming::OpenTelemetry;
        let pick = |otel_name: &'static str, prometheus: &'static str| {
            if otel { otel_name } else { prometheus }
        };
        let (http_duration, grpc_duration, active, response_size, request_size) = match side {
            Side::Server => (
                pick(
                    "http.server.request.duration",
                    "http_server_request_duration_seconds",
                ),
                pick(
                    "rpc.server.call.duration",
                    "rpc_server_call_duration_seconds",
                ),
                pick("http.server.active_requests", "http_server_active_requests"),
                pick(
                    "http.server.response.body.size",
                    "http_server_response_body_size_bytes",
                ),
                pick(
                    "http.server.request.body.size",
                    "http_server_request_body_size_bytes",
                ),
            ),
            Side::Client => (
                pick(
                    "http.client.request.duration",
                    "http_client_request_duration_seconds",
                ),
                pick(
                    "rpc.client.call.duration",
                    "rpc_client_call_duration_seconds",
                ),
                pick("http.client.active_requests", "http_client_active_requests"),
                pick(
                    "http.client.response.body.size",
                    "http_client_response_body_size_bytes",
                ),
                pick(
                    "http.client.request.body.size",
                    "http_client_request_body_size_bytes",
                ),
            ),
        };
        let labels = [
            pick("http.request.method", "http_request_method"),
            pick("url.scheme", "url_scheme"),
            pick("http.route", "http_route"),
            pick("http.response.status_code", "http_response_status_code"),
            pick("network.protocol.version", "network_protocol_version"),
            pick("error.type", "error_type"),
            pick("server.address", "server_address"),
            pick("server.port", "server_port"),
            pick("rpc.system.name", "rpc_system_name"),
            pick("rpc.method", "rpc_method"),
            // `rpc.status_code`, not `rpc.response.status_code`: semantic
            // conventions PR #3921 (July 2026) renamed it back, as a gRPC
            // status is not always part of a response.
            pick("rpc.status_code", "rpc_status_code"),
            pick("otel.metric.overflow", "otel_metric_overflow"),
        ];
        Names {
            http_duration,
            grpc_duration,
            active,
            response_size,
            request_size,
            labels,
        }
    }

    fn label(&self, attr: Attr, value: impl Into<SharedString>) -> Label {
        Label::new(self.labels[attr as usize], value)
    }
}

/// The upstream of a client request: `server.address` and `server.port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Server {
    pub(crate) address: Interned,
    pub(crate) port: u16,
}

/// What a request's series of `*.active_requests` is told apart by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ActiveSeries {
    pub(crate) method: KnownMethod,
    pub(crate) scheme: Scheme,
    pub(crate) server: Option<Server>,
}

/// What a finished request's series is told apart by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Series {
    pub(crate) method: KnownMethod,
    pub(crate) scheme: Scheme,
    pub(crate) version: http::Version,
    /// `http.route` of an HTTP request, `rpc.method` of a gRPC call.
    pub(crate) route: Option<Interned>,
    /// The HTTP status, when an answer came.
    pub(crate) status: Option<u16>,
    /// The gRPC status of a gRPC call (`None`: not gRPC).
    pub(crate) grpc: Option<GrpcCode>,
    pub(crate) error: Option<ErrorType>,
    pub(crate) server: Option<Server>,
}

/// The handles of one finished-request series.
pub(crate) struct SeriesHandles {
    pub(crate) duration: Histogram,
    pub(crate) response_size: Option<Histogram>,
    pub(crate) request_size: Option<Histogram>,
}

/// Series registered with one recorder.
#[derive(Default)]
pub(crate) struct Registered {
    series: RwLock<hashbrown::HashMap<Series, SeriesHandles>>,
    active: RwLock<hashbrown::HashMap<ActiveSeries, Gauge>>,
    overflow: std::sync::OnceLock<SeriesHandles>,
    /// Whether the instruments were described to this recorder (their
    /// units and help text), done once before the first series.
    described: std::sync::OnceLock<()>,
}

/// Where the handles come from: the recorder current at each event, or one
/// the user gave the layer. Built once per layer and shared, so the size
/// difference between the two costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Target {
    Current(PerRecorder<Registered>),
    Fixed {
        recorder: Arc<dyn Recorder + Send + Sync>,
        registered: Registered,
    },
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The instruments of one layer.
pub(crate) struct Instruments {
    pub(crate) names: Names,
    pub(crate) side: Side,
    pub(crate) body_sizes: bool,
    pub(crate) max_series: usize,
    /// Methods recorded by name beyond the standard ones.
    pub(crate) extra_methods: Box<[Box<str>]>,
    pub(crate) target: Target,
    /// `armor.metrics.label_overflow{name}`: requests recorded into the
    /// overflow series because the cap was reached.
    pub(crate) name: SharedString,
}

impl Instruments {
    /// Runs `f` with the series registered with the recorder that receives
    /// events now, and that recorder.
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&Registered, &dyn Recorder) -> R) -> R {
        match &self.target {
            Target::Current(per_recorder) => per_recorder.with(Registered::default, |registered| {
                metrics::with_recorder(|recorder| f(registered, recorder))
            }),
            Target::Fixed {
                recorder,
                registered,
            } => f(registered, &**recorder),
        }
    }

    /// The `*.active_requests` gauge of `series`.
    pub(crate) fn active(&self, series: &ActiveSeries) -> Gauge {
        self.with(|registered, recorder| {
            if let Some(gauge) = read(&registered.active).get(series) {
                return gauge.clone();
            }
            self.describe(registered, recorder);
            let mut active = write(&registered.active);
            if active.len() >= self.max_series && !active.contains_key(series) {
                // Past the cap, a request is not counted as active rather
                // than counted under a series of its own.
                return Gauge::noop();
            }
            active
                .entry(series.clone())
                .or_insert_with(|| {
                    let mut labels = vec![
                        self.method(series.method),
                        self.names.label(Attr::Scheme, series.scheme.as_str()),
                    ];
                    if let Some(server) = &series.server {
                        labels.push(self.server_address(server));
                        labels.push(self.server_port(server));
                    }
                    recorder.register_gauge(&Key::from_parts(self.names.active, labels), &METADATA)
                })
                .clone()
        })
    }

    /// Runs `record` with the handles of the finished-request `series` (or
    /// of the overflow series, past the cap). Borrowed, not cloned: the
    /// common path takes a read lock and no reference count.
    pub(crate) fn record(&self, series: &Series, record: impl FnOnce(&SeriesHandles)) {
        self.with(|registered, recorder| {
            if let Some(handles) = read(&registered.series).get(series) {
                return record(handles);
            }
            self.describe(registered, recorder);
            let mut map = write(&registered.series);
            if let Some(handles) = map.get(series) {
                return record(handles);
            }
            if map.len() >= self.max_series {
                drop(map);
                self.overflowed(recorder);
                let overflow = registered.overflow.get_or_init(|| {
                    tracing::warn!(
                        name = &*self.name,
                        max = self.max_series,
                        "request metrics reached their cap of label sets; \
                         new ones go to the overflow series"
                    );
                    self.register_overflow(series, recorder)
                });
                return record(overflow);
            }
            let handles = map
                .entry(series.clone())
                .or_insert_with(|| self.register(series, recorder));
            record(handles)
        })
    }

    /// Tells `recorder` the unit and meaning of each instrument, once: an
    /// exporter shows them as `# HELP` and `# UNIT`.
    fn describe(&self, registered: &Registered, recorder: &dyn Recorder) {
        registered.described.get_or_init(|| {
            let names = &self.names;
            let (http, grpc, active) = match self.side {
                Side::Server => (
                    "Duration of HTTP requests served, to the end of the response body.",
                    "Duration of gRPC calls served, to the end of the response stream.",
                    "HTTP requests being served, until their response body ends.",
                ),
                Side::Client => (
                    "Duration of HTTP requests sent, to the end of the response body.",
                    "Duration of gRPC calls made, to the end of the response stream.",
                    "HTTP requests in flight, until their response body ends.",
                ),
            };
            recorder.describe_histogram(
                names.http_duration.into(),
                Some(Unit::Seconds),
                http.into(),
            );
            recorder.describe_histogram(
                names.grpc_duration.into(),
                Some(Unit::Seconds),
                grpc.into(),
            );
            recorder.describe_gauge(names.active.into(), Some(Unit::Count), active.into());
            if self.body_sizes {
                recorder.describe_histogram(
                    names.request_size.into(),
                    Some(Unit::Bytes),
                    "Size of HTTP request bodies, from their Content-Length or known size.".into(),
                );
                recorder.describe_histogram(
                    names.response_size.into(),
                    Some(Unit::Bytes),
                    "Size of HTTP response bodies, in bytes sent.".into(),
                );
            }
            crate::observe::describe(recorder);
        });
    }

    fn overflowed(&self, recorder: &dyn Recorder) {
        let key = Key::from_parts(
            "armor.metrics.label_overflow",
            vec![Label::new("name", self.name.clone())],
        );
        recorder.register_counter(&key, &METADATA).increment(1);
    }

    fn method(&self, method: KnownMethod) -> Label {
        let name = match method {
            KnownMethod::Extra(_) => {
                SharedString::from_owned(method.name(&self.extra_methods).to_owned())
            }
            known => SharedString::const_str(known.name(&[])),
        };
        self.names.label(Attr::Method, name)
    }

    fn server_address(&self, server: &Server) -> Label {
        self.names
            .label(Attr::ServerAddress, server.address.shared())
    }

    fn server_port(&self, server: &Server) -> Label {
        self.names.label(Attr::ServerPort, port_text(server.port))
    }

    fn labels(&self, series: &Series) -> Vec<Label> {
        let names = &self.names;
        let mut labels = Vec::with_capacity(8);
        match series.grpc {
            Some(code) => {
                labels.push(names.label(Attr::RpcSystem, "grpc"));
                let method = match &series.route {
                    Some(method) => method.shared(),
                    None => SharedString::const_str("_OTHER"),
                };
                labels.push(names.label(Attr::RpcMethod, method));
                labels.push(names.label(Attr::RpcStatus, code.name()));
            }
            None => {
                labels.push(self.method(series.method));
                labels.push(names.label(Attr::Scheme, series.scheme.as_str()));
                if let Some(route) = &series.route {
                    labels.push(names.label(Attr::Route, route.shared()));
                }
                if let Some(status) = series.status {
                    labels.push(names.label(Attr::Status, status.to_string()));
                }
                labels.push(names.label(Attr::Version, protocol_version(series.version)));
            }
        }
        if let Some(server) = &series.server {
            labels.push(self.server_address(server));
            labels.push(self.server_port(server));
        }
        if let Some(error) = series.error {
            labels.push(names.label(
                Attr::Error,
                match error.value() {
                    Cow::Borrowed(value) => SharedString::const_str(value),
                    Cow::Owned(value) => SharedString::from_owned(value),
                },
            ));
        }
        labels
    }

    fn register(&self, series: &Series, recorder: &dyn Recorder) -> SeriesHandles {
        self.register_named(series.grpc.is_some(), self.labels(series), recorder)
    }

    fn register_overflow(&self, series: &Series, recorder: &dyn Recorder) -> SeriesHandles {
        let labels = vec![self.names.label(Attr::Overflow, "true")];
        self.register_named(series.grpc.is_some(), labels, recorder)
    }

    fn register_named(
        &self,
        grpc: bool,
        labels: Vec<Label>,
        recorder: &dyn Recorder,
    ) -> SeriesHandles {
        let names = &self.names;
        let name = if grpc {
            names.grpc_duration
        } else {
            names.http_duration
        };
        let sizes = self.body_sizes && !grpc;
        let histogram = |name: &'static str| {
            recorder.register_histogram(&Key::from_parts(name, labels.clone()), &METADATA)
        };
        SeriesHandles {
            duration: histogram(name),
            response_size: sizes.then(|| histogram(names.response_size)),
            request_size: sizes.then(|| histogram(names.request_size)),
        }
    }
}

/// A port as label text, without allocating for the common ones.
fn port_text(port: u16) -> SharedString {
    match port {
        80 => SharedString::const_str("80"),
        443 => SharedString::const_str("443"),
        port => SharedString::from_owned(port.to_string()),
    }
}

/// A route or address interned by [`Routes`]: equal texts share one
/// allocation, so equality and hashing look at the pointer alone, and a
/// request carries its route to the end of its body without allocating.
#[derive(Debug, Clone)]
pub(crate) struct Interned(Arc<str>);

impl Interned {
    pub(crate) fn shared(&self) -> SharedString {
        SharedString::from_shared(self.0.clone())
    }
}

impl std::ops::Deref for Interned {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Interned {}

impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0).cast::<u8>(), state)
    }
}

/// The interned routes (or addresses) of one layer, up to a cap.
#[derive(Default)]
pub(crate) struct Routes {
    routes: RwLock<hashbrown::HashSet<Arc<str>>>,
}

impl Routes {
    /// The shared copy of `route`, made once; past `max` distinct routes,
    /// `None` (the request gets no route rather than a new series).
    pub(crate) fn intern(&self, route: &str, max: usize) -> Option<Interned> {
        if let Some(known) = read(&self.routes).get(route) {
            return Some(Interned(known.clone()));
        }
        let mut routes = write(&self.routes);
        if let Some(known) = routes.get(route) {
            return Some(Interned(known.clone()));
        }
        if routes.len() >= max {
            return None;
        }
        let route: Arc<str> = Arc::from(route);
        routes.insert(route.clone());
        Some(Interned(route))
    }

    /// A value interned on its own: the one `server.address` a user gave.
    pub(crate) fn single(text: &str) -> Interned {
        Interned(Arc::from(text))
    }
}
