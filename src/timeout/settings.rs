//! What every service of one [`TimeoutLayer`](super::TimeoutLayer) shares.

use std::time::Duration;

use http::StatusCode;
use metrics::SharedString;

use crate::reject::Renderer;

/// Settings shared by every service a [`TimeoutLayer`](super::TimeoutLayer) makes.
#[derive(Debug)]
pub(crate) struct TimeoutConfig {
    pub(crate) timeout: Duration,
    pub(crate) honor_grpc_timeout: bool,
    pub(crate) propagate_grpc_timeout: bool,
    pub(crate) deadline_extension: bool,
    pub(crate) expiry: Expiry,
}

/// What a response future needs to answer on expiry. It is cloned into every
/// future, and cloning it touches no shared counter in the usual case (a
/// literal name, the default renderer), so requests on many cores do not
/// contend on one cache line.
#[derive(Debug, Clone)]
pub(crate) struct Expiry {
    pub(crate) name: SharedString,
    pub(crate) status: StatusCode,
    pub(crate) renderer: Renderer,
}
