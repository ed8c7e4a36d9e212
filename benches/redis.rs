//! The Redis stores against a local `redis-server` this bench starts itself
//! (skipped, with a message, where there is none).
//!
//! Rate limiting: decisions per second with 1 and 64 kept in flight over one
//! multiplexed connection, for our GCRA script with one and two quotas,
//! the in-memory store, a naive fixed window (`INCR` + `EXPIRE`, pipelined:
//! one round trip, as a careful hand-written limiter does it), and a key
//! refused locally (no round trip). Cache: a 1 KiB hit through the cache
//! layer in memory only, two-tier (a memory hit) and Redis only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::Layer;
use tower_armor::cache::{CacheLayer, CacheStore, MemoryStore};
use tower_armor::key::KeyLimits;
use tower_armor::rate_limit::{Check, MakeStore, Overflow, Quota, RateStore};
use tower_armor::redis::{RedisCacheStore, RedisConnection, RedisRateStore};

#[path = "../tests/support/redis.rs"]
mod server;
#[path = "support/cache_stacks.rs"]
mod stacks;

/// Decisions in flight at once: one (each request's round trip, its
/// latency) and 64 (a busy server).
const IN_FLIGHT: [u64; 2] = [1, 64];

fn check() -> Check {
    Check {
        cost: 1,
        max_wait: Duration::ZERO,
        want_states: true,
    }
}

/// Decisions per timed batch.
const BATCH: u64 = 1024;

/// Runs `decide` for `BATCH` fresh keys, `in_flight` at a time: as each
/// ends the next starts, as requests keep arriving at a busy server.
async fn batch<F, Fut>(next_key: &AtomicU64, in_flight: u64, decide: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures::StreamExt;
    let start = next_key.fetch_add(BATCH, Ordering::Relaxed);
    let allowed = futures::stream::iter((start..start + BATCH).map(&decide))
        .buffer_unordered(in_flight as usize)
        .filter(|allowed| std::future::ready(*allowed))
        .count()
        .await;
    assert_eq!(allowed as u64, BATCH);
}

fn rate_limit(c: &mut Criterion, runtime: &tokio::runtime::Runtime, url: &str) {
    let keys = AtomicU64::new(0);
    let connection = runtime.block_on(async { RedisConnection::open(url).unwrap() });
    let make = |quotas: &[Quota]| -> RedisRateStore<u64> {
        let _context = runtime.enter();
        RedisRateStore::builder(connection.clone())
            .timeout(Duration::from_secs(1))
            .make_store(quotas, KeyLimits::default(), Overflow::SharedBucket)
            .unwrap()
    };
    let one = make(&[Quota::per_second(1_000_000)]);
    let two = make(&[Quota::per_second(1_000_000), Quota::per_hour(1_000_000)]);
    let memory = tower_armor::rate_limit::MemoryStore::<u64>::new(
        &[Quota::per_second(1_000_000), Quota::per_hour(1_000_000)],
        KeyLimits::new(10_000_000, Duration::ZERO),
        Overflow::SharedBucket,
    )
    .unwrap();
    let naive = runtime.block_on(async {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    });
    // A key refused for the next minute, known locally.
    let refused = make(&[Quota::per_minute(1)]);
    runtime.block_on(async {
        refused.check(&u64::MAX, check()).await;
        refused.check(&u64::MAX, check()).await;
    });

    for in_flight in IN_FLIGHT {
        let mut group = c.benchmark_group(format!("redis_rate/{in_flight} in flight"));
        group.throughput(Throughput::Elements(BATCH));
        if in_flight > 1 {
            group.bench_function("memory store, 2 quotas", |b| {
                b.iter(|| {
                    runtime.block_on(batch(&keys, in_flight, |key| {
                        let decision = memory.check(&key, check());
                        async move { decision.await.quotas.len() == 2 }
                    }))
                })
            });
        }
        group.bench_function("naive INCR+EXPIRE", |b| {
            b.iter(|| {
                runtime.block_on(batch(&keys, in_flight, |key| {
                    let mut connection = naive.clone();
                    async move {
                        let name = format!("naive:{key}");
                        let (count,): (u64,) = redis::pipe()
                            .incr(&name, 1)
                            .cmd("EXPIRE")
                            .arg(&name)
                            .arg(1)
                            .arg("NX")
                            .ignore()
                            .query_async(&mut connection)
                            .await
                            .unwrap();
                        count <= 1_000_000
                    }
                }))
            })
        });
        for (label, store) in [
            ("redis GCRA, 1 quota", &one),
            ("redis GCRA, 2 quotas", &two),
        ] {
            group.bench_function(label, |b| {
                b.iter(|| {
                    runtime.block_on(batch(&keys, in_flight, |key| {
                        let decision = store.check(&key, check());
                        async move {
                            let decision = decision.await;
                            decision.verdict == tower_armor::rate_limit::Verdict::Allowed
                        }
                    }))
                })
            });
        }
        if in_flight > 1 {
            group.bench_function("redis, a key refused locally", |b| {
                b.iter(|| {
                    runtime.block_on(batch(&keys, in_flight, |_| {
                        let decision = refused.check(&u64::MAX, check());
                        async move {
                            matches!(
                                decision.await.verdict,
                                tower_armor::rate_limit::Verdict::Refused(_)
                            )
                        }
                    }))
                })
            });
        }
        group.finish();
    }
}

/// Times a 1 KiB hit through a cache layer on `store`.
fn time_hits(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    label: &str,
    store: impl CacheStore,
) {
    let layer = CacheLayer::builder().store(store).build().unwrap();
    let mut service = layer.layer(stacks::handler(1 << 10));
    // Stored, and written through to Redis, before timing.
    stacks::drive(runtime, &mut service, stacks::request(stacks::URL));
    runtime.block_on(tokio::time::sleep(Duration::from_millis(200)));
    group.bench_function(label, |b| {
        b.iter(|| stacks::drive(runtime, &mut service, stacks::request(stacks::URL)))
    });
}

fn cache_hits(c: &mut Criterion, runtime: &tokio::runtime::Runtime, url: &str) {
    let _context = runtime.enter();
    let redis = || RedisConnection::open(url).unwrap();
    let mut group = c.benchmark_group("redis_cache/1k hit");
    time_hits(&mut group, runtime, "memory only", MemoryStore::new());
    let two_tier = RedisCacheStore::builder(redis())
        .local(MemoryStore::new())
        .build()
        .unwrap();
    time_hits(&mut group, runtime, "two-tier (memory hit)", two_tier);
    let redis_only = RedisCacheStore::builder(redis())
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    time_hits(&mut group, runtime, "redis only", redis_only);
    group.finish();
}

fn bench(c: &mut Criterion) {
    let Some(server) = server::RedisServer::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rate_limit(c, &runtime, &server.url());
    cache_hits(c, &runtime, &server.url());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
