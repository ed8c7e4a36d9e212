//! A recorder for tests that keeps what it is given, and readers of it.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// A recorder that keeps what it is given and can be read any number of
/// times (metrics-util's debugging recorder drains on every snapshot).
#[derive(Clone)]
pub struct Recording(pub Arc<Registry<Key, AtomicStorage>>, pub Descriptions);

/// Each described instrument's unit, in the order they were described.
pub type Descriptions = Arc<std::sync::Mutex<Vec<(String, Option<Unit>)>>>;

impl Recording {
    pub fn new() -> Self {
        Self(Arc::new(Registry::atomic()), Descriptions::default())
    }

    fn describe(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        assert!(!help.is_empty(), "{name:?} has help text");
        self.1
            .lock()
            .unwrap()
            .push((name.as_str().to_owned(), unit));
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help)
    }
    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help)
    }
    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe(name, unit, help)
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// One series: its name, its labels in the order they were given, and its
/// value (a counter or gauge as itself, a histogram as its samples).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<String>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(u64),
    Level(f64),
    Samples(Vec<f64>),
}

pub fn series(recording: &Recording) -> Vec<Series> {
    let describe = |key: &Key, value: Value| Series {
        name: key.name().to_owned(),
        labels: key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect(),
        value,
    };
    let mut all = Vec::new();
    recording.0.visit_counters(|key, count| {
        all.push(describe(
            key,
            Value::Count(count.load(std::sync::atomic::Ordering::SeqCst)),
        ))
    });
    recording.0.visit_gauges(|key, level| {
        let bits = level.load(std::sync::atomic::Ordering::SeqCst);
        all.push(describe(key, Value::Level(f64::from_bits(bits))))
    });
    recording
        .0
        .visit_histograms(|key, samples| all.push(describe(key, Value::Samples(samples.data()))));
    all.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    all
}

/// The durations recorded under `name`, by label set.
pub fn durations(recording: &Recording, name: &str) -> Vec<(Vec<String>, Vec<f64>)> {
    series(recording)
        .into_iter()
        .filter(|s| s.name == name)
        .filter_map(|s| match s.value {
            Value::Samples(samples) if !samples.is_empty() => Some((s.labels, samples)),
            _ => None,
        })
        .collect()
}

pub fn labels(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn active(recording: &Recording, name: &str) -> Vec<(Vec<String>, f64)> {
    series(recording)
        .into_iter()
        .filter(|s| s.name == name)
        .filter_map(|s| match s.value {
            Value::Level(level) => Some((s.labels, level)),
            _ => None,
        })
        .collect()
}

/// The sum of counter `name` over its series that carry every one of
/// `labels` (`key=value`).
pub fn count(recording: &Recording, name: &str, labels: &[&str]) -> u64 {
    series(recording)
        .into_iter()
        .filter(|series| {
            series.name == name
                && labels
                    .iter()
                    .all(|label| series.labels.iter().any(|have| have == label))
        })
        .map(|series| match series.value {
            Value::Count(count) => count,
            _ => 0,
        })
        .sum()
}

/// Runs `test` on a current-thread runtime in real time (for tests against
/// real servers, whose clocks are real) with `recording` as the thread's
/// recorder.
pub fn run_real_time<F: std::future::Future>(
    recording: &Recording,
    test: impl FnOnce() -> F,
) -> F::Output {
    metrics::with_local_recorder(recording, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test())
    })
}
