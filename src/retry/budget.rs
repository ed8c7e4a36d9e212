//! The retry budget: over a sliding window, retries may be at most a ratio of
//! the requests seen, plus a small reserve so a quiet service can still retry.
//!
//! Counts live in per-second buckets tagged with their second, so the budget
//! is lock-free, forgets old traffic without a task, and every clone of the
//! layer draws on the same numbers. The ratio is kept in parts per million and
//! compared in integers: 10 requests at a ratio of 0.25 allow exactly 2
//! retries (tower's `TpsBudget` rounds `1 / ratio` and over-grants, tower#857).

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::key::KeyLimits;
use crate::sync::{read, write};

const PPM: u64 = 1_000_000;

/// How many deposits are counted before they are filed under the current second.
const DEPOSIT_BATCH: u64 = 16;

/// One window of counts: a ring of buckets, each `(second << 32) | count`.
struct Ring {
    cells: Box<[AtomicU64]>,
}

impl Ring {
    fn new(buckets: usize) -> Self {
        Ring {
            cells: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(second: u64) -> u64 {
        // Tag 0 marks a never-used cell, so seconds are tagged from 1.
        (second + 1) & 0xFFFF_FFFF
    }

    fn cell(&self, second: u64) -> &AtomicU64 {
        &self.cells[(second % self.cells.len() as u64) as usize]
    }

    /// The value the current bucket holds once `second` has begun.
    fn current(value: u64, second: u64) -> u64 {
        if value >> 32 == Ring::tag(second) {
            value
        } else {
            Ring::tag(second) << 32
        }
    }

    fn add(&self, second: u64, count: u64) {
        let cell = self.cell(second);
        let mut value = cell.load(Ordering::Relaxed);
        loop {
            let next = Ring::current(value, second) + count;
            match cell.compare_exchange_weak(value, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => value = seen,
            }
        }
    }

    /// Adds one to the current bucket if `allowed(sum)` says so, where the
    /// sum is taken over the window. Every increment goes to the current
    /// bucket and the others only expire, so the check is exact under races.
    fn add_if(&self, second: u64, allowed: impl Fn(u64) -> bool) -> bool {
        let cell = self.cell(second);
        let mut value = cell.load(Ordering::Relaxed);
        loop {
            let current = Ring::current(value, second);
            let others = self.sum_except(second);
            if !allowed(others + (current & 0xFFFF_FFFF)) {
                return false;
            }
            match cell.compare_exchange_weak(
                value,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => value = seen,
            }
        }
    }

    /// What `second`'s bucket counted (0 if it now holds another second).
    fn count(&self, second: u64) -> u64 {
        Ring::current(self.cell(second).load(Ordering::Relaxed), second) & 0xFFFF_FFFF
    }

    fn sum_except(&self, second: u64) -> u64 {
        let buckets = self.cells.len() as u64;
        (1..buckets)
            .filter_map(|back| second.checked_sub(back))
            .map(|past| self.count(past))
            .sum()
    }

    fn sum(&self, second: u64) -> u64 {
        self.count(second) + self.sum_except(second)
    }
}

/// A retry budget shared by every clone of a layer (or by every request of one key).
pub(crate) struct Budget {
    ratio_ppm: u64,
    /// Retries always allowed per window: `min_per_second` × window seconds.
    reserve: u64,
    start: Instant,
    /// Deposits not yet in `requests`: the clock is read once per batch
    /// instead of once per request, and every check adds the rest first.
    unfiled: AtomicU64,
    requests: Ring,
    retries: Ring,
    /// Used since the last idle sweep (keyed budgets only).
    touched: AtomicBool,
}

/// What a budget is made of, checked by the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BudgetSpec {
    pub(crate) ratio: f64,
    pub(crate) min_per_second: u32,
    pub(crate) window: Duration,
}

impl Budget {
    pub(crate) fn new(spec: BudgetSpec) -> Self {
        let seconds = spec.window.as_secs().max(1);
        Budget {
            ratio_ppm: (spec.ratio * PPM as f64).round() as u64,
            reserve: u64::from(spec.min_per_second) * seconds,
            start: Instant::now(),
            unfiled: AtomicU64::new(0),
            requests: Ring::new(seconds as usize),
            retries: Ring::new(seconds as usize),
            touched: AtomicBool::new(true),
        }
    }

    /// Forgets every request and retry counted: the budget is as new.
    pub(crate) fn reset(&self) {
        self.unfiled.store(0, Ordering::Relaxed);
        for cell in self.requests.cells.iter().chain(self.retries.cells.iter()) {
            cell.store(0, Ordering::Relaxed);
        }
    }

    fn touch(&self) {
        // A read first: a budget in use stays shared between cores.
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    fn second(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// A request reached the service: it earns `ratio` of a retry.
    ///
    /// Requests are filed in batches of [`DEPOSIT_BATCH`], so the hot path
    /// is one atomic add; a check files the rest first, so counts stay exact.
    /// The only slack: up to a batch of requests is dated when it is filed,
    /// which can keep at most `DEPOSIT_BATCH - 1` of them (a fraction of a
    /// retry at usual ratios) in the window longer than their age.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.unfiled.fetch_add(1, Ordering::Relaxed) + 1 >= DEPOSIT_BATCH {
            self.file(self.second());
        }
    }

    /// Moves the unfiled deposits into `second`'s bucket.
    fn file(&self, second: u64) {
        let count = self.unfiled.swap(0, Ordering::Relaxed);
        if count > 0 {
            self.requests.add(second, count);
        }
    }

    /// Retries the window's requests earn, plus the reserve, in parts per million.
    fn allowance_ppm(&self, second: u64) -> u64 {
        self.requests
            .sum(second)
            .saturating_mul(self.ratio_ppm)
            .saturating_add(self.reserve.saturating_mul(PPM))
    }

    /// Takes one retry if the window allows it: retries + 1 ≤ requests ×
    /// ratio + reserve.
    pub(crate) fn withdraw(&self) -> bool {
        let second = self.second();
        self.file(second);
        let allowance = self.allowance_ppm(second);
        self.retries.add_if(second, |retries| {
            (retries + 1).saturating_mul(PPM) <= allowance
        })
    }

    /// Whether the window holds no traffic at all (an idle keyed budget can go).
    pub(crate) fn is_idle(&self) -> bool {
        let second = self.second();
        self.file(second);
        self.requests.sum(second) == 0 && self.retries.sum(second) == 0
    }

    /// Retries the window would allow now.
    pub(crate) fn available(&self) -> u64 {
        let second = self.second();
        self.file(second);
        (self.allowance_ppm(second) / PPM).saturating_sub(self.retries.sum(second))
    }
}

/// Where a layer's retry budgets live.
pub(crate) enum Budgets<K> {
    Off,
    Single(Arc<Budget>),
    Keyed(Arc<KeyedBudgets<K>>),
}

impl<K> Clone for Budgets<K> {
    fn clone(&self) -> Self {
        match self {
            Budgets::Off => Budgets::Off,
            Budgets::Single(budget) => Budgets::Single(budget.clone()),
            Budgets::Keyed(keyed) => Budgets::Keyed(keyed.clone()),
        }
    }
}

type Shard<K> = RwLock<hashbrown::HashMap<K, Arc<Budget>>>;

const SHARDS: usize = 16;

/// One budget per key: 16 shards, at most the key limit's budgets; beyond
/// that (after forgetting idle ones) new keys share one budget.
pub(crate) struct KeyedBudgets<K> {
    spec: BudgetSpec,
    shards: Box<[Shard<K>]>,
    hasher: hashbrown::DefaultHashBuilder,
    max_per_shard: usize,
    pub(crate) shared: Arc<Budget>,
    /// Seconds between idle sweeps (at least one: a flood of new keys buys
    /// at most one full sweep a second).
    idle_secs: u64,
    /// When the last idle sweep ran, in seconds since `epoch`.
    swept_at: AtomicU64,
    epoch: Instant,
}

impl<K: Hash + Eq + Clone> KeyedBudgets<K> {
    pub(crate) fn new(spec: BudgetSpec, limits: KeyLimits) -> Self {
        KeyedBudgets {
            spec,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            max_per_shard: limits.max_keys().div_ceil(SHARDS),
            shared: Arc::new(Budget::new(spec)),
            idle_secs: limits.idle().as_secs().max(1),
            swept_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }

    pub(crate) fn get(&self, key: &K) -> Arc<Budget> {
        let shard = self.shard(key);
        if let Some(budget) = read(shard).get(key) {
            budget.touch();
            return budget.clone();
        }
        self.maybe_sweep();
        let mut map = write(shard);
        if let Some(budget) = map.get(key) {
            return budget.clone();
        }
        if map.len() >= self.max_per_shard {
            sweep(&mut map);
            if map.len() >= self.max_per_shard {
                return self.shared.clone();
            }
        }
        let budget = Arc::new(Budget::new(self.spec));
        map.insert(key.clone(), budget.clone());
        budget
    }

    /// What a budget not used yet would grant.
    pub(crate) fn new_available(&self) -> u64 {
        Budget::new(self.spec).available()
    }

    /// The budget of `key`, if it has one.
    pub(crate) fn existing(&self, key: &K) -> Option<Arc<Budget>> {
        read(self.shard(key)).get(key).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// At most once per idle period, when a new key arrives.
    fn maybe_sweep(&self) {
        let now = self.epoch.elapsed().as_secs();
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.idle_secs
            || self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep();
    }

    /// Forgets budgets that are as good as new and were not used since the
    /// last sweep; returns how many.
    pub(crate) fn sweep(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| sweep(&mut write(shard)))
            .sum()
    }
}

/// Forgets the budgets of one shard that nobody holds, nobody used since the
/// last sweep, and that have nothing in their window (as good as new).
fn sweep<K>(map: &mut hashbrown::HashMap<K, Arc<Budget>>) -> usize {
    let before = map.len();
    map.retain(|_, budget| {
        // Every sweep starts a new period of use, for held budgets too.
        let used = budget.touched.swap(false, Ordering::Relaxed);
        used || Arc::strong_count(budget) > 1 || !budget.is_idle()
    });
    before - map.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> Budget {
        Budget::new(BudgetSpec {
            ratio,
            min_per_second,
            window: Duration::from_secs(10),
        })
    }

    fn retries_allowed(budget: &Budget) -> u32 {
        let mut granted = 0;
        while budget.withdraw() {
            granted += 1;
            assert!(granted < 1_000_000, "the budget never runs out");
        }
        granted
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ratios_grant_exactly_their_share() {
        for (ratio, requests, expected) in [
            (0.25, 10, 2),
            (0.6, 10, 6),
            (0.1, 100, 10),
            (0.333, 1000, 333),
            (0.0, 50, 0),
        ] {
            let budget = budget(ratio, 0);
            (0..requests).for_each(|_| budget.deposit());
            assert_eq!(retries_allowed(&budget), expected, "ratio {ratio}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_covers_a_quiet_window() {
        let budget = budget(0.2, 1);
        assert_eq!(budget.available(), 10);
        assert_eq!(retries_allowed(&budget), 10);
        (0..20).for_each(|_| budget.deposit());
        assert_eq!(retries_allowed(&budget), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn old_traffic_leaves_the_window() {
        let budget = budget(0.5, 0);
        (0..10).for_each(|_| budget.deposit());
        assert_eq!(retries_allowed(&budget), 5);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!budget.withdraw(), "still inside the 10 s window");
        assert!(!budget.is_idle());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(budget.is_idle());
        (0..4).for_each(|_| budget.deposit());
        assert_eq!(retries_allowed(&budget), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn every_second_of_the_window_counts() {
        let budget = budget(0.5, 0);
        for _ in 0..4 {
            (0..4).for_each(|_| budget.deposit());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Sixteen requests over four seconds: eight retries.
        assert_eq!(budget.available(), 8);
        assert_eq!(retries_allowed(&budget), 8);
        // Retries leave the window with their second, as requests do.
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(
            budget.available(),
            0,
            "only the last second's 4 requests, all spent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_is_idle_only_with_nothing_in_its_window() {
        let budget = budget(0.5, 1);
        assert!(budget.is_idle());
        budget.deposit();
        assert!(!budget.is_idle(), "a request");
        let spent = self::budget(0.5, 1);
        assert!(spent.withdraw());
        assert!(!spent.is_idle(), "a retry from the reserve");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_budget_is_as_new() {
        let budget = budget(0.5, 0);
        (0..10).for_each(|_| budget.deposit());
        assert_eq!(retries_allowed(&budget), 5);
        tokio::time::advance(Duration::from_secs(1)).await;
        (0..3).for_each(|_| budget.deposit());
        budget.reset();
        assert!(budget.is_idle());
        assert_eq!(budget.available(), 0);
        (0..2).for_each(|_| budget.deposit());
        assert_eq!(retries_allowed(&budget), 1);
    }

    fn keyed(max_keys: usize, idle: Duration) -> KeyedBudgets<u32> {
        let spec = BudgetSpec {
            ratio: 0.5,
            min_per_second: 0,
            window: Duration::from_secs(2),
        };
        KeyedBudgets::new(spec, KeyLimits::new(max_keys, idle))
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_forgets_only_unused_idle_unheld_budgets() {
        let keyed = keyed(1000, Duration::ZERO);
        let held = keyed.get(&1);
        keyed.get(&2).deposit();
        keyed.get(&3);
        keyed.get(&4);
        assert_eq!(keyed.len(), 4);
        // Everything was used since the last sweep (a new budget counts as used).
        assert_eq!(keyed.sweep(), 0);
        // 1 is held by a request, 2 has a request in its window, 3 is used again.
        keyed.get(&3);
        assert_eq!(keyed.sweep(), 1, "4 is unused, idle and unheld");
        assert!(keyed.existing(&4).is_none());
        assert_eq!(keyed.sweep(), 1, "3, unused since the last sweep");
        assert_eq!(keyed.len(), 2);
        // Once its window passes, 2 goes too; 1 stays while held.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(keyed.sweep(), 1);
        assert!(keyed.existing(&1).is_some());
        drop(held);
        assert_eq!(keyed.sweep(), 1);
        assert_eq!(keyed.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn new_keys_sweep_at_most_once_per_idle_time() {
        let keyed = keyed(1000, Duration::from_secs(5));
        for key in 0..10 {
            keyed.get(&key);
        }
        // Before the idle time, a new key sweeps nothing.
        tokio::time::advance(Duration::from_secs(4)).await;
        keyed.get(&100);
        assert_eq!(keyed.len(), 11);
        // The first new key after it sweeps: every budget counts as used
        // since it was made, so this sweep only starts a period.
        tokio::time::advance(Duration::from_secs(1)).await;
        keyed.get(&200);
        assert_eq!(keyed.len(), 12);
        tokio::time::advance(Duration::from_secs(4)).await;
        keyed.get(&250);
        keyed.get(&3);
        assert_eq!(keyed.len(), 13, "no sweep within the idle time");
        // The next one forgets what was not used in that period.
        tokio::time::advance(Duration::from_secs(1)).await;
        keyed.get(&300);
        let mut left: Vec<u32> = (0..400)
            .filter(|key| keyed.existing(key).is_some())
            .collect();
        left.sort_unstable();
        assert_eq!(left, [3, 200, 250, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_key_limit_new_keys_share_one_budget() {
        let keyed = keyed(16, Duration::from_secs(60));
        let shared = (0..64)
            .filter(|key| Arc::ptr_eq(&keyed.get(key), &keyed.shared))
            .count();
        assert!(keyed.len() <= 16, "{}", keyed.len());
        // A full shard first forgets what was unused since its last sweep;
        // a key that finds it full even then shares.
        assert!(shared >= 1, "64 keys in 16 shards of one budget each");
    }

    #[test]
    fn threads_never_overdraw() {
        let budget = std::sync::Arc::new(budget(0.1, 0));
        // Deposits from many threads, in uneven batches, all count.
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| (0..125).for_each(|_| budget.deposit()));
            }
        });
        let granted: u32 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let budget = budget.clone();
                    scope.spawn(move || (0..100).filter(|_| budget.withdraw()).count() as u32)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 100);
    }
}
