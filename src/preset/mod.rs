//! Presets: the layers a server or a client needs, in the order that works,
//! as one layer with production defaults.
//!
//! [`ServerPreset`] stacks health routes, metrics, a timeout, a rate limit,
//! a cache, compression and a circuit breaker; [`ClientPreset`] stacks
//! metrics, a cache, an overall timeout, retry, a breaker per upstream and
//! a rate limit. Each part can be replaced by a layer you configured, or
//! turned off, and the preset stays one type: a part that is off is a
//! [`PartService`] passing requests straight through, at the cost of one
//! branch. A preset is a `tower::Layer`, so it goes wherever the layers do:
//! axum's `Router::layer`, tonic's `Server::builder().layer` and `Channel`
//! stacks, hyper and hyper-util through `ServiceBuilder`.
//!
//! Presets exist when every layer they hold is compiled in (the default
//! features).
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_armor::preset::ServerPreset;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ServerPreset::default());
//! ```

mod choice;
mod client;
mod part;
mod server;

pub use client::{CLIENT_TIMEOUT, CLIENT_TRY_TIMEOUT, ClientPreset, ClientPresetBuilder, Upstream};
pub use part::{PartBody, PartFuture, PartService};
pub use server::{SERVER_TIMEOUT, ServerPreset, ServerPresetBuilder};
