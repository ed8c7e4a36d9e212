//! The breaker's state machine: one atomic word holds the state, its
//! generation and its time, so every step is a single compare-and-swap and
//! no call ever waits on a lock.
//!
//! * **Closed**: every call is admitted; its outcome goes into the window and
//!   the breaker opens when a policy trips.
//! * **Open** until a time: calls are refused with the time left.
//! * **Half-open** (entered by the first call after that time): a fixed number
//!   of probe permits; once all probes have reported, the breaker closes if few
//!   enough failed and re-opens, for longer, otherwise. A probe that is dropped
//!   gives its permit back; probes that do not report within the probe timeout
//!   re-open the breaker.
//!
//! Every transition bumps the generation, and a call's outcome only counts
//! towards the generation that admitted it, so a slow call from before an
//! outage cannot close the breaker that the outage opened.
//!
//! Time is passed in (microseconds since the breaker was made), which is what
//! lets the model test in `tests` drive it step by step.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::window::{CountWindow, Mark, TimeWindow, Totals, Window};
use crate::classify::Outcome;
use crate::random::Jitter;

/// Where a breaker is, as callers and operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow; outcomes are watched.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A few probe calls test whether the service has recovered.
    HalfOpen,
    /// Held open by an operator: every call is refused.
    ForcedOpen,
    /// Switched off by an operator: every call flows, nothing is recorded.
    Disabled,
    /// Observing only: the state machine runs and reports, but never refuses.
    MetricsOnly,
}

impl CircuitState {
    /// Every state, in the order of [`CircuitState::as_str`]'s metric labels.
    pub const ALL: [CircuitState; 6] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
        CircuitState::ForcedOpen,
        CircuitState::Disabled,
        CircuitState::MetricsOnly,
    ];

    /// The metric label: `closed`, `open`, `half_open`, `forced_open`,
    /// `disabled` or `metrics_only`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
            CircuitState::MetricsOnly => "metrics_only",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The window the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSpec {
    Count(usize),
    Time { buckets: usize, width_us: u64 },
}

/// A breaker's policies, validated by the builder.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) window: WindowSpec,
    pub(crate) min_calls: u64,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_rate: Option<f64>,
    pub(crate) slow_call_us: Option<u64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_base_us: u64,
    pub(crate) open_max_us: u64,
    /// The open period is drawn from `[d × (1 − jitter), d]`.
    pub(crate) jitter: f64,
    pub(crate) probes: u32,
    /// More failed probes than this re-open the breaker.
    pub(crate) max_failed_probes: u32,
    pub(crate) probe_timeout_us: u64,
}

impl Policy {
    fn trips(&self, totals: Totals, consecutive: u32) -> bool {
        if self
            .consecutive_failures
            .is_some_and(|limit| consecutive >= limit)
        {
            return true;
        }
        if totals.calls == 0 || totals.calls < self.min_calls {
            return false;
        }
        let rate = |count: u64| count as f64 / totals.calls as f64;
        self.failure_rate
            .is_some_and(|limit| rate(totals.failures) >= limit)
            || self
                .slow_rate
                .is_some_and(|limit| rate(totals.slow) >= limit)
    }

    /// How long to stay open after `reopens` re-openings in a row, before jitter.
    pub(crate) fn open_us(&self, reopens: u32) -> u64 {
        let grown = self
            .open_base_us
            .saturating_mul(1u64.checked_shl(reopens).unwrap_or(u64::MAX));
        grown.min(self.open_max_us).max(1)
    }

    fn mark(&self, outcome: Outcome, took_us: Option<u64>) -> Option<Mark> {
        let slow_by_time =
            matches!((self.slow_call_us, took_us), (Some(limit), Some(took)) if took >= limit);
        match outcome {
            Outcome::Success => Some(Mark {
                failure: false,
                slow: slow_by_time,
            }),
            Outcome::Failure(_) => Some(Mark {
                failure: true,
                slow: slow_by_time,
            }),
            Outcome::TimedOut => Some(Mark {
                failure: true,
                slow: true,
            }),
            Outcome::Cancelled | Outcome::Refused(_) => None,
        }
    }
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const GEN_BITS: u32 = 14;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// The state word: kind (2 bits), generation (14 bits), and a time in
/// milliseconds (48 bits): the end of the open period, or when half-open began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(kind: u64, generation: u64, time_ms: u64) -> Self {
        Word(kind | ((generation & GEN_MASK) << 2) | (time_ms << (2 + GEN_BITS)))
    }

    #[inline]
    fn kind(self) -> u64 {
        self.0 & 0b11
    }

    #[inline]
    fn generation(self) -> u64 {
        (self.0 >> 2) & GEN_MASK
    }

    fn time_ms(self) -> u64 {
        self.0 >> (2 + GEN_BITS)
    }

    fn state(self) -> CircuitState {
        match self.kind() {
            CLOSED => CircuitState::Closed,
            OPEN => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }
}

/// The probe permits of one half-open generation: generation tag, permits
/// handed out, and how many probes reported success and failure (16 bits each).
#[derive(Debug, Clone, Copy)]
struct Probes {
    generation: u64,
    taken: u64,
    good: u64,
    bad: u64,
}

impl Probes {
    fn unpack(word: u64) -> Self {
        Probes {
            generation: word & GEN_MASK,
            taken: (word >> 16) & 0xFFFF,
            good: (word >> 32) & 0xFFFF,
            bad: (word >> 48) & 0xFFFF,
        }
    }

    fn pack(self) -> u64 {
        self.generation | (self.taken << 16) | (self.good << 32) | (self.bad << 48)
    }
}

fn generation_newer(a: u64, b: u64) -> bool {
    let diff = a.wrapping_sub(b) & GEN_MASK;
    diff != 0 && diff < (1 << (GEN_BITS - 1))
}

const NORMAL: u8 = 0;
const FORCED_OPEN: u8 = 1;
const DISABLED: u8 = 2;
const METRICS_ONLY: u8 = 3;

/// Whether a call may go ahead.
#[derive(Debug)]
pub(crate) enum Admission {
    Admitted(Permit),
    /// Refused; the time until the breaker admits again, when known.
    Refused(Option<Duration>),
}

/// What an admitted call reports against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    /// A closed-state call: its outcome goes into the window.
    Closed,
    /// A half-open probe.
    Probe,
    /// Let through by metrics-only mode although the breaker would refuse it.
    Shadow,
    /// Let through by a disabled breaker: nothing is recorded.
    Untracked,
}

/// An admitted call's ticket: which generation admitted it, as what, and when
/// it started (only kept when call durations matter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permit {
    generation: u64,
    pub(crate) kind: PermitKind,
    started_us: Option<u64>,
}

/// How a call counted, for the `calls` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Success,
    Failure,
    Slow,
    Cancelled,
    Ignored,
}

/// A state change: for the transitions metric, the gauge and the user's hook.
pub(crate) type Change = (CircuitState, CircuitState);

/// One breaker.
pub(crate) struct Core {
    policy: Policy,
    epoch: Instant,
    state: AtomicU64,
    probes: AtomicU64,
    mode: AtomicU8,
    window: Window,
    consecutive: AtomicU32,
    /// Re-openings in a row since the breaker last closed.
    reopens: AtomicU32,
    jitter: Jitter,
    /// The state last reported to the gauge: changes are reported under this
    /// lock (they are rare) so the gauge always ends on the current state.
    reported: Mutex<CircuitState>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(policy: Policy) -> Self {
        let window = match policy.window {
            WindowSpec::Count(size) => Window::Count(CountWindow::new(size)),
            WindowSpec::Time { buckets, width_us } => {
                Window::Time(TimeWindow::new(buckets, width_us))
            }
        };
        Core {
            policy,
            epoch: Instant::now(),
            state: AtomicU64::new(Word::new(CLOSED, 0, 0).0),
            // No half-open generation yet: generation 0 is closed.
            probes: AtomicU64::new(0),
            mode: AtomicU8::new(NORMAL),
            window,
            consecutive: AtomicU32::new(0),
            reopens: AtomicU32::new(0),
            jitter: Jitter::new(),
            reported: Mutex::new(CircuitState::Closed),
        }
    }

    /// Microseconds since the breaker was made, on Tokio's clock (so paused
    /// test time drives it).
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn instant_at_us(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    #[inline]
    fn word(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    /// The state callers see: an operator's mode, else the machine's state.
    pub(crate) fn state(&self) -> CircuitState {
        match self.mode.load(Ordering::Acquire) {
            FORCED_OPEN => CircuitState::ForcedOpen,
            DISABLED => CircuitState::Disabled,
            METRICS_ONLY => CircuitState::MetricsOnly,
            _ => self.word().state(),
        }
    }

    /// The state machine's own state, whatever the operator mode.
    pub(crate) fn machine_state(&self) -> CircuitState {
        self.word().state()
    }

    pub(crate) fn totals(&self, now_us: impl FnOnce() -> u64) -> Totals {
        self.window.totals(now_us)
    }

    /// The common case of [`admit`](Self::admit), small enough to inline: no
    /// operator mode, closed, and call durations not watched.
    #[inline]
    pub(crate) fn admit_closed(&self) -> Option<Permit> {
        let word = self.word();
        let plain = self.mode.load(Ordering::Acquire) == NORMAL
            && word.kind() == CLOSED
            && self.policy.slow_call_us.is_none();
        plain.then_some(Permit {
            generation: word.generation(),
            kind: PermitKind::Closed,
            started_us: None,
        })
    }

    /// The common case of [`complete`](Self::complete), small enough to
    /// inline: a closed-state success, not timed, into a full count window
    /// that holds no failure or slow call, with no failure streak. Recording
    /// it would change nothing (the slot it replaces is clean too, and a full
    /// clean window cannot trip), so it only says whether that is the case.
    #[inline]
    pub(crate) fn completes_unchanged(&self, permit: Permit, outcome: Outcome) -> bool {
        permit.kind == PermitKind::Closed
            && permit.started_us.is_none()
            && matches!(outcome, Outcome::Success)
            && matches!(&self.window, Window::Count(window) if window.full_and_clean())
            && self.consecutive.load(Ordering::Relaxed) == 0
    }

    /// Whether `poll_ready` may answer for the inner service: the breaker is
    /// forced open, or open with time left.
    #[inline]
    pub(crate) fn refusing(&self) -> bool {
        let plain = self.mode.load(Ordering::Acquire) == NORMAL && self.word().kind() == CLOSED;
        !plain && self.refusing_slow()
    }

    fn refusing_slow(&self) -> bool {
        match self.state() {
            CircuitState::ForcedOpen => true,
            CircuitState::Open => self.next_admission_us() > Some(self.now_us()),
            _ => false,
        }
    }

    /// Decides whether a call may go ahead. Reads the clock only when the
    /// answer depends on time (open, half-open, timed calls).
    pub(crate) fn admit(&self, now_us: &impl Fn() -> u64, changes: &mut Vec<Change>) -> Admission {
        if let Some(permit) = self.admit_closed() {
            return Admission::Admitted(permit);
        }
        let mode = self.mode.load(Ordering::Acquire);
        match mode {
            DISABLED => {
                return Admission::Admitted(Permit {
                    generation: 0,
                    kind: PermitKind::Untracked,
                    started_us: None,
                });
            }
            FORCED_OPEN => return Admission::Refused(None),
            _ => {}
        }
        let admission = self.admit_machine(now_us, changes);
        match admission {
            Admission::Refused(_) if mode == METRICS_ONLY => Admission::Admitted(Permit {
                generation: 0,
                kind: PermitKind::Shadow,
                started_us: None,
            }),
            admission => admission,
        }
    }

    fn admit_machine(&self, now_us: &impl Fn() -> u64, changes: &mut Vec<Change>) -> Admission {
        let timed = self.policy.slow_call_us.is_some();
        let mut word = self.word();
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(now_us);
        loop {
            match word.kind() {
                CLOSED => {
                    return Admission::Admitted(Permit {
                        generation: word.generation(),
                        kind: PermitKind::Closed,
                        started_us: timed.then(&mut clock),
                    });
                }
                OPEN => {
                    let now = clock();
                    let until_us = word.time_ms().saturating_mul(1000);
                    if now < until_us {
                        return Admission::Refused(Some(Duration::from_micros(until_us - now)));
                    }
                    let half_open = Word::new(HALF_OPEN, word.generation() + 1, now / 1000);
                    match self.swap_word(word, half_open) {
                        Ok(()) => {
                            changes.push((CircuitState::Open, CircuitState::HalfOpen));
                            word = half_open;
                        }
                        Err(current) => word = current,
                    }
                }
                _ => {
                    let generation = word.generation();
                    if self.take_probe(generation) {
                        return Admission::Admitted(Permit {
                            generation,
                            kind: PermitKind::Probe,
                            started_us: timed.then(&mut clock),
                        });
                    }
                    let now = clock();
                    let stuck_at =
                        (word.time_ms() * 1000).saturating_add(self.policy.probe_timeout_us);
                    if now < stuck_at {
                        return Admission::Refused(None);
                    }
                    // The probes never reported: treat the round as failed.
                    match self.reopen(word, now) {
                        Ok(open) => {
                            changes.push((CircuitState::HalfOpen, CircuitState::Open));
                            word = open;
                        }
                        Err(current) => word = current,
                    }
                }
            }
        }
    }

    fn swap_word(&self, from: Word, to: Word) -> Result<(), Word> {
        self.state
            .compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(Word)
    }

    fn take_probe(&self, generation: u64) -> bool {
        let mut word = self.probes.load(Ordering::Acquire);
        loop {
            let mut probes = Probes::unpack(word);
            if probes.generation != generation {
                if generation_newer(probes.generation, generation) {
                    return false;
                }
                // The first probe of this generation starts its count.
                probes = Probes {
                    generation,
                    taken: 0,
                    good: 0,
                    bad: 0,
                };
            }
            if probes.taken >= u64::from(self.policy.probes) {
                return false;
            }
            probes.taken += 1;
            match self.probes.compare_exchange_weak(
                word,
                probes.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(current) => word = current,
            }
        }
    }

    /// Reports a finished call; returns how it counted.
    pub(crate) fn complete(
        &self,
        permit: Permit,
        outcome: Outcome,
        now_us: &impl Fn() -> u64,
        changes: &mut Vec<Change>,
    ) -> Counted {
        if self.completes_unchanged(permit, outcome) {
            return Counted::Success;
        }
        let took = permit
            .started_us
            .map(|started| now_us().saturating_sub(started));
        let mark = self.policy.mark(outcome, took);
        let counted = match (mark, outcome) {
            (None, Outcome::Cancelled) => Counted::Cancelled,
            (None, _) => Counted::Ignored,
            (Some(mark), _) if mark.failure => Counted::Failure,
            (Some(mark), _) if mark.slow => Counted::Slow,
            (Some(_), _) => Counted::Success,
        };
        match permit.kind {
            PermitKind::Untracked | PermitKind::Shadow => {}
            PermitKind::Closed => {
                if let Some(mark) = mark {
                    self.record_closed(permit.generation, mark, now_us, changes);
                }
            }
            PermitKind::Probe => {
                let bad =
                    mark.map(|mark| mark.failure || (mark.slow && self.policy.slow_rate.is_some()));
                self.report_probe(permit.generation, bad, now_us, changes);
            }
        }
        counted
    }

    fn record_closed(
        &self,
        generation: u64,
        mark: Mark,
        now_us: &impl Fn() -> u64,
        changes: &mut Vec<Change>,
    ) {
        let word = self.word();
        if word.kind() != CLOSED || word.generation() != generation {
            return;
        }
        let consecutive = if mark.failure {
            self.consecutive.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            0
        };
        let totals = self.window.record(mark, now_us);
        // In a count window a clean success cannot raise a rate: it can only
        // trip the breaker by being the call that reaches the minimum.
        let may_trip = mark.failure
            || mark.slow
            || matches!(self.window, Window::Time(_))
            || totals.calls == self.policy.min_calls;
        if may_trip && self.policy.trips(totals, consecutive) {
            let now = now_us();
            let until_ms = self.open_until_ms(now, self.reopens.load(Ordering::Relaxed));
            let open = Word::new(OPEN, generation + 1, until_ms);
            if self.swap_word(word, open).is_ok() {
                self.consecutive.store(0, Ordering::Relaxed);
                changes.push((CircuitState::Closed, CircuitState::Open));
            }
        }
    }

    /// `bad`: `None` gives the permit back (the probe was cancelled or
    /// refused further in), else whether the probe failed.
    fn report_probe(
        &self,
        generation: u64,
        bad: Option<bool>,
        now_us: &impl Fn() -> u64,
        changes: &mut Vec<Change>,
    ) {
        let mut word = self.probes.load(Ordering::Acquire);
        let probes = loop {
            let mut probes = Probes::unpack(word);
            if probes.generation != generation {
                return;
            }
            match bad {
                None => probes.taken = probes.taken.saturating_sub(1),
                Some(true) => probes.bad += 1,
                Some(false) => probes.good += 1,
            }
            match self.probes.compare_exchange_weak(
                word,
                probes.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break probes,
                Err(current) => word = current,
            }
        };
        let state = self.word();
        if state.kind() != HALF_OPEN || state.generation() != generation {
            return;
        }
        if probes.bad > u64::from(self.policy.max_failed_probes) {
            if self.reopen(state, now_us()).is_ok() {
                changes.push((CircuitState::HalfOpen, CircuitState::Open));
            }
        } else if probes.good + probes.bad >= u64::from(self.policy.probes) {
            self.window.clear();
            self.consecutive.store(0, Ordering::Relaxed);
            if self
                .swap_word(state, Word::new(CLOSED, generation + 1, 0))
                .is_ok()
            {
                self.reopens.store(0, Ordering::Relaxed);
                changes.push((CircuitState::HalfOpen, CircuitState::Closed));
            }
        }
    }

    /// Half-open → open again, for longer than last time.
    fn reopen(&self, from: Word, now_us: u64) -> Result<Word, Word> {
        let reopens = self.reopens.load(Ordering::Relaxed).saturating_add(1);
        let open = Word::new(
            OPEN,
            from.generation() + 1,
            self.open_until_ms(now_us, reopens),
        );
        self.swap_word(from, open)?;
        self.reopens.store(reopens, Ordering::Relaxed);
        Ok(open)
    }

    fn open_until_ms(&self, now_us: u64, reopens: u32) -> u64 {
        let full = self.policy.open_us(reopens);
        let jittered = if self.policy.jitter > 0.0 {
            let cut = (full as f64 * self.policy.jitter * self.jitter.next_unit()) as u64;
            full - cut.min(full - 1)
        } else {
            full
        };
        // Whole milliseconds, rounded down (so `Retry-After` shows the
        // configured seconds, not one more), but always in the future.
        (now_us.saturating_add(jittered) / 1000).max(now_us / 1000 + 1)
    }

    /// When the next call will be admitted: now, the end of the open period,
    /// or `None` when that depends on probes in flight or on an operator.
    pub(crate) fn next_admission_us(&self) -> Option<u64> {
        let now = self.now_us();
        match self.mode.load(Ordering::Acquire) {
            FORCED_OPEN => return None,
            DISABLED | METRICS_ONLY => return Some(now),
            _ => {}
        }
        let word = self.word();
        match word.kind() {
            CLOSED => Some(now),
            OPEN => Some(now.max(word.time_ms() * 1000)),
            _ => {
                let probes = Probes::unpack(self.probes.load(Ordering::Acquire));
                let free = probes.generation != word.generation()
                    || probes.taken < u64::from(self.policy.probes);
                free.then_some(now)
            }
        }
    }

    /// Holds the breaker in an operator mode, or (`NORMAL`) releases it.
    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::Release);
    }

    pub(crate) fn force_open(&self) {
        self.set_mode(FORCED_OPEN);
    }

    pub(crate) fn disable(&self) {
        self.set_mode(DISABLED);
    }

    pub(crate) fn metrics_only(&self) {
        self.set_mode(METRICS_ONLY);
    }

    /// Releases any operator mode and closes with an empty window. `forget`
    /// also forgets past re-openings (the next open period is the base one).
    /// The change is reported as operators see it, by `sync_reported`.
    pub(crate) fn close(&self, forget: bool) {
        self.window.clear();
        self.consecutive.store(0, Ordering::Relaxed);
        if forget {
            self.reopens.store(0, Ordering::Relaxed);
        }
        let mut word = self.word();
        while let Err(current) = self.swap_word(word, Word::new(CLOSED, word.generation() + 1, 0)) {
            word = current;
        }
        self.set_mode(NORMAL);
    }

    /// Brings the gauge's record of this breaker up to date; returns the
    /// reported change, if any.
    pub(crate) fn sync_reported(&self) -> Option<Change> {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.state();
        (now != *reported).then(|| (std::mem::replace(&mut *reported, now), now))
    }

    /// The state the gauge counts this breaker in.
    pub(crate) fn reported(&self) -> CircuitState {
        *self.reported.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::classify::FailureKind;

    fn policy() -> Policy {
        Policy {
            window: WindowSpec::Count(10),
            min_calls: 4,
            failure_rate: Some(0.5),
            slow_rate: None,
            slow_call_us: None,
            consecutive_failures: None,
            open_base_us: 10_000_000,
            open_max_us: 60_000_000,
            jitter: 0.0,
            probes: 2,
            max_failed_probes: 0,
            probe_timeout_us: 30_000_000,
        }
    }

    const FAIL: Outcome = Outcome::Failure(FailureKind::ServiceError);

    struct Clocked {
        core: Core,
        now: Cell<u64>,
    }

    impl Clocked {
        fn new(policy: Policy) -> Self {
            Clocked {
                core: Core::new(policy),
                now: Cell::new(0),
            }
        }

        fn admit(&self) -> Admission {
            self.core.admit(&|| self.now.get(), &mut Vec::new())
        }

        fn call(&self, outcome: Outcome) -> Option<Counted> {
            match self.admit() {
                Admission::Admitted(permit) => Some(self.complete(permit, outcome)),
                Admission::Refused(_) => None,
            }
        }

        fn complete(&self, permit: Permit, outcome: Outcome) -> Counted {
            self.core
                .complete(permit, outcome, &|| self.now.get(), &mut Vec::new())
        }

        fn advance_ms(&self, ms: u64) {
            self.now.set(self.now.get() + ms * 1000);
        }
    }

    #[test]
    fn generations_compare_across_the_wrap() {
        assert!(generation_newer(5, 4));
        assert!(!generation_newer(4, 5));
        assert!(!generation_newer(9, 9), "not newer than itself");
        assert!(generation_newer(0, GEN_MASK), "0 follows the largest");
        assert!(!generation_newer(GEN_MASK, 0));
        let half = 1 << (GEN_BITS - 1);
        assert!(generation_newer(half - 1, 0));
        assert!(!generation_newer(half, 0));
    }

    #[test]
    fn calls_are_counted_as_success_failure_slow_or_cancelled() {
        let breaker = Clocked::new(Policy {
            slow_rate: Some(1.0),
            slow_call_us: Some(1_000_000),
            min_calls: 100,
            ..policy()
        });
        let timed = |ms: u64, outcome: Outcome| {
            let Admission::Admitted(permit) = breaker.admit() else {
                panic!("closed")
            };
            breaker.advance_ms(ms);
            breaker.complete(permit, outcome)
        };
        assert_eq!(timed(10, Outcome::Success), Counted::Success);
        assert_eq!(timed(1_500, Outcome::Success), Counted::Slow);
        assert_eq!(timed(10, FAIL), Counted::Failure);
        assert_eq!(timed(1_500, FAIL), Counted::Failure, "a failure first");
        assert_eq!(timed(10, Outcome::Cancelled), Counted::Cancelled);
        let debug = format!("{:?}", breaker.core);
        assert!(debug.contains("Closed"), "{debug}");
    }

    /// A core on Tokio's (paused) clock, as the layer runs it.
    fn on_tokio_clock(policy: Policy) -> Core {
        Core::new(policy)
    }

    fn admit_now(core: &Core) -> Admission {
        core.admit(&|| core.now_us(), &mut Vec::new())
    }

    fn complete_now(core: &Core, permit: Permit, outcome: Outcome) {
        core.complete(permit, outcome, &|| core.now_us(), &mut Vec::new());
    }

    fn open_now(core: &Core) {
        for _ in 0..4 {
            if let Admission::Admitted(permit) = admit_now(core) {
                complete_now(core, permit, FAIL);
            }
        }
        assert_eq!(core.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_admission_follows_state_and_operator_modes() {
        let core = on_tokio_clock(policy());
        let now = || core.now_us();
        assert_eq!(core.next_admission_us(), Some(now()), "closed");
        open_now(&core);
        assert_eq!(core.next_admission_us(), Some(now() + 10_000_000), "open");
        core.disable();
        assert_eq!(core.next_admission_us(), Some(now()), "disabled while open");
        core.metrics_only();
        assert_eq!(
            core.next_admission_us(),
            Some(now()),
            "observing while open"
        );
        core.force_open();
        assert_eq!(core.next_admission_us(), None, "held open by an operator");
        core.set_mode(NORMAL);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Half-open: free while probes are left, then it depends on them.
        let Admission::Admitted(first) = admit_now(&core) else {
            panic!("a probe")
        };
        assert_eq!(core.state(), CircuitState::HalfOpen);
        assert_eq!(core.next_admission_us(), Some(now()), "one probe left");
        let Admission::Admitted(second) = admit_now(&core) else {
            panic!("a probe")
        };
        assert_eq!(core.next_admission_us(), None, "every probe out");
        complete_now(&core, first, Outcome::Cancelled);
        assert_eq!(core.next_admission_us(), Some(now()), "a probe given back");
        complete_now(&core, second, Outcome::Success);
    }

    #[tokio::test(start_paused = true)]
    async fn a_microsecond_open_period_still_ends_in_the_future() {
        let core = on_tokio_clock(Policy {
            open_base_us: 1,
            open_max_us: 1,
            ..policy()
        });
        open_now(&core);
        assert!(matches!(admit_now(&core), Admission::Refused(Some(_))));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(admit_now(&core), Admission::Admitted(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_shortens_open_periods_within_its_share() {
        let core = on_tokio_clock(Policy {
            jitter: 0.5,
            ..policy()
        });
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            open_now(&core);
            let left = core.next_admission_us().unwrap() - core.now_us();
            assert!(
                (5_000_000..=10_000_000).contains(&left),
                "{left} us, base 10 s, jitter 0.5"
            );
            seen.insert(left / 100_000);
            core.close(true);
        }
        assert!(seen.len() > 10, "periods vary: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_probe_from_an_earlier_round_changes_nothing() {
        let core = on_tokio_clock(policy());
        open_now(&core);
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Admitted(late) = admit_now(&core) else {
            panic!("a probe")
        };
        let Admission::Admitted(failing) = admit_now(&core) else {
            panic!("a probe")
        };
        complete_now(&core, failing, FAIL);
        assert_eq!(core.state(), CircuitState::Open, "a failed probe re-opens");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(core.next_admission_us(), Some(core.now_us()));
        // A new round: the first round's late probe reports, and counts for
        // nothing in it.
        let Admission::Admitted(probe) = admit_now(&core) else {
            panic!("a probe")
        };
        assert_eq!(core.state(), CircuitState::HalfOpen);
        complete_now(&core, late, Outcome::Success);
        complete_now(&core, probe, Outcome::Success);
        assert_eq!(core.state(), CircuitState::HalfOpen, "one of two probes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_from_before_an_operator_close_is_not_counted() {
        let core = on_tokio_clock(policy());
        let Admission::Admitted(before) = admit_now(&core) else {
            panic!("closed")
        };
        core.close(false);
        complete_now(&core, before, FAIL);
        assert_eq!(core.totals(|| core.now_us()), Totals::default());
    }

    #[test]
    fn opens_at_the_failure_rate_once_the_minimum_is_reached() {
        let breaker = Clocked::new(policy());
        for _ in 0..3 {
            breaker.call(FAIL);
        }
        assert_eq!(
            breaker.core.state(),
            CircuitState::Closed,
            "below minimum calls"
        );
        breaker.call(FAIL);
        assert_eq!(breaker.core.state(), CircuitState::Open);
        match breaker.admit() {
            Admission::Refused(Some(wait)) => assert_eq!(wait, Duration::from_secs(10)),
            other => panic!("expected a refusal with a wait, got {other:?}"),
        }
    }

    #[test]
    fn half_open_admits_exactly_its_probes_and_closes_on_success() {
        let breaker = Clocked::new(policy());
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        breaker.advance_ms(10_000);
        let first = breaker.admit();
        let second = breaker.admit();
        assert!(matches!(breaker.admit(), Admission::Refused(None)));
        assert_eq!(breaker.core.state(), CircuitState::HalfOpen);
        for probe in [first, second] {
            let Admission::Admitted(permit) = probe else {
                panic!("probe refused")
            };
            assert_eq!(permit.kind, PermitKind::Probe);
            breaker.complete(permit, Outcome::Success);
        }
        assert_eq!(breaker.core.state(), CircuitState::Closed);
        assert_eq!(
            breaker.core.totals(|| 0),
            Totals::default(),
            "a fresh window"
        );
    }

    #[test]
    fn exactly_n_probes_across_threads() {
        let core = Core::new(Policy {
            probes: 5,
            ..policy()
        });
        let now = AtomicU64::new(0);
        let clock = || now.load(Ordering::Relaxed);
        for _ in 0..4 {
            if let Admission::Admitted(permit) = core.admit(&clock, &mut Vec::new()) {
                core.complete(permit, FAIL, &clock, &mut Vec::new());
            }
        }
        assert_eq!(core.state(), CircuitState::Open);
        now.store(10_000_000, Ordering::Relaxed);
        let admitted = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        if let Admission::Admitted(permit) = core.admit(&clock, &mut Vec::new()) {
                            assert_eq!(permit.kind, PermitKind::Probe);
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 5);
        assert_eq!(core.state(), CircuitState::HalfOpen);
    }

    #[test]
    fn a_cancelled_probe_gives_its_permit_back() {
        let breaker = Clocked::new(policy());
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        breaker.advance_ms(10_000);
        let Admission::Admitted(first) = breaker.admit() else {
            panic!()
        };
        let Admission::Admitted(_second) = breaker.admit() else {
            panic!()
        };
        assert!(matches!(breaker.admit(), Admission::Refused(None)));
        breaker.complete(first, Outcome::Cancelled);
        assert!(matches!(breaker.admit(), Admission::Admitted(_)));
    }

    #[test]
    fn reopening_doubles_the_open_period_and_closing_resets_it() {
        let breaker = Clocked::new(policy());
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        breaker.advance_ms(10_000);
        breaker.call(FAIL);
        match breaker.admit() {
            Admission::Refused(Some(wait)) => assert_eq!(wait, Duration::from_secs(20)),
            other => panic!("{other:?}"),
        }
        breaker.advance_ms(20_000);
        breaker.call(Outcome::Success);
        breaker.call(Outcome::Success);
        assert_eq!(breaker.core.state(), CircuitState::Closed);
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        match breaker.admit() {
            Admission::Refused(Some(wait)) => assert_eq!(wait, Duration::from_secs(10)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stuck_probes_reopen_after_the_probe_timeout() {
        let breaker = Clocked::new(policy());
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        breaker.advance_ms(10_000);
        let _stuck = (breaker.admit(), breaker.admit());
        breaker.advance_ms(29_999);
        assert!(matches!(breaker.admit(), Admission::Refused(None)));
        breaker.advance_ms(1);
        assert!(matches!(breaker.admit(), Admission::Refused(Some(_))));
        assert_eq!(breaker.core.state(), CircuitState::Open);
    }

    #[test]
    fn an_outcome_from_an_earlier_generation_is_ignored() {
        let breaker = Clocked::new(Policy {
            consecutive_failures: Some(1),
            ..policy()
        });
        let Admission::Admitted(old) = breaker.admit() else {
            panic!()
        };
        breaker.call(FAIL);
        breaker.advance_ms(10_000);
        breaker.call(Outcome::Success);
        breaker.call(Outcome::Success);
        assert_eq!(breaker.core.state(), CircuitState::Closed);
        // A call admitted before the outage reports now: it must not trip
        // the breaker that has since closed.
        breaker.complete(old, FAIL);
        assert_eq!(breaker.core.state(), CircuitState::Closed);
    }

    #[test]
    fn operator_modes() {
        let breaker = Clocked::new(policy());
        breaker.core.force_open();
        assert!(matches!(breaker.admit(), Admission::Refused(None)));
        assert_eq!(breaker.core.state(), CircuitState::ForcedOpen);
        breaker.core.disable();
        for _ in 0..10 {
            assert_eq!(breaker.call(FAIL), Some(Counted::Failure));
        }
        assert_eq!(
            breaker.core.machine_state(),
            CircuitState::Closed,
            "disabled records nothing"
        );
        breaker.core.metrics_only();
        for _ in 0..4 {
            breaker.call(FAIL);
        }
        assert_eq!(breaker.core.machine_state(), CircuitState::Open);
        let Admission::Admitted(permit) = breaker.admit() else {
            panic!("metrics-only never refuses")
        };
        assert_eq!(permit.kind, PermitKind::Shadow);
        breaker.core.close(true);
        assert_eq!(breaker.core.state(), CircuitState::Closed);
    }

    // ---- The model test: a plain, sequential reference of the state
    // machine, driven alongside the atomic one with random calls, outcomes
    // and clock steps.

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum ModelState {
        Closed,
        Open {
            until_ms: u64,
        },
        HalfOpen {
            since_ms: u64,
            taken: u32,
            good: u32,
            bad: u32,
        },
    }

    struct Model {
        policy: Policy,
        state: ModelState,
        generation: u64,
        window: VecDeque<(u64, Mark)>,
        newest_epoch: u64,
        consecutive: u32,
        reopens: u32,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum ModelAdmission {
        Admitted {
            probe: bool,
            generation: u64,
            started_us: u64,
        },
        Refused(Option<u64>),
    }

    impl Model {
        // The model's own reading of the policy, written independently of
        // `Policy`'s methods so that it checks them too.
        fn until_ms(&self, now: u64, reopens: u32) -> u64 {
            let mut open = self.policy.open_base_us;
            for _ in 0..reopens {
                open = (open * 2).min(self.policy.open_max_us);
            }
            ((now + open) / 1000).max(now / 1000 + 1)
        }

        fn trips(&self, totals: Totals) -> bool {
            let p = &self.policy;
            let over = |count: u64, rate: Option<f64>| {
                rate.is_some_and(|rate| count as f64 >= rate * totals.calls as f64)
            };
            p.consecutive_failures
                .is_some_and(|k| self.consecutive >= k)
                || (totals.calls > 0
                    && totals.calls >= p.min_calls
                    && (over(totals.failures, p.failure_rate) || over(totals.slow, p.slow_rate)))
        }

        fn mark(&self, outcome: Outcome, took_us: u64) -> Option<Mark> {
            let slow = self
                .policy
                .slow_call_us
                .is_some_and(|limit| took_us >= limit);
            match outcome {
                Outcome::Success => Some(Mark {
                    failure: false,
                    slow,
                }),
                Outcome::TimedOut => Some(Mark {
                    failure: true,
                    slow: true,
                }),
                Outcome::Cancelled | Outcome::Refused(_) => None,
                Outcome::Failure(_) => Some(Mark {
                    failure: true,
                    slow,
                }),
            }
        }

        fn admit(&mut self, now: u64) -> ModelAdmission {
            loop {
                match self.state {
                    ModelState::Closed => {
                        return ModelAdmission::Admitted {
                            probe: false,
                            generation: self.generation,
                            started_us: now,
                        };
                    }
                    ModelState::Open { until_ms } => {
                        if now < until_ms * 1000 {
                            return ModelAdmission::Refused(Some(until_ms * 1000 - now));
                        }
                        self.generation += 1;
                        self.state = ModelState::HalfOpen {
                            since_ms: now / 1000,
                            taken: 0,
                            good: 0,
                            bad: 0,
                        };
                    }
                    ModelState::HalfOpen {
                        since_ms,
                        taken,
                        good,
                        bad,
                    } => {
                        if taken < self.policy.probes {
                            self.state = ModelState::HalfOpen {
                                since_ms,
                                taken: taken + 1,
                                good,
                                bad,
                            };
                            return ModelAdmission::Admitted {
                                probe: true,
                                generation: self.generation,
                                started_us: now,
                            };
                        }
                        if now < since_ms * 1000 + self.policy.probe_timeout_us {
                            return ModelAdmission::Refused(None);
                        }
                        self.reopen(now);
                    }
                }
            }
        }

        fn reopen(&mut self, now: u64) {
            self.reopens += 1;
            self.generation += 1;
            self.state = ModelState::Open {
                until_ms: self.until_ms(now, self.reopens),
            };
        }

        fn window_totals(&mut self, now: u64) -> Totals {
            if let WindowSpec::Time { buckets, width_us } = self.policy.window {
                self.newest_epoch = self.newest_epoch.max(now / width_us);
                let newest = self.newest_epoch;
                self.window
                    .retain(|(at, _)| at / width_us + buckets as u64 > newest);
            }
            Totals {
                calls: self.window.len() as u64,
                failures: self.window.iter().filter(|(_, m)| m.failure).count() as u64,
                slow: self.window.iter().filter(|(_, m)| m.slow).count() as u64,
            }
        }

        fn complete(&mut self, admitted: ModelAdmission, outcome: Outcome, now: u64) {
            let ModelAdmission::Admitted {
                probe,
                generation,
                started_us,
            } = admitted
            else {
                return;
            };
            if generation != self.generation {
                return;
            }
            let mark = self.mark(outcome, now - started_us);
            match (self.state, probe) {
                (ModelState::Closed, false) => {
                    let Some(mark) = mark else { return };
                    self.consecutive = if mark.failure {
                        self.consecutive + 1
                    } else {
                        0
                    };
                    self.window.push_back((now, mark));
                    if let WindowSpec::Count(size) = self.policy.window {
                        if self.window.len() > size {
                            self.window.pop_front();
                        }
                    }
                    let totals = self.window_totals(now);
                    if self.trips(totals) {
                        self.generation += 1;
                        self.consecutive = 0;
                        self.state = ModelState::Open {
                            until_ms: self.until_ms(now, self.reopens),
                        };
                    }
                }
                (
                    ModelState::HalfOpen {
                        since_ms,
                        mut taken,
                        mut good,
                        mut bad,
                    },
                    true,
                ) => {
                    match mark.map(|m| m.failure || (m.slow && self.policy.slow_rate.is_some())) {
                        None => taken -= 1,
                        Some(true) => bad += 1,
                        Some(false) => good += 1,
                    }
                    self.state = ModelState::HalfOpen {
                        since_ms,
                        taken,
                        good,
                        bad,
                    };
                    if bad > self.policy.max_failed_probes {
                        self.reopen(now);
                    } else if good + bad >= self.policy.probes {
                        self.generation += 1;
                        self.window.clear();
                        self.newest_epoch = 0;
                        self.consecutive = 0;
                        self.reopens = 0;
                        self.state = ModelState::Closed;
                    }
                }
                _ => {}
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Admit,
        Complete(usize, Outcome),
        Advance(u64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let outcome = prop_oneof![
            3 => Just(Outcome::Success),
            3 => Just(FAIL),
            1 => Just(Outcome::TimedOut),
            1 => Just(Outcome::Cancelled),
        ];
        let step = prop_oneof![
            4 => Just(Step::Admit),
            4 => (any::<usize>(), outcome).prop_map(|(i, o)| Step::Complete(i, o)),
            2 => (0u64..15_000).prop_map(Step::Advance),
        ];
        proptest::collection::vec(step, 1..200)
    }

    fn policies() -> impl Strategy<Value = Policy> {
        let window = prop_oneof![
            (1usize..8).prop_map(WindowSpec::Count),
            (1usize..5, 1_000u64..5_000)
                .prop_map(|(buckets, width_us)| WindowSpec::Time { buckets, width_us }),
        ];
        (
            window,
            0u64..5,
            prop_oneof![
                Just(None),
                Just(Some(0.25)),
                Just(Some(0.5)),
                Just(Some(1.0))
            ],
            proptest::option::of(1_000u64..8_000),
            proptest::option::of(1u32..4),
            1_000u64..20_000,
            1u32..4,
            1_000u64..40_000,
        )
            .prop_map(
                |(
                    window,
                    min_calls,
                    failure_rate,
                    slow,
                    consecutive,
                    base,
                    probes,
                    probe_timeout,
                )| {
                    let consecutive = match (failure_rate, slow, consecutive) {
                        (None, None, None) => Some(2),
                        (_, _, c) => c,
                    };
                    Policy {
                        window,
                        min_calls,
                        failure_rate,
                        slow_rate: slow.map(|_| 0.5),
                        slow_call_us: slow,
                        consecutive_failures: consecutive,
                        open_base_us: base,
                        open_max_us: base * 4,
                        jitter: 0.0,
                        probes,
                        max_failed_probes: failure_rate.map_or(0, |rate| {
                            ((f64::from(probes) * rate).ceil() as u32).saturating_sub(1)
                        }),
                        probe_timeout_us: probe_timeout,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_breaker_follows_the_model(policy in policies(), steps in steps()) {
            let breaker = Clocked::new(policy.clone());
            let mut model = Model {
                policy,
                state: ModelState::Closed,
                generation: 0,
                window: VecDeque::new(),
                newest_epoch: 0,
                consecutive: 0,
                reopens: 0,
            };
            let mut in_flight: Vec<(Permit, ModelAdmission)> = Vec::new();
            for step in steps {
                let now = breaker.now.get();
                match step {
                    Step::Admit => {
                        let expected = model.admit(now);
                        match (breaker.admit(), expected) {
                            (Admission::Admitted(permit), ModelAdmission::Admitted { probe, .. }) => {
                                prop_assert_eq!(permit.kind == PermitKind::Probe, probe);
                                in_flight.push((permit, expected));
                            }
                            (Admission::Refused(wait), ModelAdmission::Refused(expected_wait)) => {
                                prop_assert_eq!(wait.map(|w| w.as_micros() as u64), expected_wait);
                            }
                            (got, expected) => prop_assert!(false, "admission {:?}, model {:?}", got, expected),
                        }
                    }
                    Step::Complete(index, outcome) if !in_flight.is_empty() => {
                        let (permit, admitted) = in_flight.remove(index % in_flight.len());
                        breaker.complete(permit, outcome);
                        model.complete(admitted, outcome, now);
                    }
                    Step::Complete(..) => {}
                    Step::Advance(us) => breaker.now.set(now + us),
                }
                let expected = match model.state {
                    ModelState::Closed => CircuitState::Closed,
                    ModelState::Open { .. } => CircuitState::Open,
                    ModelState::HalfOpen { .. } => CircuitState::HalfOpen,
                };
                prop_assert_eq!(breaker.core.state(), expected);
                if expected == CircuitState::Closed {
                    let totals = model.window_totals(breaker.now.get().max(now));
                    let got = breaker.core.totals(|| breaker.now.get());
                    prop_assert_eq!(got.failures, totals.failures);
                    prop_assert_eq!(got.slow, totals.slow);
                }
            }
        }
    }
}
