//! The error every layer's `build()` returns for a configuration it cannot honour.

use std::borrow::Cow;
use std::fmt;

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
