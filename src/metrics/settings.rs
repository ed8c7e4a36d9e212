//! What every service of one [`MetricsLayer`](super::MetricsLayer) shares.

use std::sync::Arc;

use super::instruments::{Instruments, Routes, Server};

/// Settings and state shared by every service of one layer value.
pub(crate) struct Settings<R, C> {
    pub(crate) instruments: Arc<Instruments>,
    pub(crate) route: R,
    pub(crate) classifier: C,
    /// The gRPC methods that get a series of their own, if the user listed them.
    pub(crate) grpc_methods: Option<Box<[Box<str>]>>,
    /// Interned `http.route` and `rpc.method` values.
    pub(crate) routes: Routes,
    /// Whether each request gets a `tracing` span.
    pub(crate) spans: bool,
    /// The upstream of every request, when the user named it (clients).
    pub(crate) server: Option<Server>,
    /// Interned `server.address` values (clients).
    pub(crate) servers: Routes,
}
