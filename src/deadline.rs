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
