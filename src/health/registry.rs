//! The checks of one health layer, their latest results, and how a probe's
//! status is worked out from them.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use metrics::SharedString;
use tokio::time::Instant;

use super::check::{Check, CheckFuture, CheckResult, ComponentType, Schedule};
use super::status::{Probe, Status};
use crate::sync::{read, write};

/// An interval check whose last result is older than this many intervals
/// (plus its timeout) is failed as stale: the prober has stopped.
const STALE_AFTER_INTERVALS: u32 = 3;

/// The name of the check that fails readiness while draining.
pub(crate) const SHUTDOWN_CHECK: &str = "shutdown";

/// One run's result, and when it was made.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) result: CheckResult,
    pub(crate) at: Instant,
    pub(crate) wall: SystemTime,
}

/// A registered check and its latest result.
pub(crate) struct CheckState {
    pub(crate) check: Check,
    pub(crate) timeout: Duration,
    latest: RwLock<Option<Arc<Snapshot>>>,
    /// Held while the check runs on demand: probes arriving meanwhile wait
    /// for that run instead of starting their own.
    running: tokio::sync::Mutex<()>,
    /// Counts finished runs, so a waiter can tell a run happened.
    runs: AtomicU64,
}

/// A check's part in one probe's answer.
#[derive(Debug, Clone)]
pub(crate) struct CheckReport {
    pub(crate) name: Cow<'static, str>,
    pub(crate) status: Status,
    pub(crate) critical: bool,
    pub(crate) output: Option<Cow<'static, str>>,
    pub(crate) observed: Option<(f64, Cow<'static, str>)>,
    pub(crate) component_type: ComponentType,
    pub(crate) time: Option<SystemTime>,
}

/// A probe's answer: its status and the checks it was worked out from.
#[derive(Debug, Clone)]
pub(crate) struct ProbeReport {
    pub(crate) status: Status,
    pub(crate) checks: Vec<CheckReport>,
}

impl ProbeReport {
    fn of(checks: Vec<CheckReport>) -> ProbeReport {
        ProbeReport {
            status: aggregate(&checks),
            checks,
        }
    }
}

/// The worst status of the critical checks; a non-critical check that
/// fails counts as a warning. No checks: pass.
pub(crate) fn aggregate(checks: &[CheckReport]) -> Status {
    checks
        .iter()
        .map(|check| match (check.status, check.critical) {
            (Status::Fail, false) => Status::Warn,
            (status, _) => status,
        })
        .max()
        .unwrap_or(Status::Pass)
}

/// A gRPC service name and the readiness checks its status comes from.
#[derive(Debug, Clone)]
pub(crate) struct GrpcService {
    pub(crate) name: Box<str>,
    pub(crate) checks: Box<[Box<str>]>,
}

/// The checks of one layer, shared by its clones, its handle and the prober.
pub(crate) struct Registry {
    pub(crate) name: SharedString,
    pub(crate) checks: Box<[CheckState]>,
    /// gRPC service names and the readiness checks each depends on.
    pub(crate) grpc_services: Box<[GrpcService]>,
    draining: AtomicBool,
    /// Bumped whenever a probe's status may have changed (a check's status
    /// changed, or draining began): what gRPC `Watch` streams wait on.
    changes: tokio::sync::watch::Sender<()>,
}

impl Registry {
    /// A registry of `checks`, already validated (each has a timeout).
    pub(crate) fn new(
        name: SharedString,
        checks: Vec<(Check, Duration)>,
        grpc_services: Vec<GrpcService>,
    ) -> Registry {
        Registry {
            name,
            grpc_services: grpc_services.into(),
            checks: checks
                .into_iter()
                .map(|(check, timeout)| CheckState {
                    check,
                    timeout,
                    latest: RwLock::new(None),
                    running: tokio::sync::Mutex::new(()),
                    runs: AtomicU64::new(0),
                })
                .collect(),
            draining: AtomicBool::new(false),
            changes: tokio::sync::watch::Sender::new(()),
        }
    }

    /// Starts draining: readiness fails from now on; liveness is untouched.
    pub(crate) fn drain(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            tracing::info!(name = &*self.name, "health: draining, readiness now fails");
            self.changed();
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A receiver that sees every possible change of a probe's status.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        // Marks the value seen as new for every receiver.
        self.changes.send_replace(());
        self.record_statuses();
    }

    /// Whether `probe` has the failing `shutdown` check: readiness, while
    /// draining. The one place that says so.
    fn shutdown_applies(&self, probe: Probe) -> bool {
        probe == Probe::Readiness && self.is_draining()
    }

    /// Whether `probe` has a check named `name`, `shutdown` included.
    pub(crate) fn has_check(&self, probe: Probe, name: &str) -> bool {
        self.checks
            .iter()
            .any(|state| state.check.name == name && state.check.probes.contains(probe))
            || (name == SHUTDOWN_CHECK && self.shutdown_applies(probe))
    }

    /// Works out `probe`'s status from the checks whose names `include`
    /// accepts: on-demand checks whose result has expired run first (at
    /// most once however many probes ask at once), interval checks give
    /// their latest result.
    pub(crate) async fn report(&self, probe: Probe, include: impl Fn(&str) -> bool) -> ProbeReport {
        let runs = self
            .checks
            .iter()
            .filter(|state| state.check.probes.contains(probe) && include(&state.check.name))
            .map(
                |state| -> Pin<Box<dyn Future<Output = CheckReport> + Send + '_>> {
                    Box::pin(async move { state.report(self.fresh(state).await) })
                },
            )
            .collect();
        let mut checks = join_all(runs).await;
        if self.shutdown_applies(probe) && include(SHUTDOWN_CHECK) {
            checks.push(shutdown_report());
        }
        ProbeReport::of(checks)
    }

    /// `probe`'s status from the results at hand, running nothing: for the
    /// status gauges. An on-demand check that has never run does not count
    /// yet.
    pub(crate) fn current(&self, probe: Probe) -> Status {
        let mut checks: Vec<CheckReport> = self
            .checks
            .iter()
            .filter(|state| state.check.probes.contains(probe))
            .filter_map(|state| match state.check.schedule {
                Schedule::OnDemand { .. } => state.latest().map(|snapshot| state.report(snapshot)),
                Schedule::Every(interval) => Some(state.report(state.interval_result(interval))),
            })
            .collect();
        if self.shutdown_applies(probe) {
            checks.push(shutdown_report());
        }
        aggregate(&checks)
    }

    /// The check's result as a probe should see it.
    async fn fresh(&self, state: &CheckState) -> Arc<Snapshot> {
        match state.check.schedule {
            Schedule::Every(interval) => state.interval_result(interval),
            Schedule::OnDemand { ttl } => {
                if let Some(snapshot) = state.latest().filter(|s| s.at.elapsed() < ttl) {
                    return snapshot;
                }
                let runs_before = state.runs.load(Ordering::SeqCst);
                let _running = state.running.lock().await;
                if state.runs.load(Ordering::SeqCst) != runs_before {
                    // Another probe ran it while this one waited.
                    if let Some(snapshot) = state.latest() {
                        return snapshot;
                    }
                }
                self.run(state).await
            }
        }
    }

    /// Runs one check now, bounded by its timeout, a panic caught, and
    /// keeps the result.
    pub(crate) async fn run(&self, state: &CheckState) -> Arc<Snapshot> {
        crate::observe::describe_current_once();
        let started = Instant::now();
        let result = match tokio::time::timeout(
            state.timeout,
            CatchUnwind::new(&*state.check.check),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => CheckResult::fail(format!("the check panicked: {panic}")),
            Err(_) => CheckResult::fail(format!("timed out after {:?}", state.timeout)),
        };
        let name = &*state.check.name;
        metrics::histogram!("armor.health.check.duration", "name" => self.name.clone(), "check" => name.to_owned())
            .record(started.elapsed().as_secs_f64());
        if result.status == Status::Fail {
            metrics::counter!("armor.health.check.failures", "name" => self.name.clone(), "check" => name.to_owned())
                .increment(1);
            tracing::warn!(
                name = &*self.name,
                check = name,
                output = result.output(),
                "health check failed"
            );
        }
        let snapshot = Arc::new(Snapshot {
            result,
            at: Instant::now(),
            wall: SystemTime::now(),
        });
        let previous = write(&state.latest).replace(snapshot.clone());
        state.runs.fetch_add(1, Ordering::SeqCst);
        if previous.is_none_or(|previous| previous.result.status != snapshot.result.status) {
            self.changed();
        }
        snapshot
    }

    /// Sets `armor.health.status{name,probe}` for every probe.
    fn record_statuses(&self) {
        crate::observe::describe_current_once();
        for probe in Probe::ALL {
            metrics::gauge!("armor.health.status", "name" => self.name.clone(), "probe" => probe.as_str())
                .set(self.current(probe).gauge());
        }
    }
}

impl CheckState {
    fn latest(&self) -> Option<Arc<Snapshot>> {
        read(&self.latest).clone()
    }

    /// An interval check's latest result, or a failure saying why there is
    /// none worth trusting.
    fn interval_result(&self, interval: Duration) -> Arc<Snapshot> {
        let stale_after = interval * STALE_AFTER_INTERVALS + self.timeout;
        match self.latest() {
            Some(snapshot) if snapshot.at.elapsed() <= stale_after => snapshot,
            Some(snapshot) => Arc::new(Snapshot {
                result: CheckResult::fail(format!(
                    "stale: last run {:?} ago; is the prober running?",
                    snapshot.at.elapsed()
                )),
                at: snapshot.at,
                wall: snapshot.wall,
            }),
            None => Arc::new(Snapshot {
                result: CheckResult::fail("not run yet; is the prober running?"),
                at: Instant::now(),
                wall: SystemTime::now(),
            }),
        }
    }

    fn report(&self, snapshot: Arc<Snapshot>) -> CheckReport {
        CheckReport {
            name: self.check.name.clone(),
            status: snapshot.result.status,
            critical: self.check.critical,
            output: snapshot.result.output.clone(),
            observed: snapshot.result.observed.clone(),
            component_type: self.check.component_type,
            time: Some(snapshot.wall),
        }
    }
}

/// The check that fails readiness while draining.
fn shutdown_report() -> CheckReport {
    CheckReport {
        name: Cow::Borrowed(SHUTDOWN_CHECK),
        status: Status::Fail,
        critical: true,
        output: Some(Cow::Borrowed("draining before shutdown")),
        observed: None,
        component_type: ComponentType::System,
        time: None,
    }
}

/// A check's future with any panic, while it is made or polled, turned
/// into an error carrying the panic's message.
struct CatchUnwind<'a> {
    future: Result<CheckFuture<'a>, Option<String>>,
}

impl<'a> CatchUnwind<'a> {
    fn new(check: &'a dyn super::check::HealthCheck) -> Self {
        CatchUnwind {
            future: std::panic::catch_unwind(AssertUnwindSafe(|| check.check()))
                .map_err(|panic| Some(panic_message(&*panic))),
        }
    }
}

impl Future for CatchUnwind<'_> {
    type Output = Result<CheckResult, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.future {
            Ok(future) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(poll) => poll.map(Ok),
                    Err(panic) => Poll::Ready(Err(panic_message(&*panic))),
                }
            }
            Err(message) => Poll::Ready(Err(message.take().unwrap_or_default())),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with no message".to_owned()
    }
}

/// Polls every future to its end, concurrently, and returns their outputs
/// in order.
pub(crate) async fn join_all<'a, T>(
    mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>,
) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    futures.clear();
    outputs.into_iter().flatten().collect()
}
