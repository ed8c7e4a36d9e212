//! Pass-through overhead of a retry layer (the first attempt succeeds): ours
//! against tower's `retry` with a minimal request-copying policy, tower's
//! `retry` with its `TpsBudget`, and tower-resilience's `retry`, in one run.
//!
//! Before the timings it prints heap allocations per request.

use criterion::{Criterion, criterion_group, criterion_main};
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
        "  tower + budget   {:+.2}",
        allocations(stacks::tower_retry_budget())
    );
    println!(
        "  tower-resilience {:+.2}",
        allocations(stacks::tower_resilience())
    );

    let mut group = c.benchmark_group("retry/pass_through");
    common::time_requests(&mut group, "bare", stacks::handler(), stacks::request);
    common::time_requests(&mut group, "armor", stacks::armor(), stacks::request);
    common::time_requests(
        &mut group,
        "tower-retry",
        stacks::tower_retry(),
        stacks::request,
    );
    common::time_requests(
        &mut group,
        "tower-retry-budget",
        stacks::tower_retry_budget(),
        stacks::request,
    );
    common::time_requests(
        &mut group,
        "tower-resilience",
        stacks::tower_resilience(),
        stacks::request,
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
