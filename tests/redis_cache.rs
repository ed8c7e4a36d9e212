//! The cache's entries in Redis, against real `redis-server`s each test
//! starts for itself: one instance's entry is another's hit, expiry follows
//! the usable life, a corrupt entry is a miss, and purges reach every
//! instance's memory tier.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_armor::cache::{CacheHandle, CacheLayer, CacheStore, MemoryStore, Purge};
use tower_armor::redis::{RedisCacheStore, RedisCacheStoreBuilder, RedisConnection};

#[path = "support/recording.rs"]
#[allow(dead_code)]
mod recording;
#[path = "support/redis.rs"]
mod server;

use recording::{Recording, run_real_time as run};

type Body = Full<Bytes>;

/// An origin answering `body <n>` with `fields`, counting its calls.
#[derive(Clone)]
struct Origin {
    calls: Arc<AtomicUsize>,
    fields: &'static [(&'static str, &'static str)],
}

impl Origin {
    fn new(fields: &'static [(&'static str, &'static str)]) -> Self {
        Origin {
            calls: Arc::default(),
            fields,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// One instance: a cache layer on `store` in front of `origin`.
fn instance(
    store: RedisCacheStore,
    origin: &Origin,
) -> (
    impl Service<
        Request<Body>,
        Response = Response<tower_armor::cache::CacheBody<Body>>,
        Error = Infallible,
    > + Clone,
    CacheHandle,
) {
    let layer = CacheLayer::builder().store(store).build().unwrap();
    let handle = layer.handle();
    let origin = origin.clone();
    let service =
        tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |_request: Request<Body>| {
                let n = origin.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let mut response = Response::builder();
                for (name, value) in origin.fields {
                    response = response.header(*name, *value);
                }
                let response = response.body(Full::from(format!("body {n}"))).unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
    (service, handle)
}

const URL: &str = "http://shop.example/items/7";

/// GETs `url`; returns the status, `Cache-Status` and body.
async fn get<S>(service: &S, url: &str) -> (StatusCode, String, String)
where
    S: Service<
            Request<Body>,
            Response = Response<tower_armor::cache::CacheBody<Body>>,
            Error = Infallible,
        > + Clone,
{
    let request = Request::get(url).body(Body::default()).unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let cache_status = response
        .headers()
        .get("cache-status")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cache_status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// A plain client of the test's own, to look into Redis.
async fn client(server: &server::RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits (bounded) until Redis holds `count` entry hashes: stores write in
/// the background, after the response has gone.
async fn entry_keys(redis: &redis::aio::MultiplexedConnection, count: usize) -> Vec<String> {
    let wait = Duration::from_secs(5);
    server::eventually("the entry was never written", wait, || {
        let mut redis = redis.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("armor:cache:e:*")
                .query_async(&mut redis)
                .await
                .unwrap();
            if keys.len() >= count {
                Ok(keys)
            } else {
                Err(format!("{keys:?}"))
            }
        }
    })
    .await
}

/// Waits (bounded) until both instances' stores listen for purges.
async fn both_subscribed(redis: &redis::aio::MultiplexedConnection) {
    let wait = Duration::from_secs(5);
    server::eventually("two subscribers to the purge channel", wait, || {
        let mut redis = redis.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("armor:cache:purge")
                .query_async(&mut redis)
                .await
                .unwrap();
            if counts[0].1 == 2 {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        }
    })
    .await
}

fn store(server: &server::RedisServer) -> RedisCacheStoreBuilder {
    let connection = RedisConnection::open(&server.url()).unwrap();
    RedisCacheStore::builder(connection).timeout(Duration::from_secs(2))
}

fn store_results(recording: &Recording, result: &str) -> u64 {
    recording::count(
        recording,
        "armor.cache.store",
        &[&format!("result={result}")],
    )
}

#[test]
fn a_response_stored_by_one_instance_is_a_hit_on_the_other() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let (first, _) = instance(store(&server).build().unwrap(), &origin);
        let (second, _) = instance(store(&server).build().unwrap(), &origin);
        let (status, cache_status, body) = get(&first, URL).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        let redis = client(&server).await;
        entry_keys(&redis, 1).await;
        let (status, cache_status, body) = get(&second, URL).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
        assert!(cache_status.contains("hit"), "{cache_status}");
        assert_eq!(origin.calls(), 1);
    });
}

#[test]
fn redis_keeps_an_entry_for_its_usable_life() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let mut redis = client(&server).await;
        // Fresh for 100 s, then 20 s of stale-while-revalidate; no validator.
        let origin = Origin::new(&[("cache-control", "max-age=100, stale-while-revalidate=20")]);
        let (cache, _) = instance(store(&server).build().unwrap(), &origin);
        get(&cache, URL).await;
        let keys = entry_keys(&redis, 1).await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 115_000 && ttl <= 120_000, "PTTL {ttl}");
        // With a validator it stays `keep` longer, for a 304 to refresh it.
        let origin = Origin::new(&[("cache-control", "max-age=100"), ("etag", "\"v1\"")]);
        let (cache, _) = instance(
            store(&server)
                .keep(Duration::from_secs(60))
                .build()
                .unwrap(),
            &origin,
        );
        get(&cache, "http://shop.example/validated").await;
        let keys = entry_keys(&redis, 2).await;
        let validated = keys.iter().find(|key| key.contains("validated")).unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(validated)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 155_000 && ttl <= 160_000, "PTTL {ttl}");
    });
}

#[test]
fn an_entry_that_does_not_decode_is_a_miss() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let (first, _) = instance(store(&server).build().unwrap(), &origin);
        get(&first, URL).await;
        let mut redis = client(&server).await;
        let keys = entry_keys(&redis, 1).await;
        let fields: Vec<Vec<u8>> = redis::cmd("HKEYS")
            .arg(&keys[0])
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(fields.len(), 1);
        // Overwritten by hand with something that is no entry.
        let () = redis::cmd("HSET")
            .arg(&keys[0])
            .arg(&fields[0])
            .arg("not an entry")
            .query_async(&mut redis)
            .await
            .unwrap();
        let (second, _) = instance(store(&server).build().unwrap(), &origin);
        let (status, cache_status, body) = get(&second, URL).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body 2"));
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        assert_eq!(origin.calls(), 2);
    });
    assert_eq!(store_results(&recording, "corrupt"), 1);
}

/// Waits (bounded) until `memory` no longer answers `key`.
async fn forgotten(memory: &MemoryStore, key: &str) {
    let wait = Duration::from_secs(5);
    server::eventually("the memory tier kept the entry", wait, || async move {
        match memory.get(key).await {
            None => Ok(()),
            Some(_) => Err(key.to_owned()),
        }
    })
    .await
}

/// Waits (bounded) until Redis no longer has `key`.
async fn gone(server: &server::RedisServer, key: &str) {
    let wait = Duration::from_secs(5);
    server::eventually("the key is still there", wait, || async move {
        match server.command(&format!("EXISTS {key}")).as_deref() {
            Some(":0") => Ok(()),
            other => Err(format!("{key}: {other:?}")),
        }
    })
    .await
}

#[test]
fn a_purge_by_tag_on_one_instance_empties_the_other_instances_memory_tier() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[
            ("cache-control", "max-age=600"),
            ("surrogate-key", "product-7 shelf"),
        ]);
        let memory = (MemoryStore::new(), MemoryStore::new());
        let (first, first_handle) = instance(
            store(&server).local(memory.0.clone()).build().unwrap(),
            &origin,
        );
        let (second, _) = instance(
            store(&server).local(memory.1.clone()).build().unwrap(),
            &origin,
        );
        get(&first, URL).await;
        let mut redis = client(&server).await;
        entry_keys(&redis, 1).await;
        // The second instance reads it from Redis and keeps it in memory.
        let (_, cache_status, _) = get(&second, URL).await;
        assert!(cache_status.contains("hit"), "{cache_status}");
        let key = first_handle.key_of(&URL.parse().unwrap());
        assert!(memory.1.get(&key).await.is_some());
        // Both subscriptions are live before the purge.
        both_subscribed(&redis).await;
        // Each tag indexes the URLs whose entries carry it.
        for tag in ["product-7", "shelf"] {
            let urls: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("armor:cache:t:{{{tag}}}"))
                .query_async(&mut redis)
                .await
                .unwrap();
            assert_eq!(urls, std::slice::from_ref(&key), "{tag}");
        }
        let purged = first_handle
            .purge(Purge::Tag("product-7".into()), false)
            .await;
        assert_eq!(purged, 1);
        assert!(memory.0.get(&key).await.is_none(), "gone here at once");
        forgotten(&memory.1, &key).await;
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("armor:cache:e:{{{key}}}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!exists, "gone from Redis");
        let (_, cache_status, body) = get(&second, URL).await;
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        assert_eq!(body, "body 2");
    });
}

#[test]
fn a_soft_purge_by_prefix_marks_entries_stale_in_redis() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[("cache-control", "max-age=600, stale-while-revalidate=600")]);
        let (cache, handle) = instance(store(&server).build().unwrap(), &origin);
        for path in ["/items/1", "/items/2", "/other/[1]*"] {
            get(&cache, &format!("http://shop.example{path}")).await;
        }
        let redis = client(&server).await;
        entry_keys(&redis, 3).await;
        let prefix = handle.key_of(&"http://shop.example/items/".parse().unwrap());
        assert_eq!(handle.purge(Purge::Prefix(prefix), true).await, 2);
        // A glob character in the prefix is matched as itself.
        let odd = handle.key_of(&"http://shop.example/other/[1]".parse().unwrap());
        assert_eq!(handle.purge(Purge::Prefix(odd), false).await, 1);
        let store = store(&server).build().unwrap();
        let key = handle.key_of(&"http://shop.example/items/1".parse().unwrap());
        let variants = store.get(&key).await.unwrap();
        assert!(variants[0].is_marked_stale());
        let key = handle.key_of(&"http://shop.example/other/[1]*".parse().unwrap());
        assert!(store.get(&key).await.is_none());
        // Served stale (a negative ttl) while it is fetched again.
        let (_, cache_status, body) = get(&cache, "http://shop.example/items/1").await;
        assert_eq!(body, "body 1");
        assert!(cache_status.contains("hit; ttl=-"), "{cache_status}");
    });
}

#[test]
fn with_redis_down_the_cache_misses_and_serves_every_request() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let url = server.url();
    drop(server);
    let recording = Recording::new();
    run(&recording, || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let connection = RedisConnection::open(&url).unwrap();
        let (cache, handle) = instance(
            RedisCacheStore::builder(connection).build().unwrap(),
            &origin,
        );
        for n in 1..=20 {
            let (status, _, body) = get(&cache, URL).await;
            assert_eq!((status, body), (StatusCode::OK, format!("body {n}")));
        }
        assert_eq!(handle.purge(Purge::Tag("x".into()), false).await, 0);
    });
    assert!(
        store_results(&recording, "fallback") > 0,
        "the breaker opened"
    );
    assert_eq!(store_results(&recording, "ok"), 0);
}

#[test]
fn instances_share_entries_over_a_three_node_cluster() {
    let Some(cluster) = server::RedisCluster::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let urls = cluster.urls();
        let store = || {
            let connection = RedisConnection::cluster(urls.iter().map(String::as_str)).unwrap();
            RedisCacheStore::builder(connection)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap()
        };
        let origin = Origin::new(&[("cache-control", "max-age=600"), ("cache-tag", "all")]);
        let (first, handle) = instance(store(), &origin);
        let (second, _) = instance(store(), &origin);
        for i in 0..30 {
            get(&first, &format!("http://shop.example/items/{i}")).await;
        }
        // Written in the background: wait until the last one is readable.
        let last = handle.key_of(&"http://shop.example/items/29".parse().unwrap());
        let reader = store();
        let wait = Duration::from_secs(5);
        server::eventually("the last entry was never written", wait, || async {
            reader
                .get(&last)
                .await
                .map(drop)
                .ok_or_else(|| last.clone())
        })
        .await;
        for i in 0..30 {
            let (_, cache_status, _) =
                get(&second, &format!("http://shop.example/items/{i}")).await;
            assert!(cache_status.contains("hit"), "item {i}: {cache_status}");
        }
        assert_eq!(origin.calls(), 30);
        let holding = cluster
            .nodes
            .iter()
            .filter(|node| node.command("DBSIZE").as_deref() != Some(":0"))
            .count();
        assert!(holding >= 2, "entries on {holding} node(s)");
        // Purge by prefix scans every primary.
        let prefix = handle.key_of(&"http://shop.example/items/".parse().unwrap());
        assert_eq!(handle.purge(Purge::Prefix(prefix), false).await, 30);
        assert!(reader.get(&last).await.is_none());
    });
}

#[test]
fn bad_settings_are_refused() {
    run(&Recording::new(), || async {
        let connection = RedisConnection::open("redis://127.0.0.1:1/").unwrap();
        let error = RedisCacheStore::builder(connection.clone())
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("timeout"), "{error}");
        let error = RedisCacheStore::builder(connection.clone())
            .max_variants(0)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("variant"), "{error}");
        let error = RedisCacheStore::builder(connection.clone())
            .coalesce(Duration::from_micros(999))
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("lock"), "{error}");
        let store = RedisCacheStore::builder(connection)
            .coalesce(Duration::from_millis(1))
            .local(MemoryStore::new())
            .prefix("pages")
            .build()
            .unwrap();
        let shown = format!("{store:?}");
        assert!(
            shown.contains("\"pages\"") && shown.contains("two_tier: true"),
            "{shown}"
        );
    });
}

/// One instance whose origin takes `delay` to answer with `fields`.
fn slow_instance(
    store: RedisCacheStore,
    origin: &Origin,
    delay: Duration,
) -> impl Service<
    Request<Body>,
    Response = Response<tower_armor::cache::CacheBody<Body>>,
    Error = Infallible,
> + Clone
+ use<> {
    let layer = CacheLayer::builder()
        .store(store)
        .lock_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let origin = origin.clone();
    tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_request: Request<Body>| {
            let origin = origin.clone();
            async move {
                tokio::time::sleep(delay).await;
                let n = origin.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let mut response = Response::builder();
                for (name, value) in origin.fields {
                    response = response.header(*name, *value);
                }
                Ok::<_, Infallible>(response.body(Full::from(format!("body {n}"))).unwrap())
            }
        })
}

/// Two instances in front of `origin` (slow by `delay`) whose stores
/// coalesce misses through one Redis.
fn coalescing_pair(
    server: &server::RedisServer,
    origin: &Origin,
    delay: Duration,
) -> [impl Service<
    Request<Body>,
    Response = Response<tower_armor::cache::CacheBody<Body>>,
    Error = Infallible,
> + Clone
+ use<>; 2] {
    let coalescing = || {
        store(server)
            .coalesce(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    [
        slow_instance(coalescing(), origin, delay),
        slow_instance(coalescing(), origin, delay),
    ]
}

#[test]
fn instances_that_coalesce_send_one_request_upstream_for_a_url() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let delay = Duration::from_millis(200);
        let [first, second] = coalescing_pair(&server, &origin, delay);
        let requests = (0..20).map(|i| {
            let instance = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            async move { get(&instance, URL).await }
        });
        // While the first fetch is out, its lock names the URL.
        let watch_lock = async {
            tokio::time::sleep(delay / 2).await;
            let mut redis = client(&server).await;
            let locks: Vec<String> = redis::cmd("KEYS")
                .arg("armor:cache:l:*")
                .query_async(&mut redis)
                .await
                .unwrap();
            locks
        };
        let (answers, locks) = tokio::join!(futures::future::join_all(requests), watch_lock);
        assert_eq!(locks, ["armor:cache:l:{http://shop.example/items/7}"]);
        assert_eq!(origin.calls(), 1, "one fetch for the whole fleet");
        for (status, cache_status, body) in &answers {
            assert_eq!((*status, body.as_str()), (StatusCode::OK, "body 1"));
            assert!(!cache_status.is_empty());
        }
        let collapsed = answers
            .iter()
            .filter(|(_, cache_status, _)| cache_status.contains("collapsed"))
            .count();
        assert_eq!(collapsed, 19, "{answers:?}");
        // The leader let go of its lock.
        let mut redis = client(&server).await;
        let locks: Vec<String> = redis::cmd("KEYS")
            .arg("armor:cache:l:*")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(locks.is_empty(), "{locks:?}");
    });
    // Nine waited on each instance's own leader, and the second leader
    // waited once on the first instance.
    assert_eq!(
        recording::count(&recording, "armor.cache.coalesced", &[]),
        19
    );
}

#[test]
fn a_lock_whose_holder_never_lands_is_waited_out_then_ignored() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        // Held by an instance that died mid-fetch, for a minute.
        let lock = "armor:cache:l:{http://shop.example/items/7}";
        assert_eq!(
            server
                .command(&format!("SET {lock} gone PX 60000"))
                .as_deref(),
            Some("+OK")
        );
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let layer = CacheLayer::builder()
            .store(
                store(&server)
                    .coalesce(Duration::from_secs(60))
                    .build()
                    .unwrap(),
            )
            .lock_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let counted = origin.clone();
        let cache =
            tower::ServiceBuilder::new()
                .layer(layer)
                .service_fn(move |_request: Request<Body>| {
                    let n = counted.calls.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("cache-control", "max-age=600")
                                .body(Full::from(format!("body {n}")))
                                .unwrap(),
                        )
                    }
                });
        let answer = tokio::time::timeout(Duration::from_secs(10), get(&cache, URL)).await;
        let (status, _, body) = answer.expect("given up after the lock timeout");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body 1"));
        assert_eq!(origin.calls(), 1);
    });
    assert_eq!(
        recording::count(&recording, "armor.cache.coalesced", &[]),
        1
    );
}

#[test]
fn every_variant_of_a_url_is_kept_in_redis() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[
            ("cache-control", "max-age=600"),
            ("vary", "accept-language"),
        ]);
        let (first, handle) = instance(store(&server).build().unwrap(), &origin);
        let (second, _) = instance(store(&server).build().unwrap(), &origin);
        let in_language = |language: &'static str| {
            Request::get(URL)
                .header("accept-language", language)
                .body(Body::default())
                .unwrap()
        };
        for language in ["en", "de"] {
            // Stored once the body has been read.
            let response = first.clone().oneshot(in_language(language)).await.unwrap();
            response.into_body().collect().await.unwrap();
        }
        let entry = format!("armor:cache:e:{{{}}}", handle.key_of(&URL.parse().unwrap()));
        let redis = client(&server).await;
        server::eventually("two variants in Redis", Duration::from_secs(5), || {
            let mut redis = redis.clone();
            let entry = entry.clone();
            async move {
                let variants: u64 = redis::cmd("HLEN")
                    .arg(&entry)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                if variants == 2 {
                    Ok(())
                } else {
                    Err(format!("{variants} variant(s)"))
                }
            }
        })
        .await;
        for (language, body) in [("en", "body 1"), ("de", "body 2")] {
            let response = second.clone().oneshot(in_language(language)).await.unwrap();
            let cache_status = response.headers()["cache-status"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(cache_status.contains("hit"), "{language}: {cache_status}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(bytes, body.as_bytes());
        }
        assert_eq!(origin.calls(), 2);
    });
}

#[test]
fn an_uncacheable_answer_frees_the_other_instances_at_once() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[("cache-control", "no-store")]);
        let delay = Duration::from_millis(100);
        let [first, second] = coalescing_pair(&server, &origin, delay);
        let started = tokio::time::Instant::now();
        let (a, b) = tokio::join!(get(&first, URL), get(&second, URL));
        assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
        assert_eq!(origin.calls(), 2, "nothing to share: each went upstream");
        // The second did not sit out the 30 s lock: it went once the
        // first's fetch was over.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn a_body_over_the_redis_limit_stays_in_the_memory_tier() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let recording = Recording::new();
    run(&recording, || async {
        // "body 1" is 6 bytes: over a 4-byte limit.
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let memory = MemoryStore::new();
        let (cache, handle) = instance(
            store(&server)
                .local(memory.clone())
                .max_entry_bytes(4)
                .build()
                .unwrap(),
            &origin,
        );
        get(&cache, URL).await;
        let (_, cache_status, _) = get(&cache, URL).await;
        assert!(cache_status.contains("hit"), "{cache_status}");
        let key = handle.key_of(&URL.parse().unwrap());
        assert!(memory.get(&key).await.is_some());
        // Nothing reached Redis (a short wait for a write that never comes).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut redis = client(&server).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("armor:*")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        // A body exactly at the limit goes to Redis.
        let (cache, _) = instance(store(&server).max_entry_bytes(6).build().unwrap(), &origin);
        get(&cache, "http://shop.example/exact").await;
        let stored = entry_keys(&redis, 1).await;
        assert_eq!(stored.len(), 1);
        let () = redis::cmd("FLUSHALL")
            .query_async(&mut redis)
            .await
            .unwrap();
        // Without a memory tier it is not stored at all.
        let (cache, _) = instance(store(&server).max_entry_bytes(4).build().unwrap(), &origin);
        let (_, cache_status, _) = get(&cache, "http://shop.example/other").await;
        assert!(cache_status.contains("stored"), "{cache_status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("armor:*")
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        let (_, cache_status, _) = get(&cache, "http://shop.example/other").await;
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
    });
    // The memory tier reports its size as the cache's.
    let held = recording::series(&recording)
        .into_iter()
        .find(|series| series.name == "armor.cache.stored_bytes")
        .map(|series| series.value);
    assert!(
        matches!(held, Some(recording::Value::Level(bytes)) if bytes > 0.0),
        "{held:?}"
    );
}

#[test]
fn the_memory_tier_is_forgotten_after_a_lost_subscription_and_hears_purges_again() {
    let Some(mut server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let memory = (MemoryStore::new(), MemoryStore::new());
        let (first, handle) = instance(
            store(&server).local(memory.0.clone()).build().unwrap(),
            &origin,
        );
        let (second, _) = instance(
            store(&server).local(memory.1.clone()).build().unwrap(),
            &origin,
        );
        let key = handle.key_of(&URL.parse().unwrap());
        get(&second, URL).await;
        assert!(memory.1.get(&key).await.is_some());
        // Redis restarts: purges made meanwhile were never heard, so the
        // memory tier is dropped once the subscription is back.
        server.kill();
        server.restart();
        forgotten(&memory.1, &key).await;
        // And purges are heard again.
        let redis = client(&server).await;
        both_subscribed(&redis).await;
        get(&second, URL).await;
        assert!(memory.1.get(&key).await.is_some());
        handle.purge(Purge::Key(key.clone()), false).await;
        forgotten(&memory.1, &key).await;
        drop(first);
    });
}

#[test]
fn a_successful_unsafe_request_on_one_instance_invalidates_the_url_for_all() {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    run(&Recording::new(), || async {
        let origin = Origin::new(&[("cache-control", "max-age=600")]);
        let (first, handle) = instance(store(&server).build().unwrap(), &origin);
        let (second, _) = instance(store(&server).build().unwrap(), &origin);
        get(&first, URL).await;
        let redis = client(&server).await;
        entry_keys(&redis, 1).await;
        let post = Request::post(URL).body(Body::default()).unwrap();
        assert_eq!(
            first.clone().oneshot(post).await.unwrap().status(),
            StatusCode::OK
        );
        // Removed from Redis in the background.
        let entry = format!("armor:cache:e:{{{}}}", handle.key_of(&URL.parse().unwrap()));
        gone(&server, &entry).await;
        let (_, cache_status, body) = get(&second, URL).await;
        assert!(cache_status.contains("fwd=uri-miss"), "{cache_status}");
        assert_eq!(body, "body 3");
    });
}
