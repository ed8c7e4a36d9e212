//! What every service of one [`CompressionLayer`](super::CompressionLayer) shares.

use std::sync::Arc;

use metrics::SharedString;

use super::body::{ByteCounters, CodingCounters, Flush};
use super::codec::Levels;
use super::negotiate::Encoding;
use crate::observe::PerRecorder;
use crate::reject::Renderer;

pub(crate) type ResponseCheck = dyn Fn(&http::response::Parts) -> bool + Send + Sync;

/// What every service of one layer shares.
pub(crate) struct Shared {
    pub(crate) preference: Vec<Encoding>,
    pub(crate) levels: Levels,
    pub(crate) min_size: u64,
    pub(crate) flush: Flush,
    pub(crate) compress_when: Option<Arc<ResponseCheck>>,
    pub(crate) renderer: Renderer,
    pub(crate) name: SharedString,
    /// `direction=out` byte counters, per recorder.
    pub(crate) counters: PerRecorder<CodingCounters>,
}

impl Shared {
    /// The counters of responses sent in `encoding`, with the current recorder.
    pub(crate) fn counters(&self, encoding: Encoding) -> ByteCounters {
        self.counters.with(
            || CodingCounters::register(&self.name, "out"),
            |counters| counters.of(encoding),
        )
    }
}
