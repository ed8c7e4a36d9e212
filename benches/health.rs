//! The health layer: the cost it adds to every request that is not a probe,
//! and how fast it answers probes while its check runs at most once per TTL.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/common.rs"]
mod common;
#[path = "support/health_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

/// Probes as fast as one thread can send them for `seconds`: requests per
/// second, and how many times the check ran against the most the TTL
/// allows.
fn probe_flood(seconds: u64) {
    let (mut service, runs) = stacks::armor();
    let started = Instant::now();
    let mut probes = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..1000 {
            common::serve(&mut service, stacks::request(stacks::PROBE));
        }
        probes += 1000;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let runs = runs.load(Ordering::Relaxed);
    println!(
        "probe flood: {:.0} probes/s for {elapsed:.1} s; the check ran {runs} times (TTL 1 s: at most {})",
        probes as f64 / elapsed,
        elapsed.ceil() as u64
    );
    assert!(runs <= elapsed.ceil() as u64, "at most one run per TTL");
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let _context = runtime.enter();

    let allocations = common::allocations_per_request(stacks::armor().0, stacks::handler(), |_| {
        stacks::request(stacks::PASS_THROUGH)
    });
    println!("heap allocations per pass-through request: {allocations:+.2}");
    probe_flood(3);

    let mut group = c.benchmark_group("health");
    common::time_requests(&mut group, "pass-through/bare", stacks::handler(), || {
        stacks::request(stacks::PASS_THROUGH)
    });
    common::time_requests(&mut group, "pass-through/armor", stacks::armor().0, || {
        stacks::request(stacks::PASS_THROUGH)
    });
    common::time_requests(&mut group, "probe/cached", stacks::armor().0, || {
        stacks::request(stacks::PROBE)
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
