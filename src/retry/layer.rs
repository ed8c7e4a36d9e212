use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tower_layer::Layer;

use super::Retry;
use super::body::{AsReplayBody, Boxed};
use super::budget::{Budget, BudgetSpec, Budgets, KeyedBudgets};
use super::policy::Backoff;
use super::shared::{DecideFn, EligibleFn, Observer, RetryCheck, Settings, Shared};
use crate::body::BoxedBody;
use crate::classify::{Classify, DefaultClassifier};
use crate::config::{ConfigError, instance_name};
use crate::grpc::GrpcCode;
use crate::key::{Global, KeyExtractor, KeyLimits, MissingKey, RequestHead};
use crate::random::Jitter;
use crate::reject::Renderer;

/// The most attempts a request may get, whatever the configuration (gRPC's
/// A6 caps clients at 5 too): more would multiply an outage, not ride it out.
pub const MAX_ATTEMPTS_CAP: u32 = 5;

/// Retries failed calls. See the [module docs](super).
///
/// `RetryLayer::default()` gives up to 3 attempts with the default budget
/// and backoff; [`builder`](Self::builder) changes them. `A` says what body
/// the inner service receives: [`ReplayBody`](super::ReplayBody) by
/// default, or a type-erased body with [`RetryBuilder::inner_body`].
pub struct RetryLayer<E: KeyExtractor = Global, C = DefaultClassifier, A = AsReplayBody> {
    pub(crate) shared: Arc<Shared<E, C>>,
    adapter: A,
}

impl<E: KeyExtractor, C, A: Clone> Clone for RetryLayer<E, C, A> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: self.shared.clone(),
            adapter: self.adapter.clone(),
        }
    }
}

impl<E: KeyExtractor, C, A> fmt::Debug for RetryLayer<E, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.observer.name)
            .field("max_attempts", &self.shared.settings.max_attempts)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Up to 3 attempts, full-jitter backoff from 25 ms to 250 ms, a budget
    /// of 20% of requests plus 10 a second. The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a retry layer with the defaults, to change some of them; one
    /// budget for all requests unless [`key`](RetryBuilder::key) gives each
    /// key its own.
    pub fn builder() -> RetryBuilder {
        RetryBuilder::new()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer::builder()
            .build()
            .expect("the default retry settings are valid")
    }
}

impl<E: KeyExtractor, C, A> RetryLayer<E, C, A> {
    /// A handle to read and reset the layer's retry budgets.
    pub fn handle(&self) -> RetryHandle<E::Key> {
        RetryHandle {
            budgets: self.shared.budgets.clone(),
        }
    }
}

impl<S, E: KeyExtractor, C, A: Clone> Layer<S> for RetryLayer<E, C, A> {
    type Service = Retry<S, E, C, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.clone())
    }
}

impl<S, E: KeyExtractor, C, A> Retry<S, E, C, A> {
    /// Wraps `inner` with the settings and budgets of `layer` (shared with
    /// the layer's other services).
    pub fn new(inner: S, layer: RetryLayer<E, C, A>) -> Self {
        Retry {
            inner,
            shared: layer.shared,
            adapter: layer.adapter,
        }
    }
}

/// Reads and resets the retry budgets of a [`RetryLayer`]: for admin
/// endpoints and tests. Cheap to clone; every clone sees the same budgets.
pub struct RetryHandle<K = ()> {
    budgets: Budgets<K>,
}

impl<K> Clone for RetryHandle<K> {
    fn clone(&self) -> Self {
        RetryHandle {
            budgets: self.budgets.clone(),
        }
    }
}

impl<K> fmt::Debug for RetryHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryHandle").finish_non_exhaustive()
    }
}

impl<K: std::hash::Hash + Eq + Clone> RetryHandle<K> {
    /// Retries the layer's budget would grant now: the only budget of an
    /// unkeyed layer, or for a keyed layer the one shared by requests
    /// without a key. `None` without a budget.
    pub fn budget_available(&self) -> Option<u64> {
        self.shared_budget().map(Budget::available)
    }

    /// Retries `key`'s budget would grant now (a key not seen yet has a new
    /// budget's allowance). For an unkeyed layer, the one budget's.
    pub fn budget_available_for(&self, key: &K) -> Option<u64> {
        match &self.budgets {
            Budgets::Off => None,
            Budgets::Single(budget) => Some(budget.available()),
            Budgets::Keyed(keyed) => Some(
                keyed
                    .existing(key)
                    .map_or_else(|| keyed.new_available(), |budget| budget.available()),
            ),
        }
    }

    /// Refills the layer's budget (see [`budget_available`](Self::budget_available)):
    /// every request and retry it counted is forgotten.
    pub fn reset_budget(&self) {
        if let Some(budget) = self.shared_budget() {
            budget.reset();
        }
    }

    /// Refills `key`'s budget.
    pub fn reset_budget_for(&self, key: &K) {
        match &self.budgets {
            Budgets::Off => {}
            Budgets::Single(budget) => budget.reset(),
            Budgets::Keyed(keyed) => {
                if let Some(budget) = keyed.existing(key) {
                    budget.reset();
                }
            }
        }
    }

    /// How many per-key budgets the layer holds (0 unless keyed).
    pub fn live_keys(&self) -> usize {
        match &self.budgets {
            Budgets::Keyed(keyed) => keyed.len(),
            _ => 0,
        }
    }

    /// Forgets per-key budgets with nothing in their window that were not
    /// used since the last sweep; returns how many. The layer does this by
    /// itself as new keys arrive.
    pub fn evict_idle(&self) -> usize {
        match &self.budgets {
            Budgets::Keyed(keyed) => keyed.sweep(),
            _ => 0,
        }
    }

    fn shared_budget(&self) -> Option<&Budget> {
        match &self.budgets {
            Budgets::Off => None,
            Budgets::Single(budget) => Some(budget),
            Budgets::Keyed(keyed) => Some(&keyed.shared),
        }
    }
}

/// Configures a [`RetryLayer`]; every setting is checked by [`build`](Self::build).
#[must_use = "call .build() to get the layer"]
pub struct RetryBuilder<E: KeyExtractor = Global, C = DefaultClassifier, A = AsReplayBody> {
    extractor: E,
    keyed: bool,
    classifier: C,
    adapter: A,
    options: Options,
}

/// The builder's settings that do not depend on its type parameters.
struct Options {
    name: SharedString,
    max_attempts: u32,
    backoff: Backoff,
    max_server_delay: Duration,
    max_replay_bytes: usize,
    per_try_timeout: Option<Duration>,
    grpc_codes: Vec<GrpcCode>,
    budget: Option<BudgetSpec>,
    key_limits: KeyLimits,
    missing_key: MissingKey,
    renderer: Renderer,
    eligible: Option<Box<EligibleFn>>,
    decide: Option<Box<DecideFn>>,
}

impl RetryBuilder {
    fn new() -> Self {
        RetryBuilder {
            extractor: Global,
            keyed: false,
            classifier: DefaultClassifier::new(),
            adapter: AsReplayBody,
            options: Options {
                name: SharedString::const_str("default"),
                max_attempts: 3,
                backoff: Backoff::FullJitter {
                    base: Duration::from_millis(25),
                    max: Duration::from_millis(250),
                },
                max_server_delay: Duration::from_secs(10),
                max_replay_bytes: 64 * 1024,
                per_try_timeout: None,
                grpc_codes: vec![GrpcCode::Unavailable],
                budget: Some(BudgetSpec {
                    ratio: 0.2,
                    min_per_second: 10,
                    window: Duration::from_secs(10),
                }),
                key_limits: KeyLimits::default(),
                missing_key: MissingKey::default(),
                renderer: Renderer::default(),
                eligible: None,
                decide: None,
            },
        }
    }
}

impl<C, A> RetryBuilder<Global, C, A> {
    /// One budget per key from `extractor` (e.g. per upstream
    /// [`Authority`](crate::key::Authority), or a closure through
    /// [`key::from_fn`](crate::key::from_fn)), so an outage of one upstream
    /// cannot spend the retries of the others.
    pub fn key<E: KeyExtractor>(self, extractor: E) -> RetryBuilder<E, C, A> {
        RetryBuilder {
            extractor,
            keyed: true,
            classifier: self.classifier,
            adapter: self.adapter,
            options: self.options,
        }
    }
}

impl<E: KeyExtractor, C, A> RetryBuilder<E, C, A> {
    /// The instance name in metrics and logs (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.options.name = instance_name(name);
        self
    }

    /// Attempts in all, the first included (default 3, at most
    /// [`MAX_ATTEMPTS_CAP`]); 1 turns retries off.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.options.max_attempts = attempts;
        self
    }

    /// Exponential backoff with full jitter: before retry `n`, a random wait
    /// up to `min(max, base × 2^(n−1))` (default 25 ms and 250 ms).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.options.backoff = Backoff::FullJitter { base, max };
        self
    }

    /// Decorrelated jitter instead: a random wait in `[base, 3 × previous]`,
    /// at most `max`.
    pub fn decorrelated_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.options.backoff = Backoff::Decorrelated { base, max };
        self
    }

    /// The longest server hint (`Retry-After`, `grpc-retry-pushback-ms`) the
    /// layer waits for before retrying (default 10 s). A longer hint ends the
    /// retries: the caller gets the answer with the hint in it.
    pub fn max_server_delay(mut self, max: Duration) -> Self {
        self.options.max_server_delay = max;
        self
    }

    /// The most request-body bytes kept for replays (default 64 KiB). A
    /// longer body is sent once and not retried.
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.options.max_replay_bytes = bytes;
        self
    }

    /// Gives each attempt at most `timeout` (and never more than the
    /// request's [`Deadline`](crate::Deadline) leaves) to answer. An attempt
    /// that runs out is retried; if it was the last, the caller gets 504 /
    /// `DEADLINE_EXCEEDED`.
    pub fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.options.per_try_timeout = Some(timeout);
        self
    }

    /// The gRPC codes that are retried (default `UNAVAILABLE` only: other
    /// codes may mean the server acted on the call).
    pub fn grpc_retryable_codes(mut self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        self.options.grpc_codes = codes.into_iter().collect();
        self
    }

    /// Retries may be at most `ratio` of the requests over the last
    /// `window`, plus `min_per_second` × window seconds (default 0.2, 10/s,
    /// 10 s). Requests refused by this crate's own layers further in neither
    /// earn nor spend.
    pub fn budget(mut self, ratio: f64, min_per_second: u32, window: Duration) -> Self {
        self.options.budget = Some(BudgetSpec {
            ratio,
            min_per_second,
            window,
        });
        self
    }

    /// No budget: every retryable failure is retried. An outage then
    /// multiplies the load by `max_attempts`.
    pub fn no_budget(mut self) -> Self {
        self.options.budget = None;
        self
    }

    /// With a [`key`](RetryBuilder::key): how many per-key budgets are held
    /// and when idle ones are forgotten (default: [`KeyLimits::default`]);
    /// past the cap new keys share one budget.
    pub fn key_limits(mut self, limits: KeyLimits) -> Self {
        self.options.key_limits = limits;
        self
    }

    /// With a [`key`](RetryBuilder::key): what a request without a key gets
    /// (default: the budget shared by all such requests; `Allow`: sent once,
    /// never retried); see [`MissingKey`].
    pub fn on_missing_key(mut self, missing: MissingKey) -> Self {
        self.options.missing_key = missing;
        self
    }

    /// Which requests may be sent more than once, replacing the default
    /// (idempotent methods, any request with an `Idempotency-Key` header, gRPC calls).
    pub fn retry_requests_when<F>(mut self, eligible: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.options.eligible = Some(Box::new(eligible));
        self
    }

    /// Decides first whether an answer is worth another attempt: `Some(true)`
    /// retries (within attempts, budget and deadline), `Some(false)` never
    /// does, `None` leaves it to the layer's rules.
    pub fn retry_if<F>(mut self, decide: F) -> Self
    where
        F: Fn(&RetryCheck<'_>) -> Option<bool> + Send + Sync + 'static,
    {
        self.options.decide = Some(Box::new(decide));
        self
    }

    /// How local refusals (the 504 of a per-try timeout) are rendered.
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.options.renderer = renderer;
        self
    }

    /// The classifier deciding which answers failed (default
    /// [`DefaultClassifier`]: 5xx, gRPC server errors, service errors).
    pub fn classifier<C2: Classify>(self, classifier: C2) -> RetryBuilder<E, C2, A> {
        RetryBuilder {
            classifier,
            extractor: self.extractor,
            keyed: self.keyed,
            adapter: self.adapter,
            options: self.options,
        }
    }

    /// The inner service receives each attempt's body boxed into `T`
    /// instead of a [`ReplayBody`](super::ReplayBody): for services that take
    /// one body type only, such as a tonic `Channel`
    /// (`.inner_body::<tonic::body::Body>()`, feature `tonic`). Any request
    /// body keeping the [body rule](crate::body) is replayed, whatever layers
    /// sit outside this one. See [`BoxedBody`](super::BoxedBody).
    pub fn inner_body<T: BoxedBody>(self) -> RetryBuilder<E, C, Boxed<T>> {
        RetryBuilder {
            adapter: Boxed::default(),
            classifier: self.classifier,
            extractor: self.extractor,
            keyed: self.keyed,
            options: self.options,
        }
    }

    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<RetryLayer<E, C, A>, ConfigError> {
        let options = self.options;
        let error = |message: String| Err(ConfigError::new("retry", message));
        if !(1..=MAX_ATTEMPTS_CAP).contains(&options.max_attempts) {
            return error(format!(
                "max_attempts must be 1 to {MAX_ATTEMPTS_CAP}, got {}",
                options.max_attempts
            ));
        }
        let (base, max) = options.backoff.limits();
        if base > max {
            return error(format!(
                "backoff base {base:?} is longer than its maximum {max:?}"
            ));
        }
        if options.per_try_timeout == Some(Duration::ZERO) {
            return error("per_try_timeout must be longer than zero".into());
        }
        if let Some(budget) = &options.budget {
            if !(0.0..=1000.0).contains(&budget.ratio) {
                return error(format!(
                    "budget ratio must be 0 to 1000, got {}",
                    budget.ratio
                ));
            }
            if budget.window < Duration::from_secs(1) || budget.window > Duration::from_secs(3600) {
                return error(format!(
                    "budget window must be 1 s to 1 h, got {:?}",
                    budget.window
                ));
            }
        }
        options.key_limits.check("retry")?;
        options.missing_key.check("retry")?;
        let budgets = match options.budget {
            None => Budgets::Off,
            Some(spec) if self.keyed => {
                Budgets::Keyed(Arc::new(KeyedBudgets::new(spec, options.key_limits)))
            }
            Some(spec) => Budgets::Single(Arc::new(Budget::new(spec))),
        };
        let grpc_codes = options
            .grpc_codes
            .iter()
            .fold(0u32, |mask, code| mask | 1 << code.as_u8());
        Ok(RetryLayer {
            shared: Arc::new(Shared {
                settings: Settings {
                    max_attempts: options.max_attempts,
                    backoff: options.backoff,
                    max_server_delay: options.max_server_delay,
                    max_replay_bytes: options.max_replay_bytes,
                    per_try_timeout: options.per_try_timeout,
                    grpc_codes,
                },
                classifier: self.classifier,
                renderer: options.renderer,
                eligible: options.eligible,
                decide: options.decide,
                extractor: self.extractor,
                budgets,
                missing_key: options.missing_key,
                jitter: Jitter::new(),
                observer: Observer::new(options.name),
            }),
            adapter: self.adapter,
        })
    }
}
