//! Response caching (RFC 9111), in progress: the `Cache-Control` parser
//! and the policy engine the cache is built on.

// The engine is used by the layer being built next.
#[allow(dead_code)]
mod clock;
#[allow(dead_code)]
mod date;
mod directives;
#[allow(dead_code)]
mod policy;

pub use directives::{CacheControl, MAX_DELTA_SECONDS};
pub use policy::CacheMode;
