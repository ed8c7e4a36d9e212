//! A cheap random source for jitter, shared by every clone of a layer.
//!
//! splitmix64 over an atomic counter seeded from the standard library's
//! random hasher keys: spread well enough to keep clients from waking in
//! step, never meant for secrets. No lock, no thread-local, no dependency.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

pub(crate) struct Jitter {
    state: AtomicU64,
}

impl Jitter {
    /// A source with a fresh random seed.
    pub(crate) fn new() -> Self {
        Jitter {
            state: AtomicU64::new(RandomState::new().hash_one(0u8)),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    #[cfg_attr(not(feature = "circuit-breaker"), allow(dead_code))]
    pub(crate) fn next_unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
