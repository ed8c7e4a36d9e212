//! The cache against http-cache-tower (moka manager) and against no cache:
//! a hit of a 1 KiB and a 64 KiB response, and a miss (stored as it is
//! read). Every response is read to its end.

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/common.rs"]
mod common;
#[path = "support/cache_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

/// Heap allocations per hit beyond the bare handler's (which builds its
/// response; a hit copies only the head).
fn allocations_per_hit(runtime: &tokio::runtime::Runtime, size: usize) -> (f64, f64) {
    const N: u64 = 10_000;
    let mut armor = stacks::armor(size);
    let mut bare = stacks::handler(size);
    stacks::drive(runtime, &mut armor, stacks::request(stacks::URL));
    let requests = || {
        (0..N)
            .map(|_| stacks::request(stacks::URL))
            .collect::<Vec<_>>()
    };
    let batch = requests();
    let ours = common::allocations_during(|| {
        for request in batch {
            stacks::drive(runtime, &mut armor, request);
        }
    });
    let batch = requests();
    let bare_count = common::allocations_during(|| {
        for request in batch {
            stacks::drive(runtime, &mut bare, request);
        }
    });
    (ours as f64 / N as f64, bare_count as f64 / N as f64)
}

fn bench(c: &mut Criterion) {
    let runtime = stacks_runtime();
    let _context = runtime.enter();
    for size in [1 << 10, 64 << 10] {
        let (ours, bare) = allocations_per_hit(&runtime, size);
        println!(
            "heap allocations per request, {} KiB: hit {ours:.2}, bare handler {bare:.2}",
            size >> 10
        );
    }

    for (label, size) in [("1k", 1 << 10), ("64k", 64 << 10)] {
        let mut group = c.benchmark_group(format!("cache/{label}"));
        let mut bare = stacks::handler(size);
        group.bench_function("no cache", |b| {
            b.iter(|| stacks::drive(&runtime, &mut bare, stacks::request(stacks::URL)))
        });
        let mut armor = stacks::armor(size);
        stacks::drive(&runtime, &mut armor, stacks::request(stacks::URL));
        group.bench_function("hit/armor", |b| {
            b.iter(|| stacks::drive(&runtime, &mut armor, stacks::request(stacks::URL)))
        });
        let mut anchor = stacks::anchor(size);
        stacks::drive(&runtime, &mut anchor, stacks::request(stacks::URL));
        group.bench_function("hit/http-cache-tower", |b| {
            b.iter(|| stacks::drive(&runtime, &mut anchor, stacks::request(stacks::URL)))
        });
        let mut armor_miss = stacks::armor(size);
        group.bench_function("miss/armor", |b| {
            b.iter(|| {
                stacks::drive(
                    &runtime,
                    &mut armor_miss,
                    stacks::request(&stacks::fresh_url()),
                )
            })
        });
        let mut anchor_miss = stacks::anchor(size);
        group.bench_function("miss/http-cache-tower", |b| {
            b.iter(|| {
                stacks::drive(
                    &runtime,
                    &mut anchor_miss,
                    stacks::request(&stacks::fresh_url()),
                )
            })
        });
        group.finish();
    }
}

fn stacks_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

criterion_group!(benches, bench);
criterion_main!(benches);
