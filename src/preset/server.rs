//! [`ServerPreset`]: every server layer, in the README's order, as one layer.

use std::borrow::Cow;
use std::time::Duration;

use http::header::ACCEPT_ENCODING;
use tower_layer::Layer;

use super::choice::{Choice, Keep, Retype};
use super::part::{Part, PartService};
use crate::cache::{CacheLayer, CacheService, VaryNormalizer};
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::compression::{Compression, CompressionLayer};
use crate::config::ConfigError;
use crate::health::{HealthLayer, HealthService};
use crate::key::KeyExtractor;
use crate::metrics::MetricsLayer;
use crate::rate_limit::RateLimitLayer;
use crate::timeout::{Timeout, TimeoutLayer};

/// How long a request may take to its response head by default.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Every server layer as one layer, outermost first: health routes,
/// metrics, timeout, rate limit, cache, compression, circuit breaker (the
/// README's stacking order, which says why).
///
/// [`ServerPreset::default()`] has each part with its defaults, a 30 s
/// timeout, and no rate limit, because only you know your capacity:
/// give one with [`rate_limit`](ServerPresetBuilder::rate_limit). Each part
/// can be replaced by a layer you configured, or turned off; the preset stays
/// one type, so turning a part off needs no change elsewhere.
///
/// The cache keeps one variant per coding the compression layer below it
/// can produce (each coding is compressed once), unless you give your own
/// cache. Request decompression and the request-body timeouts change the
/// request body the handler sees, so they are not parts: add them around the
/// routes that take uploads.
///
/// ```
/// use std::time::Duration;
///
/// use axum::{Router, routing::get};
/// use tower_armor::key::PeerIp;
/// use tower_armor::preset::ServerPreset;
/// use tower_armor::rate_limit::{Quota, RateLimitLayer};
/// use tower_armor::timeout::TimeoutLayer;
///
/// # fn main() -> Result<(), tower_armor::ConfigError> {
/// let preset = ServerPreset::builder()
///     .name("api")
///     .timeout(TimeoutLayer::builder(Duration::from_secs(10)).build()?)
///     .rate_limit(RateLimitLayer::builder(Quota::per_second(100)).key(PeerIp).build()?)
///     .without_cache()
///     .build()?;
/// let health = preset.health().expect("health is on").handle(); // drain() on shutdown
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(preset);
/// # let _ = (app, health);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerPreset<M = MetricsLayer, RL = RateLimitLayer, CB = CircuitBreakerLayer> {
    health: Part<HealthLayer>,
    metrics: Part<M>,
    timeout: Part<TimeoutLayer>,
    rate_limit: Part<RL>,
    cache: Part<CacheLayer>,
    compression: Part<CompressionLayer>,
    circuit_breaker: Part<CB>,
}

/// What a server part's default is made from: the preset's name.
type Name = Cow<'static, str>;

/// The stack from the breaker in, over the inner service `S`. (Our own
/// layers' services are written out: projections through them would not
/// normalise in the `Layer` impl's bounds.)
type Breaker<CB, S> = PartService<<CB as Layer<S>>::Service, S>;
/// From compression in.
type Compressed<CB, S> = PartService<Compression<Breaker<CB, S>>, Breaker<CB, S>>;
/// From the cache in.
type Cached<CB, S> = PartService<CacheService<Compressed<CB, S>>, Compressed<CB, S>>;
/// From the rate limit in.
type Limited<RL, CB, S> = PartService<<RL as Layer<Cached<CB, S>>>::Service, Cached<CB, S>>;
/// From the timeout in.
type Timed<RL, CB, S> = PartService<Timeout<Limited<RL, CB, S>>, Limited<RL, CB, S>>;
/// From metrics in.
type Measured<M, RL, CB, S> =
    PartService<<M as Layer<Timed<RL, CB, S>>>::Service, Timed<RL, CB, S>>;

impl<S, M, RL, CB> Layer<S> for ServerPreset<M, RL, CB>
where
    CB: Layer<S>,
    RL: Layer<Cached<CB, S>>,
    M: Layer<Timed<RL, CB, S>>,
{
    type Service = PartService<HealthService<Measured<M, RL, CB, S>>, Measured<M, RL, CB, S>>;

    fn layer(&self, inner: S) -> Self::Service {
        let service = self.circuit_breaker.layer(inner);
        let service = self.compression.layer(service);
        let service = self.cache.layer(service);
        let service = self.rate_limit.layer(service);
        let service = self.timeout.layer(service);
        let service = self.metrics.layer(service);
        self.health.layer(service)
    }
}

impl ServerPreset {
    /// Every part with its defaults (no rate limit). The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a preset with the defaults, to replace or turn off parts.
    pub fn builder() -> ServerPresetBuilder {
        ServerPresetBuilder {
            name: Cow::Borrowed("default"),
            health: Choice::Default(|name| HealthLayer::builder().name(name.clone()).build()),
            metrics: Choice::Default(|name| MetricsLayer::server().name(name.clone()).build()),
            timeout: Choice::Default(|name| {
                TimeoutLayer::builder(SERVER_TIMEOUT)
                    .name(name.clone())
                    .build()
            }),
            rate_limit: Choice::Off,
            // Made in `build()`, to match the compression part's codings.
            cache: Choice::Default(|name| CacheLayer::builder().name(name.clone()).build()),
            compression: Choice::Default(|name| {
                CompressionLayer::builder().name(name.clone()).build()
            }),
            circuit_breaker: Choice::Default(|name| {
                CircuitBreakerLayer::builder().name(name.clone()).build()
            }),
        }
    }
}

impl Default for ServerPreset {
    fn default() -> Self {
        ServerPreset::builder()
            .build()
            .expect("the default server preset is valid")
    }
}

impl<M, RL, CB> ServerPreset<M, RL, CB> {
    /// The health layer, for its [`handle`](HealthLayer::handle) (drain on shutdown).
    pub fn health(&self) -> Option<&HealthLayer> {
        self.health.0.as_ref()
    }

    /// The metrics layer.
    pub fn metrics(&self) -> Option<&M> {
        self.metrics.0.as_ref()
    }

    /// The timeout layer.
    pub fn timeout(&self) -> Option<&TimeoutLayer> {
        self.timeout.0.as_ref()
    }

    /// The rate limit, for its handle.
    pub fn rate_limit(&self) -> Option<&RL> {
        self.rate_limit.0.as_ref()
    }

    /// The cache, for its [`handle`](CacheLayer::handle) (purges).
    pub fn cache(&self) -> Option<&CacheLayer> {
        self.cache.0.as_ref()
    }

    /// The compression layer.
    pub fn compression(&self) -> Option<&CompressionLayer> {
        self.compression.0.as_ref()
    }

    /// The circuit breaker, for its handle (and a health check on it).
    pub fn circuit_breaker(&self) -> Option<&CB> {
        self.circuit_breaker.0.as_ref()
    }
}

/// Builds a [`ServerPreset`]; made by [`ServerPreset::builder`].
#[must_use = "call .build() to get the preset"]
#[derive(Debug)]
pub struct ServerPresetBuilder<M = MetricsLayer, RL = RateLimitLayer, CB = CircuitBreakerLayer> {
    name: Cow<'static, str>,
    health: Choice<HealthLayer>,
    metrics: Choice<M>,
    timeout: Choice<TimeoutLayer>,
    rate_limit: Choice<RL>,
    cache: Choice<CacheLayer>,
    compression: Choice<CompressionLayer>,
    circuit_breaker: Choice<CB>,
}

impl<M, RL, CB> ServerPresetBuilder<M, RL, CB> {
    /// Names the parts made with their defaults, in metrics and traces
    /// (default `"default"`). Layers you give keep their own names.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Health routes from this layer (default: `/livez`, `/readyz`,
    /// `/startupz`, `/healthz` with no checks).
    pub fn health(mut self, layer: HealthLayer) -> Self {
        self.health = Choice::Given(layer);
        self
    }

    /// No health routes.
    pub fn without_health(mut self) -> Self {
        self.health = Choice::Off;
        self
    }

    /// Request metrics from this layer (default: `MetricsLayer::server()`).
    pub fn metrics<R, C>(
        self,
        layer: MetricsLayer<R, C>,
    ) -> ServerPresetBuilder<MetricsLayer<R, C>, RL, CB> {
        self.retype(Choice::Given(layer), Keep, Keep)
    }

    /// No request metrics.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = Choice::Off;
        self
    }

    /// This timeout (default: 30 s to the response head).
    pub fn timeout(mut self, layer: TimeoutLayer) -> Self {
        self.timeout = Choice::Given(layer);
        self
    }

    /// No timeout.
    pub fn without_timeout(mut self) -> Self {
        self.timeout = Choice::Off;
        self
    }

    /// This rate limit (default: none).
    pub fn rate_limit<K: KeyExtractor, St>(
        self,
        layer: RateLimitLayer<K, St>,
    ) -> ServerPresetBuilder<M, RateLimitLayer<K, St>, CB> {
        self.retype(Keep, Choice::Given(layer), Keep)
    }

    /// No rate limit (the default).
    pub fn without_rate_limit(mut self) -> Self {
        self.rate_limit = Choice::Off;
        self
    }

    /// This cache (default: a shared cache in memory, one variant per coding
    /// the compression part produces).
    pub fn cache(mut self, layer: CacheLayer) -> Self {
        self.cache = Choice::Given(layer);
        self
    }

    /// No cache.
    pub fn without_cache(mut self) -> Self {
        self.cache = Choice::Off;
        self
    }

    /// This compression layer (default: every coding compiled in, bodies
    /// from 1 KiB).
    pub fn compression(mut self, layer: CompressionLayer) -> Self {
        self.compression = Choice::Given(layer);
        self
    }

    /// No compression.
    pub fn without_compression(mut self) -> Self {
        self.compression = Choice::Off;
        self
    }

    /// This circuit breaker (default: one breaker for the whole service).
    pub fn circuit_breaker<E: KeyExtractor, C>(
        self,
        layer: CircuitBreakerLayer<E, C>,
    ) -> ServerPresetBuilder<M, RL, CircuitBreakerLayer<E, C>> {
        self.retype(Keep, Keep, Choice::Given(layer))
    }

    /// No circuit breaker.
    pub fn without_circuit_breaker(mut self) -> Self {
        self.circuit_breaker = Choice::Off;
        self
    }

    /// Makes the default parts (with the preset's name) and the preset.
    pub fn build(self) -> Result<ServerPreset<M, RL, CB>, ConfigError> {
        let name = &self.name;
        let compression = self.compression.build(name)?;
        let cache = match (self.cache, &compression.0) {
            // One variant per coding the compression part can produce.
            (Choice::Default(_), Some(compression)) => Part(Some(
                CacheLayer::builder()
                    .name(name.clone())
                    .vary_normalizer(
                        ACCEPT_ENCODING,
                        VaryNormalizer::negotiated_coding(
                            compression.encodings().iter().map(|coding| coding.as_str()),
                        ),
                    )
                    .build()?,
            )),
            (cache, _) => cache.build(name)?,
        };
        Ok(ServerPreset {
            health: self.health.build(name)?,
            metrics: self.metrics.build(name)?,
            timeout: self.timeout.build(name)?,
            rate_limit: self.rate_limit.build(name)?,
            cache,
            compression,
            circuit_breaker: self.circuit_breaker.build(name)?,
        })
    }

    /// The same builder with the generic parts changed.
    fn retype<M2, RL2, CB2>(
        self,
        metrics: impl Retype<M, M2, Name>,
        rate_limit: impl Retype<RL, RL2, Name>,
        circuit_breaker: impl Retype<CB, CB2, Name>,
    ) -> ServerPresetBuilder<M2, RL2, CB2> {
        ServerPresetBuilder {
            name: self.name,
            health: self.health,
            metrics: metrics.retype(self.metrics),
            timeout: self.timeout,
            rate_limit: rate_limit.retype(self.rate_limit),
            cache: self.cache,
            compression: self.compression,
            circuit_breaker: circuit_breaker.retype(self.circuit_breaker),
        }
    }
}
