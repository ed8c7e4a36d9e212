//! What every service of one [`RetryLayer`](super::RetryLayer) shares: the
//! settings, the budgets, the user's rules and the metrics.

use std::time::Duration;

use metrics::{Counter, SharedString};

use super::budget::Budgets;
use super::policy::Backoff;
use crate::key::{KeyExtractor, MissingKey, MissingKeyLog, RequestHead};
use crate::observe::PerRecorder;
use crate::random::Jitter;
use crate::reject::Renderer;

/// Decides whether a request may be sent more than once.
pub(crate) type EligibleFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;
/// Overrides the retry decision for one answer.
pub(crate) type DecideFn = dyn Fn(&RetryCheck<'_>) -> Option<bool> + Send + Sync;

/// An answer the layer is deciding about, as a
/// [`retry_if`](super::RetryBuilder::retry_if) closure sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryCheck<'a> {
    /// The request's method.
    pub method: &'a http::Method,
    /// The request's URI.
    pub uri: &'a http::Uri,
    /// Which attempt answered: 1 for the first.
    pub attempt: u32,
    /// The answer's status and headers, or `None` when the service failed
    /// (a connection error, for a client).
    pub response: Option<(http::StatusCode, &'a http::HeaderMap)>,
}

/// Everything a retry decision needs, shared by every service of a layer.
pub(crate) struct Settings {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_server_delay: Duration,
    pub(crate) max_replay_bytes: usize,
    pub(crate) per_try_timeout: Option<Duration>,
    /// Bit `n` set: gRPC code `n` is retried.
    pub(crate) grpc_codes: u32,
}

/// Settings and state shared by every service a layer makes.
pub(crate) struct Shared<E: KeyExtractor, C> {
    pub(crate) settings: Settings,
    pub(crate) classifier: C,
    pub(crate) renderer: Renderer,
    pub(crate) eligible: Option<Box<EligibleFn>>,
    pub(crate) decide: Option<Box<DecideFn>>,
    pub(crate) extractor: E,
    pub(crate) budgets: Budgets<E::Key>,
    pub(crate) missing_key: MissingKey,
    pub(crate) jitter: Jitter,
    pub(crate) observer: Observer,
}

/// The layer's metrics and missing-key log.
pub(crate) struct Observer {
    pub(crate) name: SharedString,
    handles: PerRecorder<Handles>,
    pub(crate) missing_key_log: MissingKeyLog,
}

/// The layer's metric handles for one recorder.
pub(crate) struct Handles {
    /// `armor.retry.attempts{name,outcome}`: success, retried, failed, refused.
    attempts: [Counter; 4],
    /// `armor.retry.budget_exhausted{name}`.
    pub(crate) budget_exhausted: Counter,
    /// `armor.retry.missing_key{name}`.
    pub(crate) missing_key: Counter,
}

/// How one attempt ended, for `armor.retry.attempts{outcome}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AttemptLabel {
    /// Its answer was passed on and was not a failure.
    Success,
    /// It failed and another attempt follows.
    Retried,
    /// It failed and its answer was passed on (nothing left to try, or not retryable).
    Failed,
    /// A layer further in refused it locally; passed on untouched.
    Refused,
}

const ATTEMPT_LABELS: [&str; 4] = ["success", "retried", "failed", "refused"];

impl Observer {
    pub(crate) fn new(name: SharedString) -> Self {
        Observer {
            name,
            handles: PerRecorder::default(),
            missing_key_log: MissingKeyLog::default(),
        }
    }

    /// Runs `f` with the handles of the recorder current now.
    #[inline]
    pub(crate) fn handles<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        self.handles.with(|| {
            let name = &self.name;
            Handles {
                attempts: ATTEMPT_LABELS.map(|outcome| {
                    metrics::counter!("armor.retry.attempts", "name" => name.clone(), "outcome" => outcome)
                }),
                budget_exhausted: metrics::counter!("armor.retry.budget_exhausted", "name" => name.clone()),
                missing_key: metrics::counter!("armor.retry.missing_key", "name" => name.clone()),
            }
        }, f)
    }

    #[inline]
    pub(crate) fn attempt(&self, label: AttemptLabel) {
        self.handles(|h| h.attempts[label as usize].increment(1));
    }
}
