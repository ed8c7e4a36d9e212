//! The cache's entries in Redis, optionally behind an in-memory tier.
//!
//! Each URL is one Redis hash, `armor:cache:e:{<key>}`, with one field per
//! variant (its `Vary` values) holding the encoded entry, and an expiry at
//! the end of the longest usable life among them. Each tag is a set of the
//! URLs whose entries carry it, `armor:cache:t:{<tag>}`, for purge by tag.
//! An entry that does not decode (corrupt, or written by another format
//! version) is a miss.
//!
//! In two-tier mode an in-memory [`MemoryStore`] answers first, and every
//! removal and purge is also published on `armor:cache:purge`; each
//! instance applies what it hears to its own memory tier, and forgets that
//! tier whole whenever its subscription was lost (it may have missed a
//! purge).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use metrics::{Counter, SharedString};
use redis::{Cmd, FromRedisValue, ScriptInvocation};

use super::connection::RedisConnection;
use super::guard::{Guard, Results, result};
use crate::cache::{CacheStore, Entry, Lead, MemoryStore, Purge, StoreCall, StoreEvents, Variants};
use crate::config::{ConfigError, instance_name};
use crate::observe::PerRecorder;

/// Stores one variant and lengthens the URL's expiry (never shortens it),
/// keeping at most `ARGV[4]` variants. `KEYS[1]`: the URL's hash.
/// `ARGV`: variant id, entry, time to live (ms), most variants.
const STORE_VARIANT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  redis.call('HDEL', KEYS[1], redis.call('HRANDFIELD', KEYS[1]))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
";

/// Adds a URL to a tag's set and lengthens the set's expiry.
/// `KEYS[1]`: the tag's set. `ARGV`: the URL's key, time to live (ms).
const TAG_URL: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// Releases a URL's fetch lock if this instance still holds it.
/// `KEYS[1]`: the lock. `ARGV[1]`: this instance's token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A [`CacheStore`] in Redis, shared by every instance using the same Redis
/// and prefix; with [`local`](RedisCacheStoreBuilder::local), a memory
/// tier in front.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_armor::ConfigError> {
/// use tower_armor::cache::{CacheLayer, MemoryStore};
/// use tower_armor::redis::{RedisCacheStore, RedisConnection};
///
/// let redis = RedisConnection::open("redis://127.0.0.1:6379/")?;
/// let store = RedisCacheStore::builder(redis)
///     .local(MemoryStore::builder().max_bytes(64 << 20).build())
///     .build()?;
/// let cache = CacheLayer::builder().store(store).build()?;
/// # drop(cache);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisCacheStore {
    shared: Arc<Shared>,
}

struct Shared {
    connection: RedisConnection,
    store_variant: redis::Script,
    tag_url: redis::Script,
    release: redis::Script,
    prefix: String,
    /// How long a fetch lock lasts, when instances coalesce their misses.
    lock: Option<Duration>,
    /// This instance's mark on the locks it takes.
    token: String,
    local: Option<MemoryStore>,
    max_entry_bytes: usize,
    max_variants: usize,
    keep: Duration,
    guard: Guard,
    purge_timeout: Duration,
    name: SharedString,
    metrics: PerRecorder<Handles>,
    /// Dropped with the store: ends its subscription task.
    _subscribed: Option<tokio::sync::oneshot::Sender<()>>,
}

const STORE_METRIC: &str = "armor.cache.store";

/// `armor.cache.store{name,result}`.
struct Handles {
    results: Results,
    corrupt: Counter,
}

impl std::fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("prefix", &self.shared.prefix)
            .field("two_tier", &self.shared.local.is_some())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`RedisCacheStore`].
#[derive(Debug, Clone)]
#[must_use = "call .build() to get the store"]
pub struct RedisCacheStoreBuilder {
    connection: RedisConnection,
    prefix: String,
    name: Cow<'static, str>,
    local: Option<MemoryStore>,
    max_entry_bytes: usize,
    max_variants: usize,
    keep: Duration,
    timeout: Duration,
    lock: Option<Duration>,
}

impl RedisCacheStore {
    /// Settings for a store on `connection`: prefix `armor:cache`, name
    /// `redis-cache`, Redis only, entries up to 1 MiB in Redis, 16 variants
    /// per URL, entries with a validator kept an hour past their usable
    /// life, 50 ms per lookup.
    pub fn builder(connection: RedisConnection) -> RedisCacheStoreBuilder {
        RedisCacheStoreBuilder {
            connection,
            prefix: "armor:cache".to_owned(),
            name: Cow::Borrowed("redis-cache"),
            local: None,
            max_entry_bytes: 1 << 20,
            max_variants: 16,
            keep: Duration::from_secs(3600),
            timeout: Duration::from_millis(50),
            lock: None,
        }
    }
}

impl RedisCacheStoreBuilder {
    /// What Redis keys and the purge channel start with (default
    /// `armor:cache`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The name in the store's metrics and its breaker's (default
    /// `redis-cache`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Two tiers: `memory` answers first and keeps what Redis returns;
    /// purges reach every instance's memory tier over Redis pub/sub.
    pub fn local(mut self, memory: MemoryStore) -> Self {
        self.local = Some(memory);
        self
    }

    /// Entries with a larger body stay in the memory tier only, or are not
    /// stored without one (default 1 MiB).
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// The most variants kept per URL (default 16); past it, a random one
    /// makes room.
    pub fn max_variants(mut self, variants: usize) -> Self {
        self.max_variants = variants;
        self
    }

    /// How long past its usable life an entry with a validator stays, for
    /// a 304 to refresh it (default an hour).
    pub fn keep(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// How long a lookup may wait for Redis (default 50 ms) before it
    /// counts as a miss. Purges wait up to 100 times as long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Coalesces misses across instances: the instance that misses a URL
    /// first takes a lock on it (`SET NX PX`, lasting at most `lock`) while
    /// it fetches, and the others poll for its entry instead of going
    /// upstream too, up to the cache's lock timeout. Off by default.
    pub fn coalesce(mut self, lock: Duration) -> Self {
        self.lock = Some(lock);
        self
    }

    /// The store; in two-tier mode this subscribes to purges (in the
    /// background, inside the current Tokio runtime).
    pub fn build(self) -> Result<RedisCacheStore, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "redis",
                "the Redis call timeout must be above zero",
            ));
        }
        if self
            .lock
            .is_some_and(|lock| lock < Duration::from_millis(1))
        {
            return Err(ConfigError::new(
                "redis",
                "a fetch lock lasts at least a millisecond",
            ));
        }
        if self.max_variants == 0 {
            return Err(ConfigError::new(
                "redis",
                "a URL needs room for at least one variant",
            ));
        }
        let name = instance_name(self.name);
        let channel = format!("{}:purge", self.prefix);
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let two_tier = self.local.is_some();
        let shared = Arc::new(Shared {
            store_variant: redis::Script::new(STORE_VARIANT),
            tag_url: redis::Script::new(TAG_URL),
            release: redis::Script::new(RELEASE),
            prefix: self.prefix,
            lock: self.lock,
            token: format!("{:016x}", crate::random::Jitter::new().next_u64()),
            local: self.local,
            max_entry_bytes: self.max_entry_bytes,
            max_variants: self.max_variants,
            keep: self.keep,
            guard: Guard::new(name.clone(), self.timeout),
            purge_timeout: self.timeout.saturating_mul(100),
            name,
            metrics: PerRecorder::default(),
            _subscribed: two_tier.then_some(closed_tx),
            connection: self.connection,
        });
        if two_tier {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::new(
                    "redis",
                    "a two-tier store must be built inside a Tokio runtime",
                )
            })?;
            let client = shared.connection.subscriber().clone();
            runtime.spawn(listen(Arc::downgrade(&shared), client, channel, closed_rx));
        }
        Ok(RedisCacheStore { shared })
    }
}

impl Shared {
    fn metrics<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        self.metrics.with(
            || Handles {
                results: Results::new(STORE_METRIC, &self.name),
                corrupt: result(STORE_METRIC, &self.name, "corrupt"),
            },
            f,
        )
    }

    fn entries_key(&self, url: &str) -> Vec<u8> {
        format!("{}:e:{{{url}}}", self.prefix).into_bytes()
    }

    fn lock_key(&self, url: &str) -> Vec<u8> {
        format!("{}:l:{{{url}}}", self.prefix).into_bytes()
    }

    /// Takes the fetch lock of `url` for `lock`; a failed call lets this
    /// instance go ahead.
    async fn lead(&self, url: &str, lock: Duration) -> Lead {
        let mut take = redis::cmd("SET");
        take.arg(self.lock_key(url))
            .arg(&self.token)
            .arg("NX")
            .arg("PX")
            .arg(lock.as_millis().max(1) as u64);
        let taken: Option<Option<String>> = self.query(None, &take).await;
        match taken {
            Some(None) => Lead::Busy,
            Some(Some(_)) | None => Lead::Go,
        }
    }

    async fn landed(&self, url: &str) {
        let mut release = self.release.key(self.lock_key(url));
        release.arg(&self.token);
        self.invoke::<()>(Some(self.purge_timeout), &release).await;
    }

    fn tag_key(&self, tag: &str) -> Vec<u8> {
        format!("{}:t:{{{tag}}}", self.prefix).into_bytes()
    }

    /// Runs a Redis call through the guard, counting how it went.
    async fn call<T>(
        &self,
        timeout: Option<Duration>,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let answer = match timeout {
            None => self.guard.call(call).await,
            Some(timeout) => self.guard.call_within(timeout, call).await,
        };
        match answer {
            Ok((value, _)) => {
                self.metrics(|m| m.results.ok.increment(1));
                Some(value)
            }
            Err(failed) => {
                self.metrics(|m| m.results.failed(&failed));
                self.guard.warn(
                    &self.name,
                    &failed,
                    "cache's Redis store failed a call; treated as a miss or skipped",
                );
                None
            }
        }
    }

    /// Runs one command through the guard, counting how it went.
    async fn query<T: FromRedisValue>(
        &self,
        timeout: Option<Duration>,
        command: &Cmd,
    ) -> Option<T> {
        self.call(timeout, self.connection.query(command)).await
    }

    /// Runs a script through the guard, counting how it went.
    async fn invoke<T: FromRedisValue>(
        &self,
        timeout: Option<Duration>,
        invocation: &ScriptInvocation<'_>,
    ) -> Option<T> {
        self.call(timeout, self.connection.invoke(invocation)).await
    }

    /// Every variant stored in Redis under `url`, decoded, with their ids.
    async fn read(&self, url: &str, timeout: Option<Duration>) -> Option<Vec<(Bytes, Entry)>> {
        let mut read = redis::cmd("HGETALL");
        read.arg(self.entries_key(url));
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self.query(timeout, &read).await?;
        let mut entries = Vec::with_capacity(fields.len());
        for (id, encoded) in fields {
            match Entry::decode(&Bytes::from(encoded)) {
                Some(entry) => entries.push((Bytes::from(id), entry)),
                None => self.metrics(|m| m.corrupt.increment(1)),
            }
        }
        Some(entries)
    }

    async fn get(&self, url: Arc<str>) -> Option<Variants> {
        let entries = self.read(&url, None).await?;
        if entries.is_empty() {
            return None;
        }
        let variants: Vec<Arc<Entry>> = entries
            .into_iter()
            .map(|(_, entry)| Arc::new(entry))
            .collect();
        if let Some(local) = &self.local {
            for entry in &variants {
                let _ = local.put(url.clone(), entry.clone()).now();
            }
        }
        Some(Variants::from(variants))
    }

    async fn put(&self, url: Arc<str>, entry: Arc<Entry>) {
        let keep = if entry.has_validator() {
            self.keep
        } else {
            Duration::ZERO
        };
        let until = entry.usable_until() + keep;
        let Ok(life) = until.duration_since(SystemTime::now()) else {
            return;
        };
        let ttl = life.as_millis().max(1) as u64;
        // Tags first: once the entry can be read, a purge by any of its
        // tags finds it. (An entry stored while a purge runs may outlive
        // that purge, as a write that came after it; never a later one.)
        for tag in entry.tags() {
            let mut tag_url = self.tag_url.key(self.tag_key(tag));
            tag_url.arg(&*url).arg(ttl);
            if self.invoke::<()>(None, &tag_url).await.is_none() {
                return;
            }
        }
        let mut store = self.store_variant.key(self.entries_key(&url));
        store
            .arg(entry.variant_id())
            .arg(entry.encode().as_ref())
            .arg(ttl)
            .arg(self.max_variants);
        self.invoke::<()>(None, &store).await;
    }

    /// Applies `selector` to the URL `url` in Redis; returns how many
    /// entries it affected.
    async fn purge_url(&self, url: &str, selector: &Purge, soft: bool) -> usize {
        let timeout = Some(self.purge_timeout);
        let Some(entries) = self.read(url, timeout).await else {
            return 0;
        };
        let key = self.entries_key(url);
        let selected: Vec<(Bytes, Entry)> = entries
            .into_iter()
            .filter(|(_, entry)| selector.selects(url, entry))
            .collect();
        if selected.is_empty() {
            return 0;
        }
        let command = if soft {
            let mut command = redis::cmd("HSET");
            command.arg(&key);
            for (id, entry) in &selected {
                command
                    .arg(id.as_ref())
                    .arg(entry.marked_stale().encode().as_ref());
            }
            command
        } else {
            let mut command = redis::cmd("HDEL");
            command.arg(&key);
            for (id, _) in &selected {
                command.arg(id.as_ref());
            }
            command
        };
        let done: Option<()> = self.query(timeout, &command).await;
        done.map_or(0, |()| selected.len())
    }

    async fn purge(&self, selector: Purge, soft: bool) -> usize {
        let timeout = Some(self.purge_timeout);
        let urls: Vec<String> = match &selector {
            Purge::Key(url) => vec![url.clone()],
            Purge::Tag(tag) => {
                let mut members = redis::cmd("SMEMBERS");
                members.arg(self.tag_key(tag));
                self.query(timeout, &members).await.unwrap_or_default()
            }
            Purge::Prefix(prefix) => {
                let pattern = format!("{}:e:{{{}*", self.prefix, glob_escape(prefix));
                let found = self
                    .call(timeout, self.connection.scan(pattern))
                    .await
                    .unwrap_or_default();
                let start = format!("{}:e:{{", self.prefix).len();
                found
                    .into_iter()
                    .filter_map(|key| {
                        let text = String::from_utf8(key).ok()?;
                        Some(text.get(start..text.len().checked_sub(1)?)?.to_owned())
                    })
                    .collect()
            }
        };
        let mut affected = 0;
        for url in &urls {
            affected += self.purge_url(url, &selector, soft).await;
        }
        // A tag's set is left to expire: an entry stored with the tag
        // while this purge ran must stay findable by the next one.
        affected
    }

    async fn remove(&self, url: &str) {
        let mut delete = redis::cmd("DEL");
        delete.arg(self.entries_key(url));
        self.query::<()>(None, &delete).await;
    }

    /// Tells every instance's memory tier (this one's included) to apply
    /// `message`.
    async fn publish(&self, message: Vec<u8>) {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(format!("{}:purge", self.prefix)).arg(message);
        self.query::<()>(Some(self.purge_timeout), &publish).await;
    }

    /// Applies a purge message heard on the channel to the memory tier.
    fn apply(&self, message: &[u8]) {
        let Some(local) = &self.local else { return };
        let Some((selector, soft)) = decode_message(message) else {
            return;
        };
        match (selector, soft) {
            (Purge::Key(url), false) => {
                let _ = local.remove(&url).now();
            }
            (selector, soft) => {
                let _ = local.purge(selector, soft).now();
            }
        }
    }
}

/// A purge as a channel message: kind (`k`, `p`, `t`), hard or soft (`h`,
/// `s`), then the text.
fn encode_message(selector: &Purge, soft: bool) -> Vec<u8> {
    let (kind, text) = match selector {
        Purge::Key(text) => (b'k', text),
        Purge::Prefix(text) => (b'p', text),
        Purge::Tag(text) => (b't', text),
    };
    let mut message = vec![kind, if soft { b's' } else { b'h' }];
    message.extend_from_slice(text.as_bytes());
    message
}

fn decode_message(message: &[u8]) -> Option<(Purge, bool)> {
    let [kind, softness, text @ ..] = message else {
        return None;
    };
    let text = String::from_utf8(text.to_vec()).ok()?;
    let selector = match kind {
        b'k' => Purge::Key(text),
        b'p' => Purge::Prefix(text),
        b't' => Purge::Tag(text),
        _ => return None,
    };
    let soft = match softness {
        b's' => true,
        b'h' => false,
        _ => return None,
    };
    Some((selector, soft))
}

/// `text` with Redis glob characters escaped, for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Keeps the memory tier in step with purges made anywhere: subscribes,
/// applies each message, and on a lost subscription forgets the memory
/// tier and subscribes again. Ends when the store is dropped.
async fn listen(
    shared: Weak<Shared>,
    client: redis::Client,
    channel: String,
    mut closed: tokio::sync::oneshot::Receiver<()>,
) {
    let mut subscribed_before = false;
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await {
            if pubsub.subscribe(&channel).await.is_ok() {
                if subscribed_before {
                    // Purges made while we were away were never heard.
                    match shared.upgrade() {
                        Some(shared) => {
                            if let Some(local) = &shared.local {
                                local.clear();
                            }
                        }
                        None => return,
                    }
                }
                subscribed_before = true;
                let mut messages = pubsub.on_message();
                loop {
                    let next = std::future::poll_fn(|cx| {
                        if Pin::new(&mut closed).poll(cx).is_ready() {
                            return Poll::Ready(Err(()));
                        }
                        futures_core::Stream::poll_next(Pin::new(&mut messages), cx).map(Ok)
                    })
                    .await;
                    match next {
                        Err(()) => return,
                        Ok(None) => break,
                        Ok(Some(message)) => match shared.upgrade() {
                            Some(shared) => shared.apply(message.get_payload_bytes()),
                            None => return,
                        },
                    }
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        // Redis unreachable: try again shortly, unless the store is gone.
        let mut pause = std::pin::pin!(tokio::time::sleep(Duration::from_millis(250)));
        let stop = std::future::poll_fn(|cx| {
            if Pin::new(&mut closed).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            pause.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if stop {
            return;
        }
    }
}

impl CacheStore for RedisCacheStore {
    fn get(&self, key: &str) -> StoreCall<Option<Variants>> {
        if let Some(local) = &self.shared.local {
            if let Ok(Some(found)) = local.get(key).now() {
                return StoreCall::ready(Some(found));
            }
        }
        let shared = self.shared.clone();
        let url: Arc<str> = Arc::from(key);
        StoreCall::later(async move { shared.get(url).await })
    }

    fn put(&self, key: Arc<str>, entry: Arc<Entry>) -> StoreCall<()> {
        if let Some(local) = &self.shared.local {
            let _ = local.put(key.clone(), entry.clone()).now();
        }
        if entry.body_len() > self.shared.max_entry_bytes {
            return StoreCall::ready(());
        }
        let shared = self.shared.clone();
        StoreCall::later(async move { shared.put(key, entry).await })
    }

    fn remove(&self, key: &str) -> StoreCall<()> {
        if let Some(local) = &self.shared.local {
            let _ = local.remove(key).now();
        }
        let shared = self.shared.clone();
        let url = key.to_owned();
        StoreCall::later(async move {
            shared.remove(&url).await;
            if shared.local.is_some() {
                shared
                    .publish(encode_message(&Purge::Key(url), false))
                    .await;
            }
        })
    }

    fn purge(&self, selector: Purge, soft: bool) -> StoreCall<usize> {
        let local_count = match &self.shared.local {
            Some(local) => local.purge(selector.clone(), soft).now().unwrap_or(0),
            None => 0,
        };
        let shared = self.shared.clone();
        StoreCall::later(async move {
            let message = encode_message(&selector, soft);
            let affected = shared.purge(selector, soft).await;
            if shared.local.is_some() {
                shared.publish(message).await;
            }
            affected.max(local_count)
        })
    }

    fn lead(&self, key: &str) -> StoreCall<Lead> {
        let Some(lock) = self.shared.lock else {
            return StoreCall::ready(Lead::Go);
        };
        let shared = self.shared.clone();
        let url = key.to_owned();
        StoreCall::later(async move { shared.lead(&url, lock).await })
    }

    fn landed(&self, key: &str) -> StoreCall<()> {
        if self.shared.lock.is_none() {
            return StoreCall::ready(());
        }
        let shared = self.shared.clone();
        let url = key.to_owned();
        StoreCall::later(async move { shared.landed(&url).await })
    }

    fn attach(&self, events: StoreEvents) {
        if let Some(local) = &self.shared.local {
            local.attach(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_messages_read_back_as_written_and_junk_is_ignored() {
        for selector in [
            Purge::Key("GET https://a.example/x".into()),
            Purge::Prefix("GET https://a.example/".into()),
            Purge::Tag("product-7".into()),
        ] {
            for soft in [false, true] {
                let message = encode_message(&selector, soft);
                assert_eq!(decode_message(&message), Some((selector.clone(), soft)));
            }
        }
        assert_eq!(decode_message(b""), None);
        assert_eq!(decode_message(b"k"), None);
        assert_eq!(decode_message(b"xhtext"), None);
        assert_eq!(decode_message(b"kxtext"), None);
        assert_eq!(decode_message(b"kh\xff"), None);
        assert_eq!(
            decode_message(b"kh"),
            Some((Purge::Key(String::new()), false))
        );
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("/a*b?c[d]e\\f"), "/a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(glob_escape("plain/path"), "plain/path");
    }
}
