//! Where a limiter keeps its state, behind a small trait.
//!
//! [`MemoryStore`] keeps it in this process and answers at once. A
//! distributed store (Redis, say) implements [`RateStore`] with a future that
//! completes when its backend answers, and plugs into the same layer through
//! [`RateLimitBuilder::store_with`](super::RateLimitBuilder::store_with). If
//! its backend fails, the store's own policy decides (allow, refuse, or fall
//! back to a local store) and reports that as an ordinary [`Decision`].

use std::future::{Future, Ready, ready};
use std::hash::Hash;

use super::decision::{Check, Decision, QuotaState};
use super::gcra::{KeyedStore, Overflow};
use super::quota::{Limit, Quota};
use crate::config::ConfigError;
use crate::key::KeyLimits;

/// Keeps rate-limit state for keys of type `K`.
///
/// The future must be `Unpin` (return `Ready` or a boxed future): the layer
/// polls it once inside `call`, so a store that answers at once costs no
/// allocation, and only boxes what is still pending.
pub trait RateStore<K>: Send + Sync + 'static {
    /// The answer, when it is ready.
    type Future: Future<Output = Decision> + Send + Unpin + 'static;

    /// Decides `check` for `key`, spending the quotas if it is admitted.
    fn check(&self, key: &K, check: Check) -> Self::Future;

    /// How many keys the store holds (0 if it cannot tell).
    fn live_keys(&self) -> usize {
        0
    }

    /// Forgets keys that are as good as new; returns how many (0 if not applicable).
    fn evict_idle(&self) -> usize {
        0
    }

    /// Where `key`'s quotas stand now, in the layer's order, without spending
    /// anything; `None` if the store cannot tell without waiting.
    fn quotas_of(&self, key: &K) -> Option<Vec<QuotaState>> {
        let _ = key;
        None
    }

    /// Makes `key` whole again, as if it had never been seen; `false` if the
    /// store cannot do that.
    fn reset(&self, key: &K) -> bool {
        let _ = key;
        false
    }
}

/// The in-process store: GCRA state per key in a sharded, bounded table.
/// See the [module docs](super) for how it bounds its memory.
#[derive(Debug)]
pub struct MemoryStore<K> {
    inner: KeyedStore<K>,
}

impl<K: Hash + Eq> MemoryStore<K> {
    /// A store for `quotas`, keeping keys within `keys`; new keys past the
    /// cap get what `overflow` says.
    pub fn new(quotas: &[Quota], keys: KeyLimits, overflow: Overflow) -> Result<Self, ConfigError> {
        keys.check("rate_limit")?;
        let limits = quotas
            .iter()
            .map(Quota::compile)
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Self::from_limits(limits, keys, overflow))
    }

    pub(crate) fn from_limits(limits: Box<[Limit]>, keys: KeyLimits, overflow: Overflow) -> Self {
        MemoryStore {
            inner: KeyedStore::new(limits, keys, overflow),
        }
    }
}

impl<K> RateStore<K> for MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Future = Ready<Decision>;

    fn check(&self, key: &K, check: Check) -> Ready<Decision> {
        let max_wait = if check.max_wait.is_zero() {
            0
        } else {
            u64::try_from(check.max_wait.as_nanos()).unwrap_or(u64::MAX)
        };
        ready(
            self.inner
                .check(key, check.cost, max_wait, check.want_states),
        )
    }

    fn live_keys(&self) -> usize {
        self.inner.live_keys()
    }

    fn evict_idle(&self) -> usize {
        self.inner.evict_idle()
    }

    fn quotas_of(&self, key: &K) -> Option<Vec<QuotaState>> {
        Some(self.inner.quotas_of(key))
    }

    fn reset(&self, key: &K) -> bool {
        self.inner.reset(key);
        true
    }
}
