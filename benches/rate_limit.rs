//! Per-request cost of deciding a rate limit: ours against tower_governor and
//! tower-resilience in one run, with governor's raw `check` / `check_key` as
//! the floor. Global key, and peer-IP keys over 10k and 1M distinct clients.
//!
//! Before the timings it prints heap allocations per request on the global path.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tower::Service;

#[path = "support/common.rs"]
mod common;
#[path = "support/rate_limit_stacks.rs"]
mod stacks;

#[global_allocator]
static GLOBAL: common::CountingAllocator = common::CountingAllocator;

/// Allocations per request on the global key (the bare handler's subtracted).
fn allocations<S>(service: S) -> f64
where
    S: Service<stacks::Req>,
    S::Error: std::fmt::Debug,
{
    common::allocations_per_request(service, stacks::handler(), |n| stacks::request(n, 1))
}

/// Times `service` on requests from `keys` distinct peers, after one warm-up
/// pass over all of them so the steady state (known keys) is what is measured.
fn measure<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    keys: u64,
    mut service: S,
) where
    S: Service<stacks::Req>,
    S::Error: std::fmt::Debug,
{
    for n in 0..keys {
        stacks::serve(&mut service, stacks::request(n, keys));
    }
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                stacks::request(n, keys)
            },
            |request| stacks::serve(&mut service, request),
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let _context = runtime.enter();

    println!("heap allocations per request, global key (the bare handler's subtracted):");
    println!(
        "  armor            {:+.2}",
        allocations(stacks::armor_global())
    );
    println!(
        "  armor, headers   {:+.2}",
        allocations(stacks::armor_global_headers())
    );
    println!(
        "  tower_governor   {:+.2}",
        allocations(stacks::tower_governor_global())
    );
    println!(
        "  tower-resilience {:+.2}",
        allocations(stacks::tower_resilience())
    );

    let mut group = c.benchmark_group("rate_limit/global");
    measure(&mut group, "bare", 1, stacks::handler());
    measure(&mut group, "armor", 1, stacks::armor_global());
    measure(
        &mut group,
        "armor_headers",
        1,
        stacks::armor_global_headers(),
    );
    measure(
        &mut group,
        "tower_governor",
        1,
        stacks::tower_governor_global(),
    );
    measure(
        &mut group,
        "tower-resilience",
        1,
        stacks::tower_resilience(),
    );
    let direct = stacks::governor_direct();
    group.bench_function("governor check (floor)", |b| {
        b.iter(|| std::hint::black_box(direct.check()).is_ok())
    });
    group.finish();

    for (label, keys) in [("10k", 10_000u64), ("1M", 1_000_000)] {
        let mut group = c.benchmark_group(format!("rate_limit/peer_ip_{label}"));
        measure(&mut group, "bare", keys, stacks::handler());
        measure(
            &mut group,
            "armor",
            keys,
            stacks::armor_peer_ip(keys as usize),
        );
        measure(
            &mut group,
            "tower_governor SmartIp",
            keys,
            stacks::tower_governor_smart_ip(),
        );
        let keyed = stacks::governor_keyed();
        let ips: Vec<std::net::IpAddr> = (0..keys)
            .map(|n| std::net::Ipv4Addr::from(n as u32 + 0x0A00_0000).into())
            .collect();
        for ip in &ips {
            let _ = keyed.check_key(ip);
        }
        let mut n = 0usize;
        group.bench_function("governor check_key (floor)", |b| {
            b.iter(|| {
                n = (n + 1) % ips.len();
                std::hint::black_box(keyed.check_key(&ips[n])).is_ok()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
