//! The Prometheus recorder's memory stays flat however rarely it is
//! scraped: a million samples, live heap measured by a counting allocator.
//! (A test binary of its own, so no other test allocates meanwhile.)

use tower_armor::metrics::prometheus;

#[path = "support/live_bytes.rs"]
mod live_bytes;

#[global_allocator]
static ALLOCATOR: live_bytes::Counting = live_bytes::Counting;

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
            warmed = live_bytes::live();
        }
        if i > samples / 10 && i % 1000 == 0 {
            peak = peak.max(live_bytes::live());
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
