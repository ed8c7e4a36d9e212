use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http::HeaderName;
use metrics::SharedString;
use tower_layer::Layer;

use super::clock::Clock;
use super::flight::Flights;
use super::key::{CacheKey, KeyNormalizer};
use super::metrics::CacheMetrics;
use super::policy::{CacheMode, Millis, Policy};
use super::service::CacheService;
use super::settings::{Bypass, Shared};
use super::status::member_name;
use super::store::{CacheStore, MemoryStore, Purge, StoreEvents};
use super::vary::{VaryNormalizer, VaryRules};
use crate::config::{ConfigError, instance_name};
use crate::key::RequestHead;

/// An RFC 9111 HTTP cache. See the [module docs](super).
///
/// `CacheLayer::default()` is a shared cache in memory with the defaults;
/// [`builder`](Self::builder) changes them.
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("name", &self.shared.name)
            .field("mode", &self.shared.policy.mode)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// A shared cache in a 256 MiB [`MemoryStore`]; the same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a cache with the defaults, to change some of them.
    pub fn builder() -> CacheBuilder {
        CacheBuilder {
            name: None,
            policy: Policy::default(),
            store: None,
            vary: VaryRules::default(),
            key_normalizer: None,
            bypass: None,
            max_entry_bytes: 8 << 20,
            tag_fields: vec![
                HeaderName::from_static("surrogate-key"),
                HeaderName::from_static("cache-tag"),
            ],
            strip_tags: true,
            show_key: false,
            lock_timeout: Duration::from_secs(5),
            pass_uncacheable_for: Duration::from_secs(30),
            max_background: 64,
        }
    }

    /// The handle to purge entries.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Default for CacheLayer {
    fn default() -> Self {
        CacheLayer::builder()
            .build()
            .expect("the default cache settings are valid")
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, self)
    }
}

impl<S> CacheService<S> {
    /// Wraps `inner` in the cache `layer` describes, sharing its store.
    pub fn new(inner: S, layer: &CacheLayer) -> Self {
        CacheService {
            inner,
            shared: layer.shared.clone(),
        }
    }
}

/// Settings of a [`CacheLayer`].
pub struct CacheBuilder {
    name: Option<SharedString>,
    policy: Policy,
    store: Option<Arc<dyn CacheStore>>,
    vary: VaryRules,
    key_normalizer: Option<KeyNormalizer>,
    bypass: Option<Bypass>,
    max_entry_bytes: usize,
    tag_fields: Vec<HeaderName>,
    strip_tags: bool,
    show_key: bool,
    lock_timeout: Duration,
    pass_uncacheable_for: Duration,
    max_background: usize,
}

impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("mode", &self.policy.mode)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    /// The `name` label of the cache's metrics, and its name in
    /// `Cache-Status` (default: metrics `default`, `Cache-Status`
    /// `tower-armor`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(instance_name(name));
        self
    }

    /// Shared (the default: servers and reverse proxies) or private (a
    /// client's own cache).
    pub fn mode(mut self, mode: CacheMode) -> Self {
        self.policy.mode = mode;
        self
    }

    /// Where entries live (default: a 256 MiB [`MemoryStore`]).
    pub fn store(mut self, store: impl CacheStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The largest body stored (default 8 MiB); larger responses are
    /// passed through, never cut.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// Changes every request's [`CacheKey`] before it is used, e.g. to
    /// drop tracking parameters or sort the query.
    pub fn key_normalizer(
        mut self,
        normalize: impl Fn(&mut CacheKey) + Send + Sync + 'static,
    ) -> Self {
        self.key_normalizer = Some(Arc::new(normalize));
        self
    }

    /// Requests for which `rule` is true go to the origin without the cache
    /// looking or storing (`Cache-Status: …; fwd=bypass`): signed-in users'
    /// pages, an admin area.
    ///
    /// ```
    /// use tower_armor::cache::CacheLayer;
    ///
    /// let cache = CacheLayer::builder()
    ///     .bypass(|request| request.uri.path().starts_with("/admin/"))
    ///     .build()?;
    /// # Ok::<(), tower_armor::ConfigError>(())
    /// ```
    pub fn bypass(
        mut self,
        rule: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.bypass = Some(Arc::new(rule));
        self
    }

    /// Compares the request field `name` through `normalizer` when
    /// matching variants (e.g. [`VaryNormalizer::accept_encoding`]).
    pub fn vary_normalizer(mut self, name: HeaderName, normalizer: VaryNormalizer) -> Self {
        self.vary = self.vary.with(name, normalizer);
        self
    }

    /// Heuristic freshness for responses with `Last-Modified` and no
    /// explicit lifetime: `percent` of the time since the last change,
    /// capped at `max` (default 10%, one day). `percent` 0 turns
    /// heuristics off.
    pub fn heuristic(mut self, percent: u32, max: Duration) -> Self {
        self.policy.heuristic_percent = percent;
        self.policy.heuristic_max = millis(max);
        self
    }

    /// Obeys targeted cache-control fields (RFC 9213), in order of
    /// precedence: when a response has a valid one, its directives replace
    /// `Cache-Control` and `Expires` for this cache. A CDN or reverse proxy
    /// takes `CDN-Cache-Control`; none by default.
    pub fn targeted_fields(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.policy.targeted_fields = names.into_iter().collect();
        self
    }

    /// Stores shared-mode responses that carry `Set-Cookie` (default
    /// off). The cookie itself is never stored, so never replayed.
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        self.policy.store_set_cookie = store;
        self
    }

    /// A `stale-while-revalidate` window for responses that name none
    /// (default 0): the server's own grace.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.policy.default_stale_while_revalidate = millis(window);
        self
    }

    /// A `stale-if-error` window for responses that name none (default 0).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.policy.default_stale_if_error = millis(window);
        self
    }

    /// The response fields whose values tag an entry for
    /// [`CacheHandle::purge`] (default `Surrogate-Key` and `Cache-Tag`).
    pub fn tag_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.tag_fields = names.into_iter().collect();
        self
    }

    /// Passes the tag fields on to clients (by default they are removed).
    pub fn keep_tag_headers(mut self, keep: bool) -> Self {
        self.strip_tags = !keep;
        self
    }

    /// Adds the cache key to `Cache-Status` (default off: keys can hold
    /// what clients should not see).
    pub fn show_key(mut self, show: bool) -> Self {
        self.show_key = show;
        self
    }

    /// How long a request waits for another one fetching the same URL
    /// before going to the origin itself (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long the requests for a URL whose last answer could not be
    /// stored go to the origin without waiting for one another (default
    /// 30 s; zero: they always wait for the one in flight). Without it, the
    /// concurrent requests of a route that is never cacheable (most of an
    /// API) would queue behind one another's response heads. An answer that
    /// can be stored ends it at once; a request's own `Authorization` never
    /// starts it. At most 4,096 URLs are remembered.
    pub fn pass_uncacheable_for(mut self, window: Duration) -> Self {
        self.pass_uncacheable_for = window;
        self
    }

    /// Background revalidations (`stale-while-revalidate`) running at once
    /// (default 64); past it, stale answers are served without one.
    pub fn max_background_revalidations(mut self, count: usize) -> Self {
        self.max_background = count;
        self
    }

    /// The layer, or why these settings cannot work.
    pub fn build(self) -> Result<CacheLayer, ConfigError> {
        if self.policy.heuristic_percent > 100 {
            return Err(ConfigError::new(
                "cache",
                "the heuristic percentage must be at most 100",
            ));
        }
        if self.lock_timeout.is_zero() {
            return Err(ConfigError::new(
                "cache",
                "the lock timeout must be above zero",
            ));
        }
        if self.pass_uncacheable_for > Duration::from_secs(365 * 24 * 3600) {
            return Err(ConfigError::new(
                "cache",
                "the uncacheable pass window must be at most 365 days",
            ));
        }
        let status_name = member_name(self.name.as_deref().unwrap_or("tower-armor"));
        let name = self.name.unwrap_or(SharedString::const_str("default"));
        let metrics = Arc::new(CacheMetrics::new(name.clone()));
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        store.attach(StoreEvents::new(metrics.clone()));
        let shared = Shared {
            name,
            status_name,
            policy: self.policy,
            vary: self.vary,
            key_normalizer: self.key_normalizer,
            bypass: self.bypass,
            max_entry_bytes: self.max_entry_bytes,
            tag_fields: self.tag_fields,
            strip_tags: self.strip_tags,
            show_key: self.show_key,
            lock_timeout: self.lock_timeout,
            max_background: self.max_background,
            store,
            flights: Arc::new(Flights::new(self.pass_uncacheable_for.as_millis() as Millis)),
            clock: Clock::new(),
            background: AtomicUsize::new(0),
            metrics,
        };
        Ok(CacheLayer {
            shared: Arc::new(shared),
        })
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Purges a cache's entries; cloneable, from [`CacheLayer::handle`].
#[derive(Clone)]
pub struct CacheHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl CacheHandle {
    /// Removes the selected entries (`soft: false`), or marks them stale
    /// (`soft: true`) so `stale-while-revalidate` and `stale-if-error` can
    /// still serve them while they are fetched again. Returns how many
    /// entries were affected.
    pub async fn purge(&self, selector: Purge, soft: bool) -> usize {
        self.shared.store.purge(selector, soft).await
    }

    /// URLs being fetched from the origin now with other requests waiting
    /// on them or free to (request coalescing); 0 when the cache is idle.
    pub fn fetches_in_flight(&self) -> usize {
        self.shared.flights.len()
    }

    /// `stale-while-revalidate` refreshes running in the background now.
    pub fn background_revalidations(&self) -> usize {
        self.shared
            .background
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key the cache uses for `uri` (absolute, e.g.
    /// `https://example.com/a?b`), normalised as requests are, for
    /// [`Purge::Key`] and [`Purge::Prefix`].
    pub fn key_of(&self, uri: &http::Uri) -> String {
        let mut key = CacheKey::of(uri, &http::HeaderMap::new());
        if let Some(normalize) = &self.shared.key_normalizer {
            normalize(&mut key);
        }
        key.to_string()
    }
}
