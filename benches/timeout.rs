//! Pass-through overhead of the timeout layer against tower's and
//! tower-http's, in one run, over a bare `service_fn`.
//!
//! Before the timings it prints heap allocations per request for each stack,
//! counted by a global counting allocator.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower::Layer;

#[path = "support/common.rs"]
mod common;
#[path = "support/timeout_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

fn allocations_per_request(name: &str) -> f64 {
    const N: u64 = 10_000;
    stacks::run(name, 100); // warm up lazily made state
    common::allocations_during(|| {
        stacks::run(name, N);
    }) as f64
        / N as f64
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let _context = runtime.enter();

    for (suffix, kind) in [("", stacks::Kind::Get), (":post", stacks::Kind::Post)] {
        let bare = allocations_per_request(&format!("bare{suffix}"));
        println!("heap allocations per {kind:?} request, the bare stack's {bare:.2} subtracted:");
        for name in stacks::STACKS {
            let count = allocations_per_request(&format!("{name}{suffix}")) - bare;
            println!("  {name:<24} {count:+.2}");
        }

        // The request is built outside the timed part, so a sample is the
        // stack's own cost and the overhead is not drowned by request building.
        let mut group = c.benchmark_group(format!("timeout/pass-through/{kind:?}"));
        let mut measure = |name: &str, serve: &mut dyn FnMut(stacks::Req)| {
            group.bench_function(name, |b| {
                b.iter_batched(|| stacks::request(kind), &mut *serve, BatchSize::SmallInput)
            });
        };
        let mut bare = stacks::bare();
        measure("bare", &mut |r| stacks::serve(&mut bare, r));
        let mut armor = stacks::armor(true).layer(stacks::bare());
        measure("armor", &mut |r| stacks::serve(&mut armor, r));
        let mut lean = stacks::armor(false).layer(stacks::bare());
        measure("armor-no-deadline-ext", &mut |r| {
            stacks::serve(&mut lean, r)
        });
        let mut tower = stacks::tower_timeout().layer(stacks::bare());
        measure("tower", &mut |r| stacks::serve(&mut tower, r));
        let mut tower_http = stacks::tower_http_timeout().layer(stacks::bare());
        measure("tower-http", &mut |r| stacks::serve(&mut tower_http, r));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
