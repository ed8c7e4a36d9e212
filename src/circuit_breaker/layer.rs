use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tower_layer::Layer;

use super::CircuitBreaker;
use super::breaker::{
    Breaker, Breakers, CircuitHandle, Hook, Observer, Registry, Shared, StateChange,
};
use super::core::{Policy, WindowSpec};
use crate::classify::{Classify, DefaultClassifier};
use crate::config::{ConfigError, instance_name};
use crate::key::{Global, KeyExtractor, KeyLimits, MissingKey};
use crate::reject::Renderer;

/// Stops calling a failing service for a while. See the [module docs](super).
///
/// `CircuitBreakerLayer::default()` is one breaker with the default policy;
/// [`builder`](Self::builder) changes it.
pub struct CircuitBreakerLayer<E: KeyExtractor = Global, C = DefaultClassifier> {
    pub(crate) shared: Arc<Shared<E, C>>,
}

impl<E: KeyExtractor, C> Clone for CircuitBreakerLayer<E, C> {
    fn clone(&self) -> Self {
        CircuitBreakerLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<E: KeyExtractor, C> fmt::Debug for CircuitBreakerLayer<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breakers = match &self.shared.breakers {
            Breakers::Single(_) => 1,
            Breakers::Keyed(registry) => registry.len(),
        };
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.breakers.observer().name)
            .field("breakers", &breakers)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// One breaker with the default policy: opens when half of the last 100
    /// calls failed (once 20 were seen), for 5 s growing to 60 s, with 3
    /// probes. The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a breaker with the defaults, to change some of them; one
    /// breaker for all requests unless [`key`](CircuitBreakerBuilder::key)
    /// gives each key its own.
    pub fn builder() -> CircuitBreakerBuilder<Global> {
        CircuitBreakerBuilder::new()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        CircuitBreakerLayer::builder()
            .build()
            .expect("the default breaker settings are valid")
    }
}

impl<E: KeyExtractor, C> CircuitBreakerLayer<E, C> {
    /// The handle of the layer's breaker: the only one of an unkeyed layer,
    /// or for a keyed layer the one shared by requests without a key; its
    /// [`for_key`](CircuitHandle::for_key) reaches each key's breaker.
    pub fn handle(&self) -> CircuitHandle<E::Key> {
        CircuitHandle::of_layer(&self.shared.breakers)
    }
}

impl<S, E: KeyExtractor, C: Clone> Layer<S> for CircuitBreakerLayer<E, C> {
    type Service = CircuitBreaker<S, E, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.clone())
    }
}

impl<S, E: KeyExtractor, C> CircuitBreaker<S, E, C> {
    /// Wraps `inner` in the breakers of `layer` (shared with the layer's
    /// other services).
    pub fn new(inner: S, layer: CircuitBreakerLayer<E, C>) -> Self {
        CircuitBreaker {
            inner,
            shared: layer.shared,
            inner_ready: false,
        }
    }
}

/// Configures a [`CircuitBreakerLayer`]; every setting is checked by [`build`](Self::build).
#[must_use = "call .build() to get the layer"]
pub struct CircuitBreakerBuilder<E: KeyExtractor, C = DefaultClassifier> {
    extractor: E,
    keyed: bool,
    classifier: C,
    settings: Settings,
    hook: Option<Box<Hook<E::Key>>>,
}

struct Settings {
    name: SharedString,
    window: Window,
    min_calls: u64,
    failure_rate: Option<f64>,
    slow: Option<(Duration, f64)>,
    consecutive_failures: Option<u32>,
    open_base: Duration,
    open_max: Duration,
    jitter: f64,
    probes: u32,
    probe_timeout: Duration,
    key_limits: KeyLimits,
    missing_key: MissingKey,
    renderer: Renderer,
}

#[derive(Clone, Copy)]
enum Window {
    Count(usize),
    Time(Duration, usize),
}

impl<E: KeyExtractor, C> fmt::Debug for CircuitBreakerBuilder<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.settings.name)
            .finish_non_exhaustive()
    }
}

/// The largest window, probe count and key count a breaker accepts.
const MAX_WINDOW_CALLS: usize = 1_000_000;
const MAX_PROBES: u32 = 1_000;
const MAX_BUCKETS: usize = 1_000;
/// Open periods are kept in milliseconds in 48 bits; a day is plenty.
const MAX_OPEN: Duration = Duration::from_secs(24 * 3600);

impl CircuitBreakerBuilder<Global> {
    fn new() -> Self {
        CircuitBreakerBuilder {
            extractor: Global,
            keyed: false,
            classifier: DefaultClassifier::new(),
            settings: Settings {
                name: SharedString::const_str("default"),
                window: Window::Count(100),
                min_calls: 20,
                failure_rate: Some(0.5),
                slow: None,
                consecutive_failures: None,
                open_base: Duration::from_secs(5),
                open_max: Duration::from_secs(60),
                jitter: 0.2,
                probes: 3,
                probe_timeout: Duration::from_secs(30),
                key_limits: KeyLimits::default(),
                missing_key: MissingKey::default(),
                renderer: Renderer::default(),
            },
            hook: None,
        }
    }
}

impl<C> CircuitBreakerBuilder<Global, C> {
    /// One breaker per key from `extractor` (e.g. per upstream
    /// [`Authority`](crate::key::Authority) for a client, per route or gRPC
    /// method for a server; a closure through
    /// [`key::from_fn`](crate::key::from_fn)), in a bounded registry that
    /// forgets idle ones. Set it before
    /// [`on_state_change`](Self::on_state_change) for the hook to see keys;
    /// a hook set before sees every change with no key.
    pub fn key<E: KeyExtractor>(self, extractor: E) -> CircuitBreakerBuilder<E, C> {
        let hook = self.hook.map(|hook| -> Box<Hook<E::Key>> {
            Box::new(move |change: &StateChange<'_, E::Key>| {
                hook(&StateChange {
                    key: None,
                    from: change.from,
                    to: change.to,
                })
            })
        });
        CircuitBreakerBuilder {
            extractor,
            keyed: true,
            classifier: self.classifier,
            settings: self.settings,
            hook,
        }
    }
}

impl<E: KeyExtractor, C: Classify> CircuitBreakerBuilder<E, C> {
    /// The `name` label on this breaker's metrics (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = instance_name(name);
        self
    }

    /// Judges the last `calls` calls (default: the last 100).
    pub fn count_window(mut self, calls: usize) -> Self {
        self.settings.window = Window::Count(calls);
        self
    }

    /// Judges the calls of the last `span`, kept in `buckets` slices (the
    /// window slides by one slice at a time; 10 is a good choice).
    pub fn time_window(mut self, span: Duration, buckets: usize) -> Self {
        self.settings.window = Window::Time(span, buckets);
        self
    }

    /// The window must hold at least this many calls before its rates count
    /// (default 20), so a few early failures do not open the breaker.
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.settings.min_calls = calls;
        self
    }

    /// Opens when at least this share of the window's calls failed (default
    /// 0.5). `None` turns the failure-rate policy off.
    pub fn failure_rate(mut self, rate: impl Into<Option<f64>>) -> Self {
        self.settings.failure_rate = rate.into();
        self
    }

    /// Counts calls taking `threshold` or longer (to the end of the response
    /// body) as slow, and opens when at least `rate` of the window's calls
    /// were slow. Off by default; timeouts always count as slow failures.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.settings.slow = Some((threshold, rate));
        self
    }

    /// Also opens after this many failures in a row, whatever the window says.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.settings.consecutive_failures = Some(failures);
        self
    }

    /// How long the breaker stays open the first time (default 5 s); each
    /// re-opening from half-open doubles it, up to `max` (default 60 s).
    /// Closing forgets the growth.
    pub fn open_duration(mut self, base: Duration, max: Duration) -> Self {
        self.settings.open_base = base;
        self.settings.open_max = max;
        self
    }

    /// Spreads open periods over `[d × (1 − jitter), d]` so that many clients
    /// do not probe at the same instant (default 0.2; 0 turns it off).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// How many probe calls half-open admits (default 3). The breaker closes
    /// when they have all reported and their failure share is below the
    /// failure rate; it re-opens as soon as that can no longer happen.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.settings.probes = probes;
        self
    }

    /// How long half-open waits for its probes to report before treating the
    /// round as failed and re-opening (default 30 s): a probe that hangs
    /// cannot wedge the breaker.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.settings.probe_timeout = timeout;
        self
    }

    /// How many keyed breakers are held and when idle ones are forgotten
    /// (default: [`KeyLimits::default`]); new keys past the cap share one
    /// breaker with requests that have no key.
    pub fn key_limits(mut self, limits: KeyLimits) -> Self {
        self.settings.key_limits = limits;
        self
    }

    /// What a request without a key gets (default: the breaker shared by
    /// all such requests); see [`MissingKey`].
    pub fn on_missing_key(mut self, missing: MissingKey) -> Self {
        self.settings.missing_key = missing;
        self
    }

    /// Decides which calls failed (default: [`DefaultClassifier`], HTTP 5xx
    /// and gRPC server-error codes, read at the end of the body).
    pub fn classifier<C2: Classify>(self, classifier: C2) -> CircuitBreakerBuilder<E, C2> {
        CircuitBreakerBuilder {
            extractor: self.extractor,
            keyed: self.keyed,
            classifier,
            settings: self.settings,
            hook: self.hook,
        }
    }

    /// Called on every state change, on the thread that made it; keep it quick.
    pub fn on_state_change<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateChange<'_, E::Key>) + Send + Sync + 'static,
    {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Renders refusals (default: 503 + `Retry-After` + problem+json, or
    /// gRPC `UNAVAILABLE` + `grpc-retry-pushback-ms`).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.settings.renderer = renderer;
        self
    }

    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer<E, C>, ConfigError> {
        let policy = self.settings.policy()?;
        self.settings.key_limits.check("circuit_breaker")?;
        self.settings.missing_key.check("circuit_breaker")?;
        let observer = Arc::new(Observer::new(self.settings.name.clone(), self.hook));
        let breakers = if self.keyed {
            Breakers::Keyed(Arc::new(Registry::new(
                policy,
                observer,
                self.settings.key_limits,
            )))
        } else {
            Breakers::Single(Arc::new(Breaker::new(None, policy, observer)))
        };
        Ok(CircuitBreakerLayer {
            shared: Arc::new(Shared {
                extractor: self.extractor,
                breakers,
                classifier: self.classifier,
                renderer: self.settings.renderer,
                missing_key: self.settings.missing_key,
            }),
        })
    }
}

fn invalid(message: impl Into<Cow<'static, str>>) -> ConfigError {
    ConfigError::new("circuit_breaker", message)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn check_rate(what: &str, rate: f64) -> Result<f64, ConfigError> {
    if rate > 0.0 && rate <= 1.0 {
        Ok(rate)
    } else {
        Err(invalid(format!("{what} must be in (0, 1], got {rate}")))
    }
}

impl Settings {
    fn policy(&self) -> Result<Policy, ConfigError> {
        let window = match self.window {
            Window::Count(calls) if (1..=MAX_WINDOW_CALLS).contains(&calls) => {
                WindowSpec::Count(calls)
            }
            Window::Count(calls) => {
                return Err(invalid(format!(
                    "count_window must hold 1 to {MAX_WINDOW_CALLS} calls, got {calls}"
                )));
            }
            Window::Time(span, buckets) => {
                if !(1..=MAX_BUCKETS).contains(&buckets) {
                    return Err(invalid(format!(
                        "time_window needs 1 to {MAX_BUCKETS} buckets, got {buckets}"
                    )));
                }
                let width_us = micros(span) / buckets as u64;
                if width_us < 1000 {
                    return Err(invalid(format!(
                        "time_window buckets must span at least 1 ms; {span:?} in {buckets} is less"
                    )));
                }
                WindowSpec::Time { buckets, width_us }
            }
        };
        let failure_rate = self
            .failure_rate
            .map(|rate| check_rate("failure_rate", rate))
            .transpose()?;
        let (slow_rate, slow_call_us) = match self.slow {
            Some((threshold, rate)) if !threshold.is_zero() => (
                Some(check_rate("slow call rate", rate)?),
                Some(micros(threshold)),
            ),
            Some(_) => return Err(invalid("the slow-call threshold must be above zero")),
            None => (None, None),
        };
        if self.consecutive_failures == Some(0) {
            return Err(invalid("consecutive_failures must be at least 1"));
        }
        if failure_rate.is_none() && slow_rate.is_none() && self.consecutive_failures.is_none() {
            return Err(invalid(
                "no policy can open the breaker: set a failure rate, slow calls or consecutive failures",
            ));
        }
        if self.open_base.is_zero() || self.open_base > self.open_max || self.open_max > MAX_OPEN {
            return Err(invalid(format!(
                "open_duration needs 0 < base <= max <= 24 h, got {:?} and {:?}",
                self.open_base, self.open_max
            )));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(invalid(format!(
                "jitter must be in [0, 1), got {}",
                self.jitter
            )));
        }
        if !(1..=MAX_PROBES).contains(&self.probes) {
            return Err(invalid(format!(
                "half_open_probes must be 1 to {MAX_PROBES}, got {}",
                self.probes
            )));
        }
        if self.probe_timeout.is_zero() || self.probe_timeout > MAX_OPEN {
            return Err(invalid("probe_timeout must be above zero and at most 24 h"));
        }
        // Probes may fail while their failure share stays below the failure
        // rate (or, with no rate, none may fail).
        let max_failed_probes = failure_rate.map_or(0, |rate| {
            ((f64::from(self.probes) * rate).ceil() as u32).saturating_sub(1)
        });
        Ok(Policy {
            window,
            min_calls: self.min_calls,
            failure_rate,
            slow_rate,
            slow_call_us,
            consecutive_failures: self.consecutive_failures,
            open_base_us: micros(self.open_base),
            open_max_us: micros(self.open_max),
            jitter: self.jitter,
            probes: self.probes,
            max_failed_probes,
            probe_timeout_us: micros(self.probe_timeout),
        })
    }
}
