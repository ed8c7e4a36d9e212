//! The handle to a health layer's checks: drain, the background prober, and
//! a probe's status for code of your own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use super::check::Schedule;
use super::grpc::GrpcHealthService;
use super::registry::{Registry, join_all};
use super::status::{Probe, Status};

/// Reads and steers a [`HealthLayer`](super::HealthLayer)'s checks; from
/// [`HealthLayer::handle`](super::HealthLayer::handle). Clones share them.
#[derive(Clone)]
pub struct HealthHandle {
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHandle")
            .field("name", &self.registry.name)
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl HealthHandle {
    /// Starts draining for a graceful shutdown: from now on readiness fails
    /// (a `shutdown` check appears in it) and every gRPC service reports
    /// `NOT_SERVING`, while liveness keeps passing. Load balancers stop
    /// sending traffic; then stop the server. There is no way back.
    pub fn drain(&self) {
        self.registry.drain();
    }

    /// Whether [`drain`](Self::drain) was called.
    pub fn is_draining(&self) -> bool {
        self.registry.is_draining()
    }

    /// `grpc.health.v1.Health` over these checks; see [`GrpcHealthService`].
    pub fn grpc(&self) -> GrpcHealthService {
        GrpcHealthService {
            registry: self.registry.clone(),
        }
    }

    /// `probe`'s status now, as its route would answer (on-demand checks
    /// whose result has expired run first).
    pub async fn status(&self, probe: Probe) -> Status {
        self.registry.report(probe, |_| true).await.status
    }

    /// The future that runs the checks registered with
    /// [`every`](super::Check::every), each at its interval, forever. Nothing
    /// runs them until it is spawned; on-demand checks do not need it.
    ///
    /// ```no_run
    /// # async fn run(health: tower_armor::health::HealthLayer) {
    /// let prober = tokio::spawn(health.handle().prober());
    /// // ... on shutdown:
    /// prober.abort();
    /// # }
    /// ```
    pub fn prober(&self) -> impl Future<Output = ()> + Send + 'static {
        run_interval_checks(self.registry.clone())
    }
}

/// Runs each interval check at once, then every interval after its
/// previous start. Checks due together run concurrently.
async fn run_interval_checks(registry: Arc<Registry>) {
    let mut due: Vec<(usize, Instant)> = registry
        .checks
        .iter()
        .enumerate()
        .filter(|(_, state)| matches!(state.check.schedule, Schedule::Every(_)))
        .map(|(index, _)| (index, Instant::now()))
        .collect();
    if due.is_empty() {
        return std::future::pending().await;
    }
    loop {
        let next = due
            .iter()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or_else(Instant::now);
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let mut runs: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        for (index, at) in &mut due {
            if *at > now {
                continue;
            }
            let state = &registry.checks[*index];
            if let Schedule::Every(interval) = state.check.schedule {
                // The next start: one interval on, or from now if a long
                // pause left it behind.
                *at = (*at + interval).max(now);
            }
            let registry = &registry;
            runs.push(Box::pin(async move {
                registry.run(state).await;
            }));
        }
        join_all(runs).await;
    }
}
