//! [`HealthLayer`] and its builder: the checks, the paths and the details
//! policy, checked once at `build()`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::SharedString;
use tower_layer::Layer;

use super::HealthService;
use super::check::{Check, Schedule};
use super::handle::HealthHandle;
use super::registry::{GrpcService, Registry, SHUTDOWN_CHECK};
use super::render::Details;
use super::routes::Routes;
use super::settings::{DetailsFn, Shared};
use super::status::Probe;
use crate::config::{ConfigError, instance_name};
use crate::key::RequestHead;

/// The longest timeout, interval or TTL a check may have.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Answers `/livez`, `/readyz`, `/startupz` and `/healthz` from its checks
/// and passes every other request through untouched. Built with
/// [`HealthLayer::builder`]; see the [module docs](super).
#[derive(Clone)]
pub struct HealthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for HealthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthLayer")
            .field("name", &self.shared.registry.name)
            .field("routes", &self.shared.routes)
            .finish_non_exhaustive()
    }
}

impl HealthLayer {
    /// A builder with no checks, the default paths and status-only answers.
    pub fn builder() -> HealthBuilder {
        HealthBuilder {
            name: SharedString::const_str("default"),
            checks: Vec::new(),
            paths: vec![
                ("/startupz".into(), Probe::Startup),
                ("/livez".into(), Probe::Liveness),
                ("/readyz".into(), Probe::Readiness),
                ("/healthz".into(), Probe::Readiness),
            ],
            details: Details::StatusOnly,
            full_details_when: None,
            grpc_services: Vec::new(),
        }
    }

    /// The handle to this layer's checks (drain, prober, status).
    pub fn handle(&self) -> HealthHandle {
        HealthHandle {
            registry: self.shared.registry.clone(),
        }
    }
}

impl Default for HealthLayer {
    /// No checks: every probe passes until checks are added or
    /// [`drain`](HealthHandle::drain) is called.
    fn default() -> Self {
        HealthLayer::builder()
            .build()
            .expect("the default settings are valid")
    }
}

impl<S> HealthService<S> {
    /// Wraps `inner` with the probe routes of `layer`.
    pub fn new(inner: S, layer: HealthLayer) -> Self {
        HealthService {
            inner,
            shared: layer.shared,
        }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = HealthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HealthService::new(inner, self.clone())
    }
}

/// Builds a [`HealthLayer`].
#[must_use = "call .build() to get the layer"]
pub struct HealthBuilder {
    name: SharedString,
    checks: Vec<Check>,
    paths: Vec<(String, Probe)>,
    details: Details,
    full_details_when: Option<Box<DetailsFn>>,
    grpc_services: Vec<GrpcService>,
}

impl fmt::Debug for HealthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthBuilder")
            .field("name", &self.name)
            .field("checks", &self.checks)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl HealthBuilder {
    /// Names this instance in its metrics and logs (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = instance_name(name);
        self
    }

    /// Adds a check.
    pub fn check(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }

    /// Answers `probe` at `path` instead of its default (`/startupz`,
    /// `/livez`, `/readyz`). One check is at `<path>/<check name>`.
    pub fn path(mut self, probe: Probe, path: impl Into<String>) -> Self {
        let path = path.into();
        match self.paths.iter_mut().take(3).find(|(_, p)| *p == probe) {
            Some(entry) => entry.0 = path,
            None => self.paths.push((path, probe)),
        }
        self
    }

    /// Also answers `probe` at `path` (by default `/healthz` answers
    /// readiness).
    pub fn alias(mut self, path: impl Into<String>, probe: Probe) -> Self {
        self.paths.push((path.into(), probe));
        self
    }

    /// Drops every alias, `/healthz` included.
    pub fn no_aliases(mut self) -> Self {
        self.paths.truncate(3);
        self
    }

    /// How much every request may see of the checks (default
    /// [`Details::StatusOnly`]).
    pub fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    /// Shows [`Details::Full`] to requests `allowed` accepts, such as those
    /// bearing an operator's header or from an internal network; the rest
    /// get [`details`](Self::details).
    pub fn full_details_when(
        mut self,
        allowed: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.full_details_when = Some(Box::new(allowed));
        self
    }

    /// Names a gRPC service for `grpc.health.v1` (`package.Service`), whose
    /// status is that of the named readiness checks: `SERVING` while they
    /// pass or warn, `NOT_SERVING` when one fails or while draining. The
    /// empty name is always there (readiness as a whole), and so are
    /// `liveness`, `readiness` and `startup` for Kubernetes' gRPC probes.
    pub fn grpc_service<I, N>(mut self, service: impl Into<String>, checks: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.grpc_services.push(GrpcService {
            name: service.into().into_boxed_str(),
            checks: checks
                .into_iter()
                .map(|check| check.into().into_boxed_str())
                .collect(),
        });
        self
    }

    /// Checks the settings and builds the layer. Fails on a check without
    /// a timeout, a zero or over-a-day duration, a bad or repeated check
    /// name, a check in no probe, or a path that does not start with `/`
    /// or is used twice.
    pub fn build(self) -> Result<HealthLayer, ConfigError> {
        let mut checks = Vec::with_capacity(self.checks.len());
        for check in self.checks {
            let timeout = validate(&check, &checks)?;
            checks.push((check, timeout));
        }
        for (index, (path, _)) in self.paths.iter().enumerate() {
            // At least two bytes, then: what `Routes` relies on.
            if !path.starts_with('/') || path.ends_with('/') {
                return Err(error(format!(
                    "{path:?} is not a path: it must start with '/' and not end with one"
                )));
            }
            if self.paths[..index].iter().any(|(other, _)| other == path) {
                return Err(error(format!("the path {path:?} is used twice")));
            }
        }
        for (index, service) in self.grpc_services.iter().enumerate() {
            let name = &*service.name;
            if name.is_empty()
                || super::grpc::PROBE_SERVICES.contains(&name)
                || self.grpc_services[..index]
                    .iter()
                    .any(|other| other.name == service.name)
            {
                return Err(error(format!(
                    "the gRPC service name {name:?} is empty or taken"
                )));
            }
            for check in &service.checks {
                let known = checks.iter().any(|(known, _): &(Check, Duration)| {
                    *known.name == **check && known.probes.contains(Probe::Readiness)
                });
                if !known {
                    return Err(error(format!(
                        "the gRPC service {name:?} depends on {check:?}, which is not a readiness check"
                    )));
                }
            }
        }
        Ok(HealthLayer {
            shared: Arc::new(Shared {
                registry: Arc::new(Registry::new(self.name, checks, self.grpc_services)),
                routes: Routes::new(
                    self.paths
                        .into_iter()
                        .map(|(path, probe)| (path.into_boxed_str(), probe))
                        .collect(),
                ),
                details: self.details,
                full_details_when: self.full_details_when,
            }),
        })
    }
}

fn error(message: String) -> ConfigError {
    ConfigError::new("health", message)
}

/// Checks one check against the rules and the ones before it; its timeout.
fn validate(check: &Check, before: &[(Check, Duration)]) -> Result<Duration, ConfigError> {
    let name = &*check.name;
    let well_named = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_named {
        return Err(error(format!(
            "the check name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    if name == SHUTDOWN_CHECK || before.iter().any(|(other, _)| other.name == name) {
        return Err(error(format!("the check name {name:?} is taken")));
    }
    if check.probes.is_empty() {
        return Err(error(format!("the check {name:?} counts in no probe")));
    }
    let timeout = check
        .timeout
        .ok_or_else(|| error(format!("the check {name:?} has no timeout")))?;
    let (what, period) = match check.schedule {
        Schedule::Every(interval) => ("interval", Some(interval)),
        Schedule::OnDemand { ttl } => ("TTL", (!ttl.is_zero()).then_some(ttl)),
    };
    for (label, duration) in [("timeout", Some(timeout)), (what, period)] {
        if let Some(duration) = duration {
            if duration.is_zero() || duration > MAX_DURATION {
                return Err(error(format!(
                    "the {label} of the check {name:?} must be above zero and at most a day, not {duration:?}"
                )));
            }
        }
    }
    Ok(timeout)
}
