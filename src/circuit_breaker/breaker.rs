//! A breaker with what reports on it (metrics, the state-change hook), the
//! operator handle, and the bounded registry of keyed breakers.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hashbrown::DefaultHashBuilder;
use metrics::{Counter, Gauge, SharedString};
use tokio::time::Instant;

use super::core::{Admission, Change, CircuitState, Core, Counted, Permit, Policy};
use crate::classify::Outcome;
use crate::key::{KeyExtractor, KeyLimits, MissingKey, MissingKeyLog};
use crate::observe::PerRecorder;
use crate::reject::Renderer;
use crate::sync::{lock, read, write};

/// A change of a breaker's state, as the hook set with
/// [`on_state_change`](super::CircuitBreakerBuilder::on_state_change) sees it.
#[derive(Debug, Clone, Copy)]
pub struct StateChange<'a, K> {
    /// The breaker's key; `None` for an unkeyed breaker or the shared breaker
    /// of requests without a key.
    pub key: Option<&'a K>,
    /// The state before.
    pub from: CircuitState,
    /// The state now.
    pub to: CircuitState,
}

pub(crate) type Hook<K> = dyn Fn(&StateChange<'_, K>) + Send + Sync;

/// Metrics, the hook and the missing-key log, shared by every breaker of a layer.
pub(crate) struct Observer<K> {
    pub(crate) name: SharedString,
    handles: PerRecorder<Handles>,
    /// How many of the layer's breakers are in each state. The gauges are
    /// set from these counts under this lock, so they end on the truth
    /// whatever the order of concurrent changes, and a recorder installed
    /// late starts from the truth too.
    in_state: Mutex<[u64; 6]>,
    hook: Option<Box<Hook<K>>>,
    pub(crate) missing_key_log: MissingKeyLog,
}

/// The layer's metric handles for one recorder.
pub(crate) struct Handles {
    /// `armor.circuit_breaker.calls{name,outcome}`.
    calls: [Counter; 7],
    /// `armor.circuit_breaker.state{name,state}`.
    states: [Gauge; 6],
    /// `armor.circuit_breaker.missing_key{name}`.
    pub(crate) missing_key: Counter,
}

const CALL_OUTCOMES: [&str; 7] = [
    "success",
    "failure",
    "slow",
    "refused",
    "cancelled",
    "ignored",
    "shadow_refused",
];

/// The `outcome` label a call is counted under.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallLabel {
    Counted(Counted),
    Refused,
    ShadowRefused,
}

impl CallLabel {
    fn index(self) -> usize {
        match self {
            CallLabel::Counted(Counted::Success) => 0,
            CallLabel::Counted(Counted::Failure) => 1,
            CallLabel::Counted(Counted::Slow) => 2,
            CallLabel::Refused => 3,
            CallLabel::Counted(Counted::Cancelled) => 4,
            CallLabel::Counted(Counted::Ignored) => 5,
            CallLabel::ShadowRefused => 6,
        }
    }
}

impl<K> Observer<K> {
    pub(crate) fn new(name: SharedString, hook: Option<Box<Hook<K>>>) -> Self {
        Observer {
            name,
            handles: PerRecorder::default(),
            in_state: Mutex::new([0; 6]),
            hook,
            missing_key_log: MissingKeyLog::default(),
        }
    }

    /// Runs `f` with the handles of the recorder current now.
    #[inline]
    pub(crate) fn handles<R>(&self, f: impl FnOnce(&Handles) -> R) -> R {
        self.handles.with(|| self.register(), f)
    }

    #[cold]
    fn register(&self) -> Handles {
        let name = &self.name;
        let handles = Handles {
            calls: CALL_OUTCOMES.map(|outcome| {
                metrics::counter!("armor.circuit_breaker.calls", "name" => name.clone(), "outcome" => outcome)
            }),
            states: CircuitState::ALL.map(|state| {
                metrics::gauge!("armor.circuit_breaker.state", "name" => name.clone(), "state" => state.as_str())
            }),
            missing_key: metrics::counter!("armor.circuit_breaker.missing_key", "name" => name.clone()),
        };
        // Every state is set, so a dashboard never sees a stale 1.
        let in_state = lock(&self.in_state);
        for (gauge, count) in handles.states.iter().zip(in_state.iter()) {
            gauge.set(*count as f64);
        }
        handles
    }

    #[inline]
    pub(crate) fn count(&self, label: CallLabel) {
        self.handles(|h| h.calls[label.index()].increment(1));
    }

    fn transition(&self, key: Option<&K>, (from, to): Change) {
        metrics::counter!(
            "armor.circuit_breaker.transitions",
            "name" => self.name.clone(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
        tracing::info!(
            name = &*self.name,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker state changed"
        );
        if let Some(hook) = &self.hook {
            hook(&StateChange { key, from, to });
        }
    }

    /// One breaker left `from` (if any) for `to` (if any).
    fn gauge_moved(&self, from: Option<CircuitState>, to: Option<CircuitState>) {
        // Registering takes the lock too, and is done before this runs.
        self.handles(|handles| {
            let mut in_state = lock(&self.in_state);
            for (state, change) in [(from, -1i64), (to, 1)] {
                if let Some(state) = state {
                    let count = &mut in_state[state.index()];
                    *count = count.saturating_add_signed(change);
                    handles.states[state.index()].set(*count as f64);
                }
            }
        });
    }
}

/// One breaker of a layer, with its key.
pub(crate) struct Breaker<K> {
    pub(crate) key: Option<K>,
    pub(crate) core: Core,
    pub(crate) observer: Arc<Observer<K>>,
    /// Used since the registry's last idle sweep.
    touched: AtomicBool,
}

impl<K> Breaker<K> {
    pub(crate) fn new(key: Option<K>, policy: Policy, observer: Arc<Observer<K>>) -> Self {
        observer.gauge_moved(None, Some(CircuitState::Closed));
        Breaker {
            key,
            core: Core::new(policy),
            observer,
            touched: AtomicBool::new(true),
        }
    }

    #[inline]
    pub(crate) fn admit(&self) -> Admission {
        match self.core.admit_closed() {
            Some(permit) => Admission::Admitted(permit),
            None => self.admit_slow(),
        }
    }

    fn admit_slow(&self) -> Admission {
        let mut changes = Vec::new();
        let admission = self.core.admit(&|| self.core.now_us(), &mut changes);
        self.report(&changes);
        match &admission {
            Admission::Refused(_) => self.observer.count(CallLabel::Refused),
            Admission::Admitted(permit) if permit.kind == super::core::PermitKind::Shadow => {
                self.observer.count(CallLabel::ShadowRefused)
            }
            Admission::Admitted(_) => {}
        }
        admission
    }

    #[inline]
    pub(crate) fn complete(&self, permit: Permit, outcome: Outcome) {
        if self.core.completes_unchanged(permit, outcome) {
            self.observer.count(CallLabel::Counted(Counted::Success));
        } else {
            self.complete_slow(permit, outcome);
        }
    }

    fn complete_slow(&self, permit: Permit, outcome: Outcome) {
        use super::core::PermitKind;
        let mut changes = Vec::new();
        let counted = self
            .core
            .complete(permit, outcome, &|| self.core.now_us(), &mut changes);
        if matches!(permit.kind, PermitKind::Closed | PermitKind::Probe) {
            self.observer.count(CallLabel::Counted(counted));
        }
        self.report(&changes);
    }

    /// Reports the state machine's own changes, then brings the gauge up to date.
    #[inline]
    fn report(&self, changes: &[Change]) {
        if !changes.is_empty() {
            self.report_changes(changes);
        }
    }

    #[cold]
    fn report_changes(&self, changes: &[Change]) {
        for &change in changes {
            self.observer.transition(self.key.as_ref(), change);
        }
        if let Some((from, to)) = self.core.sync_reported() {
            self.observer.gauge_moved(Some(from), Some(to));
        }
    }

    /// After an operator action: the change callers see is the one reported.
    fn operator_changed(&self) {
        if let Some(change) = self.core.sync_reported() {
            self.observer.gauge_moved(Some(change.0), Some(change.1));
            self.observer.transition(self.key.as_ref(), change);
        }
    }

    fn touch(&self) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }
}

impl<K> Drop for Breaker<K> {
    fn drop(&mut self) {
        self.observer.gauge_moved(Some(self.core.reported()), None);
    }
}

/// Settings and state shared by every service a
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer) makes.
pub(crate) struct Shared<E: KeyExtractor, C> {
    pub(crate) extractor: E,
    pub(crate) breakers: Breakers<E::Key>,
    pub(crate) classifier: C,
    pub(crate) renderer: Renderer,
    pub(crate) missing_key: MissingKey,
}

/// The breakers of a layer: one, or one per key.
pub(crate) enum Breakers<K> {
    Single(Arc<Breaker<K>>),
    Keyed(Arc<Registry<K>>),
}

impl<K> Clone for Breakers<K> {
    fn clone(&self) -> Self {
        match self {
            Breakers::Single(breaker) => Breakers::Single(breaker.clone()),
            Breakers::Keyed(registry) => Breakers::Keyed(registry.clone()),
        }
    }
}

impl<K> Breakers<K> {
    pub(crate) fn observer(&self) -> &Observer<K> {
        match self {
            Breakers::Single(breaker) => &breaker.observer,
            Breakers::Keyed(registry) => &registry.observer,
        }
    }

    /// The breaker of requests without a key (the only one, if unkeyed).
    pub(crate) fn shared(&self) -> &Arc<Breaker<K>> {
        match self {
            Breakers::Single(breaker) => breaker,
            Breakers::Keyed(registry) => &registry.shared,
        }
    }
}

/// Reads and steers the breakers of a layer: for operators, admin endpoints
/// and health checks. Cheap to clone; every clone steers the same breaker.
///
/// [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle)
/// gives the handle of the layer's breaker: the only one of an unkeyed
/// layer, or for a keyed layer the one shared by requests without a key.
/// [`for_key`](Self::for_key) gives the handle of one key's breaker, and
/// [`states`](Self::states) lists them all.
pub struct CircuitHandle<K = ()> {
    breaker: Arc<Breaker<K>>,
    breakers: Breakers<K>,
}

impl<K> Clone for CircuitHandle<K> {
    fn clone(&self) -> Self {
        CircuitHandle {
            breaker: self.breaker.clone(),
            breakers: self.breakers.clone(),
        }
    }
}

impl<K: std::fmt::Debug> std::fmt::Debug for CircuitHandle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitHandle")
            .field("name", &self.breaker.observer.name)
            .field("key", &self.breaker.key)
            .field("state", &self.state())
            .finish()
    }
}

/// The calls a closed breaker's window holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStats {
    /// Calls in the window.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which were slow.
    pub slow: u64,
}

impl<K: Hash + Eq + Clone> CircuitHandle<K> {
    /// The handle of the layer's own breaker.
    pub(crate) fn of_layer(breakers: &Breakers<K>) -> Self {
        CircuitHandle {
            breaker: breakers.shared().clone(),
            breakers: breakers.clone(),
        }
    }

    /// The handle of `key`'s breaker, made now if it does not exist yet (an
    /// operator can isolate an upstream before it sees traffic). For an
    /// unkeyed layer, the one breaker.
    pub fn for_key(&self, key: &K) -> CircuitHandle<K> {
        let breaker = match &self.breakers {
            Breakers::Single(breaker) => breaker.clone(),
            Breakers::Keyed(registry) => registry.get(key),
        };
        CircuitHandle {
            breaker,
            breakers: self.breakers.clone(),
        }
    }

    /// The key of the breaker this handle steers (`None`: the layer's own).
    pub fn key(&self) -> Option<&K> {
        self.breaker.key.as_ref()
    }

    /// Every keyed breaker and its state (empty for an unkeyed layer).
    pub fn states(&self) -> Vec<(K, CircuitState)> {
        match &self.breakers {
            Breakers::Single(_) => Vec::new(),
            Breakers::Keyed(registry) => registry.snapshot(),
        }
    }

    /// The state of `key`'s breaker, if it has one (for an unkeyed layer,
    /// the one breaker's).
    pub fn state_of(&self, key: &K) -> Option<CircuitState> {
        match &self.breakers {
            Breakers::Single(breaker) => Some(breaker.core.state()),
            Breakers::Keyed(registry) => registry.existing(key).map(|b| b.core.state()),
        }
    }

    /// How many keyed breakers the layer holds (0 for an unkeyed layer).
    pub fn live_keys(&self) -> usize {
        match &self.breakers {
            Breakers::Single(_) => 0,
            Breakers::Keyed(registry) => registry.len(),
        }
    }

    /// Forgets keyed breakers that are closed, clean and unused for the idle
    /// time of the layer's [`KeyLimits`](crate::key::KeyLimits); returns how
    /// many. The layer does this by itself as new keys arrive.
    pub fn evict_idle(&self) -> usize {
        match &self.breakers {
            Breakers::Single(_) => 0,
            Breakers::Keyed(registry) => registry.sweep(),
        }
    }
}

impl<K> CircuitHandle<K> {
    /// The state callers see now.
    pub fn state(&self) -> CircuitState {
        self.breaker.core.state()
    }

    /// The state machine's own state, which keeps running under
    /// [`metrics_only`](Self::metrics_only).
    pub fn machine_state(&self) -> CircuitState {
        self.breaker.core.machine_state()
    }

    /// When the next call will be admitted: now, the end of the open period,
    /// or `None` when that depends on probes in flight or on an operator.
    pub fn next_admission(&self) -> Option<Instant> {
        let core = &self.breaker.core;
        core.next_admission_us().map(|us| core.instant_at_us(us))
    }

    /// What the window holds now.
    pub fn window(&self) -> WindowStats {
        let core = &self.breaker.core;
        let totals = core.totals(|| core.now_us());
        WindowStats {
            calls: totals.calls,
            failures: totals.failures,
            slow: totals.slow,
        }
    }

    /// Isolates the service: every call is refused until
    /// [`force_closed`](Self::force_closed) or [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.breaker.core.force_open();
        self.breaker.operator_changed();
    }

    /// Closes now with an empty window, ending any operator mode. The breaker
    /// then works as usual, and remembers how often it re-opened: if it trips
    /// again soon, it stays open as long as it would have.
    pub fn force_closed(&self) {
        self.breaker.core.close(false);
        self.breaker.operator_changed();
    }

    /// Switches the breaker off: every call goes through and nothing is
    /// recorded, until [`force_closed`](Self::force_closed) or [`reset`](Self::reset).
    pub fn disable(&self) {
        self.breaker.core.disable();
        self.breaker.operator_changed();
    }

    /// Observes without refusing: the state machine, its metrics and the hook
    /// carry on, but calls it would refuse go through (counted as
    /// `shadow_refused`). For trying out a breaker on live traffic.
    pub fn metrics_only(&self) {
        self.breaker.core.metrics_only();
        self.breaker.operator_changed();
    }

    /// Makes the breaker as new: closed, empty window, no memory of past
    /// re-openings, no operator mode.
    pub fn reset(&self) {
        self.breaker.core.close(true);
        self.breaker.operator_changed();
    }
}

type Shard<K> = RwLock<hashbrown::HashMap<K, Arc<Breaker<K>>>>;

/// The keyed breakers of one layer: sharded, bounded, idle ones forgotten.
pub(crate) struct Registry<K> {
    shards: Box<[Shard<K>]>,
    hasher: DefaultHashBuilder,
    /// Requests with no key, and new keys while the registry is full, share this one.
    pub(crate) shared: Arc<Breaker<K>>,
    policy: Policy,
    pub(crate) observer: Arc<Observer<K>>,
    max_keys: usize,
    idle_us: u64,
    live: AtomicU64,
    swept_at_us: AtomicU64,
    epoch: Instant,
}

const SHARDS: usize = 16;

impl<K: Hash + Eq + Clone> Registry<K> {
    pub(crate) fn new(policy: Policy, observer: Arc<Observer<K>>, limits: KeyLimits) -> Self {
        let (max_keys, idle) = (limits.max_keys(), limits.idle());
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            shared: Arc::new(Breaker::new(None, policy.clone(), observer.clone())),
            policy,
            observer,
            max_keys,
            idle_us: u64::try_from(idle.as_micros()).unwrap_or(u64::MAX),
            live: AtomicU64::new(0),
            swept_at_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// The breaker for `key`, made if new (or the shared one when full).
    pub(crate) fn get(&self, key: &K) -> Arc<Breaker<K>> {
        let shard = self.shard(key);
        if let Some(breaker) = read(shard).get(key) {
            breaker.touch();
            return breaker.clone();
        }
        self.maybe_sweep();
        if self.live.load(Ordering::Relaxed) >= self.max_keys as u64 {
            return self.shared.clone();
        }
        let mut map = write(shard);
        let breaker = map.entry(key.clone()).or_insert_with(|| {
            self.live.fetch_add(1, Ordering::Relaxed);
            Arc::new(Breaker::new(
                Some(key.clone()),
                self.policy.clone(),
                self.observer.clone(),
            ))
        });
        breaker.clone()
    }

    pub(crate) fn existing(&self, key: &K) -> Option<Arc<Breaker<K>>> {
        read(self.shard(key)).get(key).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed) as usize
    }

    pub(crate) fn snapshot(&self) -> Vec<(K, CircuitState)> {
        self.shards
            .iter()
            .flat_map(|shard| {
                read(shard)
                    .iter()
                    .map(|(key, breaker)| (key.clone(), breaker.core.state()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// At most once per idle period (and once a second), when a new key
    /// arrives: forgets breakers that were not used since the last sweep,
    /// are closed, are not held in an operator mode and have no call in
    /// flight. Such a breaker is indistinguishable from a new one.
    fn maybe_sweep(&self) {
        /// A flood of new keys buys at most one full sweep a second.
        const MIN_SWEEP_GAP_US: u64 = 1_000_000;
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let last = self.swept_at_us.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.idle_us.max(MIN_SWEEP_GAP_US)
            || self
                .swept_at_us
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep();
    }

    pub(crate) fn sweep(&self) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            write(shard).retain(|_, breaker| {
                let idle = !breaker.touched.swap(false, Ordering::Relaxed)
                    && breaker.core.state() == CircuitState::Closed
                    && breaker.core.totals(|| breaker.core.now_us()).failures == 0
                    && Arc::strong_count(breaker) == 1;
                dropped += usize::from(idle);
                !idle
            });
        }
        self.live.fetch_sub(dropped as u64, Ordering::Relaxed);
        dropped
    }
}
