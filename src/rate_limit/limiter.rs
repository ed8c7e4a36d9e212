//! The limiter a [`RateLimitLayer`](super::RateLimitLayer) shares with its
//! services: settings, the store, metrics, and what a decision leads to.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use metrics::{Counter, Gauge, SharedString};

use super::decision::{Decision, Placement, Verdict};
use super::headers::{HeaderTemplate, RateHeaders};
use super::quota::Limit;
use super::store::{MemoryStore, RateStore};
use crate::grpc::Protocol;
use crate::key::{KeyExtractor, MissingKey, MissingKeyLog, RequestHead};
use crate::observe::PerRecorder;
use crate::reject::{Reason, Rejection, Renderer};

/// What happens when a request is over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse it at once: 429 / `RESOURCE_EXHAUSTED` (default).
    #[default]
    Reject,
    /// Hold it until its turn if that comes within the given wait, else
    /// refuse it. The wait happens in the response future, never in
    /// `poll_ready`, and its turn is reserved, so waiters go in order.
    Wait(Duration),
    /// Let everything through, but count what would have been refused
    /// (`decision="shadow_rejected"`) and still send the headers: for trying
    /// out a limit on live traffic.
    Shadow,
}

pub(crate) type CostFn = dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync;

/// Settings and state shared by every service of one layer value.
pub(crate) struct Limiter<K: KeyExtractor, St> {
    pub(crate) extractor: K,
    pub(crate) store: St,
    /// The quotas as compiled, for the headers and refusal details.
    pub(crate) limits: Box<[Limit]>,
    /// The one bucket of requests without a key ([`MissingKey::Shared`]).
    pub(crate) unidentified: MemoryStore<()>,
    pub(crate) cost: Option<Box<CostFn>>,
    pub(crate) mode: Mode,
    pub(crate) max_wait: Duration,
    pub(crate) missing_key: MissingKey,
    pub(crate) missing_key_log: MissingKeyLog,
    /// The IETF fields' fixed parts, when headers are on.
    pub(crate) header_template: Option<HeaderTemplate>,
    pub(crate) renderer: Renderer,
    pub(crate) name: SharedString,
    pub(crate) metrics: PerRecorder<Handles>,
}

/// The layer's metric handles for one recorder.
pub(crate) struct Handles {
    /// `armor.rate_limit.decisions{name,decision}`.
    pub(crate) allowed: Counter,
    pub(crate) rejected: Counter,
    pub(crate) shadow_rejected: Counter,
    /// `armor.rate_limit.missing_key{name}`.
    pub(crate) missing_key: Counter,
    /// `armor.rate_limit.keys{name}`.
    pub(crate) live_keys: Gauge,
}

/// What to do with a request once its store has decided.
pub(crate) enum Next {
    /// Call the service, adding these headers to its response.
    Proceed(Option<Box<RateHeaders>>),
    /// Wait this long, then call the service.
    Delay(Duration, Option<Box<RateHeaders>>),
    /// Answer with this refusal.
    Refuse(Response<Bytes>),
}

/// Turns a store's decision into what happens next: the same rules whether
/// the store answered at once or later (then through a `dyn Decide`, so the
/// response future does not carry the extractor's and store's types).
pub(crate) trait Decide: Send + Sync {
    fn decide(&self, decision: Decision, protocol: Protocol) -> Next;
}

impl<K: KeyExtractor, St: RateStore<K::Key>> Limiter<K, St> {
    /// Runs `f` with the handles of the recorder current now.
    #[inline]
    pub(crate) fn metrics<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        self.metrics.with(|| {
            let decisions = |decision: &'static str| {
                metrics::counter!("armor.rate_limit.decisions",
                    "name" => self.name.clone(), "decision" => decision)
            };
            let handles = Handles {
                allowed: decisions("allowed"),
                rejected: decisions("rejected"),
                shadow_rejected: decisions("shadow_rejected"),
                missing_key: metrics::counter!("armor.rate_limit.missing_key", "name" => self.name.clone()),
                live_keys: metrics::gauge!("armor.rate_limit.keys", "name" => self.name.clone()),
            };
            // A recorder that arrives late still starts from the truth.
            handles.live_keys.set(self.store.live_keys() as f64);
            handles
        }, f)
    }

    /// Brings the key gauge up to date after the store changed size.
    pub(crate) fn update_live_keys(&self) {
        self.metrics(|m| m.live_keys.set(self.store.live_keys() as f64));
    }

    /// Counts and logs a request without a key.
    pub(crate) fn report_missing_key(&self) {
        self.metrics(|m| m.missing_key.increment(1));
        self.missing_key_log
            .log("rate_limit", &self.name, self.missing_key);
    }

    fn rate_headers(&self, decision: &Decision) -> Option<Box<RateHeaders>> {
        // A store that could not tell (its backend down) gets no headers
        // rather than made-up numbers.
        if decision.quotas.len() != self.limits.len() {
            return None;
        }
        let template = self.header_template.as_ref()?;
        Some(Box::new(template.fields(&decision.quotas)))
    }
}

impl<K, St> Decide for Limiter<K, St>
where
    K: KeyExtractor,
    St: RateStore<K::Key>,
{
    fn decide(&self, decision: Decision, protocol: Protocol) -> Next {
        if decision.placement == Placement::Inserted {
            self.update_live_keys();
        }
        let headers = self.rate_headers(&decision);
        match decision.verdict {
            Verdict::Allowed => {
                self.metrics(|m| m.allowed.increment(1));
                Next::Proceed(headers)
            }
            Verdict::Delayed(wait) => {
                self.metrics(|m| m.allowed.increment(1));
                Next::Delay(wait, headers)
            }
            Verdict::Refused(_) if self.mode == Mode::Shadow => {
                self.metrics(|m| m.shadow_rejected.increment(1));
                tracing::debug!(name = &*self.name, "rate limit would refuse (shadow mode)");
                Next::Proceed(headers)
            }
            Verdict::Refused(refusal) => {
                self.metrics(|m| m.rejected.increment(1));
                let reason = if decision.placement == Placement::Unavailable {
                    Reason::StoreUnavailable
                } else {
                    Reason::RateLimited
                };
                let rejection = Rejection::new("rate_limit", reason);
                let rejection = match (refusal, decision.placement) {
                    (Some((wait, quota)), _) => {
                        let name = self.limits.get(quota).map_or("?", |limit| &limit.name);
                        rejection
                            .with_retry_after(wait)
                            .with_detail(format!("quota \"{name}\" exceeded"))
                    }
                    (None, Placement::Unavailable) => rejection,
                    (None, Placement::Full) => {
                        rejection.with_detail("too many distinct clients; try again later")
                    }
                    (None, _) => rejection
                        .with_detail("the request costs more than the quota allows at once"),
                };
                tracing::debug!(
                    name = &*self.name,
                    detail = rejection.detail(),
                    "rate limited"
                );
                let mut response = self.renderer.render_bytes(rejection, protocol);
                if let Some(headers) = headers {
                    headers.apply(response.headers_mut());
                }
                Next::Refuse(response)
            }
        }
    }
}
