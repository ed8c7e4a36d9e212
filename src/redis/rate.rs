//! A rate limiter's state in Redis: one Lua script per decision.
//!
//! Each key's quotas are one Redis string of theoretical arrival times
//! (microseconds on Redis's own clock, so instances with skewed clocks
//! agree). The script reads them, checks every quota, and writes them back
//! only if all pass, with an expiry at the moment the key is whole again:
//! Redis holds only keys that carry state. Keys look like
//! `armor:rate_limit:{<key>}`, the key in a hash tag, so everything about one
//! client lands in one Cluster slot.
//!
//! A key refused until T is refused here until T without asking Redis: no
//! instance can let it in earlier (its arrival times only move forward), so
//! a flood from one client costs Redis nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{Counter, Histogram, SharedString};
use tokio::time::Instant;

use tokio::sync::oneshot;

use super::batch::{self, Batches, Waiting};
use super::connection::RedisConnection;
use super::guard::{Failed, Guard, Results, result};
use super::key::StoreKey;
use crate::config::{ConfigError, instance_name};
use crate::key::KeyLimits;
use crate::observe::PerRecorder;
use crate::rate_limit::{
    Check, Decision, MakeStore, MemoryStore, Overflow, Placement, Quota, QuotaState, RateStore,
    Verdict,
};
use crate::sync::lock;

/// The GCRA over every quota of each key, atomically, on Redis's clock.
///
/// `KEYS`: each key's state. `ARGV`: the quota count, each quota's interval
/// and tolerance (µs), then each key's cost and longest wait (µs). Replies,
/// per key: admitted (1/0), wait (ns), the refusing quota (0-based, -1 for
/// none), then how far each quota's arrival time runs ahead of now (ns),
/// after the decision.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = (clock[1] - 1700000000) * 1000000 + clock[2]
local count = tonumber(ARGV[1])
local ceil, format, gmatch = math.ceil, string.format, string.gmatch
local reply, n = {}, 0
-- Reused for every key: the arrival times read, and those to write.
local tats, next = {}, {}
local layout = string.rep('%.3f ', count)
for k = 1, #KEYS do
  local cost = tonumber(ARGV[2 * count + 2 * k])
  local max_wait = tonumber(ARGV[2 * count + 2 * k + 1])
  local stored = redis.call('GET', KEYS[k])
  if count == 1 then
    -- One quota, the common case: no tables.
    local tat = stored and tonumber(stored) or now
    if tat < now then tat = now end
    local due = tat + ARGV[2] * cost
    local over = due - now - ARGV[3]
    -- Numbers reply as integers, truncated: nanoseconds, never negative.
    if over > max_wait then
      reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = 0, over * 1000, 0, (tat - now) * 1000
    else
      -- Redis writes a number argument exactly (shortest round trip).
      local ttl = ceil((due - now) / 1000)
      redis.call('PSETEX', KEYS[k], ttl > 0 and ttl or 1, due)
      if over < 0 then over = 0 end
      reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = 1, over * 1000, -1, (due - now) * 1000
    end
    n = n + 4
  else
    -- Several quotas: one string of arrival times, read and written at once.
    if stored then
      local i = 0
      for value in gmatch(stored, '%S+') do i = i + 1; tats[i] = tonumber(value) end
      for j = i + 1, count do tats[j] = now end
    else
      for i = 1, count do tats[i] = now end
    end
    local wait, refusing, longest = 0, -1, 0
    for i = 1, count do
      local tat = tats[i]
      if tat < now then tat = now; tats[i] = now end
      local due = tat + ARGV[2 * i] * cost
      next[i] = due
      local over = due - now - ARGV[2 * i + 1]
      if over > wait then wait, refusing = over, i - 1 end
      if due - now > longest then longest = due - now end
    end
    local admitted = refusing < 0 or wait <= max_wait
    local result = tats
    if admitted then
      result = next
      local ttl = ceil(longest / 1000)
      redis.call('PSETEX', KEYS[k], ttl > 0 and ttl or 1, format(layout, unpack(next, 1, count)))
    end
    reply[n + 1], reply[n + 2], reply[n + 3] = admitted and 1 or 0, wait * 1000, refusing
    for i = 1, count do reply[n + 3 + i] = (result[i] - now) * 1000 end
    n = n + 3 + count
  end
end
return reply
";

/// What a store does when Redis cannot decide (down, slow, or its breaker
/// open).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fallback {
    /// Let the request through (default), counted as
    /// `armor.rate_limit.store{result}` and logged at most every 10 s: an
    /// outage of the limiter's store does not become an outage of the
    /// service.
    Allow,
    /// Refuse it with 503 / `UNAVAILABLE`.
    Refuse,
    /// Limit it in this process with this share (0 to 1] of each quota's
    /// count and burst (at least 1): with ten instances, `0.1` keeps the
    /// whole fleet near the configured rate.
    Local(f64),
}

/// A [`RateStore`] in Redis, shared by every instance that uses the same
/// Redis and prefix. Made by its builder, passed to
/// [`RateLimitBuilder::store_with`](crate::rate_limit::RateLimitBuilder::store_with):
///
/// ```no_run
/// # async fn run() -> Result<(), tower_armor::ConfigError> {
/// use tower_armor::key::PeerIp;
/// use tower_armor::rate_limit::{Quota, RateLimitLayer};
/// use tower_armor::redis::{Fallback, RedisConnection, RedisRateStore};
///
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let layer = RateLimitLayer::builder(Quota::per_second(100))
///     .key(PeerIp)
///     .store_with(RedisRateStore::builder(redis).fallback(Fallback::Local(0.1)))
///     .build()?;
/// # drop(layer);
/// # Ok(())
/// # }
/// ```
pub struct RedisRateStore<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    connection: RedisConnection,
    script: redis::Script,
    prefix: Box<[u8]>,
    /// Each quota's interval and tolerance in nanoseconds, and the same as
    /// the script's decimal microseconds.
    limits: Box<[(u64, u64)]>,
    arguments: Box<[String]>,
    guard: Guard,
    /// Decisions waiting to share a call (one server); `None` on a
    /// Cluster, where keys of one call must share a slot.
    batches: Option<Arc<Batches>>,
    refusals: Refusals<K>,
    fallback: FallbackStore<K>,
    name: SharedString,
    metrics: PerRecorder<Handles>,
}

enum FallbackStore<K> {
    Allow,
    Refuse,
    Local(MemoryStore<K>),
}

const STORE_METRIC: &str = "armor.rate_limit.store";

/// `armor.rate_limit.store{name,result}` and the round-trip histogram.
struct Handles {
    results: Results,
    cached: Counter,
    duration: Histogram,
}

impl<K> std::fmt::Debug for RedisRateStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateStore")
            .field("name", &&*self.shared.name)
            .field("prefix", &String::from_utf8_lossy(&self.shared.prefix))
            .finish_non_exhaustive()
    }
}

impl<K> Clone for RedisRateStore<K> {
    fn clone(&self) -> Self {
        RedisRateStore {
            shared: self.shared.clone(),
        }
    }
}

/// Settings of a [`RedisRateStore`]; the layer's `build()` makes the store.
#[derive(Debug, Clone)]
#[must_use = "pass it to RateLimitBuilder::store_with"]
pub struct RedisRateStoreBuilder {
    connection: RedisConnection,
    prefix: String,
    name: Cow<'static, str>,
    timeout: Duration,
    fallback: Fallback,
}

impl RedisRateStore<()> {
    /// Settings for a store on `connection`: prefix `armor:rate_limit`,
    /// name `redis`, 50 ms per call, [`Fallback::Allow`].
    pub fn builder(connection: RedisConnection) -> RedisRateStoreBuilder {
        RedisRateStoreBuilder {
            connection,
            prefix: "armor:rate_limit".to_owned(),
            name: Cow::Borrowed("redis"),
            timeout: Duration::from_millis(50),
            fallback: Fallback::Allow,
        }
    }
}

impl RedisRateStoreBuilder {
    /// What Redis keys start with (default `armor:rate_limit`). Limiters
    /// with different quotas need different prefixes; instances enforcing
    /// one limit together share one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The name in the store's metrics and in its breaker's
    /// (`armor.circuit_breaker.*{name}`); default `redis`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a decision may wait for Redis (default 50 ms) before the
    /// fallback decides.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What decides while Redis cannot (default [`Fallback::Allow`]).
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }
}

/// Decimal microseconds for the script, exactly: `1234567` ns → `1234.567`.
fn micros(nanos: u64) -> String {
    format!("{}.{:03}", nanos / 1000, nanos % 1000)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl<K> MakeStore<K> for RedisRateStoreBuilder
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    type Store = RedisRateStore<K>;

    fn make_store(
        self,
        quotas: &[Quota],
        keys: KeyLimits,
        overflow: Overflow,
    ) -> Result<RedisRateStore<K>, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "redis",
                "the Redis call timeout must be above zero",
            ));
        }
        let fallback = match self.fallback {
            Fallback::Allow => FallbackStore::Allow,
            Fallback::Refuse => FallbackStore::Refuse,
            Fallback::Local(share) if share > 0.0 && share <= 1.0 => {
                let scale = |count: u32| ((f64::from(count) * share).round() as u32).max(1);
                let shares = quotas
                    .iter()
                    .map(|quota| {
                        let mut local = quota.clone();
                        local.count = scale(quota.count);
                        local.burst = quota.burst.map(scale);
                        local
                    })
                    .collect::<Vec<_>>();
                FallbackStore::Local(MemoryStore::new(&shares, keys, overflow)?)
            }
            Fallback::Local(share) => {
                return Err(ConfigError::new(
                    "redis",
                    format!("a local fallback's share is above 0 and at most 1, got {share}"),
                ));
            }
        };
        let limits = quotas
            .iter()
            .map(|quota| {
                quota
                    .compile()
                    .map(|limit| (limit.interval, limit.tolerance))
            })
            .collect::<Result<Box<[_]>, _>>()?;
        let arguments = limits
            .iter()
            .flat_map(|&(interval, tolerance)| [micros(interval), micros(tolerance)])
            .collect();
        let name = instance_name(self.name);
        let mut prefix = self.prefix.into_bytes();
        prefix.extend_from_slice(b":{");
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "redis",
                "a Redis store must be built inside a Tokio runtime",
            )
        })?;
        let batches = (!self.connection.is_cluster()).then(|| Arc::new(Batches::default()));
        let store = RedisRateStore {
            shared: Arc::new(Shared {
                batches: batches.clone(),
                connection: self.connection,
                script: redis::Script::new(GCRA),
                prefix: prefix.into(),
                limits,
                arguments,
                guard: Guard::new(name.clone(), self.timeout),
                refusals: Refusals::new(keys.max_keys()),
                fallback,
                name,
                metrics: PerRecorder::default(),
            }),
        };
        if let Some(batches) = batches {
            let shared = Arc::downgrade(&store.shared);
            runtime.spawn(batch::send_batches(batches, move |batch| {
                let shared = shared.upgrade()?;
                Some(async move { shared.send(batch).await })
            }));
        }
        Ok(store)
    }
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        if let Some(batches) = &self.batches {
            batches.close();
        }
    }
}

/// The answer of a [`RedisRateStore`]: at once for a key it knows is
/// refused (or a cost no quota can hold), else when Redis answers.
pub struct RedisDecision(Pending);

enum Pending {
    Ready(Option<Decision>),
    Asking(Pin<Box<dyn Future<Output = Decision> + Send>>),
}

impl Future for RedisDecision {
    type Output = Decision;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        match &mut self.get_mut().0 {
            Pending::Ready(decision) => Poll::Ready(
                decision
                    .take()
                    .expect("RedisDecision polled after completion"),
            ),
            Pending::Asking(future) => future.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for RedisDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Pending::Ready(_) => "RedisDecision::Ready",
            Pending::Asking(_) => "RedisDecision::Asking",
        })
    }
}

fn decided(verdict: Verdict, quotas: Vec<QuotaState>, placement: Placement) -> Decision {
    Decision {
        verdict,
        quotas,
        placement,
    }
}

impl<K> Shared<K>
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    fn metrics<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        self.metrics.with(
            || Handles {
                results: Results::new(STORE_METRIC, &self.name),
                cached: result(STORE_METRIC, &self.name, "cached"),
                duration: metrics::histogram!("armor.rate_limit.store_duration",
                    "name" => self.name.clone()),
            },
            f,
        )
    }

    /// `key`'s name in Redis: the prefix, then the key in a hash tag.
    fn redis_key(&self, key: &K) -> Vec<u8> {
        let mut redis_key = Vec::with_capacity(self.prefix.len() + 24);
        redis_key.extend_from_slice(&self.prefix);
        key.write_key(&mut redis_key);
        redis_key.push(b'}');
        redis_key
    }

    fn states(&self, aheads: &[u64]) -> Vec<QuotaState> {
        self.limits
            .iter()
            .zip(aheads)
            .map(|(&(interval, tolerance), &ahead)| QuotaState {
                remaining: tolerance.saturating_sub(ahead) / interval.max(1),
                reset: Duration::from_nanos(ahead),
            })
            .collect()
    }

    /// Asks Redis (with the decisions queued beside it), and falls back if
    /// it cannot answer.
    async fn ask(self: Arc<Self>, key: K, redis_key: Vec<u8>, check: Check) -> Decision {
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            redis_key,
            cost: check.cost,
            max_wait: check.max_wait,
            answer,
        };
        match &self.batches {
            Some(batches) => match batches.alone() {
                Some(call) => {
                    self.send(vec![waiting]).await;
                    drop(call);
                }
                None => batches.push(waiting),
            },
            None => self.send(vec![waiting]).await,
        }
        let answer = answered.await.unwrap_or_else(|_| {
            Err(Failed::Error(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the store's sending task has ended",
            ))))
        });
        match answer {
            Ok((reply, took)) => match self.read_reply(&key, &reply, check) {
                Some(decision) => {
                    self.metrics(|m| {
                        m.results.ok.increment(1);
                        m.duration.record(took.as_secs_f64());
                    });
                    decision
                }
                None => self.fall_back(&key, check, unexpected_reply()),
            },
            Err(failed) => self.fall_back(&key, check, failed),
        }
    }

    /// Sends `batch` in one script call and hands each decision its part
    /// of the reply (or the failure).
    async fn send(&self, batch: Vec<Waiting>) {
        let width = 3 + self.limits.len();
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(self.limits.len());
        for argument in &self.arguments {
            invocation.arg(argument);
        }
        for waiting in &batch {
            invocation
                .key(&waiting.redis_key)
                .arg(waiting.cost)
                .arg(micros(nanos(waiting.max_wait)));
        }
        let call = self.connection.invoke::<Vec<i64>>(&invocation);
        let answer = match self.guard.call(call).await {
            Ok((reply, _)) if reply.len() != width * batch.len() => Err(unexpected_reply()),
            answer => answer,
        };
        match answer {
            Ok((reply, took)) => {
                for (waiting, values) in batch.into_iter().zip(reply.chunks(width)) {
                    let _ = waiting.answer.send(Ok((values.to_vec(), took)));
                }
            }
            Err(failed) => {
                for waiting in batch {
                    let _ = waiting.answer.send(Err(failed.clone()));
                }
            }
        }
    }

    /// The script's reply as a decision; remembers a refusal.
    fn read_reply(&self, key: &K, reply: &[i64], check: Check) -> Option<Decision> {
        let [admitted, wait, refusing, aheads @ ..] = reply else {
            return None;
        };
        if aheads.len() != self.limits.len() {
            return None;
        }
        let aheads: Vec<u64> = aheads.iter().map(|&ahead| ahead.max(0) as u64).collect();
        let wait = Duration::from_nanos((*wait).max(0) as u64);
        let quotas = if check.want_states {
            self.states(&aheads)
        } else {
            Vec::new()
        };
        let verdict = match (*admitted, usize::try_from(*refusing)) {
            (1, _) if wait.is_zero() => Verdict::Allowed,
            (1, _) => Verdict::Delayed(wait),
            (_, Ok(quota)) => {
                self.refusals.remember(key, &self.limits, &aheads);
                Verdict::Refused(Some((wait, quota)))
            }
            (_, Err(_)) => return None,
        };
        Some(decided(verdict, quotas, Placement::Own))
    }

    /// Decides without Redis, as the fallback says.
    fn fall_back(&self, key: &K, check: Check, failed: Failed) -> Decision {
        self.metrics(|m| m.results.failed(&failed));
        self.guard.warn(
            &self.name,
            &failed,
            "rate limit's Redis store cannot decide; its fallback does",
        );
        match &self.fallback {
            FallbackStore::Allow => decided(Verdict::Allowed, Vec::new(), Placement::Own),
            FallbackStore::Refuse => {
                decided(Verdict::Refused(None), Vec::new(), Placement::Unavailable)
            }
            FallbackStore::Local(store) => store.check(key, check).into_inner(),
        }
    }
}

impl<K> RateStore<K> for RedisRateStore<K>
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    type Future = RedisDecision;

    fn check(&self, key: &K, check: Check) -> RedisDecision {
        let shared = &self.shared;
        // A cost no quota can hold is refused here, as in memory.
        let cost = u64::from(check.cost);
        if shared
            .limits
            .iter()
            .any(|&(interval, tolerance)| interval.saturating_mul(cost) > tolerance)
        {
            return RedisDecision(Pending::Ready(Some(decided(
                Verdict::Refused(None),
                Vec::new(),
                Placement::Own,
            ))));
        }
        if let Some((wait, quota, aheads)) = shared.refusals.refused(key, Instant::now()) {
            if wait > check.max_wait {
                shared.metrics(|m| m.cached.increment(1));
                let quotas = if check.want_states {
                    shared.states(&aheads)
                } else {
                    Vec::new()
                };
                return RedisDecision(Pending::Ready(Some(decided(
                    Verdict::Refused(Some((wait, quota))),
                    quotas,
                    Placement::Own,
                ))));
            }
        }
        RedisDecision(Pending::Asking(Box::pin(shared.clone().ask(
            key.clone(),
            shared.redis_key(key),
            check,
        ))))
    }

    fn evict_idle(&self) -> usize {
        self.shared.refusals.forget_expired(Instant::now())
    }

    /// Forgets what this instance knows of `key` and deletes its state in
    /// Redis in the background (other instances may still refuse it until
    /// their own refusals expire).
    fn reset(&self, key: &K) -> bool {
        let shared = &self.shared;
        shared.refusals.forget(key);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let mut delete = redis::cmd("DEL");
        delete.arg(shared.redis_key(key));
        let shared = shared.clone();
        runtime.spawn(async move {
            let _ = shared
                .guard
                .call(shared.connection.query::<()>(&delete))
                .await;
        });
        true
    }
}

fn unexpected_reply() -> Failed {
    Failed::Error(redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from the rate-limit script",
    )))
}

/// Keys known to be refused, and until when.
struct Refusals<K> {
    keys: Mutex<HashMap<K, Refusal>>,
    max_keys: usize,
}

#[derive(Clone, Copy)]
struct Refusal {
    /// When the refusal was learnt.
    at: Instant,
    /// Until when every request of the key is refused.
    until: Instant,
    quota: usize,
    /// Each quota's arrival time ahead of `at` (ns), frozen while refused.
    aheads: [u64; crate::rate_limit::MAX_QUOTAS],
}

impl<K: Hash + Eq + Clone> Refusals<K> {
    fn new(max_keys: usize) -> Self {
        Refusals {
            keys: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// Remembers a refusal: until a request of one unit would pass.
    fn remember(&self, key: &K, limits: &[(u64, u64)], aheads: &[u64]) {
        let mut blocked = 0;
        let mut quota = 0;
        let mut frozen = [0; crate::rate_limit::MAX_QUOTAS];
        for (i, (&(interval, tolerance), &ahead)) in limits.iter().zip(aheads).enumerate() {
            let over = ahead.saturating_add(interval).saturating_sub(tolerance);
            if over > blocked {
                blocked = over;
                quota = i;
            }
            frozen[i] = ahead;
        }
        if blocked == 0 {
            return;
        }
        let at = Instant::now();
        let refusal = Refusal {
            at,
            until: at + Duration::from_nanos(blocked),
            quota,
            aheads: frozen,
        };
        let mut keys = lock(&self.keys);
        if keys.len() >= self.max_keys && !keys.contains_key(key) {
            keys.retain(|_, refusal| refusal.until > at);
            if keys.len() >= self.max_keys {
                return;
            }
        }
        keys.insert(key.clone(), refusal);
    }

    /// How long `key` stays refused, by which quota, and where its quotas
    /// stand, if it is refused at `now`.
    fn refused(&self, key: &K, now: Instant) -> Option<(Duration, usize, Vec<u64>)> {
        let keys = lock(&self.keys);
        let refusal = keys.get(key).filter(|refusal| refusal.until > now)?;
        let elapsed = nanos(now.duration_since(refusal.at));
        Some((
            refusal.until - now,
            refusal.quota,
            refusal
                .aheads
                .iter()
                .map(|ahead| ahead.saturating_sub(elapsed))
                .collect(),
        ))
    }

    fn forget(&self, key: &K) {
        lock(&self.keys).remove(key);
    }

    fn forget_expired(&self, now: Instant) -> usize {
        let mut keys = lock(&self.keys);
        let before = keys.len();
        keys.retain(|_, refusal| refusal.until > now);
        before - keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_become_exact_decimal_microseconds() {
        assert_eq!(micros(1_234_567), "1234.567");
        assert_eq!(micros(5), "0.005");
        assert_eq!(micros(0), "0.000");
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    const SECOND: u64 = 1_000_000_000;

    #[tokio::test(start_paused = true)]
    async fn a_refusal_lasts_until_one_unit_could_pass() {
        let refusals = Refusals::new(100);
        // One per 10 s, burst 1: a key 10 s ahead passes again in 10 s.
        let limits = [(10 * SECOND, 10 * SECOND)];
        refusals.remember(&"k", &limits, &[10 * SECOND]);
        let start = Instant::now();
        let (wait, quota, aheads) = refusals.refused(&"k", start).unwrap();
        assert_eq!(
            (wait, quota, aheads),
            (Duration::from_secs(10), 0, vec![10 * SECOND, 0, 0, 0])
        );
        let later = start + Duration::from_secs(4);
        let (wait, _, aheads) = refusals.refused(&"k", later).unwrap();
        assert_eq!((wait, aheads[0]), (Duration::from_secs(6), 6 * SECOND));
        // At the moment it could pass, it is asked about again.
        assert!(
            refusals
                .refused(&"k", start + Duration::from_secs(10))
                .is_none()
        );
        assert!(refusals.refused(&"other", start).is_none());
        // A key that could pass at once is not remembered.
        refusals.remember(&"whole", &limits, &[0]);
        assert!(refusals.refused(&"whole", start).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_blocked_quota_is_the_one_that_refuses() {
        let refusals = Refusals::new(100);
        let limits = [(SECOND, SECOND), (60 * SECOND, 60 * SECOND)];
        refusals.remember(&"k", &limits, &[SECOND, 90 * SECOND]);
        let (wait, quota, _) = refusals.refused(&"k", Instant::now()).unwrap();
        assert_eq!((wait, quota), (Duration::from_secs(90), 1));
        // Equally blocked: the first one is named.
        refusals.remember(&"tie", &limits, &[5 * SECOND, 5 * SECOND]);
        let (wait, quota, _) = refusals.refused(&"tie", Instant::now()).unwrap();
        assert_eq!((wait, quota), (Duration::from_secs(5), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_capped_and_forgotten_when_over() {
        let refusals = Refusals::new(2);
        let limits = [(SECOND, SECOND)];
        let start = Instant::now();
        refusals.remember(&"a", &limits, &[10 * SECOND]);
        refusals.remember(&"b", &limits, &[20 * SECOND]);
        // Full, nothing over yet: a third key is not remembered...
        refusals.remember(&"c", &limits, &[30 * SECOND]);
        assert!(refusals.refused(&"c", start).is_none());
        // ...but a known one is updated.
        refusals.remember(&"a", &limits, &[15 * SECOND]);
        assert_eq!(
            refusals.refused(&"a", start).unwrap().0,
            Duration::from_secs(15)
        );
        // Room again once one is over: "a" is, at exactly 15 s.
        tokio::time::advance(Duration::from_secs(15)).await;
        refusals.remember(&"c", &limits, &[30 * SECOND]);
        assert!(refusals.refused(&"c", Instant::now()).is_some());
        assert!(refusals.refused(&"b", Instant::now()).is_some());
        refusals.forget(&"c");
        assert!(refusals.refused(&"c", Instant::now()).is_none());
        assert_eq!(refusals.forget_expired(Instant::now()), 0);
        // "b" is over at exactly 20 s.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(refusals.forget_expired(Instant::now()), 1, "b is over");
        assert_eq!(refusals.forget_expired(Instant::now()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn evicting_idle_keys_forgets_refusals_that_are_over() {
        let connection = RedisConnection::open("redis://127.0.0.1:1/").unwrap();
        let store: RedisRateStore<String> = RedisRateStore::builder(connection)
            .make_store(
                &[Quota::per_second(1)],
                KeyLimits::default(),
                Overflow::SharedBucket,
            )
            .unwrap();
        let limits = [(SECOND, SECOND)];
        store
            .shared
            .refusals
            .remember(&"a".to_owned(), &limits, &[2 * SECOND]);
        store
            .shared
            .refusals
            .remember(&"b".to_owned(), &limits, &[5 * SECOND]);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(store.evict_idle(), 1);
        assert_eq!(store.evict_idle(), 0);
    }

    #[tokio::test]
    async fn a_store_and_its_answers_say_what_they_are() {
        let connection = RedisConnection::open("redis://127.0.0.1:1/").unwrap();
        let store: RedisRateStore<String> = RedisRateStore::builder(connection)
            .name("api")
            .prefix("limits")
            .make_store(
                &[Quota::per_second(5)],
                KeyLimits::default(),
                Overflow::SharedBucket,
            )
            .unwrap();
        let shown = format!("{store:?}");
        assert!(
            shown.contains("RedisRateStore") && shown.contains("\"api\""),
            "{shown}"
        );
        assert!(shown.contains("limits:{"), "{shown}");
        let key = "k".to_owned();
        let impossible = Check {
            cost: 6,
            max_wait: Duration::ZERO,
            want_states: false,
        };
        assert_eq!(
            format!("{:?}", store.check(&key, impossible)),
            "RedisDecision::Ready"
        );
        let asking = store.check(
            &key,
            Check {
                cost: 1,
                ..impossible
            },
        );
        assert_eq!(format!("{asking:?}"), "RedisDecision::Asking");
    }
}
