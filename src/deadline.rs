//! The request's deadline, shared through the request extensions.
//!
//! The timeout layer puts a [`Deadline`] into every request it passes on (the
//! earlier of its own deadline and any it found there), so inner layers and
//! handlers can ask how much time is left: the retry layer will not start an
//! attempt that cannot finish in time, and a handler can pass the time left to
//! its own outgoing calls.
//!
//! ```
//! # async fn handler(request: http::Request<()>) {
//! use tower_armor::Deadline;
//!
//! if let Some(deadline) = request.extensions().get::<Deadline>() {
//!     let left = deadline.remaining();
//!     // ... give downstream calls at most `left` ...
//! #   let _ = left;
//! }
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The instant by which a request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Deadline { at }
    }

    /// A deadline `timeout` from now; a timeout too large to represent is
    /// clamped to about thirty years.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        Deadline { at }
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.at
    }

    /// The time left, zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.at
    }

    /// Reads the deadline from a request's extensions.
    pub fn from_request<B>(request: &http::Request<B>) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_counts_down_and_expires_at_its_instant() {
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(3));
        assert_eq!(deadline.instant(), start + Duration::from_secs(3));
        assert_eq!(deadline, Deadline::at(start + Duration::from_secs(3)));
        assert_eq!(deadline.remaining(), Duration::from_secs(3));
        assert!(!deadline.is_expired());
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert_eq!(deadline.remaining(), Duration::from_millis(1));
        assert!(!deadline.is_expired());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.is_expired(), "expired at the instant itself");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_too_large_to_represent_is_about_thirty_years() {
        let left = Deadline::after(Duration::MAX).remaining();
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!(left, 30 * year);
    }

    #[test]
    fn it_is_read_from_the_request_extensions() {
        let mut request = http::Request::new(());
        assert_eq!(Deadline::from_request(&request), None);
        let deadline = Deadline::at(Instant::now());
        request.extensions_mut().insert(deadline);
        assert_eq!(Deadline::from_request(&request), Some(deadline));
    }
}
