//! What a [store](super::RateStore) is asked for one request, and what it answers.

use std::time::Duration;

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
    /// Nowhere: the store's backend could not be reached, and the store
    /// refuses then (503 / `UNAVAILABLE`, not 429).
    Unavailable,
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
