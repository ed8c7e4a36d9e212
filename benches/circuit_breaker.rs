//! Closed-state overhead of a circuit breaker: ours against tower-resilience's
//! breaker and failsafe's state machine in one run, on one task and with many
//! tasks on a multi-thread runtime hammering one shared breaker.
//!
//! Before the timings it prints heap allocations per request.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Service, ServiceExt};

#[path = "support/common.rs"]
mod common;
#[path = "support/circuit_breaker_stacks.rs"]
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

const TASKS: u64 = 16;

/// `TASKS` tasks on a two-worker runtime, each with its own clone of one
/// service (so one breaker), sending their share of `iters` requests.
fn contended<S>(runtime: &tokio::runtime::Runtime, service: S, iters: u64) -> Duration
where
    S: Service<stacks::Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: std::fmt::Debug + Send,
{
    let per_task = iters.div_ceil(TASKS);
    runtime.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut service = service.clone();
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        let response = service
                            .ready()
                            .await
                            .unwrap()
                            .call(stacks::request())
                            .await
                            .unwrap();
                        drop(std::hint::black_box(response));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    {
        let runtime = common::runtime();
        let _context = runtime.enter();
        println!("heap allocations per request, closed (the bare handler's subtracted):");
        println!("  armor            {:+.2}", allocations(stacks::armor()));
        println!(
            "  tower-resilience {:+.2}",
            allocations(stacks::tower_resilience())
        );
        println!("  failsafe         {:+.2}", allocations(stacks::failsafe()));

        let mut group = c.benchmark_group("circuit_breaker/single_task");
        common::time_requests(&mut group, "bare", stacks::handler(), stacks::request);
        common::time_requests(&mut group, "armor", stacks::armor(), stacks::request);
        common::time_requests(
            &mut group,
            "tower-resilience",
            stacks::tower_resilience(),
            stacks::request,
        );
        common::time_requests(&mut group, "failsafe", stacks::failsafe(), stacks::request);
        group.finish();
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("circuit_breaker/contended_16_tasks");
    group.bench_function("bare", |b| {
        b.iter_custom(|iters| contended(&runtime, stacks::handler(), iters))
    });
    let armor = stacks::armor();
    group.bench_function("armor", |b| {
        b.iter_custom(|iters| contended(&runtime, armor.clone(), iters))
    });
    let resilience = stacks::tower_resilience();
    group.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| contended(&runtime, resilience.clone(), iters))
    });
    let failsafe = stacks::failsafe();
    group.bench_function("failsafe", |b| {
        b.iter_custom(|iters| contended(&runtime, failsafe.clone(), iters))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
