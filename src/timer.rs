//! A timer that is armed only when someone actually waits on it.
//!
//! Creating a Tokio `Sleep` looks up the runtime handle and builds a timer
//! entry; a layer that creates one in `call` pays for it even when the inner
//! service answers on its first poll. [`LazySleep`] holds just the deadline
//! until it is first polled.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

pin_project! {
    /// A `Sleep` until a deadline, created on first poll.
    #[project = LazySleepProj]
    pub(crate) enum LazySleep {
        Idle { deadline: Instant },
        Armed { #[pin] sleep: Sleep },
    }
}

impl LazySleep {
    pub(crate) fn until(deadline: Instant) -> Self {
        LazySleep::Idle { deadline }
    }

    /// When it fires.
    #[cfg_attr(not(feature = "timeout"), allow(dead_code))]
    pub(crate) fn deadline(&self) -> Instant {
        match self {
            LazySleep::Idle { deadline } => *deadline,
            LazySleep::Armed { sleep } => sleep.deadline(),
        }
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.as_mut().project() {
            LazySleepProj::Armed { sleep } => return sleep.poll(cx),
            LazySleepProj::Idle { deadline } => *deadline,
        };
        self.set(LazySleep::Armed {
            sleep: sleep_until(deadline),
        });
        self.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_fixed_at_creation_not_at_first_poll() {
        let start = Instant::now();
        let timer = LazySleep::until(start + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        timer.await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
