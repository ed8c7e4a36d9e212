//! Per-request overhead of request metrics: ours against axum-prometheus
//! (the same `metrics-exporter-prometheus` recorder, installed globally as
//! its `pair()` does) and tower-http's `TraceLayer` logging each request, in
//! one run; then the time to render a scrape of 1,000 label sets.
//!
//! Before the timings it prints heap allocations per request.

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

#[path = "support/common.rs"]
mod common;
#[path = "support/metrics_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

fn allocations_per_request(name: &str) -> f64 {
    const N: u64 = 10_000;
    stacks::run(name, 100); // warm up: handles registered, routes interned
    common::allocations_during(|| {
        stacks::run(name, N);
    }) as f64
        / N as f64
}

fn bench(c: &mut Criterion) {
    let handle = stacks::install();
    stacks::install_logging();
    // The exporter keeps every sample until drained: drain as its upkeep
    // task would, so memory stays flat over the run.
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            handle.run_upkeep();
        }
    });
    let runtime = common::runtime();
    let _context = runtime.enter();

    let bare = allocations_per_request("bare");
    println!("heap allocations per request, the bare stack's {bare:.2} subtracted:");
    for name in stacks::STACKS {
        let count = allocations_per_request(name) - bare;
        println!("  {name:<20} {count:+.2}");
    }

    let mut group = c.benchmark_group("metrics/per-request");
    let mut measure = |name: &str, serve: &mut dyn FnMut(stacks::Req)| {
        group.bench_function(name, |b| {
            b.iter_batched(stacks::request, &mut *serve, BatchSize::SmallInput)
        });
    };
    let mut bare = stacks::handler();
    measure("bare", &mut |r| stacks::serve(&mut bare, r));
    let mut armor = stacks::armor();
    measure("armor", &mut |r| stacks::serve(&mut armor, r));
    let mut own = stacks::armor_own_recorder();
    measure("armor-own-recorder", &mut |r| stacks::serve(&mut own, r));
    let mut axum_prometheus = stacks::axum_prometheus();
    measure("axum-prometheus", &mut |r| {
        stacks::serve(&mut axum_prometheus, r)
    });
    let mut trace = stacks::tower_http_trace();
    measure("tower-http-trace", &mut |r| stacks::serve(&mut trace, r));
    group.finish();

    let scrape = stacks::scrape_with_label_sets(1_000);
    let size = scrape.render().len();
    println!("a scrape of 1,000 label sets: {} KiB", size / 1024);
    let mut group = c.benchmark_group("metrics/scrape");
    group.bench_function("render-1000-label-sets", |b| {
        b.iter(|| std::hint::black_box(scrape.render()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
