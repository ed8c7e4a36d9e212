//! The response body that compresses as it streams, and the request body
//! that decompresses under a size cap.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use metrics::{Counter, SharedString};
use pin_project_lite::pin_project;

use super::codec::{Decoder, Encoder};
use super::negotiate::Encoding;

use crate::BoxError;
use crate::body::poll_as_bytes;

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

/// Counters for one direction and coding: bytes on the wire, bytes as the
/// application sees them.
#[derive(Clone)]
pub(crate) struct ByteCounters {
    pub(crate) coded: Counter,
    pub(crate) plain: Counter,
}

/// The [`ByteCounters`] of one layer and direction, one pair per coding:
/// `armor.compression.bytes{name,direction,encoding}` and
/// `armor.compression.uncompressed_bytes{…}`.
pub(crate) struct CodingCounters([ByteCounters; 4]);

impl CodingCounters {
    /// Registers the counters of `direction` (`out`: responses, `in`:
    /// requests) with the current recorder.
    pub(crate) fn register(name: &SharedString, direction: &'static str) -> Self {
        // In `Encoding::index` order.
        let codings = [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ];
        CodingCounters(codings.map(|encoding| ByteCounters {
            coded: metrics::counter!("armor.compression.bytes",
                "name" => name.clone(), "direction" => direction, "encoding" => encoding.as_str()),
            plain: metrics::counter!("armor.compression.uncompressed_bytes",
                "name" => name.clone(), "direction" => direction, "encoding" => encoding.as_str()),
        }))
    }

    /// The counters of `encoding`.
    pub(crate) fn of(&self, encoding: Encoding) -> ByteCounters {
        self.0[encoding.index()].clone()
    }
}

pin_project! {
    /// The response body of [`Compression`](super::Compression): the
    /// inner body as it is, the inner body compressed while it streams, or
    /// a refusal's complete body.
    pub struct CompressionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Identity { #[pin] body: B },
        Encoded { #[pin] body: B, state: Box<EncodingState> },
        Full { data: Option<Bytes> },
    }
}

/// Compressed output gathered before it is sent without waiting for a pause.
const SEND_AT: usize = 32 * 1024;

/// The state of a body being compressed.
struct EncodingState {
    encoder: Encoder,
    out: BytesMut,
    flush: Flush,
    /// Input went into the encoder since the last flush.
    unflushed: bool,
    /// Trailers wait here while the encoder's last bytes go out.
    trailers: Option<HeaderMap>,
    finished: bool,
    counters: ByteCounters,
}

impl<B> CompressionBody<B> {
    pub(crate) fn identity(body: B) -> Self {
        CompressionBody {
            kind: Kind::Identity { body },
        }
    }

    pub(crate) fn encoded(body: B, encoder: Encoder, flush: Flush, counters: ByteCounters) -> Self {
        CompressionBody {
            kind: Kind::Encoded {
                body,
                state: Box::new(EncodingState {
                    encoder,
                    out: BytesMut::new(),
                    flush,
                    unflushed: false,
                    trailers: None,
                    finished: false,
                    counters,
                }),
            },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        CompressionBody {
            kind: Kind::Full { data: Some(data) },
        }
    }
}

impl<B> fmt::Debug for CompressionBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Identity { .. } => "identity",
            Kind::Encoded { .. } => "encoded",
            Kind::Full { .. } => "full",
        };
        f.debug_struct("CompressionBody")
            .field("kind", &kind)
            .finish()
    }
}

impl EncodingState {
    /// What the encoder has produced, as a frame, if anything.
    fn take_output(&mut self) -> Option<Frame<Bytes>> {
        if self.out.is_empty() {
            return None;
        }
        let data = self.out.split().freeze();
        self.counters.coded.increment(data.len() as u64);
        Some(Frame::data(data))
    }

    fn finish(&mut self) -> std::io::Result<()> {
        self.finished = true;
        self.encoder.finish(&mut self.out)
    }
}

impl<B> Body for CompressionBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Identity { body } => poll_as_bytes(body, cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Encoded { mut body, state } => loop {
                if state.finished {
                    if let Some(frame) = state.take_output() {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    return Poll::Ready(state.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                let frame = match body.as_mut().poll_frame(cx) {
                    Poll::Pending => {
                        // Nothing more for now: what was encoded goes out, so
                        // a stream's events reach the client as they happen.
                        if state.flush == Flush::OnPending && state.unflushed {
                            state.unflushed = false;
                            state.encoder.flush(&mut state.out)?;
                        }
                        return match state.take_output() {
                            Some(frame) => Poll::Ready(Some(Ok(frame))),
                            None => Poll::Pending,
                        };
                    }
                    Poll::Ready(None) => {
                        state.finish()?;
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                    Poll::Ready(Some(Ok(frame))) => frame,
                };
                match frame.into_data() {
                    Ok(mut data) => {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let len = chunk.len();
                            state.encoder.encode(chunk, &mut state.out)?;
                            state.counters.plain.increment(len as u64);
                            data.advance(len);
                        }
                        let send_now = if state.flush == Flush::EveryFrame {
                            state.encoder.flush(&mut state.out)?;
                            true
                        } else {
                            // More may be ready: gather it into fewer, larger frames.
                            state.unflushed = true;
                            state.out.len() >= SEND_AT
                        };
                        if send_now {
                            if let Some(frame) = state.take_output() {
                                return Poll::Ready(Some(Ok(frame)));
                            }
                        }
                    }
                    Err(frame) => {
                        // Trailers end the data: the encoder's tail goes first.
                        if let Ok(trailers) = frame.into_trailers() {
                            state.trailers = Some(trailers);
                            state.finish()?;
                        }
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Identity { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Encoded { state, .. } => {
                state.finished && state.out.is_empty() && state.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Identity { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Encoded { .. } => SizeHint::default(),
        }
    }
}

/// Why a request body could not be decoded. It is the error the handler
/// sees while reading; the layer then answers 413 or 400 itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecompressionError {
    /// Decoded, the body would be larger than the configured cap.
    TooLarge {
        /// The cap, in decoded bytes.
        limit: u64,
    },
    /// The body is not valid data in its declared coding, or is cut short.
    Malformed,
}

impl fmt::Display for DecompressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecompressionError::TooLarge { limit } => {
                write!(f, "decompressed request body exceeds {limit} bytes")
            }
            DecompressionError::Malformed => f.write_str("request body could not be decompressed"),
        }
    }
}

impl std::error::Error for DecompressionError {}

/// What became of a request body's decoding, read by the response future.
#[derive(Debug, Default)]
pub(crate) struct DecodeOutcome(AtomicU8);

impl DecodeOutcome {
    const TOO_LARGE: u8 = 1;
    const MALFORMED: u8 = 2;

    fn set(&self, error: DecompressionError) {
        let code = match error {
            DecompressionError::TooLarge { .. } => Self::TOO_LARGE,
            DecompressionError::Malformed => Self::MALFORMED,
        };
        self.0.store(code, Ordering::Release);
    }

    pub(crate) fn failure(&self, limit: u64) -> Option<DecompressionError> {
        match self.0.load(Ordering::Acquire) {
            Self::TOO_LARGE => Some(DecompressionError::TooLarge { limit }),
            Self::MALFORMED => Some(DecompressionError::Malformed),
            _ => None,
        }
    }
}

pin_project! {
    /// The request body the inner service of
    /// [`RequestDecompression`](super::RequestDecompression) reads: the
    /// caller's body, decoded if it came with a supported `Content-Encoding`.
    pub struct DecompressionBody<B> {
        #[pin]
        kind: DecodeKind<B>,
    }
}

pin_project! {
    #[project = DecodeKindProj]
    enum DecodeKind<B> {
        Identity { #[pin] body: B },
        Decoding { #[pin] body: B, state: Box<Decoding> },
    }
}

/// The state of a request body being decoded.
struct Decoding {
    decoder: Decoder,
    /// The rest of the current coded frame.
    input: Bytes,
    out: BytesMut,
    /// Decoded bytes handed to the service so far.
    produced: u64,
    limit: u64,
    /// The coded stream ended; anything after it starts a new one.
    stream_done: bool,
    /// The last call filled its room: the codec may hold more output.
    more_output: bool,
    /// The caller's body has ended.
    input_ended: bool,
    trailers: Option<HeaderMap>,
    finished: bool,
    outcome: Arc<DecodeOutcome>,
    counters: ByteCounters,
}

/// The most a single decoded frame holds.
const DECODED_FRAME: usize = 64 * 1024;

impl<B> DecompressionBody<B> {
    pub(crate) fn identity(body: B) -> Self {
        DecompressionBody {
            kind: DecodeKind::Identity { body },
        }
    }

    pub(crate) fn decoding(
        body: B,
        decoder: Decoder,
        limit: u64,
        outcome: Arc<DecodeOutcome>,
        counters: ByteCounters,
    ) -> Self {
        DecompressionBody {
            kind: DecodeKind::Decoding {
                body,
                state: Box::new(Decoding {
                    decoder,
                    input: Bytes::new(),
                    out: BytesMut::new(),
                    produced: 0,
                    limit,
                    stream_done: false,
                    more_output: false,
                    input_ended: false,
                    trailers: None,
                    finished: false,
                    outcome,
                    counters,
                }),
            },
        }
    }
}

impl<B> fmt::Debug for DecompressionBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DecodeKind::Identity { .. } => "identity",
            DecodeKind::Decoding { .. } => "decoding",
        };
        f.debug_struct("DecompressionBody")
            .field("kind", &kind)
            .finish()
    }
}

impl Decoding {
    /// Room for the next decoding call: one byte past the cap, so going over
    /// it is seen without decoding (or keeping) anything more.
    fn room(&self) -> usize {
        let left = self.limit.saturating_sub(self.produced).saturating_add(1);
        DECODED_FRAME.min(usize::try_from(left).unwrap_or(usize::MAX))
    }

    fn fail(&mut self, error: DecompressionError) -> BoxError {
        self.finished = true;
        self.outcome.set(error);
        Box::new(error)
    }

    /// Decodes what it can from the buffered input; `false` when the codec
    /// neither took input nor gave output, which means it is stuck.
    fn step(&mut self) -> Result<bool, BoxError> {
        if self.stream_done {
            if self.input.is_empty() {
                self.more_output = false;
                return Ok(true);
            }
            // Concatenated gzip members or zstd frames form one body.
            self.decoder
                .reinit()
                .map_err(|_| self.fail(DecompressionError::Malformed))?;
            self.stream_done = false;
        }
        let room = self.room();
        let before = self.out.len();
        let had_input = !self.input.is_empty();
        let step = match self.decoder.decode(&self.input, &mut self.out, room) {
            Ok(step) => step,
            Err(_) => return Err(self.fail(DecompressionError::Malformed)),
        };
        let produced = self.out.len() - before;
        self.input.advance(step.consumed);
        self.stream_done = step.done;
        // A full room may mean the codec holds more output for this input.
        self.more_output = produced == room;
        Ok(!had_input || step.consumed > 0 || produced > 0 || step.done)
    }

    /// Once the caller's body ended: whatever the decoder still holds.
    fn drain(&mut self) -> Result<bool, BoxError> {
        if self.stream_done {
            return Ok(true);
        }
        let room = self.room();
        match self.decoder.finish(&mut self.out, room) {
            Ok(done) => Ok(done),
            Err(_) => Err(self.fail(DecompressionError::Malformed)),
        }
    }

    /// Hands out what was decoded, unless it goes past the cap.
    fn take_output(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        if self.out.is_empty() {
            return None;
        }
        self.produced += self.out.len() as u64;
        if self.produced > self.limit {
            self.out.clear();
            let limit = self.limit;
            return Some(Err(self.fail(DecompressionError::TooLarge { limit })));
        }
        let data = self.out.split().freeze();
        self.counters.plain.increment(data.len() as u64);
        Some(Ok(Frame::data(data)))
    }
}

impl<B> Body for DecompressionBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (mut body, state) = match self.project().kind.project() {
            DecodeKindProj::Identity { body } => return poll_as_bytes(body, cx),
            DecodeKindProj::Decoding { body, state } => (body, state),
        };
        loop {
            if state.finished {
                return Poll::Ready(state.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            if !state.input.is_empty() || state.more_output {
                if !state.step()? {
                    return Poll::Ready(Some(Err(state.fail(DecompressionError::Malformed))));
                }
                if let Some(frame) = state.take_output() {
                    return Poll::Ready(Some(frame));
                }
                continue;
            }
            if state.input_ended {
                let done = state.drain()?;
                if let Some(frame) = state.take_output() {
                    return Poll::Ready(Some(frame));
                }
                if !done {
                    // Input ended in the middle of a coded stream.
                    return Poll::Ready(Some(Err(state.fail(DecompressionError::Malformed))));
                }
                state.finished = true;
                continue;
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                None => state.input_ended = true,
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        state.counters.coded.increment(data.len() as u64);
                        state.input = data;
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            state.trailers = Some(trailers);
                        }
                        state.input_ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            DecodeKind::Identity { body } => body.is_end_stream(),
            DecodeKind::Decoding { state, .. } => state.finished && state.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            DecodeKind::Identity { body } => body.size_hint(),
            DecodeKind::Decoding { .. } => SizeHint::default(),
        }
    }
}
