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
use std::time::Duration;

use super::gcra::KeyedStore;
use super::quota::{Limit, Quota};
use crate::config::ConfigError;

pub use super::gcra::Overflow;

/// What a store is asked for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// The units this request costs.
    pub cost: u32,
    /// How long the request may wait for its turn (zero: refuse instead).
    pub max_wait: Duration,
    /// Whether the caller wants [`Decision::quotas`] (for the `RateLimit` header).
    pub want_states: bool,
}

/// What a store decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Spent; go ahead.
    Allowed,
    /// Spent in advance; go ahead after this wait.
    Delayed(Duration),
    /// Not spent. `Some((wait, quota))`: it would pass after `wait`, and
    /// `quota` (an index into the layer's quotas) is the one that refused.
    /// `None`: it can never pass (its cost exceeds a burst) or the store is full.
    Refused(Option<(Duration, usize)>),
}

/// Where one quota stands after a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaState {
    /// Units still available now.
    pub remaining: u64,
    /// Time until the quota is whole again.
    pub reset: Duration,
}

/// Where the decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The key's own state.
    Own,
    /// The key's own state, stored just now.
    Inserted,
    /// The shared overflow bucket, because the store was full.
    OverflowBucket,
    /// Nowhere: the store was full and refuses new keys.
    Full,
}

/// A store's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Go ahead, wait, or refuse.
    pub verdict: Verdict,
    /// Each quota's state, in the layer's order: empty (and not allocated)
    /// unless [`Check::want_states`] asked for it.
    pub quotas: Vec<QuotaState>,
    /// Where it was decided.
    pub placement: Placement,
}

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
}

/// The in-process store: GCRA state per key in a sharded, bounded table.
/// See the [module docs](super) for how it bounds its memory.
#[derive(Debug)]
pub struct MemoryStore<K> {
    inner: KeyedStore<K>,
}

impl<K: Hash + Eq> MemoryStore<K> {
    /// A store for `quotas`, holding at most `max_keys` keys.
    pub fn new(quotas: &[Quota], max_keys: usize, overflow: Overflow) -> Result<Self, ConfigError> {
        let limits = quotas
            .iter()
            .map(Quota::compile)
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Self::from_limits(limits, max_keys, overflow))
    }

    pub(crate) fn from_limits(limits: Box<[Limit]>, max_keys: usize, overflow: Overflow) -> Self {
        MemoryStore {
            inner: KeyedStore::new(limits, max_keys, overflow),
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
}
