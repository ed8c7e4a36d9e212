//! The generic cell rate algorithm over several quotas at once, and a keyed,
//! bounded store of its state.
//!
//! Each quota keeps one number per key: its theoretical arrival time (TAT).
//! A request costing `c` moves it to `max(TAT, now) + c * interval`, which is
//! allowed while it stays within `tolerance = burst * interval` of now. All
//! quotas of a key are checked first and written only if every one passes,
//! under the key's shard lock, so a request refused by one quota never spends
//! another (stacked governor limiters leak exactly that).

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::time::Instant;

use std::time::Duration;

use super::decision::{Decision, Placement, QuotaState, Verdict};
use super::quota::Limit;
use crate::key::KeyLimits;
use crate::sync::lock;

/// The most quotas one policy may hold (checked at build).
pub(crate) const MAX_QUOTAS: usize = 4;

/// One key's state: a TAT per quota, in nanoseconds since the store began.
type Tats = [u64; MAX_QUOTAS];

/// Checks `cost` against `limits` for one key's `tats`, writing them only
/// when the request is admitted now or within `max_wait`. The quotas' states
/// (two divisions each) are computed only when `want_states`.
pub(crate) fn check(
    limits: &[Limit],
    tats: &mut Tats,
    now: u64,
    cost: u32,
    max_wait: u64,
    want_states: bool,
) -> Decision {
    let states = |tats: &Tats| {
        if want_states {
            states(limits, tats, now)
        } else {
            Vec::new()
        }
    };
    let mut next = [0u64; MAX_QUOTAS];
    let mut worst: Option<(u64, usize)> = None;
    for (i, limit) in limits.iter().enumerate() {
        let increment = limit.interval.saturating_mul(u64::from(cost));
        if increment > limit.tolerance {
            return Decision {
                verdict: Verdict::Refused(None),
                quotas: states(tats),
                placement: Placement::Own,
            };
        }
        next[i] = tats[i].max(now) + increment;
        let ahead = next[i] - now;
        if ahead > limit.tolerance {
            let wait = ahead - limit.tolerance;
            if worst.is_none_or(|(longest, _)| wait > longest) {
                worst = Some((wait, i));
            }
        }
    }
    let verdict = match worst {
        None => Verdict::Allowed,
        Some((wait, _)) if wait <= max_wait => Verdict::Delayed(Duration::from_nanos(wait)),
        Some((wait, quota)) => {
            return Decision {
                verdict: Verdict::Refused(Some((Duration::from_nanos(wait), quota))),
                quotas: states(tats),
                placement: Placement::Own,
            };
        }
    };
    // Element by element: no libc call for a slice copy, and no wide reads of
    // values just written narrowly (which stall store-to-load forwarding).
    for (tat, new) in tats.iter_mut().zip(&next).take(limits.len()) {
        *tat = *new;
    }
    Decision {
        verdict,
        quotas: states(tats),
        placement: Placement::Own,
    }
}

fn states(limits: &[Limit], tats: &Tats, now: u64) -> Vec<QuotaState> {
    limits
        .iter()
        .zip(tats)
        .map(|(limit, tat)| {
            let ahead = tat.saturating_sub(now);
            QuotaState {
                remaining: limit.tolerance.saturating_sub(ahead) / limit.interval,
                reset: Duration::from_nanos(ahead),
            }
        })
        .collect()
}

/// True when every quota has been whole again for at least `grace`
/// nanoseconds: the key is as good as new and can be forgotten.
fn idle(tats: &Tats, now: u64, grace: u64) -> bool {
    tats.iter().all(|&tat| tat.saturating_add(grace) <= now)
}

/// What happens to a new key when the store already holds `max_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// New keys share one overflow bucket with the same quotas until room
    /// frees up (default): no key is refused for being new, and an attacker
    /// rotating keys only competes with itself for that bucket.
    SharedBucket,
    /// New keys are refused with 429 until room frees up.
    Refuse,
}

const SHARDS: usize = 64;
/// A sweep of one shard runs on every this many new keys.
const SWEEP_EVERY: u64 = 64;
/// At the key cap, a shard is swept again only after this long (ns): keys
/// only go idle as time passes, and a flood of new keys must not buy a full
/// shard scan per request. Sweep work is thereby bounded by
/// `max_keys / SWEEP_GAP` entry visits per second, whatever the flood's rate.
const SWEEP_GAP: u64 = 100_000_000;

/// One shard: its keys with their state, and when it was last swept.
#[derive(Debug)]
struct Shard<K> {
    keys: HashTable<(K, Tats)>,
    swept_at: Option<u64>,
}

impl<K: Hash> Shard<K> {
    /// Removes idle keys; returns how many.
    fn sweep(&mut self, now: u64, grace: u64, hasher: &DefaultHashBuilder) -> usize {
        self.swept_at = Some(now);
        let before = self.keys.len();
        self.keys.retain(|(_, tats)| !idle(tats, now, grace));
        if self.keys.capacity() > 4 * self.keys.len().max(16) {
            self.keys.shrink_to_fit(|(key, _)| hasher.hash_one(key));
        }
        before - self.keys.len()
    }

    fn swept_recently(&self, now: u64) -> bool {
        self.swept_at
            .is_some_and(|at| now.saturating_sub(at) < SWEEP_GAP)
    }
}

/// The state of every key, sharded to keep locks short and uncontended.
#[derive(Debug)]
pub(crate) struct KeyedStore<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    /// foldhash, seeded at random per store: fast, and keys chosen by clients
    /// cannot be aimed at one bucket without knowing the seed.
    hasher: DefaultHashBuilder,
    limits: Box<[Limit]>,
    start: Instant,
    max_keys: usize,
    /// How long (ns) a key stays once its quotas are whole again.
    idle_grace: u64,
    overflow: Overflow,
    overflow_bucket: Mutex<Tats>,
    /// The one state of a zero-sized key (the global limit): no hashing, no table.
    single: Mutex<Tats>,
    /// The same for a global limit of one quota: a lone TAT, updated by
    /// compare-and-swap without any lock.
    single_tat: AtomicU64,
    live: AtomicUsize,
    new_keys: AtomicU64,
}

impl<K: Hash + Eq> KeyedStore<K> {
    pub(crate) fn new(limits: Box<[Limit]>, keys: KeyLimits, overflow: Overflow) -> Self {
        // A zero-sized key (the global limit) uses `single`, not the shards.
        let shards = if size_of::<K>() == 0 { 1 } else { SHARDS };
        KeyedStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        keys: HashTable::new(),
                        swept_at: None,
                    })
                })
                .collect(),
            hasher: DefaultHashBuilder::default(),
            limits,
            start: Instant::now(),
            max_keys: keys.max_keys(),
            idle_grace: u64::try_from(keys.idle().as_nanos()).unwrap_or(u64::MAX),
            overflow,
            overflow_bucket: Mutex::new([0; MAX_QUOTAS]),
            single: Mutex::new([0; MAX_QUOTAS]),
            single_tat: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            new_keys: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the store began, on Tokio's clock (so paused time works).
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The number of keys held now.
    pub(crate) fn live_keys(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Checks `cost` for `key`, admitting it within `max_wait` nanoseconds.
    pub(crate) fn check(&self, key: &K, cost: u32, max_wait: u64, want_states: bool) -> Decision
    where
        K: Clone,
    {
        let now = self.now();
        if size_of::<K>() == 0 && self.limits.len() == 1 {
            return self.check_single(now, cost, max_wait, want_states);
        }
        if size_of::<K>() == 0 {
            let mut tats = lock(&self.single);
            return check(&self.limits, &mut tats, now, cost, max_wait, want_states);
        }
        // One hash serves both the shard and the table. hashbrown indexes
        // buckets with the low bits and tags them with the top seven, so the
        // shard comes from bits in between.
        let hash = self.hasher.hash_one(key);
        let index = (hash >> 32) as usize % self.shards.len();
        let mut shard = lock(&self.shards[index]);
        if let Some((_, tats)) = shard.keys.find_mut(hash, |(k, _)| k == key) {
            return check(&self.limits, tats, now, cost, max_wait, want_states);
        }
        // A new key: a fresh state (all TATs in the past) needs no entry
        // unless the check spends something.
        let mut tats = [0; MAX_QUOTAS];
        let decision = check(&self.limits, &mut tats, now, cost, max_wait, want_states);
        if matches!(decision.verdict, Verdict::Refused(_)) {
            return decision;
        }
        if self.live.load(Ordering::Relaxed) >= self.max_keys && !shard.swept_recently(now) {
            self.live.fetch_sub(
                shard.sweep(now, self.idle_grace, &self.hasher),
                Ordering::Relaxed,
            );
        }
        if self.live.load(Ordering::Relaxed) >= self.max_keys {
            drop(shard);
            return match self.overflow {
                Overflow::Refuse => Decision {
                    verdict: Verdict::Refused(None),
                    quotas: Vec::new(),
                    placement: Placement::Full,
                },
                Overflow::SharedBucket => {
                    let mut bucket = lock(&self.overflow_bucket);
                    let decision =
                        check(&self.limits, &mut bucket, now, cost, max_wait, want_states);
                    Decision {
                        placement: Placement::OverflowBucket,
                        ..decision
                    }
                }
            };
        }
        let hasher = &self.hasher;
        shard
            .keys
            .insert_unique(hash, (key.clone(), tats), |(k, _)| hasher.hash_one(k));
        self.live.fetch_add(1, Ordering::Relaxed);
        drop(shard);
        if self.new_keys.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep_one(now);
        }
        Decision {
            placement: Placement::Inserted,
            ..decision
        }
    }

    /// One quota, one key: the TAT moves by compare-and-swap, retried if
    /// another request moved it first.
    fn check_single(&self, now: u64, cost: u32, max_wait: u64, want_states: bool) -> Decision {
        let mut seen = self.single_tat.load(Ordering::Acquire);
        loop {
            let mut tats = [seen, 0, 0, 0];
            let decision = check(&self.limits, &mut tats, now, cost, max_wait, want_states);
            if matches!(decision.verdict, Verdict::Refused(_)) || tats[0] == seen {
                return decision;
            }
            match self.single_tat.compare_exchange_weak(
                seen,
                tats[0],
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return decision,
                Err(actual) => seen = actual,
            }
        }
    }

    /// Sweeps the next shard in turn, if nobody holds it.
    fn sweep_one(&self, now: u64) {
        let turn = self.new_keys.load(Ordering::Relaxed) / SWEEP_EVERY;
        let index = (turn % self.shards.len() as u64) as usize;
        if let Ok(mut shard) = self.shards[index].try_lock() {
            self.live.fetch_sub(
                shard.sweep(now, self.idle_grace, &self.hasher),
                Ordering::Relaxed,
            );
        }
    }

    /// Forgets every idle key now; returns how many were dropped.
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.now();
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let removed = lock(shard).sweep(now, self.idle_grace, &self.hasher);
            self.live.fetch_sub(removed, Ordering::Relaxed);
            dropped += removed;
        }
        dropped
    }

    /// Where `key`'s quotas stand now, without spending anything. A key the
    /// store does not hold is whole.
    pub(crate) fn quotas_of(&self, key: &K) -> Vec<QuotaState> {
        let now = self.now();
        let tats = if size_of::<K>() == 0 && self.limits.len() == 1 {
            [self.single_tat.load(Ordering::Acquire), 0, 0, 0]
        } else if size_of::<K>() == 0 {
            *lock(&self.single)
        } else {
            let hash = self.hasher.hash_one(key);
            let shard = lock(&self.shards[(hash >> 32) as usize % self.shards.len()]);
            shard
                .keys
                .find(hash, |(k, _)| k == key)
                .map_or([0; MAX_QUOTAS], |(_, tats)| *tats)
        };
        states(&self.limits, &tats, now)
    }

    /// Makes `key` whole again, as if it had never been seen.
    pub(crate) fn reset(&self, key: &K) {
        if size_of::<K>() == 0 {
            self.single_tat.store(0, Ordering::Release);
            *lock(&self.single) = [0; MAX_QUOTAS];
            return;
        }
        let hash = self.hasher.hash_one(key);
        let mut shard = lock(&self.shards[(hash >> 32) as usize % self.shards.len()]);
        if let Ok(entry) = shard.keys.find_entry(hash, |(k, _)| k == key) {
            entry.remove();
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;

    const SECOND: u64 = 1_000_000_000;

    fn limits(quotas: &[Quota]) -> Vec<Limit> {
        quotas.iter().map(|q| q.compile().unwrap()).collect()
    }

    #[test]
    fn burst_then_refill_then_wait() {
        let limits = limits(&[Quota::per_second(5)]);
        let mut tats = [0; MAX_QUOTAS];
        let now = 10 * SECOND;
        for left in (0..5).rev() {
            let d = check(&limits, &mut tats, now, 1, 0, true);
            assert_eq!(d.verdict, Verdict::Allowed);
            assert_eq!(d.quotas[0].remaining, left);
        }
        // The sixth waits one interval (200 ms) for the first cell to come back.
        let d = check(&limits, &mut tats, now, 1, 0, true);
        assert_eq!(
            d.verdict,
            Verdict::Refused(Some((Duration::from_millis(200), 0)))
        );
        assert_eq!(d.quotas[0].reset, Duration::from_secs(1));
        // 200 ms later exactly one more passes.
        let later = now + SECOND / 5;
        assert_eq!(
            check(&limits, &mut tats, later, 1, 0, true).verdict,
            Verdict::Allowed
        );
        assert!(matches!(
            check(&limits, &mut tats, later, 1, 0, true).verdict,
            Verdict::Refused(_)
        ));
        // A second after the burst, everything is back: whole at 1.2 s, so
        // idle then, and idle with a grace once the grace has passed too.
        assert!(!idle(&tats, later + SECOND - 1, 0));
        assert!(idle(&tats, later + SECOND, 0));
        assert!(!idle(&tats, later + SECOND, SECOND));
        assert!(idle(&tats, later + 2 * SECOND, SECOND));
    }

    #[test]
    fn every_quota_must_pass_and_a_refusal_spends_none() {
        let limits = limits(&[Quota::per_second(10), Quota::per_minute(12)]);
        let mut tats = [0; MAX_QUOTAS];
        let mut now = SECOND;
        let mut allowed = 0;
        // Ten per second would allow 10 each second; twelve per minute caps the total.
        for _ in 0..5 {
            for _ in 0..20 {
                if check(&limits, &mut tats, now, 1, 0, true).verdict == Verdict::Allowed {
                    allowed += 1;
                }
            }
            now += SECOND;
        }
        assert_eq!(allowed, 12);
        // At the last second checked, the per-second quota is whole again:
        // the refused requests did not drain it.
        let d = check(&limits, &mut tats, now - SECOND, 1, 0, true);
        assert_eq!(d.quotas[0].remaining, 10);
        assert!(matches!(d.verdict, Verdict::Refused(Some((_, 1)))));
    }

    #[test]
    fn costs_weigh_and_oversized_costs_never_pass() {
        let limits = limits(&[Quota::per_second(10)]);
        let mut tats = [0; MAX_QUOTAS];
        assert_eq!(
            check(&limits, &mut tats, 0, 7, 0, true).verdict,
            Verdict::Allowed
        );
        assert!(matches!(
            check(&limits, &mut tats, 0, 4, 0, true).verdict,
            Verdict::Refused(Some(_))
        ));
        assert_eq!(
            check(&limits, &mut tats, 0, 3, 0, true).verdict,
            Verdict::Allowed
        );
        assert_eq!(
            check(&limits, &mut [0; MAX_QUOTAS], 0, 11, 0, true).verdict,
            Verdict::Refused(None)
        );
    }

    #[test]
    fn a_delay_reserves_the_slot() {
        let limits = limits(&[Quota::per_second(1)]);
        let mut tats = [0; MAX_QUOTAS];
        assert_eq!(
            check(&limits, &mut tats, 0, 1, 0, true).verdict,
            Verdict::Allowed
        );
        assert_eq!(
            check(&limits, &mut tats, 0, 1, 2 * SECOND, true).verdict,
            Verdict::Delayed(Duration::from_secs(1))
        );
        assert_eq!(
            check(&limits, &mut tats, 0, 1, 2 * SECOND, true).verdict,
            Verdict::Delayed(Duration::from_secs(2))
        );
        assert!(matches!(
            check(&limits, &mut tats, 0, 1, 2 * SECOND, true).verdict,
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn bad_quotas_fail_to_compile() {
        assert!(Quota::per_second(0).compile().is_err());
        assert!(Quota::per_second(5).burst(0).compile().is_err());
        assert!(Quota::new(10, Duration::ZERO).compile().is_err());
        assert!(Quota::new(2, Duration::from_nanos(1)).compile().is_err());
        assert!(
            Quota::new(1, Duration::from_secs(100 * 365 * 86_400))
                .compile()
                .is_err()
        );
        assert!(Quota::per_hour(u32::MAX).burst(u32::MAX).compile().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_caps_keys_and_evicts_idle_ones() {
        let store = KeyedStore::<u32>::new(
            limits(&[Quota::per_second(1)]).into(),
            KeyLimits::new(100, Duration::from_secs(5)),
            Overflow::Refuse,
        );
        for key in 0..100 {
            assert_eq!(
                store.check(&key, 1, 0, false).placement,
                Placement::Inserted
            );
        }
        assert_eq!(store.live_keys(), 100);
        assert_eq!(store.check(&1000, 1, 0, false).placement, Placement::Full);
        // Known keys still get their own state.
        assert_eq!(store.check(&5, 1, 0, false).placement, Placement::Own);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Whole again, but within the idle time: kept.
        assert_eq!(store.evict_idle(), 0);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Idle keys are as good as new: forgetting them changes no decision.
        assert_eq!(store.evict_idle(), 100);
        assert_eq!(store.live_keys(), 0);
        assert_eq!(
            store.check(&1000, 1, 0, false).placement,
            Placement::Inserted
        );
    }

    #[tokio::test(start_paused = true)]
    async fn overflow_keys_share_one_bucket() {
        let store = KeyedStore::<u32>::new(
            limits(&[Quota::per_second(3)]).into(),
            KeyLimits::new(1, Duration::ZERO),
            Overflow::SharedBucket,
        );
        store.check(&0, 1, 0, false);
        let verdicts: Vec<_> = (1..=4).map(|key| store.check(&key, 1, 0, false)).collect();
        assert!(
            verdicts
                .iter()
                .all(|d| d.placement == Placement::OverflowBucket)
        );
        let allowed = verdicts
            .iter()
            .filter(|d| d.verdict == Verdict::Allowed)
            .count();
        assert_eq!(allowed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_can_be_read_and_reset_without_spending() {
        let store = KeyedStore::<u32>::new(
            limits(&[Quota::per_second(3), Quota::per_minute(10)]).into(),
            KeyLimits::default(),
            Overflow::Refuse,
        );
        let remaining = |key| {
            store
                .quotas_of(&key)
                .iter()
                .map(|q| q.remaining)
                .collect::<Vec<_>>()
        };
        assert_eq!(remaining(7), [3, 10]);
        for _ in 0..3 {
            store.check(&7, 1, 0, false);
        }
        assert_eq!(remaining(7), [0, 7]);
        assert_eq!(remaining(7), [0, 7], "reading spends nothing");
        assert_eq!(remaining(8), [3, 10]);
        assert!(matches!(
            store.check(&7, 1, 0, false).verdict,
            Verdict::Refused(_)
        ));
        store.reset(&7);
        assert_eq!(store.live_keys(), 0);
        assert_eq!(remaining(7), [3, 10]);
        assert_eq!(store.check(&7, 1, 0, false).verdict, Verdict::Allowed);

        // The global key has no table: it is reset in place.
        let global = KeyedStore::<()>::new(
            limits(&[Quota::per_second(1)]).into(),
            KeyLimits::default(),
            Overflow::Refuse,
        );
        global.check(&(), 1, 0, false);
        assert_eq!(global.quotas_of(&())[0].remaining, 0);
        global.reset(&());
        assert_eq!(global.quotas_of(&())[0].remaining, 1);
        assert_eq!(global.check(&(), 1, 0, false).verdict, Verdict::Allowed);
    }

    #[test]
    fn a_refusal_names_the_quota_with_the_longest_wait_and_the_first_on_a_tie() {
        // Both quotas refuse the third request; the per-minute one is the
        // one that waits longer.
        let both = limits(&[Quota::per_second(2), Quota::per_minute(2)]);
        let mut tats = [0; MAX_QUOTAS];
        check(&both, &mut tats, SECOND, 1, 0, false);
        check(&both, &mut tats, SECOND, 1, 0, false);
        let Verdict::Refused(Some((wait, quota))) =
            check(&both, &mut tats, SECOND, 1, 0, false).verdict
        else {
            panic!("refused with a wait")
        };
        assert_eq!((wait, quota), (Duration::from_secs(30), 1));
        // Two identical quotas wait the same: the first is named.
        let twins = limits(&[Quota::per_second(1), Quota::per_second(1)]);
        let mut tats = [0; MAX_QUOTAS];
        check(&twins, &mut tats, SECOND, 1, 0, false);
        let Verdict::Refused(Some((wait, quota))) =
            check(&twins, &mut tats, SECOND, 1, 0, false).verdict
        else {
            panic!("refused with a wait")
        };
        assert_eq!((wait, quota), (Duration::from_secs(1), 0));
        // The worst wait wins whatever the order of the quotas.
        let reversed = limits(&[Quota::per_minute(2), Quota::per_second(2)]);
        let mut tats = [0; MAX_QUOTAS];
        check(&reversed, &mut tats, SECOND, 1, 0, false);
        check(&reversed, &mut tats, SECOND, 1, 0, false);
        let Verdict::Refused(Some((wait, quota))) =
            check(&reversed, &mut tats, SECOND, 1, 0, false).verdict
        else {
            panic!("refused with a wait")
        };
        assert_eq!((wait, quota), (Duration::from_secs(30), 0));
    }

    fn shard_with(keys: std::ops::Range<u32>, tat: u64) -> (Shard<u32>, DefaultHashBuilder) {
        let hasher = DefaultHashBuilder::default();
        let mut shard = Shard {
            keys: HashTable::new(),
            swept_at: None,
        };
        for key in keys {
            shard
                .keys
                .insert_unique(hasher.hash_one(key), (key, [tat, 0, 0, 0]), |(k, _)| {
                    hasher.hash_one(k)
                });
        }
        (shard, hasher)
    }

    #[test]
    fn a_sweep_gives_memory_back_only_when_most_of_the_table_is_empty() {
        // 1000 keys, 900 of them idle: the table is over four times too big.
        let (mut shard, hasher) = shard_with(0..1000, 0);
        for (key, tats) in shard.keys.iter_mut() {
            if *key < 100 {
                tats[0] = 10 * SECOND;
            }
        }
        let grown = shard.keys.capacity();
        assert_eq!(shard.sweep(SECOND, 0, &hasher), 900);
        assert!(shard.keys.capacity() < grown / 4, "shrunk from {grown}");
        // 1000 keys, 500 idle: within four times, the table is not rebuilt
        // (one rebuilt for the 500 left would hold 896). Deleting only marks
        // slots, so the room left varies, but stays above that.
        let (mut shard, hasher) = shard_with(0..1000, 0);
        assert_eq!(shard.keys.capacity(), 1792);
        for (key, tats) in shard.keys.iter_mut() {
            if *key < 500 {
                tats[0] = 10 * SECOND;
            }
        }
        assert_eq!(shard.sweep(SECOND, 0, &hasher), 500);
        assert!(shard.keys.capacity() > 896, "{}", shard.keys.capacity());
        // A small table keeps its room even when emptied: 4 x 16 keys' worth.
        let (mut shard, hasher) = shard_with(0..30, 0);
        assert!(shard.keys.capacity() <= 64);
        assert_eq!(shard.sweep(SECOND, 0, &hasher), 30);
        assert!(shard.keys.capacity() > 0);
    }

    #[test]
    fn a_shard_counts_as_swept_recently_for_the_sweep_gap() {
        let (mut shard, hasher) = shard_with(0..1, 0);
        assert!(!shard.swept_recently(0));
        shard.sweep(5 * SECOND, 0, &hasher);
        assert!(shard.swept_recently(5 * SECOND + SWEEP_GAP - 1));
        assert!(!shard.swept_recently(5 * SECOND + SWEEP_GAP));
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_cap_every_64th_new_key_sweeps_the_next_shard() {
        let store = KeyedStore::<u32>::new(
            limits(&[Quota::per_second(1)]).into(),
            KeyLimits::new(1_000_000, Duration::ZERO),
            Overflow::Refuse,
        );
        let old = 6400;
        for key in 0..old {
            store.check(&key, 1, 0, false);
        }
        assert_eq!(store.live_keys(), old as usize);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Every old key is whole again; three batches of 64 new keys sweep
        // three shards, one after the other.
        let shards_with_old_keys = || {
            store
                .shards
                .iter()
                .filter(|shard| lock(shard).keys.iter().any(|(key, _)| *key < old))
                .count()
        };
        assert_eq!(shards_with_old_keys(), SHARDS);
        let batch = SWEEP_EVERY as u32;
        // Not before the 64th new key...
        for key in old..old + batch - 1 {
            store.check(&key, 1, 0, false);
        }
        assert_eq!(shards_with_old_keys(), SHARDS);
        // ...and then one shard per 64.
        for key in old + batch - 1..old + 3 * batch {
            store.check(&key, 1, 0, false);
        }
        assert_eq!(shards_with_old_keys(), SHARDS - 3);
        let kept: usize = store
            .shards
            .iter()
            .map(|shard| lock(shard).keys.len())
            .sum();
        assert_eq!(store.live_keys(), kept);
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_quota_key_is_read_from_its_own_state() {
        let store = KeyedStore::<u32>::new(
            limits(&[Quota::per_second(3)]).into(),
            KeyLimits::default(),
            Overflow::Refuse,
        );
        store.check(&1, 1, 0, false);
        store.check(&1, 1, 0, false);
        assert_eq!(store.quotas_of(&1)[0].remaining, 1);
        assert_eq!(store.quotas_of(&2)[0].remaining, 3);
    }

    mod against_governor {
        //! Differential property test: for one quota, every decision matches
        //! governor's (the GCRA implementation DESIGN.md names), step by step.

        use super::*;
        use governor::clock::FakeRelativeClock;
        use proptest::prelude::*;
        use std::num::NonZeroU32;

        fn run(
            count: u32,
            period_ms: u64,
            burst: u32,
            steps: &[(u64, u32)],
        ) -> Result<(), TestCaseError> {
            let period = Duration::from_millis(period_ms);
            let ours = [Quota::new(count, period).burst(burst).compile().unwrap()];
            let interval = Duration::from_nanos(ours[0].interval);
            let quota = governor::Quota::with_period(interval)
                .unwrap()
                .allow_burst(NonZeroU32::new(burst).unwrap());
            let clock = FakeRelativeClock::default();
            let theirs = governor::RateLimiter::direct_with_clock(quota, clock.clone());
            let mut tats = [0; MAX_QUOTAS];
            let mut now = 0u64;
            for (i, &(advance_us, cost)) in steps.iter().enumerate() {
                now += advance_us * 1_000;
                clock.advance(Duration::from_micros(advance_us));
                let mine = check(&ours, &mut tats, now, cost, 0, false).verdict == Verdict::Allowed;
                let expected = matches!(theirs.check_n(NonZeroU32::new(cost).unwrap()), Ok(Ok(())));
                prop_assert_eq!(
                    mine,
                    expected,
                    "step {} (+{}us, cost {})",
                    i,
                    advance_us,
                    cost
                );
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn single_quota_decisions_match_governor(
                count in 1u32..50,
                period_ms in 1u64..5_000,
                burst in 1u32..20,
                steps in prop::collection::vec((0u64..400_000, 1u32..25), 1..200),
            ) {
                run(count, period_ms, burst, &steps)?;
            }
        }
    }
}
