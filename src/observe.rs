//! Metric handles that follow the recorder installed when an event happens.
//!
//! A `metrics` handle (`Counter`, `Gauge`, ...) is bound to the recorder
//! that was current when it was registered. A layer that registered its
//! handles in `build()` would report forever to whatever was installed then,
//! usually nothing: applications commonly install their exporter after the
//! router is built. Registering at every event instead costs a `Key` (an
//! allocation) per request.
//!
//! [`PerRecorder`] keeps one set of handles per recorder it has seen, found
//! by the recorder's address: an event asks which recorder is current (a
//! thread-local and an atomic load), finds its handles among a few slots
//! (one load each) and registers a set only the first time a recorder shows
//! up. After that warm-up no event allocates. Past [`SLOTS`] distinct
//! recorders (tests that make many) handles are registered per event, which
//! is correct, only slower.
//!
//! Each recorder is also told, once, what every `armor.*` metric means and
//! its unit ([`describe`]): exporters show it as `# HELP`, and Prometheus's
//! `promtool check metrics` asks for it.

use std::sync::OnceLock;

use metrics::{Recorder, Unit};

/// What a metric is, for [`describe`].
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every `armor.*` metric the layers emit: name, kind, unit, meaning.
const DESCRIPTIONS: [(&str, Kind, Unit, &str); 24] = [
    (
        "armor.timeout.expired",
        Kind::Counter,
        Unit::Count,
        "Requests whose timeout fired, by the timer that fired (stage).",
    ),
    (
        "armor.rate_limit.decisions",
        Kind::Counter,
        Unit::Count,
        "Rate limit decisions: allowed or refused.",
    ),
    (
        "armor.rate_limit.missing_key",
        Kind::Counter,
        Unit::Count,
        "Requests the rate limiter found no key for.",
    ),
    (
        "armor.rate_limit.keys",
        Kind::Gauge,
        Unit::Count,
        "Keys the rate limiter is tracking now.",
    ),
    (
        "armor.circuit_breaker.calls",
        Kind::Counter,
        Unit::Count,
        "Calls seen by the circuit breaker, by outcome.",
    ),
    (
        "armor.circuit_breaker.state",
        Kind::Gauge,
        Unit::Count,
        "1 for the circuit breaker's current state, 0 for the others.",
    ),
    (
        "armor.circuit_breaker.transitions",
        Kind::Counter,
        Unit::Count,
        "Circuit breaker state changes, from and to.",
    ),
    (
        "armor.circuit_breaker.missing_key",
        Kind::Counter,
        Unit::Count,
        "Requests the circuit breaker found no key for.",
    ),
    (
        "armor.retry.attempts",
        Kind::Counter,
        Unit::Count,
        "Attempts made by the retry layer, by outcome.",
    ),
    (
        "armor.retry.budget_exhausted",
        Kind::Counter,
        Unit::Count,
        "Retries not made because the retry budget was spent.",
    ),
    (
        "armor.retry.missing_key",
        Kind::Counter,
        Unit::Count,
        "Requests the retry layer found no key for.",
    ),
    (
        "armor.compression.bytes",
        Kind::Counter,
        Unit::Bytes,
        "Bytes after compression (or before decompression), by direction and encoding.",
    ),
    (
        "armor.compression.uncompressed_bytes",
        Kind::Counter,
        Unit::Bytes,
        "Bytes before compression (or after decompression), by direction and encoding.",
    ),
    (
        "armor.health.status",
        Kind::Gauge,
        Unit::Count,
        "Health of each probe: 1 pass, 0.5 warn, 0 fail.",
    ),
    (
        "armor.health.check.duration",
        Kind::Histogram,
        Unit::Seconds,
        "How long each health check run took.",
    ),
    (
        "armor.health.check.failures",
        Kind::Counter,
        Unit::Count,
        "Health check runs that failed, timed out or panicked.",
    ),
    (
        "armor.cache.lookups",
        Kind::Counter,
        Unit::Count,
        "Requests seen by the cache, by result: hit, stale, revalidated, miss, uncacheable, bypass.",
    ),
    (
        "armor.cache.stored_bytes",
        Kind::Gauge,
        Unit::Bytes,
        "Bytes held by the cache's store.",
    ),
    (
        "armor.cache.evictions",
        Kind::Counter,
        Unit::Count,
        "Entries the cache's store dropped, by cause: size, expired, explicit.",
    ),
    (
        "armor.cache.coalesced",
        Kind::Counter,
        Unit::Count,
        "Requests that waited for another request fetching the same URL.",
    ),
    (
        "armor.rate_limit.store",
        Kind::Counter,
        Unit::Count,
        "Decisions of a shared (Redis) rate-limit store, by where they were made: ok (Redis), cached (a refusal known locally), error, timeout, fallback (breaker open).",
    ),
    (
        "armor.rate_limit.store_duration",
        Kind::Histogram,
        Unit::Seconds,
        "Round trips of a shared (Redis) rate-limit store that answered.",
    ),
    (
        "armor.cache.store",
        Kind::Counter,
        Unit::Count,
        "Calls of a shared (Redis) cache store, by result: ok, error, timeout, fallback (breaker open), corrupt (an entry that did not decode).",
    ),
    (
        "armor.metrics.label_overflow",
        Kind::Counter,
        Unit::Count,
        "Requests recorded in the overflow series because an instrument reached its cap of label sets.",
    ),
];

/// Tells `recorder` the unit and meaning of every `armor.*` metric.
pub(crate) fn describe(recorder: &dyn Recorder) {
    for (name, kind, unit, help) in DESCRIPTIONS {
        match kind {
            Kind::Counter => recorder.describe_counter(name.into(), Some(unit), help.into()),
            Kind::Gauge => recorder.describe_gauge(name.into(), Some(unit), help.into()),
            Kind::Histogram => recorder.describe_histogram(name.into(), Some(unit), help.into()),
        }
    }
}

/// [`describe`]s to the current recorder, once per recorder, for metrics
/// that are registered at each event rather than through a [`PerRecorder`].
#[cfg(any(feature = "timeout", feature = "health"))]
pub(crate) fn describe_current_once() {
    static DESCRIBED: OnceLock<PerRecorder<()>> = OnceLock::new();
    DESCRIBED
        .get_or_init(PerRecorder::default)
        .with(|| (), |()| ());
}

/// How many recorders get cached handles: the global one, the no-op one
/// (events before any recorder exists) and a couple of local ones.
const SLOTS: usize = 4;

/// One set of metric handles per recorder; see the [module docs](self).
pub(crate) struct PerRecorder<H> {
    slots: [OnceLock<(usize, H)>; SLOTS],
}

impl<H> Default for PerRecorder<H> {
    fn default() -> Self {
        PerRecorder {
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// The current recorder's address: what tells recorders apart.
#[inline]
fn current_recorder() -> usize {
    metrics::with_recorder(|recorder| {
        std::ptr::from_ref::<dyn metrics::Recorder>(recorder).cast::<()>() as usize
    })
}

impl<H> PerRecorder<H> {
    /// Runs `use_handles` with the handles of the recorder current now,
    /// registered by `register` (with that recorder) the first time it is
    /// seen. The usual case, the first recorder seen, is one comparison.
    #[inline]
    pub(crate) fn with<R>(
        &self,
        register: impl FnOnce() -> H,
        use_handles: impl FnOnce(&H) -> R,
    ) -> R {
        let recorder = current_recorder();
        match self.slots[0].get() {
            Some((owner, handles)) if *owner == recorder => use_handles(handles),
            _ => self.with_other(recorder, register, use_handles),
        }
    }

    #[cold]
    #[inline(never)]
    fn with_other<R>(
        &self,
        recorder: usize,
        register: impl FnOnce() -> H,
        use_handles: impl FnOnce(&H) -> R,
    ) -> R {
        let mut register = Some(register);
        for slot in &self.slots {
            // A free slot is claimed for this recorder; a slot claimed for
            // another one (maybe by another thread just now) is skipped.
            let (owner, handles) = slot.get_or_init(|| {
                let register = register.take().expect("a slot is claimed once per call");
                metrics::with_recorder(describe);
                (recorder, register())
            });
            if *owner == recorder {
                return use_handles(handles);
            }
        }
        let register = register.expect("no slot was claimed by this call");
        use_handles(&register())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Counter;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn count(recorder: &DebuggingRecorder) -> u64 {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(_, _, _, value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn each_recorder_gets_the_events_made_while_it_is_current() {
        let handles = PerRecorder::<Counter>::default();
        let register = || metrics::counter!("events");
        // Before any recorder: nothing to see, nothing lost that matters.
        handles.with(register, |c| c.increment(1));
        let first = DebuggingRecorder::new();
        let second = DebuggingRecorder::new();
        metrics::with_local_recorder(&first, || {
            handles.with(register, |c| c.increment(1));
            handles.with(register, |c| c.increment(1));
        });
        metrics::with_local_recorder(&second, || handles.with(register, |c| c.increment(5)));
        metrics::with_local_recorder(&first, || handles.with(register, |c| c.increment(1)));
        assert_eq!(count(&first), 3);
        assert_eq!(count(&second), 5);
    }

    #[test]
    fn past_the_slots_events_are_still_counted() {
        let handles = PerRecorder::<Counter>::default();
        let register = || metrics::counter!("events");
        let recorders: Vec<_> = (0..SLOTS + 3).map(|_| DebuggingRecorder::new()).collect();
        for _ in 0..2 {
            for recorder in &recorders {
                metrics::with_local_recorder(recorder, || {
                    handles.with(register, |c| c.increment(1))
                });
            }
        }
        for recorder in &recorders {
            assert_eq!(count(recorder), 2);
        }
    }
}
