//! The exporter's recorder, with its upkeep run by the samples themselves.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::sync::{read, write};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusHandle;

/// The recorder [`builder`](super::builder) makes: the exporter's, with its
/// histogram samples drained into their buckets every so many samples, so
/// memory stays bounded between scrapes. Install it, or use it locally;
/// clones share it.
#[derive(Clone)]
pub struct PrometheusRecorder {
    shared: Arc<Shared>,
}

struct Shared {
    exporter: metrics_exporter_prometheus::PrometheusRecorder,
    upkeep: Arc<Upkeep>,
    /// One counting handle per histogram series, made once.
    histograms: RwLock<HashMap<Key, Histogram>>,
}

impl fmt::Debug for PrometheusRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusRecorder")
            .field("upkeep_every", &self.shared.upkeep.every)
            .finish_non_exhaustive()
    }
}

impl PrometheusRecorder {
    pub(super) fn new(
        exporter: metrics_exporter_prometheus::PrometheusRecorder,
        every: u64,
    ) -> Self {
        let upkeep = Arc::new(Upkeep {
            handle: exporter.handle(),
            samples: AtomicU64::new(0),
            every,
        });
        PrometheusRecorder {
            shared: Arc::new(Shared {
                exporter,
                upkeep,
                histograms: RwLock::default(),
            }),
        }
    }

    /// The exporter's handle: renders the text format, runs upkeep.
    pub fn handle(&self) -> PrometheusHandle {
        self.shared.exporter.handle()
    }
}

impl Recorder for PrometheusRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared
            .exporter
            .describe_counter(key, unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared.exporter.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.shared
            .exporter
            .describe_histogram(key, unit, description)
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.shared.exporter.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.shared.exporter.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let shared = &*self.shared;
        let known = read(&shared.histograms).get(key).cloned();
        if let Some(histogram) = known {
            return histogram;
        }
        let mut histograms = write(&shared.histograms);
        histograms
            .entry(key.clone())
            .or_insert_with(|| {
                Histogram::from_arc(Arc::new(Counted {
                    inner: shared.exporter.register_histogram(key, metadata),
                    upkeep: shared.upkeep.clone(),
                }))
            })
            .clone()
    }
}

/// Counts the samples of every histogram of one recorder, and drains them
/// into their buckets every `every` samples.
struct Upkeep {
    handle: PrometheusHandle,
    samples: AtomicU64,
    every: u64,
}

impl Upkeep {
    #[inline]
    fn recorded(&self, count: u64) {
        let before = self.samples.fetch_add(count, Ordering::Relaxed);
        if before / self.every != (before + count) / self.every {
            self.handle.run_upkeep();
        }
    }
}

/// A histogram handle of the exporter that counts its samples.
struct Counted {
    inner: Histogram,
    upkeep: Arc<Upkeep>,
}

impl HistogramFn for Counted {
    #[inline]
    fn record(&self, value: f64) {
        self.inner.record(value);
        self.upkeep.recorded(1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.inner.record_many(value, count);
        self.upkeep.recorded(count as u64);
    }
}
