//! The state a cache layer makes once and every clone of its service
//! shares: settings, the store, the flights in progress, the clock.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use http::HeaderName;
use metrics::SharedString;

use super::clock::Clock;
use super::entry::Entry;
use super::flight::Flights;
use super::key::KeyNormalizer;
use super::metrics::CacheMetrics;
use super::policy::{Freshness, Millis, Policy, RequestDirectives, Usable};
use super::store::CacheStore;
use super::vary::VaryRules;
use crate::key::RequestHead;

/// A user's rule for requests the cache should not handle.
pub(crate) type Bypass = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) name: SharedString,
    /// The cache's name in `Cache-Status`.
    pub(crate) status_name: String,
    pub(crate) policy: Policy,
    pub(crate) vary: VaryRules,
    pub(crate) key_normalizer: Option<KeyNormalizer>,
    /// Requests the cache leaves to the origin, by the user's rule.
    pub(crate) bypass: Option<Bypass>,
    pub(crate) max_entry_bytes: usize,
    pub(crate) tag_fields: Vec<HeaderName>,
    pub(crate) strip_tags: bool,
    pub(crate) show_key: bool,
    pub(crate) lock_timeout: Duration,
    pub(crate) max_background: usize,
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) flights: Arc<Flights>,
    pub(crate) clock: Clock,
    /// Background revalidations running now.
    pub(crate) background: AtomicUsize,
    pub(crate) metrics: Arc<CacheMetrics>,
}

impl Shared {
    /// An entry's freshness as used now: a soft-purged entry is stale.
    pub(crate) fn freshness(&self, entry: &Entry) -> Freshness {
        let mut freshness = entry.freshness;
        if entry.invalidated {
            freshness.lifetime = 0;
        }
        freshness
    }

    /// How `entry` may answer a request with `directives` at `now`.
    pub(crate) fn usable(
        &self,
        entry: &Entry,
        directives: &RequestDirectives,
        now: Millis,
    ) -> Usable {
        self.policy.usable(&self.freshness(entry), directives, now)
    }
}
