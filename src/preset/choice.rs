//! What a preset builder holds for each part until `build()`.

use std::borrow::Cow;

use super::part::Part;
use crate::config::ConfigError;

/// Makes a part's default layer from what the preset's builder knows
/// (`D`: its name, and for a client its upstream).
pub(super) type MakeDefault<L, D> = fn(&D) -> Result<L, ConfigError>;

/// A part as a builder holds it: the default layer (made at `build()`, with
/// the preset's name), one the user gave, or none.
pub(super) enum Choice<L, D = Cow<'static, str>> {
    Default(MakeDefault<L, D>),
    Given(L),
    Off,
}

impl<L, D> Choice<L, D> {
    /// The part, made from `defaults` if it is the default.
    pub(super) fn build(self, defaults: &D) -> Result<Part<L>, ConfigError> {
        Ok(Part(match self {
            Choice::Default(make) => Some(make(defaults)?),
            Choice::Given(layer) => Some(layer),
            Choice::Off => None,
        }))
    }
}

impl<L: std::fmt::Debug, D> std::fmt::Debug for Choice<L, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Default(_) => f.write_str("Default"),
            Choice::Given(layer) => f.debug_tuple("Given").field(layer).finish(),
            Choice::Off => f.write_str("Off"),
        }
    }
}

/// What a builder's type-changing setter does with each generic part: keep
/// it as it is, or put a new choice of another type in its place.
pub(super) trait Retype<L, L2, D> {
    fn retype(self, old: Choice<L, D>) -> Choice<L2, D>;
}

/// Keeps a part (and its type) as it was.
pub(super) struct Keep;

impl<L, D> Retype<L, L, D> for Keep {
    fn retype(self, old: Choice<L, D>) -> Choice<L, D> {
        old
    }
}

impl<L, L2, D> Retype<L, L2, D> for Choice<L2, D> {
    fn retype(self, _old: Choice<L, D>) -> Choice<L2, D> {
        self
    }
}
