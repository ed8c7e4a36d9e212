use std::time::Duration;

use crate::config::ConfigError;

/// How many requests (or cost units) a key may spend per period, and how many
/// at once.
///
/// `Quota::per_second(10)` means ten per second, with a burst of ten: unlike
/// tower_governor's `per_second`, the number is a rate, not an interval.
///
/// ```
/// use std::time::Duration;
/// use tower_armor::rate_limit::Quota;
///
/// let api = Quota::per_second(10).burst(20);
/// let daily = Quota::new(10_000, Duration::from_secs(86_400)).named("daily");
/// # let _ = (api, daily);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub(crate) count: u32,
    pub(crate) period: Duration,
    pub(crate) burst: Option<u32>,
    pub(crate) name: Option<String>,
}

impl Quota {
    /// `count` per `period`, with a burst of `count`.
    pub fn new(count: u32, period: Duration) -> Self {
        Quota {
            count,
            period,
            burst: None,
            name: None,
        }
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Self {
        Quota::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    pub fn per_minute(count: u32) -> Self {
        Quota::new(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    pub fn per_hour(count: u32) -> Self {
        Quota::new(count, Duration::from_secs(3600))
    }

    /// How many may be spent at once (default: `count`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The name this quota has in `RateLimit-Policy` / `RateLimit` headers
    /// (default e.g. `"10-per-1s"`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Turns the quota into GCRA parameters, or says why it cannot be honoured.
    pub(crate) fn compile(&self) -> Result<Limit, ConfigError> {
        let burst = self.burst.unwrap_or(self.count);
        if self.count == 0 || burst == 0 {
            return Err(ConfigError::new(
                "rate_limit",
                format!("quota {self:?} must allow at least one request"),
            ));
        }
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = period / u64::from(self.count);
        if interval == 0 {
            return Err(ConfigError::new(
                "rate_limit",
                format!("quota {self:?} is faster than one request per nanosecond"),
            ));
        }
        let Some(tolerance) = interval.checked_mul(u64::from(burst)) else {
            return Err(ConfigError::new(
                "rate_limit",
                format!("quota {self:?}: burst times interval overflows"),
            ));
        };
        if tolerance > MAX_TOLERANCE {
            return Err(ConfigError::new(
                "rate_limit",
                format!("quota {self:?} refills over more than 10 years"),
            ));
        }
        let name = self.name.clone().unwrap_or_else(|| {
            let secs = self.period.as_secs_f64();
            format!("{}-per-{secs}s", self.count)
        });
        Ok(Limit {
            interval,
            tolerance,
            burst,
            window_secs: tolerance.div_ceil(1_000_000_000).max(1),
            name,
        })
    }
}

/// Ten years in nanoseconds: far beyond any sensible window, and far from
/// overflowing the u64 nanosecond clock (584 years).
const MAX_TOLERANCE: u64 = 10 * 365 * 86_400 * 1_000_000_000;

/// A quota as the GCRA sees it.
#[derive(Debug, Clone)]
pub(crate) struct Limit {
    /// Nanoseconds one unit of cost takes to replenish.
    pub(crate) interval: u64,
    /// `interval * burst`: how far ahead of now the theoretical arrival time may run.
    pub(crate) tolerance: u64,
    pub(crate) burst: u32,
    /// Seconds for an empty quota to refill completely (at least 1), for `RateLimit-Policy`.
    pub(crate) window_secs: u64,
    pub(crate) name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

    #[test]
    fn a_refill_of_exactly_ten_years_is_the_longest_accepted() {
        let limit = Quota::new(1, TEN_YEARS).compile().unwrap();
        assert_eq!(limit.tolerance, MAX_TOLERANCE);
        assert_eq!(limit.window_secs, TEN_YEARS.as_secs());
        let error = Quota::new(1, TEN_YEARS + Duration::from_nanos(1))
            .compile()
            .unwrap_err();
        assert!(error.to_string().contains("10 years"), "{error}");
        // The burst counts too: ten one-year intervals are ten years.
        let year = Duration::from_secs(365 * 86_400);
        assert!(Quota::new(1, year).burst(10).compile().is_ok());
        assert!(Quota::new(1, year).burst(11).compile().is_err());
    }
}
