use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tower_layer::Layer;

use super::RateLimit;
use super::decision::QuotaState;
use super::gcra::{MAX_QUOTAS, Overflow};
use super::headers::HeaderTemplate;
use super::limiter::{CostFn, Limiter, Mode};
use super::quota::{Limit, Quota};
use super::store::{MemoryStore, RateStore};
use crate::config::{ConfigError, instance_name};
use crate::key::{Global, KeyExtractor, KeyLimits, MissingKey, MissingKeyLog, RequestHead};
use crate::observe::PerRecorder;
use crate::reject::Renderer;

/// Limits request rates per key with GCRA. See the [module docs](super).
///
/// Built with [`RateLimitLayer::builder`]; every clone, and every service
/// it makes, shares one limiter.
pub struct RateLimitLayer<K: KeyExtractor = Global, St = MemoryStore<<K as KeyExtractor>::Key>> {
    limiter: Arc<Limiter<K, St>>,
}

impl<K: KeyExtractor, St> Clone for RateLimitLayer<K, St> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
        }
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> fmt::Debug for RateLimitLayer<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.limiter.name)
            .field("mode", &self.limiter.mode)
            .field("live_keys", &self.limiter.store.live_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Starts a limiter with its first `quota`; by default one limit shared by
    /// all requests ([`Global`]). Add more quotas with
    /// [`quota`](RateLimitBuilder::quota) and a key with
    /// [`key`](RateLimitBuilder::key).
    pub fn builder(quota: Quota) -> RateLimitBuilder<Global> {
        RateLimitBuilder {
            extractor: Global,
            store: InMemory,
            settings: Settings {
                quotas: vec![quota],
                cost: None,
                mode: Mode::Reject,
                missing_key: MissingKey::default(),
                headers: true,
                key_limits: KeyLimits::default(),
                overflow: Overflow::SharedBucket,
                name: SharedString::const_str("default"),
                renderer: Renderer::default(),
            },
        }
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> RateLimitLayer<K, St> {
    /// A handle to read the limiter's state and reset keys, shared with
    /// every service of this layer.
    pub fn handle(&self) -> RateLimitHandle<K, St> {
        RateLimitHandle {
            limiter: self.limiter.clone(),
        }
    }
}

impl<S, K: KeyExtractor, St> Layer<S> for RateLimitLayer<K, St> {
    type Service = RateLimit<S, K, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.clone())
    }
}

impl<S, K: KeyExtractor, St> RateLimit<S, K, St> {
    /// Wraps `inner` in the limiter of `layer` (shared with the layer's
    /// other services).
    pub fn new(inner: S, layer: RateLimitLayer<K, St>) -> Self {
        RateLimit {
            inner,
            limiter: layer.limiter,
        }
    }
}

/// Reads and steers the limiter of a [`RateLimitLayer`]: for admin endpoints
/// and maintenance tasks. Cheap to clone; every clone sees the same state.
pub struct RateLimitHandle<K: KeyExtractor = Global, St = MemoryStore<<K as KeyExtractor>::Key>> {
    limiter: Arc<Limiter<K, St>>,
}

impl<K: KeyExtractor, St> Clone for RateLimitHandle<K, St> {
    fn clone(&self) -> Self {
        RateLimitHandle {
            limiter: self.limiter.clone(),
        }
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> fmt::Debug for RateLimitHandle<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHandle")
            .field("name", &self.limiter.name)
            .field("live_keys", &self.live_keys())
            .finish()
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> RateLimitHandle<K, St> {
    /// The number of keys the limiter holds now.
    pub fn live_keys(&self) -> usize {
        self.limiter.store.live_keys()
    }

    /// Where `key`'s quotas stand now, in the order they were added, without
    /// spending anything (`None` if the store cannot tell at once).
    pub fn quotas_of(&self, key: &K::Key) -> Option<Vec<QuotaState>> {
        self.limiter.store.quotas_of(key)
    }

    /// Makes `key` whole again, as if it had never been seen (`false` if the
    /// store cannot).
    pub fn reset(&self, key: &K::Key) -> bool {
        let reset = self.limiter.store.reset(key);
        self.limiter.update_live_keys();
        reset
    }

    /// Forgets every key whose quotas have been whole for the idle time of
    /// its [`KeyLimits`] (such a key behaves exactly like a new one),
    /// returning how many. The limiter already does this a little at a time
    /// as new keys arrive; call it from your own maintenance task if you want
    /// memory back sooner.
    pub fn evict_idle(&self) -> usize {
        let dropped = self.limiter.store.evict_idle();
        self.limiter.update_live_keys();
        dropped
    }
}

/// Makes the store a layer keeps its state in, from the layer's quotas.
///
/// [`InMemory`] makes a [`MemoryStore`]; closures `FnOnce(&[Quota]) -> St`
/// make any other [`RateStore`].
pub trait MakeStore<Key> {
    /// The store made.
    type Store: RateStore<Key>;

    /// Makes the store for `quotas` (already validated), keeping keys within
    /// `keys` where that applies.
    fn make_store(
        self,
        quotas: &[Quota],
        keys: KeyLimits,
        overflow: Overflow,
    ) -> Result<Self::Store, ConfigError>;
}

/// The default: state in this process, in a [`MemoryStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl<Key> MakeStore<Key> for InMemory
where
    Key: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    type Store = MemoryStore<Key>;

    fn make_store(
        self,
        quotas: &[Quota],
        keys: KeyLimits,
        overflow: Overflow,
    ) -> Result<MemoryStore<Key>, ConfigError> {
        MemoryStore::new(quotas, keys, overflow)
    }
}

impl<Key, F, St> MakeStore<Key> for F
where
    F: FnOnce(&[Quota]) -> St,
    St: RateStore<Key>,
{
    type Store = St;

    fn make_store(self, quotas: &[Quota], _: KeyLimits, _: Overflow) -> Result<St, ConfigError> {
        Ok(self(quotas))
    }
}

/// Builds a [`RateLimitLayer`]; made by [`RateLimitLayer::builder`].
#[must_use = "call .build() to get the layer"]
pub struct RateLimitBuilder<K, M = InMemory> {
    extractor: K,
    store: M,
    settings: Settings,
}

/// Everything a builder holds besides its key extractor and store maker.
struct Settings {
    quotas: Vec<Quota>,
    cost: Option<Box<CostFn>>,
    mode: Mode,
    missing_key: MissingKey,
    headers: bool,
    key_limits: KeyLimits,
    overflow: Overflow,
    name: SharedString,
    renderer: Renderer,
}

impl<K, M> fmt::Debug for RateLimitBuilder<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.settings.name)
            .field("quotas", &self.settings.quotas)
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

impl<K, M> RateLimitBuilder<K, M> {
    /// Counts requests per key from `extractor` (e.g. [`PeerIp`](super::PeerIp),
    /// [`ClientIp`](super::ClientIp), [`Header`](super::Header), or a
    /// closure through [`key::from_fn`](crate::key::from_fn)).
    pub fn key<E: KeyExtractor>(self, extractor: E) -> RateLimitBuilder<E, M> {
        RateLimitBuilder {
            extractor,
            store: self.store,
            settings: self.settings,
        }
    }

    /// What a request without a key gets (default: one bucket shared by all
    /// such requests); see [`MissingKey`].
    pub fn on_missing_key(mut self, missing: MissingKey) -> Self {
        self.settings.missing_key = missing;
        self
    }

    /// How many keys are held and when idle ones are forgotten (default:
    /// [`KeyLimits::default`]).
    pub fn key_limits(mut self, limits: KeyLimits) -> Self {
        self.settings.key_limits = limits;
        self
    }

    /// What new keys get while the limiter holds its maximum (default: one
    /// shared overflow bucket); see [`Overflow`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.settings.overflow = overflow;
        self
    }

    /// Keeps the state in the store `make` builds from the quotas, instead of
    /// in this process: e.g. `.store_with(|quotas| RedisStore::new(client, quotas))`.
    pub fn store_with<N>(self, make: N) -> RateLimitBuilder<K, N> {
        RateLimitBuilder {
            extractor: self.extractor,
            store: make,
            settings: self.settings,
        }
    }

    /// Adds a quota; a request must fit every quota (at most four).
    pub fn quota(mut self, quota: Quota) -> Self {
        self.settings.quotas.push(quota);
        self
    }

    /// Charges each request `cost(request)` units instead of one.
    pub fn cost<F>(mut self, cost: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> u32 + Send + Sync + 'static,
    {
        self.settings.cost = Some(Box::new(cost));
        self
    }

    /// Reject (default), wait, or shadow: see [`Mode`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.settings.mode = mode;
        self
    }

    /// Whether to send the IETF `RateLimit-Policy` and `RateLimit` headers on
    /// allowed and refused responses (default `true`).
    pub fn headers(mut self, on: bool) -> Self {
        self.settings.headers = on;
        self
    }

    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = instance_name(name);
        self
    }

    /// Renders refusals your own way.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.settings.renderer = renderer;
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// Fails with more than four quotas, with a quota that allows nothing or
    /// refills over more than ten years, with key limits of no key or an idle
    /// time over a day, a missing-key status that is not 4xx/5xx, or a wait
    /// of zero or over a day.
    pub fn build(self) -> Result<RateLimitLayer<K, M::Store>, ConfigError>
    where
        K: KeyExtractor,
        M: MakeStore<K::Key>,
    {
        let fail = |message: String| Err(ConfigError::new("rate_limit", message));
        let settings = self.settings;
        if settings.quotas.len() > MAX_QUOTAS {
            return fail(format!(
                "at most {MAX_QUOTAS} quotas per limiter, got {}",
                settings.quotas.len()
            ));
        }
        settings.key_limits.check("rate_limit")?;
        settings.missing_key.check("rate_limit")?;
        let max_wait = match settings.mode {
            Mode::Wait(wait) if wait.is_zero() || wait > Duration::from_secs(86_400) => {
                return fail(format!(
                    "the wait {wait:?} must be above zero and at most a day"
                ));
            }
            Mode::Wait(wait) => wait,
            Mode::Reject | Mode::Shadow => Duration::ZERO,
        };
        let limits: Box<[Limit]> = settings
            .quotas
            .iter()
            .map(Quota::compile)
            .collect::<Result<_, _>>()?;
        let header_template = settings.headers.then(|| HeaderTemplate::new(&limits));
        let store =
            self.store
                .make_store(&settings.quotas, settings.key_limits, settings.overflow)?;
        let limiter = Limiter {
            store,
            unidentified: MemoryStore::from_limits(
                limits.clone(),
                KeyLimits::new(1, Duration::ZERO),
                Overflow::SharedBucket,
            ),
            limits,
            extractor: self.extractor,
            cost: settings.cost,
            mode: settings.mode,
            max_wait,
            missing_key: settings.missing_key,
            missing_key_log: MissingKeyLog::default(),
            header_template,
            renderer: settings.renderer,
            name: settings.name,
            metrics: PerRecorder::default(),
        };
        Ok(RateLimitLayer {
            limiter: Arc::new(limiter),
        })
    }
}
