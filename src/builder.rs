//! [`ServiceBuilderExt`]: one `ServiceBuilder` method per layer of this crate.

// Without any layer the trait has no methods, and these go unused.
#![cfg_attr(not(armor_layer), allow(unused_imports))]

use tower::ServiceBuilder;
use tower_layer::Stack;

/// Adds this crate's layers to a [`tower::ServiceBuilder`], one method per
/// layer, each taking the built layer:
///
/// ```
/// # #[cfg(all(feature = "timeout", feature = "rate-limit", feature = "compression-gzip"))]
/// # fn main() -> Result<(), tower_armor::ConfigError> {
/// use std::time::Duration;
///
/// use tower::ServiceBuilder;
/// use tower_armor::ServiceBuilderExt;
/// use tower_armor::compression::CompressionLayer;
/// use tower_armor::rate_limit::{Quota, RateLimitLayer};
/// use tower_armor::timeout::TimeoutLayer;
///
/// let layers = ServiceBuilder::new()
///     .armor_timeout(TimeoutLayer::builder(Duration::from_secs(10)).build()?)
///     .armor_rate_limit(RateLimitLayer::builder(Quota::per_second(100)).build()?)
///     .armor_compression(CompressionLayer::default());
/// # let _ = layers;
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "timeout", feature = "rate-limit", feature = "compression-gzip")))]
/// # fn main() {}
/// ```
///
/// The names carry an `armor_` prefix because `ServiceBuilder` has inherent
/// `timeout`, `rate_limit` and `retry` methods (tower's own layers, behind
/// tower features that tonic turns on), and an inherent method always wins
/// over a trait's.
pub trait ServiceBuilderExt<L>: Sized {
    /// Adds a [`CacheLayer`](crate::cache::CacheLayer).
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    fn armor_cache(
        self,
        layer: crate::cache::CacheLayer,
    ) -> ServiceBuilder<Stack<crate::cache::CacheLayer, L>>;

    /// Adds a [`HealthLayer`](crate::health::HealthLayer).
    #[cfg(feature = "health")]
    #[cfg_attr(docsrs, doc(cfg(feature = "health")))]
    fn armor_health(
        self,
        layer: crate::health::HealthLayer,
    ) -> ServiceBuilder<Stack<crate::health::HealthLayer, L>>;

    /// Adds a [`MetricsLayer`](crate::metrics::MetricsLayer).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    fn armor_metrics<R, C>(
        self,
        layer: crate::metrics::MetricsLayer<R, C>,
    ) -> ServiceBuilder<Stack<crate::metrics::MetricsLayer<R, C>, L>>;

    /// Adds a [`TimeoutLayer`](crate::timeout::TimeoutLayer).
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn armor_timeout(
        self,
        layer: crate::timeout::TimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer, L>>;

    /// Adds a [`RequestBodyTimeoutLayer`](crate::timeout::RequestBodyTimeoutLayer).
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn armor_request_body_timeout(
        self,
        layer: crate::timeout::RequestBodyTimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::RequestBodyTimeoutLayer, L>>;

    /// Adds a [`ResponseBodyDeadlineLayer`](crate::timeout::ResponseBodyDeadlineLayer).
    #[cfg(feature = "timeout")]
    #[cfg_attr(docsrs, doc(cfg(feature = "timeout")))]
    fn armor_response_body_deadline(
        self,
        layer: crate::timeout::ResponseBodyDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ResponseBodyDeadlineLayer, L>>;

    /// Adds a [`RateLimitLayer`](crate::rate_limit::RateLimitLayer).
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    fn armor_rate_limit<K: crate::key::KeyExtractor, St>(
        self,
        layer: crate::rate_limit::RateLimitLayer<K, St>,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer<K, St>, L>>;

    /// Adds a [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer).
    #[cfg(feature = "circuit-breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
    fn armor_circuit_breaker<K: crate::key::KeyExtractor, C>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<K, C>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<K, C>, L>>;

    /// Adds a [`RetryLayer`](crate::retry::RetryLayer).
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn armor_retry<K: crate::key::KeyExtractor, C, A>(
        self,
        layer: crate::retry::RetryLayer<K, C, A>,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer<K, C, A>, L>>;

    /// Adds a [`CompressionLayer`](crate::compression::CompressionLayer).
    #[cfg(armor_compression)]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(
            feature = "compression-gzip",
            feature = "compression-deflate",
            feature = "compression-br",
            feature = "compression-zstd"
        )))
    )]
    fn armor_compression(
        self,
        layer: crate::compression::CompressionLayer,
    ) -> ServiceBuilder<Stack<crate::compression::CompressionLayer, L>>;

    /// Adds a [`RequestDecompressionLayer`](crate::compression::RequestDecompressionLayer).
    #[cfg(armor_compression)]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(
            feature = "compression-gzip",
            feature = "compression-deflate",
            feature = "compression-br",
            feature = "compression-zstd"
        )))
    )]
    fn armor_request_decompression(
        self,
        layer: crate::compression::RequestDecompressionLayer,
    ) -> ServiceBuilder<Stack<crate::compression::RequestDecompressionLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "cache")]
    fn armor_cache(
        self,
        layer: crate::cache::CacheLayer,
    ) -> ServiceBuilder<Stack<crate::cache::CacheLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "health")]
    fn armor_health(
        self,
        layer: crate::health::HealthLayer,
    ) -> ServiceBuilder<Stack<crate::health::HealthLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "metrics")]
    fn armor_metrics<R, C>(
        self,
        layer: crate::metrics::MetricsLayer<R, C>,
    ) -> ServiceBuilder<Stack<crate::metrics::MetricsLayer<R, C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn armor_timeout(
        self,
        layer: crate::timeout::TimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::TimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn armor_request_body_timeout(
        self,
        layer: crate::timeout::RequestBodyTimeoutLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::RequestBodyTimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn armor_response_body_deadline(
        self,
        layer: crate::timeout::ResponseBodyDeadlineLayer,
    ) -> ServiceBuilder<Stack<crate::timeout::ResponseBodyDeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "rate-limit")]
    fn armor_rate_limit<K: crate::key::KeyExtractor, St>(
        self,
        layer: crate::rate_limit::RateLimitLayer<K, St>,
    ) -> ServiceBuilder<Stack<crate::rate_limit::RateLimitLayer<K, St>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn armor_circuit_breaker<K: crate::key::KeyExtractor, C>(
        self,
        layer: crate::circuit_breaker::CircuitBreakerLayer<K, C>,
    ) -> ServiceBuilder<Stack<crate::circuit_breaker::CircuitBreakerLayer<K, C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn armor_retry<K: crate::key::KeyExtractor, C, A>(
        self,
        layer: crate::retry::RetryLayer<K, C, A>,
    ) -> ServiceBuilder<Stack<crate::retry::RetryLayer<K, C, A>, L>> {
        self.layer(layer)
    }

    #[cfg(armor_compression)]
    fn armor_compression(
        self,
        layer: crate::compression::CompressionLayer,
    ) -> ServiceBuilder<Stack<crate::compression::CompressionLayer, L>> {
        self.layer(layer)
    }

    #[cfg(armor_compression)]
    fn armor_request_decompression(
        self,
        layer: crate::compression::RequestDecompressionLayer,
    ) -> ServiceBuilder<Stack<crate::compression::RequestDecompressionLayer, L>> {
        self.layer(layer)
    }
}
