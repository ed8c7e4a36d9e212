use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use metrics::SharedString;
use tower_layer::Layer;

use super::Compression;
use super::body::Flush;
use super::codec::Levels;
use super::negotiate::Encoding;
use super::settings::{ResponseCheck, Shared};
use crate::config::{ConfigError, instance_name};
use crate::observe::PerRecorder;
use crate::reject::Renderer;

/// Compresses responses for clients that accept it. See the [module docs](super).
///
/// `CompressionLayer::default()` offers every compiled-in coding with the
/// default levels; [`builder`](Self::builder) changes them.
#[derive(Clone)]
pub struct CompressionLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for CompressionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionLayer")
            .field("preference", &self.shared.preference)
            .field("min_size", &self.shared.min_size)
            .finish_non_exhaustive()
    }
}

impl CompressionLayer {
    /// The defaults: zstd, br, gzip and deflate offered in that order (those
    /// [compiled in](Encoding::compiled)); bodies from 1 KiB. The same as `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The codings this layer offers, in its order of preference (what a
    /// cache above it gives `VaryNormalizer::negotiated_coding`).
    pub fn encodings(&self) -> &[Encoding] {
        &self.shared.preference
    }

    /// Starts a layer with the defaults, to change some of them.
    pub fn builder() -> CompressionBuilder {
        CompressionBuilder {
            name: SharedString::const_str("default"),
            preference: Encoding::compiled().collect(),
            levels: Levels::default(),
            min_size: 1024,
            flush: Flush::default(),
            compress_when: None,
            renderer: Renderer::default(),
        }
    }
}

impl Default for CompressionLayer {
    fn default() -> Self {
        CompressionLayer::builder()
            .build()
            .expect("the default compression settings are valid")
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::new(inner, self.clone())
    }
}

impl<S> Compression<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: CompressionLayer) -> Self {
        Compression {
            inner,
            shared: layer.shared,
        }
    }
}

/// Builds a [`CompressionLayer`]; made by [`CompressionLayer::builder`].
#[must_use = "call .build() to get the layer"]
pub struct CompressionBuilder {
    name: SharedString,
    preference: Vec<Encoding>,
    levels: Levels,
    min_size: u64,
    flush: Flush,
    compress_when: Option<Arc<ResponseCheck>>,
    renderer: Renderer,
}

impl fmt::Debug for CompressionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompressionBuilder")
            .field("name", &self.name)
            .field("preference", &self.preference)
            .finish_non_exhaustive()
    }
}

impl CompressionBuilder {
    /// Names this instance in metrics and traces (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = instance_name(name);
        self
    }

    /// The codings offered, in the server's order of preference, which
    /// breaks ties between codings the client rates equally. Codings left
    /// out are never produced.
    pub fn encodings(mut self, preference: impl IntoIterator<Item = Encoding>) -> Self {
        self.preference = preference.into_iter().collect();
        self
    }

    /// gzip level, 0 (stored) to 9 (smallest); default 6.
    pub fn gzip_level(mut self, level: u32) -> Self {
        self.levels.gzip = level;
        self
    }

    /// deflate level, 0 to 9; default 6.
    pub fn deflate_level(mut self, level: u32) -> Self {
        self.levels.deflate = level;
        self
    }

    /// brotli quality, 0 to 11; default 4.
    pub fn brotli_quality(mut self, quality: u32) -> Self {
        self.levels.brotli = quality;
        self
    }

    /// zstd level, -7 (fastest) to 22 (smallest); default 3.
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.levels.zstd = level;
        self
    }

    /// Bodies known to be smaller than this are sent as they are (default
    /// 1024 bytes: a body that small fits in one TCP segment either way, so
    /// compressing it saves no packet and costs time on both ends). Bodies
    /// of unknown size, such as streams, are always compressed.
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.min_size = bytes;
        self
    }

    /// When streamed output is pushed to the client (default
    /// [`Flush::OnPending`]).
    pub fn flush(mut self, flush: Flush) -> Self {
        self.flush = flush;
        self
    }

    /// A last check of your own: a response is compressed only if it also
    /// returns `true`. It sees the response head after the built-in rules
    /// passed.
    pub fn compress_when<F>(mut self, check: F) -> Self
    where
        F: Fn(&http::response::Parts) -> bool + Send + Sync + 'static,
    {
        self.compress_when = Some(Arc::new(check));
        self
    }

    /// Renders the 406 answer (default: problem+json).
    pub fn renderer(mut self, renderer: Renderer) -> Self {
        self.renderer = renderer;
        self
    }

    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<CompressionLayer, ConfigError> {
        let error = |message: String| Err(ConfigError::new("compression", message));
        let levels = self.levels;
        if levels.gzip > 9 || levels.deflate > 9 {
            return error(format!(
                "gzip and deflate levels go from 0 to 9, got {} and {}",
                levels.gzip, levels.deflate
            ));
        }
        if levels.brotli > 11 {
            return error(format!(
                "brotli quality goes from 0 to 11, got {}",
                levels.brotli
            ));
        }
        if !(-7..=22).contains(&levels.zstd) {
            return error(format!(
                "zstd level goes from -7 to 22, got {}",
                levels.zstd
            ));
        }
        for (i, encoding) in self.preference.iter().enumerate() {
            if self.preference[..i].contains(encoding) {
                return error(format!("{encoding} is listed twice in encodings"));
            }
            if !encoding.is_compiled() {
                return error(format!(
                    "{encoding} is not compiled in: enable tower-armor's `{}` feature",
                    encoding.feature()
                ));
            }
        }
        Ok(CompressionLayer {
            shared: Arc::new(Shared {
                preference: self.preference,
                levels,
                min_size: self.min_size,
                flush: self.flush,
                compress_when: self.compress_when,
                renderer: self.renderer,
                name: self.name,
                counters: PerRecorder::default(),
            }),
        })
    }
}
