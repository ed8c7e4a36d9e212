//! Where entries live: the [`CacheStore`] trait and the in-memory
//! [`MemoryStore`] (moka: TinyLFU admission, a byte budget, per-entry
//! expiry at the end of each entry's usable life).
//!
//! Calls return a [`StoreCall`]: an answer already known (the memory store,
//! no allocation, no await) or a future (a networked store), so the cache
//! takes its fast path whenever the store allows it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use super::clock::Clock;
use super::entry::Entry;
use super::metrics::{CacheMetrics, Eviction};

/// Every stored variant of one URL.
pub type Variants = Arc<[Arc<Entry>]>;

/// The answer of a store call: ready now, or later.
#[must_use = "a store call does nothing unless awaited or checked with `ready`"]
pub struct StoreCall<T>(Call<T>);

enum Call<T> {
    Ready(Option<T>),
    Later(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> StoreCall<T> {
    /// An answer known now.
    pub fn ready(value: T) -> StoreCall<T> {
        StoreCall(Call::Ready(Some(value)))
    }

    /// An answer a future gives.
    pub fn later(future: impl Future<Output = T> + Send + 'static) -> StoreCall<T> {
        StoreCall(Call::Later(Box::pin(future)))
    }

    /// Lets the call finish on its own: at once if it is ready, else on the
    /// current Tokio runtime (none: dropped). `held` is kept until it ends.
    pub(crate) fn run_detached(self, held: impl Send + 'static)
    where
        T: Send + 'static,
    {
        if let Err(later) = self.now() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    later.await;
                    drop(held);
                });
            }
        }
    }

    /// The answer if it is known now, else the call back.
    pub(crate) fn now(self) -> Result<T, StoreCall<T>> {
        match self.0 {
            Call::Ready(Some(value)) => Ok(value),
            other => Err(StoreCall(other)),
        }
    }
}

impl<T> Unpin for StoreCall<T> {}

impl<T> Future for StoreCall<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            Call::Ready(value) => {
                Poll::Ready(value.take().expect("StoreCall polled after completion"))
            }
            Call::Later(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for StoreCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Call::Ready(_) => "StoreCall::Ready",
            Call::Later(_) => "StoreCall::Later",
        })
    }
}

/// Whether this instance may fetch a URL now ([`CacheStore::lead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    /// Go upstream; report [`CacheStore::landed`] when done.
    Go,
    /// Another instance is fetching it: look for its entry shortly.
    Busy,
}

/// What a purge selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One URL's key, every variant.
    Key(String),
    /// Every key that starts with this text (e.g. `https://shop.example/items/`).
    Prefix(String),
    /// Every entry whose response carried this tag.
    Tag(String),
}

impl Purge {
    /// Whether the entry stored under `key` is selected.
    pub fn selects(&self, key: &str, entry: &Entry) -> bool {
        match self {
            Purge::Key(wanted) => key == wanted,
            Purge::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Purge::Tag(tag) => entry.tags().any(|known| known == tag),
        }
    }
}

/// Storage for a cache's entries.
///
/// A store never fails a request: an entry it cannot read (lost, from
/// another format version, corrupt) is a miss, and a write it cannot make
/// is dropped. Errors are the store's to log and count.
pub trait CacheStore: Send + Sync + 'static {
    /// Every stored variant of `key`, if any.
    fn get(&self, key: &str) -> StoreCall<Option<Variants>>;

    /// Stores `entry` under `key`, replacing the variant it is the same as
    /// (same `Vary` fields and values).
    fn put(&self, key: Arc<str>, entry: Arc<Entry>) -> StoreCall<()>;

    /// Removes every variant of `key`.
    fn remove(&self, key: &str) -> StoreCall<()>;

    /// Removes the selected entries, or with `soft` marks them stale so
    /// they can still be served while revalidating or on errors. Returns
    /// how many entries were affected.
    fn purge(&self, selector: Purge, soft: bool) -> StoreCall<usize>;

    /// Asks to fetch `key` for every instance sharing the store, before
    /// this instance's one request for it goes upstream. A store shared
    /// between instances may answer [`Lead::Busy`] while another instance
    /// fetches it: the cache then polls for that instance's entry (with
    /// backoff, asking again in between) until the lock timeout. The
    /// default: always [`Lead::Go`].
    fn lead(&self, key: &str) -> StoreCall<Lead> {
        let _ = key;
        StoreCall::ready(Lead::Go)
    }

    /// The fetch this instance led for `key` (after [`Lead::Go`]) is over,
    /// stored or not. The default does nothing.
    fn landed(&self, key: &str) -> StoreCall<()> {
        let _ = key;
        StoreCall::ready(())
    }

    /// Called once by each cache layer built on the store, with where to
    /// report evictions and its size (the layer's `armor.cache.*`
    /// metrics). The default ignores it.
    fn attach(&self, events: StoreEvents) {
        let _ = events;
    }
}

/// Where a store reports what the cache's metrics show: entries it drops
/// and the bytes it holds.
#[derive(Clone)]
pub struct StoreEvents {
    metrics: Arc<CacheMetrics>,
}

impl StoreEvents {
    pub(crate) fn new(metrics: Arc<CacheMetrics>) -> Self {
        StoreEvents { metrics }
    }

    /// An entry was dropped (`armor.cache.evictions{cause}`).
    pub fn evicted(&self, cause: Eviction) {
        self.metrics.evicted(cause);
    }

    /// The store holds `bytes` now (`armor.cache.stored_bytes`).
    pub fn stored_bytes(&self, bytes: u64) {
        self.metrics.stored_bytes(bytes);
    }
}

impl std::fmt::Debug for StoreEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreEvents(..)")
    }
}

/// The in-memory store: a [moka](https://docs.rs/moka) cache with a byte
/// budget.
///
/// Each URL's variants are one item weighted by their fields, bodies and
/// trailers; an item expires when the last of its variants has outlived its
/// freshness and stale windows (plus [`keep`](MemoryStoreBuilder::keep)
/// for entries that can be revalidated).
///
/// ```
/// use tower_armor::cache::MemoryStore;
///
/// let store = MemoryStore::builder().max_bytes(64 << 20).build();
/// # drop(store);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    items: moka::sync::Cache<Arc<str>, Variants, FastHash>,
    max_variants: usize,
    /// The first cache layer attached to it reports its metrics.
    events: Arc<OnceLock<StoreEvents>>,
    /// Bytes held: added on each write, taken off as moka drops items.
    bytes: Arc<AtomicU64>,
}

/// moka's key hasher: foldhash, seeded per process (SipHash, moka's
/// default, costs about a hundred more instructions per lookup).
type FastHash = hashbrown::DefaultHashBuilder;

/// An item's weight: its variants' fields, bodies and trailers.
fn weight(variants: &Variants) -> u64 {
    variants.iter().map(|entry| entry.weight() as u64).sum()
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("urls", &self.items.entry_count())
            .field("bytes", &self.items.weighted_size())
            .finish()
    }
}

/// Settings of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_bytes: u64,
    keep: Duration,
    max_variants: usize,
}

impl MemoryStore {
    /// A store with the defaults: 256 MiB, entries with a validator kept
    /// an hour past their stale windows, 16 variants per URL.
    pub fn new() -> MemoryStore {
        MemoryStore::builder().build()
    }

    /// Settings for a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_bytes: 256 << 20,
            keep: Duration::from_secs(3600),
            max_variants: 16,
        }
    }

    /// Bytes held now (after pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.items.run_pending_tasks();
        self.items.weighted_size()
    }

    /// Drops every entry (a second tier that may have missed purges).
    pub fn clear(&self) {
        self.items.invalidate_all();
        self.items.run_pending_tasks();
        self.report_size();
    }

    fn report_size(&self) {
        if let Some(events) = self.events.get() {
            events.stored_bytes(self.bytes.load(Ordering::Relaxed));
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStoreBuilder {
    /// The byte budget of all entries together (default 256 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long an entry with a validator is kept past its freshness and
    /// stale windows, to be revalidated with a cheap 304 (default 1 h).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// Variants kept per URL; the oldest goes first (default 16, at least 1).
    pub fn max_variants(mut self, variants: usize) -> Self {
        self.max_variants = variants.max(1);
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        let expiry = UsableLife {
            clock: Clock::new(),
            keep: self.keep.as_millis() as i64,
        };
        let events: Arc<OnceLock<StoreEvents>> = Arc::default();
        let bytes: Arc<AtomicU64> = Arc::default();
        let (listener_events, listener_bytes) = (events.clone(), bytes.clone());
        let items = moka::sync::Cache::builder()
            .max_capacity(self.max_bytes)
            .eviction_listener(move |_key, value: Variants, cause| {
                use moka::notification::RemovalCause;
                listener_bytes.fetch_sub(weight(&value), Ordering::Relaxed);
                let Some(events) = listener_events.get() else {
                    return;
                };
                match cause {
                    RemovalCause::Size => events.evicted(Eviction::Size),
                    RemovalCause::Expired => events.evicted(Eviction::Expired),
                    RemovalCause::Explicit => events.evicted(Eviction::Explicit),
                    RemovalCause::Replaced => {}
                }
                events.stored_bytes(listener_bytes.load(Ordering::Relaxed));
            })
            .weigher(|_key: &Arc<str>, variants: &Variants| {
                u32::try_from(weight(variants)).unwrap_or(u32::MAX)
            })
            .expire_after(expiry)
            .build_with_hasher(FastHash::default());
        MemoryStore {
            items,
            max_variants: self.max_variants,
            events,
            bytes,
        }
    }
}

/// moka's per-item expiry: the end of the last variant's usable life.
struct UsableLife {
    clock: Clock,
    keep: i64,
}

impl UsableLife {
    fn life(&self, variants: &Variants) -> Option<Duration> {
        let now = self.clock.now();
        let until = variants
            .iter()
            .map(|entry| {
                let keep = if entry.has_validator() { self.keep } else { 0 };
                entry.freshness.usable_until(keep)
            })
            .max()?;
        Some(Duration::from_millis((until - now).max(0) as u64))
    }
}

impl moka::Expiry<Arc<str>, Variants> for UsableLife {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Variants,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        self.life(value)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Variants,
        _at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.life(value)
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &str) -> StoreCall<Option<Variants>> {
        StoreCall::ready(self.items.get(key))
    }

    fn put(&self, key: Arc<str>, entry: Arc<Entry>) -> StoreCall<()> {
        let max_variants = self.max_variants;
        if !self.items.contains_key(&*key) {
            // The usual write: the URL's first variant. A plain insert
            // costs a third of moka's locked compute; a variant stored by
            // a concurrent put in between may be replaced, which costs a
            // later miss, never a wrong answer.
            let variants = Variants::from(vec![entry]);
            self.bytes.fetch_add(weight(&variants), Ordering::Relaxed);
            self.items.insert(key, variants);
            self.report_size();
            return StoreCall::ready(());
        }
        self.items.entry(key).and_compute_with(|existing| {
            let mut variants: Vec<Arc<Entry>> = existing
                .map(|item| item.into_value().iter().cloned().collect())
                .unwrap_or_default();
            variants.retain(|stored| !stored.same_variant(&entry));
            if variants.len() >= max_variants {
                variants.drain(..=variants.len() - max_variants);
            }
            variants.push(entry);
            let variants = Variants::from(variants);
            self.bytes.fetch_add(weight(&variants), Ordering::Relaxed);
            moka::ops::compute::Op::Put(variants)
        });
        self.report_size();
        StoreCall::ready(())
    }

    fn remove(&self, key: &str) -> StoreCall<()> {
        self.items.invalidate(key);
        self.report_size();
        StoreCall::ready(())
    }

    fn purge(&self, selector: Purge, soft: bool) -> StoreCall<usize> {
        use moka::ops::compute::Op;
        let mut affected = 0;
        let candidates: Vec<Arc<str>> = self
            .items
            .iter()
            .filter(|(key, variants)| variants.iter().any(|entry| selector.selects(key, entry)))
            .map(|(key, _)| Arc::clone(&*key))
            .collect();
        for key in candidates {
            // Decided again on the current value, so a concurrent put is
            // neither lost nor left unpurged.
            self.items.entry(key.clone()).and_compute_with(|existing| {
                let Some(item) = existing else { return Op::Nop };
                let variants = item.into_value();
                let mut kept: Vec<Arc<Entry>> = Vec::with_capacity(variants.len());
                for entry in variants.iter() {
                    if !selector.selects(&key, entry) {
                        kept.push(entry.clone());
                        continue;
                    }
                    affected += 1;
                    if soft {
                        kept.push(Arc::new(entry.marked_stale()));
                    }
                }
                if kept.is_empty() {
                    return Op::Remove;
                }
                let kept = Variants::from(kept);
                self.bytes.fetch_add(weight(&kept), Ordering::Relaxed);
                Op::Put(kept)
            });
        }
        self.report_size();
        StoreCall::ready(affected)
    }

    fn attach(&self, events: StoreEvents) {
        let _ = self.events.set(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::vary::Variant;
    use http::HeaderName;

    fn entry(variant: &'static str, lifetime: i64) -> Arc<Entry> {
        let mut entry = crate::cache::test_entry(&[], variant.as_bytes());
        // Received 10 s ago with `lifetime` left: one with none left ended
        // well before now, whatever the clocks' millisecond jitter.
        entry.freshness.response_time = Clock::new().now() - 10_000;
        entry.freshness.lifetime = lifetime + 10_000;
        entry.variant = Variant {
            fields: vec![(HeaderName::from_static("accept"), Some(variant.to_owned()))],
        };
        entry.tags = Arc::from(vec![Box::<str>::from("t")]);
        Arc::new(entry)
    }

    fn bodies(store: &MemoryStore, key: &str) -> Vec<String> {
        let Ok(Some(variants)) = store.get(key).now() else {
            return Vec::new();
        };
        variants
            .iter()
            .map(|entry| String::from_utf8(entry.body.concat()).unwrap())
            .collect()
    }

    #[test]
    fn variants_are_replaced_in_place_and_capped_oldest_first() {
        let store = MemoryStore::builder().max_variants(2).build();
        let key: Arc<str> = Arc::from("k");
        store.put(key.clone(), entry("a", 60_000)).now().ok();
        store.put(key.clone(), entry("b", 60_000)).now().ok();
        assert_eq!(bodies(&store, "k"), ["a", "b"]);
        store.put(key.clone(), entry("a", 60_000)).now().ok();
        assert_eq!(bodies(&store, "k"), ["b", "a"]);
        store.put(key.clone(), entry("c", 60_000)).now().ok();
        assert_eq!(bodies(&store, "k"), ["a", "c"]);
    }

    #[test]
    fn a_new_response_for_a_variant_replaces_the_old_one() {
        let store = MemoryStore::new();
        let key: Arc<str> = Arc::from("k");
        store.put(key.clone(), entry("a", 60_000)).now().ok();
        store.put(key.clone(), entry("a", 60_000)).now().ok();
        assert_eq!(bodies(&store, "k"), ["a"]);
    }

    #[test]
    fn the_byte_count_follows_writes_and_removals() {
        let store = MemoryStore::new();
        let first = entry("a", 60_000);
        let expected = first.weight() as u64;
        store.put(Arc::from("k"), first).now().ok();
        assert_eq!(store.bytes.load(Ordering::Relaxed), expected);
        assert_eq!(store.weighted_size(), expected);
        store.remove("k").now().ok();
        store.items.run_pending_tasks();
        assert_eq!(store.bytes.load(Ordering::Relaxed), 0);
        assert!(bodies(&store, "k").is_empty());
    }

    #[test]
    fn a_soft_purge_keeps_entries_marked_stale_and_a_hard_one_drops_them() {
        let store = MemoryStore::new();
        store
            .put(Arc::from("http://h/a"), entry("a", 60_000))
            .now()
            .ok();
        store
            .put(Arc::from("http://h/b"), entry("b", 60_000))
            .now()
            .ok();
        let soft = store
            .purge(Purge::Prefix("http://h/".into()), true)
            .now()
            .unwrap();
        assert_eq!(soft, 2);
        let Ok(Some(variants)) = store.get("http://h/a").now() else {
            panic!("kept")
        };
        assert!(variants[0].invalidated);
        assert_eq!(store.purge(Purge::Tag("t".into()), false).now().unwrap(), 2);
        assert!(bodies(&store, "http://h/b").is_empty());
        assert_eq!(
            store
                .purge(Purge::Key("http://h/a".into()), false)
                .now()
                .unwrap(),
            0
        );
    }

    #[test]
    fn moka_is_given_each_items_usable_life_on_write_and_rewrite() {
        // When moka drops an expired item is its own business (its clock is
        // coarse); what it is told is ours.
        use moka::Expiry as _;
        let life = UsableLife {
            clock: Clock::new(),
            keep: 0,
        };
        let key: Arc<str> = Arc::from("k");
        let fresh = Variants::from(vec![entry("a", 60_000)]);
        let spent = Variants::from(vec![entry("b", 0)]);
        let at = std::time::Instant::now();
        for variants in [&fresh, &spent] {
            let expected = life.life(variants);
            assert_eq!(life.expire_after_create(&key, variants, at), expected);
            assert_eq!(life.expire_after_update(&key, variants, at, None), expected);
        }
        assert_eq!(
            life.expire_after_create(&key, &spent, at),
            Some(Duration::ZERO)
        );
        assert!(
            life.expire_after_update(&key, &fresh, at, None).unwrap() > Duration::from_secs(59)
        );
        // An item lives as long as its longest-lived variant.
        let both = Variants::from(vec![entry("a", 60_000), entry("b", 0)]);
        assert_eq!(life.life(&both), life.life(&fresh));
    }

    #[test]
    fn debug_forms_say_what_they_are() {
        assert_eq!(format!("{:?}", StoreCall::ready(1)), "StoreCall::Ready");
        assert_eq!(
            format!("{:?}", StoreCall::later(async { 1 })),
            "StoreCall::Later"
        );
        let store = MemoryStore::new();
        store.put(Arc::from("k"), entry("a", 60_000)).now().ok();
        let shown = format!("{store:?}");
        assert!(
            shown.starts_with("MemoryStore") && shown.contains("urls"),
            "{shown}"
        );
        let events = StoreEvents::new(Arc::new(CacheMetrics::new(
            metrics::SharedString::const_str("x"),
        )));
        assert_eq!(format!("{events:?}"), "StoreEvents(..)");
    }

    #[test]
    fn items_live_until_their_usable_life_ends() {
        let life = UsableLife {
            clock: Clock::new(),
            keep: 1_000,
        };
        let fresh: Variants = Variants::from(vec![entry("a", 60_000)]);
        let left = life.life(&fresh).unwrap();
        assert!(
            left > Duration::from_secs(59) && left <= Duration::from_secs(60),
            "{left:?}"
        );
        let mut validated = Entry::clone(&entry("b", 0));
        validated
            .headers
            .insert(http::header::ETAG, "\"1\"".parse().unwrap());
        let kept: Variants = Variants::from(vec![Arc::new(validated)]);
        assert!(life.life(&kept).unwrap() > Duration::from_millis(900));
        let spent: Variants = Variants::from(vec![entry("c", 0)]);
        assert!(life.life(&spent).unwrap() <= Duration::from_millis(10));
    }
}
