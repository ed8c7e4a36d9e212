use std::borrow::Cow;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{Counter, SharedString};
use tower_layer::Layer;

use super::Retry;
use super::budget::{Budget, BudgetSpec};
use super::policy::Backoff;
use crate::classify::{Classify, DefaultClassifier};
use crate::config::{ConfigError, instance_name};
use crate::grpc::GrpcCode;
use crate::key::{Global, KeyExtractor, RequestHead};
use crate::random::Jitter;
use crate::reject::Renderer;

/// The most attempts a request may get, whatever the configuration (gRPC's
/// A6 caps clients at 5 too): more would multiply an outage, not ride it out.
pub const MAX_ATTEMPTS_CAP: u32 = 5;

/// How many per-key budgets a layer holds at most, by default.
pub const DEFAULT_MAX_KEYS: usize = 1_000;

/// Decides whether a request may be sent more than once.
pub(crate) type EligibleFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;
/// Overrides the retry decision for one answer.
pub(crate) type DecideFn = dyn Fn(&RetryCheck<'_>) -> Option<bool> + Send + Sync;

/// An answer the layer is deciding about, as a [`retry_if`](RetryBuilder::retry_if)
/// closure sees it.
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

/// Where the layer's retry budgets live.
pub(crate) enum Budgets<K> {
    Off,
    Single(Arc<Budget>),
    Keyed(Box<KeyedBudgets<K>>),
}

type Shard<K> = RwLock<hashbrown::HashMap<K, Arc<Budget>>>;

/// One budget per key: 16 shards, at most `max_keys` budgets; beyond that
/// (after dropping idle ones) new keys share one budget.
pub(crate) struct KeyedBudgets<K> {
    spec: BudgetSpec,
    shards: Box<[Shard<K>]>,
    hasher: hashbrown::DefaultHashBuilder,
    max_per_shard: usize,
    pub(crate) shared: Arc<Budget>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedBudgets<K> {
    fn new(spec: BudgetSpec, max_keys: usize) -> Self {
        const SHARDS: usize = 16;
        KeyedBudgets {
            spec,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            max_per_shard: max_keys.div_ceil(SHARDS),
            shared: Arc::new(Budget::new(spec)),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Arc<Budget> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash % self.shards.len() as u64) as usize];
        let read = shard
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(budget) = read.get(key) {
            return budget.clone();
        }
        drop(read);
        let mut map = shard
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(budget) = map.get(key) {
            return budget.clone();
        }
        if map.len() >= self.max_per_shard {
            // Budgets with nothing in their window are the same as new ones.
            map.retain(|_, budget| Arc::strong_count(budget) > 1 || !budget.is_idle());
            if map.len() >= self.max_per_shard {
                return self.shared.clone();
            }
        }
        let budget = Arc::new(Budget::new(self.spec));
        map.insert(key.clone(), budget.clone());
        budget
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

/// Pre-registered metric handles.
pub(crate) struct Observer {
    pub(crate) name: SharedString,
    /// `attempts{outcome}`: success, retried, failed, refused.
    attempts: [Counter; 4],
    pub(crate) budget_exhausted: Counter,
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
    fn new(name: SharedString) -> Self {
        Observer {
            attempts: ATTEMPT_LABELS.map(|outcome| {
                metrics::counter!("armor.retry.attempts", "name" => name.clone(), "outcome" => outcome)
            }),
            budget_exhausted: metrics::counter!("armor.retry.budget_exhausted", "name" => name.clone()),
            name,
        }
    }

    #[inline]
    pub(crate) fn attempt(&self, label: AttemptLabel) {
        self.attempts[label as usize].increment(1);
    }
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

/// Settings and state shared by every service a [`RetryLayer`] makes.
pub(crate) struct Shared<E: KeyExtractor, C> {
    pub(crate) settings: Settings,
    pub(crate) classifier: C,
    pub(crate) renderer: Renderer,
    pub(crate) eligible: Option<Box<EligibleFn>>,
    pub(crate) decide: Option<Box<DecideFn>>,
    pub(crate) extractor: E,
    pub(crate) budgets: Budgets<E::Key>,
    pub(crate) jitter: Jitter,
    pub(crate) observer: Observer,
}

/// Retries failed calls. See the [module docs](super).
///
/// `A` says what body the inner service receives: [`ReplayBody`](super::ReplayBody)
/// by default, or a type-erased body with [`RetryBuilder::inner_body`].
pub struct RetryLayer<E: KeyExtractor = Global, C = DefaultClassifier, A = super::AsReplayBody> {
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
    /// Starts a retry layer whose budget is shared by all its requests.
    pub fn builder() -> RetryBuilder {
        RetryBuilder::new(Global, false)
    }

    /// Starts a retry layer with one budget per key (e.g. per upstream
    /// [`Authority`](crate::key::Authority)), so an outage of one upstream
    /// cannot spend the retries of the others.
    pub fn keyed<E: KeyExtractor>(extractor: E) -> RetryBuilder<E> {
        RetryBuilder::new(extractor, true)
    }
}

impl<E: KeyExtractor, C, A> RetryLayer<E, C, A> {
    /// Retries the shared budget would grant now (`None` without a budget).
    pub fn budget_available(&self) -> Option<u64> {
        match &self.shared.budgets {
            Budgets::Off => None,
            Budgets::Single(budget) => Some(budget.available()),
            Budgets::Keyed(keyed) => Some(keyed.shared.available()),
        }
    }

    /// How many per-key budgets the layer holds.
    pub fn keyed_budgets(&self) -> usize {
        match &self.shared.budgets {
            Budgets::Keyed(keyed) => keyed.len(),
            _ => 0,
        }
    }
}

impl<S, E: KeyExtractor, C, A: Clone> Layer<S> for RetryLayer<E, C, A> {
    type Service = Retry<S, E, C, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.shared.clone(), self.adapter.clone())
    }
}

/// Configures a [`RetryLayer`]; every setting is checked by [`build`](Self::build).
pub struct RetryBuilder<E: KeyExtractor = Global, C = DefaultClassifier, A = super::AsReplayBody> {
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
    max_keys: usize,
    renderer: Renderer,
    eligible: Option<Box<EligibleFn>>,
    decide: Option<Box<DecideFn>>,
}

impl<E: KeyExtractor> RetryBuilder<E> {
    fn new(extractor: E, keyed: bool) -> Self {
        RetryBuilder {
            extractor,
            keyed,
            classifier: DefaultClassifier::new(),
            adapter: super::AsReplayBody,
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
                max_keys: DEFAULT_MAX_KEYS,
                renderer: Renderer::default(),
                eligible: None,
                decide: None,
            },
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

    /// For [`RetryLayer::keyed`]: the most per-key budgets held at once
    /// (default 1,000). Idle ones are dropped first; then new keys share one.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.options.max_keys = max_keys;
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
    pub fn inner_body<T: super::BoxedBody>(self) -> RetryBuilder<E, C, super::Boxed<T>> {
        RetryBuilder {
            adapter: super::Boxed::default(),
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
        if self.keyed && options.max_keys == 0 {
            return error("max_keys must be at least 1".into());
        }
        let budgets = match options.budget {
            None => Budgets::Off,
            Some(spec) if self.keyed => {
                Budgets::Keyed(Box::new(KeyedBudgets::new(spec, options.max_keys)))
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
                jitter: Jitter::new(),
                observer: Observer::new(options.name),
            }),
            adapter: self.adapter,
        })
    }
}
