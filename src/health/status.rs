//! What a check or a probe reports, and which probes a check belongs to.

use std::fmt;
use std::ops::BitOr;

/// The status of a check or a probe, as the IETF health-check draft names
/// them. Ordered from best to worst, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Healthy.
    Pass,
    /// Healthy, with a concern: still served with 200.
    Warn,
    /// Unhealthy: served with 503.
    Fail,
}

impl Status {
    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The value of the `armor.health.status` gauge: 1, 0.5 or 0.
    pub(crate) fn gauge(self) -> f64 {
        match self {
            Status::Pass => 1.0,
            Status::Warn => 0.5,
            Status::Fail => 0.0,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the three probes Kubernetes asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Has the process finished starting? (`/startupz`)
    Startup,
    /// Is the process alive, or should it be restarted? (`/livez`)
    Liveness,
    /// Should the process get traffic? (`/readyz`, `/healthz`)
    Readiness,
}

impl Probe {
    /// The three probes.
    pub const ALL: [Probe; 3] = [Probe::Startup, Probe::Liveness, Probe::Readiness];

    /// `startup`, `liveness` or `readiness`: the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Startup => "startup",
            Probe::Liveness => "liveness",
            Probe::Readiness => "readiness",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Probe::Startup => 1,
            Probe::Liveness => 2,
            Probe::Readiness => 4,
        }
    }
}

/// A set of probes: the ones a check counts in. Combine with `|`:
/// `Probe::Readiness | Probe::Startup`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Probes(u8);

impl Probes {
    /// No probe.
    pub const NONE: Probes = Probes(0);

    /// Whether `probe` is in the set.
    pub fn contains(self, probe: Probe) -> bool {
        self.0 & probe.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl From<Probe> for Probes {
    fn from(probe: Probe) -> Probes {
        Probes(probe.bit())
    }
}

impl BitOr for Probes {
    type Output = Probes;
    fn bitor(self, other: Probes) -> Probes {
        Probes(self.0 | other.0)
    }
}

impl BitOr<Probe> for Probes {
    type Output = Probes;
    fn bitor(self, other: Probe) -> Probes {
        self | Probes::from(other)
    }
}

impl BitOr for Probe {
    type Output = Probes;
    fn bitor(self, other: Probe) -> Probes {
        Probes::from(self) | other
    }
}

impl fmt::Debug for Probes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Probe::ALL.into_iter().filter(|probe| self.contains(*probe)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_is_the_greatest() {
        assert_eq!(
            [Status::Warn, Status::Pass, Status::Fail].into_iter().max(),
            Some(Status::Fail)
        );
        assert_eq!(
            [Status::Pass, Status::Warn].into_iter().max(),
            Some(Status::Warn)
        );
        assert_eq!(Status::Warn.to_string(), "warn");
        assert_eq!(
            [Status::Pass, Status::Warn, Status::Fail].map(Status::gauge),
            [1.0, 0.5, 0.0]
        );
    }

    #[test]
    fn probe_sets_hold_what_was_put_in() {
        let set = Probe::Readiness | Probe::Startup;
        assert!(set.contains(Probe::Readiness) && set.contains(Probe::Startup));
        assert!(!set.contains(Probe::Liveness));
        assert!(!(set | Probe::Liveness).is_empty());
        assert!(Probes::NONE.is_empty());
        let twice = Probe::Liveness | Probe::Liveness;
        assert!(twice.contains(Probe::Liveness) && !twice.contains(Probe::Startup));
        assert!((twice | Probes::from(Probe::Liveness)).contains(Probe::Liveness));
        assert_eq!(format!("{set:?}"), "{Startup, Readiness}");
        let names: Vec<_> = Probe::ALL.map(Probe::as_str).into();
        assert_eq!(names, ["startup", "liveness", "readiness"]);
    }
}
