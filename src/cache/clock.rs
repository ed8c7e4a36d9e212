//! The cache's wall clock: Unix milliseconds that advance with Tokio's
//! clock, so ages and freshness follow paused time in tests and never jump
//! back when the system clock is stepped.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::policy::Millis;

/// Wall-clock time read as "the wall time at start + Tokio time since".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    started: Instant,
    started_wall: Millis,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let started_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as Millis);
        Clock {
            started: Instant::now(),
            started_wall,
        }
    }

    pub(crate) fn now(&self) -> Millis {
        self.started_wall + self.started.elapsed().as_millis() as Millis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advances_with_tokio_time() {
        let clock = Clock::new();
        let before = clock.now();
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        assert_eq!(clock.now() - before, 90_000);
    }
}
