//! [`ClientPreset`]: every client layer, in the README's order, as one layer.

use std::borrow::Cow;
use std::time::Duration;

use tower_layer::Layer;

use super::choice::{Choice, Keep, Retype};
use super::part::{Part, PartService};
use crate::cache::{CacheLayer, CacheService};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::config::ConfigError;
use crate::key::{Authority, KeyExtractor, RequestHead};
use crate::metrics::MetricsLayer;
use crate::rate_limit::RateLimitLayer;
use crate::retry::RetryLayer;
use crate::timeout::{Timeout, TimeoutLayer};

/// How long a call may take by default, retries and backoff included.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one attempt may take by default.
pub const CLIENT_TRY_TIMEOUT: Duration = Duration::from_secs(3);

/// Every client layer as one layer, outermost first: metrics, cache,
/// overall timeout, retry (with its budget and per-try timeout), circuit
/// breaker per upstream, rate limit (the README's client order, which says
/// why).
///
/// [`ClientPreset::default()`]:
/// - metrics: `MetricsLayer::client()`;
/// - no cache (a private cache is [given](ClientPresetBuilder::cache) for
///   an HTTP client that wants one; gRPC calls pass through any cache);
/// - a 10 s timeout for the whole call, sent on as `grpc-timeout`;
/// - retry: 3 attempts of at most 3 s each, with the default budget;
/// - a circuit breaker per upstream ([`Upstream`]);
/// - no rate limit.
///
/// Each part can be replaced by a layer you configured, or turned off (the
/// retry by [`without_retry`](ClientPresetBuilder::without_retry), which
/// leaves one attempt); the preset stays one type.
///
/// A tonic `Channel` takes its own body type and puts the authority on
/// requests itself, below the stack: give the retry
/// [`inner_body`](crate::retry::RetryBuilder::inner_body) and name the
/// upstream, as in this example.
///
/// ```no_run
/// use tonic::transport::Channel;
/// use tower::ServiceBuilder;
/// use tower_armor::preset::ClientPreset;
/// use tower_armor::retry::RetryLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let channel = Channel::from_static("http://inventory:50051").connect().await?;
/// let preset = ClientPreset::builder()
///     .upstream("inventory", 50051)
///     .retry(RetryLayer::builder().inner_body::<tonic::body::Body>().build()?)
///     .build()?;
/// let stack = ServiceBuilder::new().layer(preset).service(channel);
/// let mut health = tonic_health::pb::health_client::HealthClient::new(stack);
/// health.check(tonic_health::pb::HealthCheckRequest::default()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientPreset<
    M = MetricsLayer,
    R = RetryLayer,
    CB = CircuitBreakerLayer<Upstream>,
    RL = RateLimitLayer,
> {
    metrics: Part<M>,
    cache: Part<CacheLayer>,
    timeout: Part<TimeoutLayer>,
    /// Always there: it may change the request body type (a `Channel`'s
    /// boxed body), so "off" is one attempt, not its absence.
    retry: R,
    circuit_breaker: Part<CB>,
    rate_limit: Part<RL>,
}

/// The stack from the rate limit in, over the inner service `S`. (Our own
/// layers' services are written out: projections through them would not
/// normalise in the `Layer` impl's bounds.)
type Limited<RL, S> = PartService<<RL as Layer<S>>::Service, S>;
/// From the breaker in.
type Guarded<CB, RL, S> = PartService<<CB as Layer<Limited<RL, S>>>::Service, Limited<RL, S>>;
/// From the retry in.
type Retried<R, CB, RL, S> = <R as Layer<Guarded<CB, RL, S>>>::Service;
/// From the timeout in.
type Timed<R, CB, RL, S> = PartService<Timeout<Retried<R, CB, RL, S>>, Retried<R, CB, RL, S>>;
/// From the cache in.
type Cached<R, CB, RL, S> = PartService<CacheService<Timed<R, CB, RL, S>>, Timed<R, CB, RL, S>>;

impl<S, M, R, CB, RL> Layer<S> for ClientPreset<M, R, CB, RL>
where
    RL: Layer<S>,
    CB: Layer<Limited<RL, S>>,
    R: Layer<Guarded<CB, RL, S>>,
    M: Layer<Cached<R, CB, RL, S>>,
{
    type Service = PartService<<M as Layer<Cached<R, CB, RL, S>>>::Service, Cached<R, CB, RL, S>>;

    fn layer(&self, inner: S) -> Self::Service {
        let service = self.rate_limit.layer(inner);
        let service = self.circuit_breaker.layer(service);
        let service = self.retry.layer(service);
        let service = self.timeout.layer(service);
        let service = self.cache.layer(service);
        self.metrics.layer(service)
    }
}

/// The upstream a client request goes to: its authority ([`Authority`]), or
/// when it names none (a tonic `Channel` adds it below the stack), the one
/// given to [`ClientPresetBuilder::upstream`]. The client preset's breakers
/// are keyed by it.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    fallback: Option<http::uri::Authority>,
}

impl KeyExtractor for Upstream {
    type Key = http::uri::Authority;

    fn extract(&self, request: &RequestHead<'_>) -> Option<http::uri::Authority> {
        Authority.extract(request).or_else(|| self.fallback.clone())
    }
}

/// What a client part's default is made from.
#[derive(Debug, Clone)]
struct Defaults {
    name: Cow<'static, str>,
    upstream: Option<(String, u16)>,
}

impl Defaults {
    fn upstream_key(&self) -> Result<Upstream, ConfigError> {
        let fallback = match &self.upstream {
            None => None,
            Some((host, port)) => Some(
                http::uri::Authority::try_from(format!("{host}:{port}")).map_err(|_| {
                    ConfigError::new("preset", format!("`{host}:{port}` is not an authority"))
                })?,
            ),
        };
        Ok(Upstream { fallback })
    }
}

impl ClientPreset {
    /// Every part with its defaults. The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a preset with the defaults, to replace or turn off parts.
    pub fn builder() -> ClientPresetBuilder {
        ClientPresetBuilder {
            defaults: Defaults {
                name: Cow::Borrowed("default"),
                upstream: None,
            },
            metrics: Choice::Default(|defaults| {
                let metrics = MetricsLayer::client().name(defaults.name.clone());
                match &defaults.upstream {
                    Some((host, port)) => metrics.server_address(host.clone(), *port),
                    None => metrics,
                }
                .build()
            }),
            cache: Choice::Off,
            timeout: Choice::Default(|defaults| {
                TimeoutLayer::builder(CLIENT_TIMEOUT)
                    .name(defaults.name.clone())
                    .propagate_grpc_timeout(true)
                    .build()
            }),
            retry: Choice::Default(|defaults| {
                RetryLayer::builder()
                    .name(defaults.name.clone())
                    .per_try_timeout(CLIENT_TRY_TIMEOUT)
                    .build()
            }),
            circuit_breaker: Choice::Default(|defaults| {
                CircuitBreakerLayer::builder()
                    .key(defaults.upstream_key()?)
                    .name(defaults.name.clone())
                    .build()
            }),
            rate_limit: Choice::Off,
        }
    }
}

impl Default for ClientPreset {
    fn default() -> Self {
        ClientPreset::builder()
            .build()
            .expect("the default client preset is valid")
    }
}

impl<M, R, CB, RL> ClientPreset<M, R, CB, RL> {
    /// The metrics layer.
    pub fn metrics(&self) -> Option<&M> {
        self.metrics.0.as_ref()
    }

    /// The cache, for its [`handle`](CacheLayer::handle).
    pub fn cache(&self) -> Option<&CacheLayer> {
        self.cache.0.as_ref()
    }

    /// The overall timeout.
    pub fn timeout(&self) -> Option<&TimeoutLayer> {
        self.timeout.0.as_ref()
    }

    /// The retry layer, for its handle (the budget).
    pub fn retry(&self) -> &R {
        &self.retry
    }

    /// The circuit breaker, for its handle (each upstream's breaker).
    pub fn circuit_breaker(&self) -> Option<&CB> {
        self.circuit_breaker.0.as_ref()
    }

    /// The rate limit, for its handle.
    pub fn rate_limit(&self) -> Option<&RL> {
        self.rate_limit.0.as_ref()
    }
}

/// Builds a [`ClientPreset`]; made by [`ClientPreset::builder`].
#[must_use = "call .build() to get the preset"]
#[derive(Debug)]
pub struct ClientPresetBuilder<
    M = MetricsLayer,
    R = RetryLayer,
    CB = CircuitBreakerLayer<Upstream>,
    RL = RateLimitLayer,
> {
    defaults: Defaults,
    metrics: Choice<M, Defaults>,
    cache: Choice<CacheLayer, Defaults>,
    timeout: Choice<TimeoutLayer, Defaults>,
    retry: Choice<R, Defaults>,
    circuit_breaker: Choice<CB, Defaults>,
    rate_limit: Choice<RL, Defaults>,
}

impl<M, R, CB, RL> ClientPresetBuilder<M, R, CB, RL> {
    /// Names the parts made with their defaults, in metrics and traces
    /// (default `"default"`). Layers you give keep their own names.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.defaults.name = name.into();
        self
    }

    /// The one upstream this stack calls, for requests that do not name
    /// it (a tonic `Channel`'s): the default metrics report it as
    /// `server.address` and `server.port`, and the default breaker keys by it.
    pub fn upstream(mut self, host: impl Into<String>, port: u16) -> Self {
        self.defaults.upstream = Some((host.into(), port));
        self
    }

    /// Request metrics from this layer (default: `MetricsLayer::client()`).
    pub fn metrics<Ro, C>(
        self,
        layer: MetricsLayer<Ro, C>,
    ) -> ClientPresetBuilder<MetricsLayer<Ro, C>, R, CB, RL> {
        self.retype(Choice::Given(layer), Keep, Keep, Keep)
    }

    /// No request metrics.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = Choice::Off;
        self
    }

    /// This cache (default: none). For a client, a private one:
    /// `CacheLayer::builder().mode(CacheMode::Private)`.
    pub fn cache(mut self, layer: CacheLayer) -> Self {
        self.cache = Choice::Given(layer);
        self
    }

    /// No cache (the default).
    pub fn without_cache(mut self) -> Self {
        self.cache = Choice::Off;
        self
    }

    /// This overall timeout (default: 10 s, propagated as `grpc-timeout`).
    pub fn timeout(mut self, layer: TimeoutLayer) -> Self {
        self.timeout = Choice::Given(layer);
        self
    }

    /// No overall timeout.
    pub fn without_timeout(mut self) -> Self {
        self.timeout = Choice::Off;
        self
    }

    /// This retry layer (default: 3 attempts of at most 3 s, the default budget).
    pub fn retry<E: KeyExtractor, C, A>(
        self,
        layer: RetryLayer<E, C, A>,
    ) -> ClientPresetBuilder<M, RetryLayer<E, C, A>, CB, RL> {
        self.retype(Keep, Choice::Given(layer), Keep, Keep)
    }

    /// One attempt per call: no retries. (Give [`retry`](Self::retry) a
    /// layer with `max_attempts(1)` and an `inner_body` for a `Channel`.)
    pub fn without_retry(self) -> ClientPresetBuilder<M, RetryLayer, CB, RL> {
        let once = Choice::Default(|defaults: &Defaults| {
            RetryLayer::builder()
                .name(defaults.name.clone())
                .max_attempts(1)
                .no_budget()
                .build()
        });
        self.retype(Keep, once, Keep, Keep)
    }

    /// This circuit breaker (default: one per [`Upstream`]).
    pub fn circuit_breaker<E: KeyExtractor, C>(
        self,
        layer: CircuitBreakerLayer<E, C>,
    ) -> ClientPresetBuilder<M, R, CircuitBreakerLayer<E, C>, RL> {
        self.retype(Keep, Keep, Choice::Given(layer), Keep)
    }

    /// No circuit breaker.
    pub fn without_circuit_breaker(mut self) -> Self {
        self.circuit_breaker = Choice::Off;
        self
    }

    /// This rate limit on outgoing calls (default: none).
    pub fn rate_limit<K: KeyExtractor, St>(
        self,
        layer: RateLimitLayer<K, St>,
    ) -> ClientPresetBuilder<M, R, CB, RateLimitLayer<K, St>> {
        self.retype(Keep, Keep, Keep, Choice::Given(layer))
    }

    /// No rate limit (the default).
    pub fn without_rate_limit(mut self) -> Self {
        self.rate_limit = Choice::Off;
        self
    }

    /// Makes the default parts and the preset. Fails if a part's settings
    /// do, or if the [`upstream`](Self::upstream) is not a valid authority.
    pub fn build(self) -> Result<ClientPreset<M, R, CB, RL>, ConfigError> {
        let defaults = &self.defaults;
        let retry = self.retry.build(defaults)?.0.ok_or_else(|| {
            ConfigError::new(
                "preset",
                "the client preset's retry is never off; give one attempt",
            )
        })?;
        Ok(ClientPreset {
            metrics: self.metrics.build(defaults)?,
            cache: self.cache.build(defaults)?,
            timeout: self.timeout.build(defaults)?,
            retry,
            circuit_breaker: self.circuit_breaker.build(defaults)?,
            rate_limit: self.rate_limit.build(defaults)?,
        })
    }

    /// The same builder with the generic parts changed.
    fn retype<M2, R2, CB2, RL2>(
        self,
        metrics: impl Retype<M, M2, Defaults>,
        retry: impl Retype<R, R2, Defaults>,
        circuit_breaker: impl Retype<CB, CB2, Defaults>,
        rate_limit: impl Retype<RL, RL2, Defaults>,
    ) -> ClientPresetBuilder<M2, R2, CB2, RL2> {
        ClientPresetBuilder {
            defaults: self.defaults,
            metrics: metrics.retype(self.metrics),
            cache: self.cache,
            timeout: self.timeout,
            retry: retry.retype(self.retry),
            circuit_breaker: circuit_breaker.retype(self.circuit_breaker),
            rate_limit: rate_limit.retype(self.rate_limit),
        }
    }
}
