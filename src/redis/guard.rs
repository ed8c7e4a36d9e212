//! What stands between a request and Redis: a per-call timeout and a
//! circuit breaker (this crate's own core), so that during an outage a
//! request pays the timeout only while the breaker learns, then nothing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, SharedString};
use redis::RedisResult;
use tokio::time::Instant;

use crate::circuit_breaker::{Admission, Breaker, Observer, Permit, Policy, WindowSpec};
use crate::classify::{FailureKind, Outcome};

/// Why a guarded call brought no answer.
#[derive(Debug, Clone)]
pub(crate) enum Failed {
    /// The breaker is open: Redis was not asked.
    Open,
    /// Redis did not answer within the timeout.
    Timeout,
    /// Redis (or the connection to it) answered with an error.
    Error(redis::RedisError),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Open => f.write_str("its circuit breaker is open"),
            Failed::Timeout => f.write_str("Redis did not answer in time"),
            Failed::Error(error) => write!(f, "Redis failed: {error}"),
        }
    }
}

impl Failed {
    /// The `result` label of the store metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Failed::Open => "fallback",
            Failed::Timeout => "timeout",
            Failed::Error(_) => "error",
        }
    }
}

/// The results every store counts in `armor.<layer>.store{name,result}`:
/// Redis answered, or what kept it from answering.
pub(crate) struct Results {
    pub(crate) ok: Counter,
    error: Counter,
    timeout: Counter,
    fallback: Counter,
}

impl Results {
    pub(crate) fn new(metric: &'static str, name: &SharedString) -> Results {
        Results {
            ok: result(metric, name, "ok"),
            error: result(metric, name, "error"),
            timeout: result(metric, name, "timeout"),
            fallback: result(metric, name, "fallback"),
        }
    }

    /// Counts a call that brought no answer, under its `result`.
    pub(crate) fn failed(&self, failed: &Failed) {
        match failed {
            Failed::Open => self.fallback.increment(1),
            Failed::Timeout => self.timeout.increment(1),
            Failed::Error(_) => self.error.increment(1),
        }
    }
}

/// One `result` of `metric` for the store `name`.
pub(crate) fn result(metric: &'static str, name: &SharedString, result: &'static str) -> Counter {
    metrics::counter!(metric, "name" => name.clone(), "result" => result)
}

/// Timeout and breaker around one store's Redis calls.
pub(crate) struct Guard {
    timeout: Duration,
    breaker: Breaker<()>,
    /// When a failure was last logged (ms since `epoch`), to log at most
    /// one warning per [`WARN_EVERY`].
    warned_at: AtomicU64,
    epoch: Instant,
}

/// The shortest gap between two warnings of one store.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The breaker's policy: open after 5 failures in a row, or half the calls
/// of the last 20 failing; probe again after 250 ms, at most a second
/// apart however long the outage, so a Redis that is back is used again
/// within a second.
fn policy() -> Policy {
    Policy {
        window: WindowSpec::Count(20),
        min_calls: 10,
        failure_rate: Some(0.5),
        slow_rate: None,
        slow_call_us: None,
        consecutive_failures: Some(5),
        open_base_us: 250_000,
        open_max_us: 1_000_000,
        jitter: 0.2,
        probes: 1,
        max_failed_probes: 0,
        probe_timeout_us: 1_000_000,
    }
}

impl Guard {
    /// A guard for the store `name` (its breaker reports as
    /// `armor.circuit_breaker.*{name}`), giving each call `timeout`.
    pub(crate) fn new(name: SharedString, timeout: Duration) -> Guard {
        Guard {
            timeout,
            breaker: Breaker::new(None, policy(), Arc::new(Observer::new(name, None))),
            warned_at: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// Runs `call` if the breaker lets it, within the timeout; returns the
    /// answer and how long it took.
    pub(crate) async fn call<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<(T, Duration), Failed> {
        self.call_within(self.timeout, call).await
    }

    /// The same with its own timeout (for work off the request path).
    pub(crate) async fn call_within<T>(
        &self,
        timeout: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<(T, Duration), Failed> {
        let permit = match self.breaker.admit() {
            Admission::Admitted(permit) => permit,
            Admission::Refused(_) => return Err(Failed::Open),
        };
        let mut attempt = Attempt {
            breaker: &self.breaker,
            permit: Some(permit),
        };
        let started = Instant::now();
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => {
                attempt.finish(Outcome::Success);
                Ok((answer, started.elapsed()))
            }
            Ok(Err(error)) => {
                attempt.finish(Outcome::Failure(FailureKind::ServiceError));
                Err(Failed::Error(error))
            }
            Err(_) => {
                attempt.finish(Outcome::TimedOut);
                Err(Failed::Timeout)
            }
        }
    }

    /// Logs a failure of the store `name`, at most once every 10 s,
    /// saying what happens instead (`instead`).
    pub(crate) fn warn(&self, name: &str, failed: &Failed, instead: &str) {
        if self.should_warn() {
            tracing::warn!(name, result = failed.label(), error = %failed,
                "the {instead}");
        }
    }

    /// Whether a failure should be logged now (at most once per 10 s).
    fn should_warn(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.warned_at.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        due && self
            .warned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// An admitted call: reports its outcome once, as cancelled if the caller
/// went away first (so a probe dropped mid-call never wedges the breaker).
struct Attempt<'a> {
    breaker: &'a Breaker<()>,
    permit: Option<Permit>,
}

impl Attempt<'_> {
    fn finish(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker.complete(permit, outcome);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_themselves() {
        let error = Failed::Error(redis::RedisError::from((redis::ErrorKind::Io, "boom")));
        assert!(error.to_string().starts_with("Redis failed: "), "{error}");
        assert!(error.to_string().contains("boom"), "{error}");
        assert_eq!(error.label(), "error");
        assert_eq!(Failed::Timeout.label(), "timeout");
        assert_eq!(Failed::Timeout.to_string(), "Redis did not answer in time");
        assert_eq!(Failed::Open.label(), "fallback");
        assert_eq!(Failed::Open.to_string(), "its circuit breaker is open");
    }
}
