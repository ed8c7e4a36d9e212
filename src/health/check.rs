//! Checks: what they run ([`HealthCheck`], [`check_fn`]), what they report
//! ([`CheckResult`]) and how they are registered ([`Check`]).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::status::{Probe, Probes, Status};

/// A boxed check future, as [`HealthCheck::check`] returns it.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// Something that can tell whether a dependency or the process is healthy.
/// Closures become one with [`check_fn`].
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once. The registry bounds it with the check's
    /// timeout and catches a panic, so neither needs handling here.
    fn check(&self) -> CheckFuture<'_>;
}

/// A closure returning a future as a [`HealthCheck`]. Its output is a
/// [`CheckResult`], or anything that converts into one, such as
/// `Result<(), E: Display>` (an error fails the check with its message).
///
/// ```
/// use tower_armor::health::{CheckResult, check_fn};
///
/// let always_fine = check_fn(|| async { CheckResult::pass() });
/// let from_result = check_fn(|| async { Ok::<(), std::io::Error>(()) });
/// # let _ = (always_fine, from_result);
/// ```
pub fn check_fn<F, Fut, R>(check: F) -> CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<CheckResult>,
{
    CheckFn(check)
}

/// The check [`check_fn`] makes.
#[derive(Clone, Copy)]
pub struct CheckFn<F>(F);

impl<F> fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckFn")
    }
}

impl<F, Fut, R> HealthCheck for CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<CheckResult>,
{
    fn check(&self) -> CheckFuture<'_> {
        let future = (self.0)();
        Box::pin(async move { future.await.into() })
    }
}

/// What one run of a check found: a status, and optionally a message and a
/// measured value (shown only to requests the details policy allows).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub(crate) status: Status,
    pub(crate) output: Option<Cow<'static, str>>,
    pub(crate) observed: Option<(f64, Cow<'static, str>)>,
}

impl CheckResult {
    /// Healthy.
    pub fn pass() -> Self {
        CheckResult {
            status: Status::Pass,
            output: None,
            observed: None,
        }
    }

    /// Healthy with a concern, said in `output`.
    pub fn warn(output: impl Into<Cow<'static, str>>) -> Self {
        CheckResult {
            status: Status::Warn,
            output: Some(output.into()),
            observed: None,
        }
    }

    /// Unhealthy, for the reason in `output`.
    pub fn fail(output: impl Into<Cow<'static, str>>) -> Self {
        CheckResult {
            status: Status::Fail,
            output: Some(output.into()),
            observed: None,
        }
    }

    /// Adds a measured value and its unit (`observedValue`, `observedUnit`
    /// in `application/health+json`), such as a latency in `ms`.
    pub fn observed(mut self, value: f64, unit: impl Into<Cow<'static, str>>) -> Self {
        self.observed = Some((value, unit.into()));
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The message, if any.
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }
}

impl<E: fmt::Display> From<Result<(), E>> for CheckResult {
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => CheckResult::pass(),
            Err(error) => CheckResult::fail(error.to_string()),
        }
    }
}

impl From<Status> for CheckResult {
    fn from(status: Status) -> Self {
        CheckResult {
            status,
            output: None,
            observed: None,
        }
    }
}

/// What kind of thing a check looks at (`componentType` in
/// `application/health+json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComponentType {
    /// A part of this service or a service it calls (default).
    #[default]
    Component,
    /// A database, cache or queue.
    Datastore,
    /// The host or process: memory, disk, threads.
    System,
}

impl ComponentType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ComponentType::Component => "component",
            ComponentType::Datastore => "datastore",
            ComponentType::System => "system",
        }
    }
}

/// When a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// When a probe asks and the last result is older than the TTL;
    /// concurrent probes share one run.
    OnDemand { ttl: Duration },
    /// In the background, by the prober, at this interval.
    Every(Duration),
}

/// How long an on-demand result is served before the check runs again.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// A check as registered with [`HealthLayer::builder`](super::HealthLayer::builder):
/// its name, probes, timeout, whether it is critical and when it runs.
///
/// By default a check counts in readiness only (a dependency in liveness
/// restarts every instance when it blinks), is critical, and runs on demand
/// with a 1 s TTL. A timeout is required.
///
/// ```
/// use std::time::Duration;
/// use tower_armor::health::{Check, CheckResult, Probe, check_fn};
///
/// let database = Check::new("database", check_fn(|| async { CheckResult::pass() }))
///     .timeout(Duration::from_millis(500))
///     .every(Duration::from_secs(10));
/// let threads = Check::new("threads", check_fn(|| async { CheckResult::pass() }))
///     .probes(Probe::Liveness | Probe::Readiness)
///     .timeout(Duration::from_millis(50));
/// # let _ = (database, threads);
/// ```
#[derive(Clone)]
pub struct Check {
    pub(crate) name: Cow<'static, str>,
    pub(crate) check: Arc<dyn HealthCheck>,
    pub(crate) probes: Probes,
    pub(crate) timeout: Option<Duration>,
    pub(crate) critical: bool,
    pub(crate) schedule: Schedule,
    pub(crate) component_type: ComponentType,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("probes", &self.probes)
            .field("timeout", &self.timeout)
            .field("critical", &self.critical)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// A check named `name` (letters, digits, `-`, `_` and `.`: it appears
    /// in paths such as `/readyz/<name>` and in metric labels).
    pub fn new(name: impl Into<Cow<'static, str>>, check: impl HealthCheck) -> Self {
        Check {
            name: name.into(),
            check: Arc::new(check),
            probes: Probe::Readiness.into(),
            timeout: None,
            critical: true,
            schedule: Schedule::OnDemand { ttl: DEFAULT_TTL },
            component_type: ComponentType::Component,
        }
    }

    /// The probes this check counts in (default readiness).
    pub fn probes(mut self, probes: impl Into<Probes>) -> Self {
        self.probes = probes.into();
        self
    }

    /// How long one run may take; past it the check fails. Required.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether a failure fails the probe (default true). A non-critical
    /// check that fails makes the probe `warn`, which is still served 200.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Runs in the background every `interval`, by the prober
    /// ([`HealthHandle::prober`](super::HealthHandle::prober)); probes read
    /// the latest result.
    pub fn every(mut self, interval: Duration) -> Self {
        self.schedule = Schedule::Every(interval);
        self
    }

    /// Runs when a probe asks and the last result is older than `ttl`
    /// (default, with 1 s); concurrent probes share one run.
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.schedule = Schedule::OnDemand { ttl };
        self
    }

    /// What kind of thing the check looks at (default
    /// [`ComponentType::Component`]).
    pub fn component_type(mut self, component_type: ComponentType) -> Self {
        self.component_type = component_type;
        self
    }
}
