use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use metrics::SharedString;
use tower_layer::Layer;

use super::Compression;
use super::body::ByteCounters;
use super::codec::Levels;
use super::negotiate::Encoding;
use crate::config::{ConfigError, instance_name};
use crate::reject::Renderer;

/// When a streamed response's compressed bytes are pushed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Flush {
    /// Whenever the inner body has nothing more ready: each event of a
    /// stream goes out as it happens, while a body that is all there at once
    /// is compressed in one piece (the default).
    #[default]
    OnPending,
    /// After every frame of the inner body: the lowest latency, the largest
    /// output for bodies of many small frames.
    EveryFrame,
}

type ResponseCheck = dyn Fn(&http::response::Parts) -> bool + Send + Sync;

/// What every service of one layer shares.
pub(crate) struct Shared {
    pub(crate) preference: Vec<Encoding>,
    pub(crate) levels: Levels,
    pub(crate) min_size: u64,
    pub(crate) flush: Flush,
    pub(crate) compress_when: Option<Arc<ResponseCheck>>,
    pub(crate) decompress_requests: bool,
    pub(crate) max_decompressed_bytes: u64,
    pub(crate) renderer: Renderer,
    pub(crate) observer: Observer,
}

/// `armor.compression.bytes{name,direction,encoding}` (as sent or received)
/// and `armor.compression.uncompressed_bytes{…}` (as the application sees
/// them), per coding: `out` is responses, `in` is requests.
pub(crate) struct Observer {
    pub(crate) out: [ByteCounters; 4],
    pub(crate) inbound: [ByteCounters; 4],
}

impl Observer {
    fn new(name: &SharedString) -> Self {
        let counters = |direction: &'static str, encoding: Encoding| ByteCounters {
            coded: metrics::counter!("armor.compression.bytes",
                "name" => name.clone(), "direction" => direction, "encoding" => encoding.as_str()),
            plain: metrics::counter!("armor.compression.uncompressed_bytes",
                "name" => name.clone(), "direction" => direction, "encoding" => encoding.as_str()),
        };
        // In `Encoding::index` order.
        let by_index = |direction| {
            [
                Encoding::Gzip,
                Encoding::Deflate,
                Encoding::Brotli,
                Encoding::Zstd,
            ]
            .map(|encoding| counters(direction, encoding))
        };
        Observer {
            out: by_index("out"),
            inbound: by_index("in"),
        }
    }
}

/// Compresses responses for clients that accept it and decodes compressed
/// request bodies. See the [module docs](super).
#[derive(Clone)]
pub struct CompressionLayer {
    shared: Arc<Shared>,
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
    /// Starts a layer with the defaults: zstd, br, gzip and deflate offered
    /// in that order; bodies from 1 KiB; request bodies decoded up to 8 MiB.
    pub fn builder() -> CompressionBuilder {
        CompressionBuilder {
            name: SharedString::const_str("default"),
            preference: Encoding::ALL.to_vec(),
            levels: Levels::default(),
            min_size: 1024,
            flush: Flush::default(),
            compress_when: None,
            decompress_requests: true,
            max_decompressed_bytes: 8 * 1024 * 1024,
            renderer: Renderer::default(),
        }
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::new(inner, self.shared.clone())
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
    decompress_requests: bool,
    max_decompressed_bytes: u64,
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
    /// out are never produced. Request bodies are decoded in any of the four.
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

    /// Whether request bodies with a `Content-Encoding` are decoded for the
    /// inner service (default `true`). When off, they pass through as sent.
    pub fn decompress_requests(mut self, enabled: bool) -> Self {
        self.decompress_requests = enabled;
        self
    }

    /// The most a request body may grow to once decoded (default 8 MiB).
    /// Past it the service gets a body error and the caller 413; nothing
    /// beyond the cap is decoded or kept.
    pub fn max_decompressed_bytes(mut self, bytes: u64) -> Self {
        self.max_decompressed_bytes = bytes;
        self
    }

    /// Renders the 406, 413, 415 and 400 answers (default: problem+json).
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
        }
        if self.max_decompressed_bytes == 0 {
            return error("max_decompressed_bytes must be at least 1".into());
        }
        let observer = Observer::new(&self.name);
        Ok(CompressionLayer {
            shared: Arc::new(Shared {
                preference: self.preference,
                levels,
                min_size: self.min_size,
                flush: self.flush,
                compress_when: self.compress_when,
                decompress_requests: self.decompress_requests,
                max_decompressed_bytes: self.max_decompressed_bytes,
                renderer: self.renderer,
                observer,
            }),
        })
    }
}
