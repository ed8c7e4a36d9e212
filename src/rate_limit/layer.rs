use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use metrics::{Counter, Gauge, SharedString};
use tower_layer::Layer;

use super::RateLimit;
use super::gcra::{MAX_QUOTAS, Overflow};
use super::headers;
use super::quota::{Limit, Quota};
use super::store::{MemoryStore, RateStore};
use crate::config::{ConfigError, instance_name};
use crate::grpc::GrpcCode;
use crate::key::{Global, KeyExtractor, RequestHead};
use crate::reject::Renderer;

/// What happens when a request is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse it at once: 429 / `RESOURCE_EXHAUSTED` (default).
    #[default]
    Reject,
    /// Hold it until its turn if that comes within the given wait, else
    /// refuse it. The wait happens in the response future, never in
    /// `poll_ready`, and its turn is reserved, so waiters go in order.
    Wait(Duration),
    /// Let everything through, but count what would have been refused
    /// (`decision="shadow_rejected"`) and still send the headers: for trying
    /// out a limit on live traffic.
    Shadow,
}

/// What to do with a request whose key cannot be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Count all such requests against one shared bucket with the same
    /// quotas (default).
    #[default]
    SharedBucket,
    /// Refuse them with this status (e.g. 400, or 401 for a missing API
    /// key); gRPC callers get `UNAUTHENTICATED` for 401, else `INVALID_ARGUMENT`.
    Refuse(StatusCode),
}

pub(crate) type CostFn = dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync;

/// Settings and state shared by every service a [`RateLimitLayer`] makes.
pub(crate) struct Shared<K: KeyExtractor, St> {
    pub(crate) extractor: K,
    pub(crate) store: St,
    /// The quotas as compiled, for the headers and refusal details.
    pub(crate) limits: Box<[Limit]>,
    pub(crate) unidentified: MemoryStore<()>,
    pub(crate) cost: Option<Box<CostFn>>,
    pub(crate) mode: Mode,
    pub(crate) max_wait: Duration,
    pub(crate) missing_key: MissingKey,
    pub(crate) missing_key_grpc: GrpcCode,
    /// Set once the missing-key fallback has been reported.
    pub(crate) warned_missing_key: AtomicBool,
    /// The `RateLimit-Policy` value, when headers are on.
    pub(crate) policy_header: Option<HeaderValue>,
    pub(crate) renderer: Renderer,
    pub(crate) name: SharedString,
    pub(crate) allowed: Counter,
    pub(crate) rejected: Counter,
    pub(crate) shadow_rejected: Counter,
    pub(crate) live_keys: Gauge,
}

/// Limits request rates per key with GCRA. See the [module docs](super).
pub struct RateLimitLayer<K: KeyExtractor = Global, St = MemoryStore<<K as KeyExtractor>::Key>> {
    shared: Arc<Shared<K, St>>,
}

impl<K: KeyExtractor, St> Clone for RateLimitLayer<K, St> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> fmt::Debug for RateLimitLayer<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.shared.name)
            .field("mode", &self.shared.mode)
            .field("live_keys", &self.live_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Starts a limiter; by default one limit shared by all requests ([`Global`]).
    pub fn builder() -> RateLimitBuilder<Global> {
        RateLimitBuilder {
            extractor: Global,
            store: InMemory,
            settings: Settings {
                quotas: Vec::new(),
                cost: None,
                mode: Mode::Reject,
                missing_key: MissingKey::SharedBucket,
                headers: true,
                max_keys: DEFAULT_MAX_KEYS,
                overflow: Overflow::SharedBucket,
                name: SharedString::const_str("default"),
                renderer: Renderer::default(),
            },
        }
    }
}

impl<K: KeyExtractor, St: RateStore<K::Key>> RateLimitLayer<K, St> {
    /// The number of keys the limiter holds now.
    pub fn live_keys(&self) -> usize {
        self.shared.store.live_keys()
    }

    /// Forgets every key whose quotas are whole again (such a key behaves
    /// exactly like a new one), returning how many. The limiter already does
    /// this a little at a time as new keys arrive; call it from your own
    /// maintenance task if you want memory back sooner.
    pub fn evict_idle(&self) -> usize {
        let dropped = self.shared.store.evict_idle();
        self.shared
            .live_keys
            .set(self.shared.store.live_keys() as f64);
        dropped
    }
}

impl<S, K: KeyExtractor, St> Layer<S> for RateLimitLayer<K, St> {
    type Service = RateLimit<S, K, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}

/// The default cap on live keys: about 10 MB of state for IP keys.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Makes the store a layer keeps its state in, from the layer's quotas.
///
/// [`InMemory`] makes a [`MemoryStore`]; closures `FnOnce(&[Quota]) -> St`
/// make any other [`RateStore`].
pub trait MakeStore<Key> {
    /// The store made.
    type Store: RateStore<Key>;

    /// Makes the store for `quotas` (already validated), holding at most
    /// `max_keys` keys where that applies.
    fn make_store(
        self,
        quotas: &[Quota],
        max_keys: usize,
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
        max_keys: usize,
        overflow: Overflow,
    ) -> Result<MemoryStore<Key>, ConfigError> {
        MemoryStore::new(quotas, max_keys, overflow)
    }
}

impl<Key, F, St> MakeStore<Key> for F
where
    F: FnOnce(&[Quota]) -> St,
    St: RateStore<Key>,
{
    type Store = St;

    fn make_store(self, quotas: &[Quota], _: usize, _: Overflow) -> Result<St, ConfigError> {
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
    max_keys: usize,
    overflow: Overflow,
    name: SharedString,
    renderer: Renderer,
}

impl<K, M> fmt::Debug for RateLimitBuilder<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("quotas", &self.settings.quotas)
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

impl<K, M> RateLimitBuilder<K, M> {
    /// Counts requests per key from `extractor` (e.g. [`PeerIp`](super::PeerIp),
    /// [`ClientIp`](super::ClientIp), [`Header`](super::Header), a closure).
    pub fn key<E: KeyExtractor>(self, extractor: E) -> RateLimitBuilder<E, M> {
        RateLimitBuilder {
            extractor,
            store: self.store,
            settings: self.settings,
        }
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

    /// What to do when a request has no key: see [`MissingKey`].
    pub fn on_missing_key(mut self, missing: MissingKey) -> Self {
        self.settings.missing_key = missing;
        self
    }

    /// Whether to send the IETF `RateLimit-Policy` and `RateLimit` headers on
    /// allowed and refused responses (default `true`).
    pub fn headers(mut self, on: bool) -> Self {
        self.settings.headers = on;
        self
    }

    /// The most keys held at once (default [`DEFAULT_MAX_KEYS`]) and what new
    /// keys get beyond that (default: a shared overflow bucket).
    pub fn max_keys(mut self, max_keys: usize, overflow: Overflow) -> Self {
        self.settings.max_keys = max_keys;
        self.settings.overflow = overflow;
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
    /// Fails without quotas, with more than four, with a quota that allows
    /// nothing or refills over more than ten years, with a zero key cap, a
    /// refusal status that is not 4xx/5xx, or a wait of zero or over a day.
    ///
    /// Metric handles are registered here, with the recorder installed at
    /// this moment: install yours before building layers.
    pub fn build(self) -> Result<RateLimitLayer<K, M::Store>, ConfigError>
    where
        K: KeyExtractor,
        M: MakeStore<K::Key>,
    {
        let fail = |message: String| Err(ConfigError::new("rate_limit", message));
        let settings = self.settings;
        if settings.quotas.is_empty() {
            return fail("at least one quota is needed".into());
        }
        if settings.quotas.len() > MAX_QUOTAS {
            return fail(format!(
                "at most {MAX_QUOTAS} quotas per limiter, got {}",
                settings.quotas.len()
            ));
        }
        if settings.max_keys == 0 {
            return fail("max_keys must be at least 1".into());
        }
        if let MissingKey::Refuse(status) = settings.missing_key {
            if !(status.is_client_error() || status.is_server_error()) {
                return fail(format!("the missing-key status {status} is not 4xx or 5xx"));
            }
        }
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
        let missing_key_grpc = match settings.missing_key {
            MissingKey::Refuse(StatusCode::UNAUTHORIZED) => GrpcCode::Unauthenticated,
            _ => GrpcCode::InvalidArgument,
        };
        let policy_header = settings.headers.then(|| headers::policy(&limits));
        let name = settings.name;
        let decisions = |decision: &'static str| metrics::counter!("armor.rate_limit.decisions", "name" => name.clone(), "decision" => decision);
        let store =
            self.store
                .make_store(&settings.quotas, settings.max_keys, settings.overflow)?;
        let shared = Shared {
            store,
            unidentified: MemoryStore::from_limits(limits.clone(), 1, Overflow::SharedBucket),
            limits,
            extractor: self.extractor,
            cost: settings.cost,
            mode: settings.mode,
            max_wait,
            missing_key: settings.missing_key,
            missing_key_grpc,
            warned_missing_key: AtomicBool::new(false),
            policy_header,
            renderer: settings.renderer,
            allowed: decisions("allowed"),
            rejected: decisions("rejected"),
            shadow_rejected: decisions("shadow_rejected"),
            live_keys: metrics::gauge!("armor.rate_limit.keys", "name" => name.clone()),
            name,
        };
        Ok(RateLimitLayer {
            shared: Arc::new(shared),
        })
    }
}
