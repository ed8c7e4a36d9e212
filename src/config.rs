//! The error every layer's `build()` returns for a configuration it cannot honour.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use metrics::SharedString;

/// Turns a user's instance name into the label value layers emit.
///
/// A `&'static str` stays borrowed and an owned `String` becomes an
/// `Arc<str>`, so cloning the name into a request's future never allocates,
/// and for literal names costs no atomic either.
#[cfg_attr(not(armor_layer), allow(dead_code))]
pub(crate) fn instance_name(name: impl Into<Cow<'static, str>>) -> SharedString {
    match name.into() {
        Cow::Borrowed(name) => SharedString::const_str(name),
        Cow::Owned(name) => SharedString::from_shared(Arc::<str>::from(name)),
    }
}

/// A layer was configured with values it cannot honour.
///
/// Returned by the builders' `build()`, so a bad configuration shows up at
/// start-up, never as a panic or a surprise at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    layer: &'static str,
    message: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(layer: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            layer,
            message: message.into(),
        }
    }

    /// The layer whose configuration was rejected, e.g. `"timeout"`.
    pub fn layer(&self) -> &'static str {
        self.layer
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} configuration: {}", self.layer, self.message)
    }
}

impl std::error::Error for ConfigError {}
