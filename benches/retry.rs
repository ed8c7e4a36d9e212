//! Pass-through overhead of a retry layer (the first attempt succeeds): ours
//! against tower's `retry` with a minimal request-copying policy and
//! tower-resilience's `retry`, in one run.
//!
//! Before the timings it prints heap allocations per request.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower::Service;

#[path = "support/common.rs"]
mod common;
#[path = "support/retry_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

fn allocations<S>(service: S) -> f64
where
    S: Service<stacks::Req>,
    S::Error: std::fmt::Debug,
{
    common::allocations_per_request(service, stacks::handler(), |_| stacks::request())
}

fn pass_through<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut service: S,
) where
    S: Service<stacks::Req>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_batched(
            stacks::request,
            |request| common::serve(&mut service, request),
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let _context = runtime.enter();
    println!(
        "heap allocations per request, first attempt succeeds (the bare handler's subtracted):"
    );
    println!("  armor            {:+.2}", allocations(stacks::armor()));
    println!(
        "  tower retry      {:+.2}",
        allocations(stacks::tower_retry())
    );
    println!(
        "  tower-resilience {:+.2}",
        allocations(stacks::tower_resilience())
    );

    let mut group = c.benchmark_group("retry/pass_through");
    pass_through(&mut group, "bare", stacks::handler());
    pass_through(&mut group, "armor", stacks::armor());
    pass_through(&mut group, "tower-retry", stacks::tower_retry());
    pass_through(&mut group, "tower-resilience", stacks::tower_resilience());
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
