//! What a health layer's clones and services share, made once by `build()`.

use std::sync::Arc;

use super::registry::Registry;
use super::render::Details;
use super::routes::Routes;
use crate::key::RequestHead;

/// A predicate on the request head choosing who sees full details.
pub(crate) type DetailsFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// What every clone of a layer and its services share.
pub(crate) struct Shared {
    pub(crate) registry: Arc<Registry>,
    /// Each path and the probe it answers, aliases included.
    pub(crate) routes: Routes,
    pub(crate) details: Details,
    pub(crate) full_details_when: Option<Box<DetailsFn>>,
}
