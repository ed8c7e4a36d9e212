//! The Prometheus recorder's memory stays flat however rarely it is
//! scraped: a million samples, live heap measured by a counting allocator.
//! (A test binary of its own, so no other test allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tower_armor::metrics::prometheus;

/// The system allocator, keeping count of the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Records `samples` durations into one series of `recorder`, rendering
/// every `scrape_every` samples; returns the live heap after warm-up and
/// the most it reached after.
fn record(
    recorder: &prometheus::PrometheusRecorder,
    scrape: &prometheus::Scrape,
    samples: u32,
    scrape_every: u32,
) -> (isize, isize) {
    let histogram = metrics::with_local_recorder(
        recorder,
        || metrics::histogram!("http.server.request.duration", "http.request.method" => "GET"),
    );
    let mut warmed = 0;
    let mut peak = 0;
    for i in 0..samples {
        histogram.record(f64::from(i % 1000) / 1000.0);
        if i % scrape_every == scrape_every - 1 {
            drop(scrape.render());
        }
        if i == samples / 10 {
            warmed = LIVE.load(Ordering::Relaxed);
        }
        if i > samples / 10 && i % 1000 == 0 {
            peak = peak.max(LIVE.load(Ordering::Relaxed));
        }
    }
    (warmed, peak)
}

#[test]
fn a_million_samples_between_rare_scrapes_keep_memory_flat() {
    const MIB: isize = 1 << 20;
    let (recorder, scrape) = prometheus::builder().build().unwrap();
    let (warmed, peak) = record(&recorder, &scrape, 1_000_000, 400_000);
    assert!(
        peak - warmed < MIB,
        "grew {} KiB past warm-up over a million samples",
        (peak - warmed) / 1024
    );
    // The same samples with upkeep left to scrapes alone: this is the growth
    // the upkeep prevents, so the bound above is not loose.
    let (recorder, scrape) = prometheus::builder()
        .upkeep_every(u64::MAX)
        .build()
        .unwrap();
    let (warmed, peak) = record(&recorder, &scrape, 1_000_000, 400_000);
    assert!(
        peak - warmed > 2 * MIB,
        "without upkeep, grew only {} KiB",
        (peak - warmed) / 1024
    );
}
