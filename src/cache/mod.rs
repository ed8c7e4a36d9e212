//! Response caching (RFC 9111), in progress: this module so far holds the
//! `Cache-Control` parser the cache's policy engine is built on.

mod directives;

pub use directives::{CacheControl, MAX_DELTA_SECONDS};
