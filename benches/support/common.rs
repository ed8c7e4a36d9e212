//! Shared by the benches and `examples/perreq.rs`: a counting allocator and
//! the one way every stack is driven.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use tower::Service;

/// Counts heap allocations; install with `#[global_allocator]`.
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Heap allocations made while `work` runs, in a program using [`CountingAllocator`].
pub fn allocations_during(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    work();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// Heap allocations per request made by `service` itself: `N` requests from
/// `make` (built beforehand, so building them is not counted), less what the
/// bare handler allocates for the same requests.
pub fn allocations_per_request<S, B, R>(mut service: S, mut bare: B, make: impl Fn(u64) -> R) -> f64
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
    B: Service<R>,
    B::Error: std::fmt::Debug,
{
    const N: u64 = 10_000;
    for n in 0..100 {
        serve(&mut service, make(n));
    }
    let warm: Vec<_> = (0..N).map(&make).collect();
    let baseline = allocations_during(|| warm.into_iter().for_each(|r| serve(&mut bare, r)));
    let requests: Vec<_> = (0..N).map(&make).collect();
    let used = allocations_during(|| requests.into_iter().for_each(|r| serve(&mut service, r)));
    (used as f64 - baseline as f64) / N as f64
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// The runtime every stack is measured in: current-thread, with time (the
/// timeouts and the rate limiter read its clock). Enter it before serving.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// Times `service` under `name`, one request from `make` per iteration,
/// built outside the timed part so a sample is the stack's own cost.
pub fn time_requests<S, R>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut service: S,
    mut make: impl FnMut() -> R,
) where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter_batched(
            &mut make,
            |request| serve(&mut service, request),
            criterion::BatchSize::SmallInput,
        )
    });
}

/// Sends `request` through `service`; every stack measured answers on the
/// first poll, so no runtime is needed to drive it (only entered, for clocks).
#[inline]
pub fn serve<S, R>(service: &mut S, request: R)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))),
        "the stack is always ready"
    );
    let future = pin!(service.call(request));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => drop(std::hint::black_box(response)),
        _ => panic!("the stack answers at once"),
    }
}
