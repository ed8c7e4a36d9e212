//! An RFC 9111 HTTP cache for servers, reverse proxies and clients.
//!
//! [`CacheLayer`] stores responses its rules allow and answers later
//! requests from them: fresh entries at once, stale ones after a
//! conditional request to the origin (a 304 refreshes the entry), or
//! within `stale-while-revalidate` / `stale-if-error`. Misses stream to the
//! client while they are stored; concurrent misses for one URL make one
//! request upstream. Every response says what happened in `Cache-Status`
//! (RFC 9211), and stored ones carry `Age`.
//!
//! Safe by default in its shared mode: nothing is stored without
//! freshness or a validator, never `private` responses, never `Set-Cookie`,
//! never a response to an `Authorization` request unless the response
//! allows it. gRPC calls and upgrades pass through untouched.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::ServiceBuilderExt;
//! use tower_armor::cache::CacheLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let cache = CacheLayer::builder().name("pages").build()?;
//! let service = ServiceBuilder::new()
//!     .armor_cache(cache)
//!     .service_fn(|_request: Request<String>| async {
//!         let response = Response::builder()
//!             .header("cache-control", "max-age=60")
//!             .body(String::from("hello"))
//!             .unwrap();
//!         Ok::<_, Infallible>(response)
//!     });
//!
//! let miss = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(miss.headers()["cache-status"], "pages; fwd=uri-miss; fwd-status=200; stored; ttl=60");
//! # use http_body_util::BodyExt;
//! # miss.into_body().collect().await?; // the entry is stored as the body is read
//! let hit = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(hit.headers()["cache-status"], "pages; hit; ttl=60");
//! assert_eq!(hit.headers()["age"], "0");
//! # Ok(())
//! # }
//! ```

mod body;
mod clock;
mod date;
mod directives;
mod encoding;
mod entry;
mod flight;
mod future;
mod key;
mod layer;
mod metrics;
mod policy;
mod range;
mod service;
mod settings;
mod status;
mod store;
mod targeted;
mod vary;

pub use body::CacheBody;
pub use directives::{CacheControl, MAX_DELTA_SECONDS};
pub use entry::{ENTRY_FORMAT, Entry};
pub use future::ResponseFuture;
pub use key::CacheKey;
pub use layer::{CacheBuilder, CacheHandle, CacheLayer};
pub use metrics::Eviction;
pub use policy::CacheMode;
pub use service::CacheService;
pub use store::{
    CacheStore, Lead, MemoryStore, MemoryStoreBuilder, Purge, StoreCall, StoreEvents, Variants,
};
pub use vary::VaryNormalizer;

/// A header map from name-value pairs, appended in order (for tests).
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
        map.append(name, value.parse().expect("a valid value"));
    }
    map
}

/// A 200 entry with these fields and body, fresh for no time at the epoch,
/// no variant fields, no tags (for tests; they change what they need).
#[cfg(test)]
pub(crate) fn test_entry(pairs: &[(&str, &str)], body: &'static [u8]) -> Entry {
    Entry {
        status: http::StatusCode::OK,
        headers: test_headers(pairs),
        body: std::sync::Arc::from(vec![bytes::Bytes::from_static(body)]),
        trailers: None,
        freshness: policy::Freshness {
            request_time: 0,
            response_time: 0,
            initial_age: 0,
            lifetime: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            always_validate: false,
            no_stale: false,
        },
        variant: vary::Variant::default(),
        tags: std::sync::Arc::from(Vec::new()),
        invalidated: false,
    }
}
