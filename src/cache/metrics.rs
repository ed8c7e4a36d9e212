//! The cache's metrics: `armor.cache.lookups{name,result}`,
//! `armor.cache.stored_bytes{name}`, `armor.cache.evictions{name,cause}`
//! and `armor.cache.coalesced{name}`, through the recorder current at each
//! event.

use metrics::{Counter, Gauge, SharedString};

use crate::observe::PerRecorder;

/// What the cache did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Served from the store, fresh, without asking the origin.
    Hit,
    /// Served stale: within `stale-while-revalidate`, `stale-if-error` or
    /// the request's `max-stale`.
    Stale,
    /// The origin answered 304: the stored response was served.
    Revalidated,
    /// The origin's full answer, stored.
    Miss,
    /// The origin's answer, which may not be stored (or the origin failed).
    Uncacheable,
    /// Not a request the cache answers (its method, gRPC, an upgrade).
    Bypass,
}

impl Lookup {
    const ALL: [Lookup; 6] = [
        Lookup::Hit,
        Lookup::Stale,
        Lookup::Revalidated,
        Lookup::Miss,
        Lookup::Uncacheable,
        Lookup::Bypass,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Stale => "stale",
            Lookup::Revalidated => "revalidated",
            Lookup::Miss => "miss",
            Lookup::Uncacheable => "uncacheable",
            Lookup::Bypass => "bypass",
        }
    }
}

/// Why a store dropped an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// To stay within its byte budget.
    Size,
    /// Its usable life ended.
    Expired,
    /// Purged or invalidated.
    Explicit,
}

impl Eviction {
    const ALL: [Eviction; 3] = [Eviction::Size, Eviction::Expired, Eviction::Explicit];

    fn as_str(self) -> &'static str {
        match self {
            Eviction::Size => "size",
            Eviction::Expired => "expired",
            Eviction::Explicit => "explicit",
        }
    }
}

struct Handles {
    lookups: [Counter; 6],
    evictions: [Counter; 3],
    stored_bytes: Gauge,
    coalesced: Counter,
}

/// The cache's metric handles, per recorder.
pub(crate) struct CacheMetrics {
    name: SharedString,
    handles: PerRecorder<Handles>,
}

impl CacheMetrics {
    pub(crate) fn new(name: SharedString) -> Self {
        CacheMetrics {
            name,
            handles: PerRecorder::default(),
        }
    }

    fn with(&self, f: impl FnOnce(&Handles)) {
        self.handles.with(|| self.register(), f);
    }

    #[cold]
    fn register(&self) -> Handles {
        let name = &self.name;
        Handles {
            lookups: Lookup::ALL.map(|result| {
                metrics::counter!("armor.cache.lookups", "name" => name.clone(), "result" => result.as_str())
            }),
            evictions: Eviction::ALL.map(|cause| {
                metrics::counter!("armor.cache.evictions", "name" => name.clone(), "cause" => cause.as_str())
            }),
            stored_bytes: metrics::gauge!("armor.cache.stored_bytes", "name" => name.clone()),
            coalesced: metrics::counter!("armor.cache.coalesced", "name" => name.clone()),
        }
    }

    pub(crate) fn lookup(&self, result: Lookup) {
        self.with(|h| h.lookups[result as usize].increment(1));
    }

    pub(crate) fn evicted(&self, cause: Eviction) {
        self.with(|h| h.evictions[cause as usize].increment(1));
    }

    pub(crate) fn stored_bytes(&self, bytes: u64) {
        self.with(|h| h.stored_bytes.set(bytes as f64));
    }

    pub(crate) fn coalesced(&self) {
        self.with(|h| h.coalesced.increment(1));
    }
}
