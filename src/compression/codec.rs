//! One streaming encoder or decoder per coding, over async-compression's
//! codecs, writing into a `BytesMut` so each body frame is one call.
//!
//! Each coding is compiled in by its own feature (`compression-gzip`,
//! `-deflate`, `-br`, `-zstd`); [`Encoding::compiled`] says which are here.

use std::io;

#[cfg(feature = "compression-zstd")]
use async_compression::codecs::ZstdDecoder;
#[cfg(feature = "compression-br")]
use async_compression::codecs::{BrotliDecoder, BrotliEncoder};
use async_compression::codecs::{DecodeV2, EncodeV2};
#[cfg(feature = "compression-gzip")]
use async_compression::codecs::{GzipDecoder, GzipEncoder};
#[cfg(feature = "compression-deflate")]
use async_compression::codecs::{ZlibDecoder, ZlibEncoder};
#[cfg(any(
    feature = "compression-gzip",
    feature = "compression-deflate",
    feature = "compression-br"
))]
use async_compression::core::Level;
use async_compression::core::util::{PartialBuffer, WriteBuffer};
use bytes::BytesMut;

use super::negotiate::Encoding;

/// Compression levels, one per coding, checked by the builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels {
    pub(crate) gzip: u32,
    pub(crate) deflate: u32,
    pub(crate) brotli: u32,
    pub(crate) zstd: i32,
}

impl Default for Levels {
    /// zlib's default 6 for gzip and deflate (the size users expect, fast
    /// with zlib-rs); brotli 4, where its speed is close to gzip's (brotli's
    /// own default, 11, is far too slow for responses, tower-http #301);
    /// zstd's own default, 3.
    fn default() -> Self {
        Levels {
            gzip: 6,
            deflate: 6,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// Room reserved before each codec call; grown when the codec fills it.
const MIN_ROOM: usize = 4 * 1024;

/// A streaming compressor for one response body.
pub(crate) enum Encoder {
    #[cfg(feature = "compression-gzip")]
    Gzip(GzipEncoder),
    #[cfg(feature = "compression-deflate")]
    Deflate(ZlibEncoder),
    #[cfg(feature = "compression-br")]
    Brotli(Box<BrotliEncoder>),
    #[cfg(feature = "compression-zstd")]
    Zstd(ZstdEncoder),
}

impl Encoder {
    /// `size` is the body's length when known: zstd sizes its window and
    /// tables by it (about 10% faster on a 64 KiB body, same output). A
    /// coding not compiled in is an error (negotiation never picks one).
    pub(crate) fn new(
        encoding: Encoding,
        levels: &Levels,
        size: Option<u64>,
    ) -> io::Result<Encoder> {
        let _ = (levels, size);
        Ok(match encoding {
            #[cfg(feature = "compression-gzip")]
            Encoding::Gzip => {
                Encoder::Gzip(GzipEncoder::new(Level::Precise(levels.gzip as i32).into()))
            }
            #[cfg(feature = "compression-deflate")]
            Encoding::Deflate => Encoder::Deflate(ZlibEncoder::new(
                Level::Precise(levels.deflate as i32).into(),
            )),
            #[cfg(feature = "compression-br")]
            Encoding::Brotli => Encoder::Brotli(Box::new(BrotliEncoder::new(
                async_compression::brotli::EncoderParams::default()
                    .quality(Level::Precise(levels.brotli as i32)),
            ))),
            #[cfg(feature = "compression-zstd")]
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::new(levels.zstd, size)?),
            #[allow(unreachable_patterns)]
            other => return Err(not_compiled(other)),
        })
    }

    fn codec(&mut self) -> &mut dyn EncodeV2 {
        match self {
            #[cfg(feature = "compression-gzip")]
            Encoder::Gzip(codec) => codec,
            #[cfg(feature = "compression-deflate")]
            Encoder::Deflate(codec) => codec,
            #[cfg(feature = "compression-br")]
            Encoder::Brotli(codec) => &mut **codec,
            #[cfg(feature = "compression-zstd")]
            Encoder::Zstd(codec) => codec,
        }
    }

    /// Compresses all of `input`, appending whatever the codec emits to `out`.
    pub(crate) fn encode(&mut self, input: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let mut input = PartialBuffer::new(input);
        let codec = self.codec();
        // Compressed output is usually much smaller than its input.
        let room = MIN_ROOM.max(input.unwritten().len() / 2);
        while !input.unwritten().is_empty() {
            with_room(out, room, |output| codec.encode(&mut input, output))?;
        }
        Ok(())
    }

    /// Emits everything given so far, so the client can decode it now.
    pub(crate) fn flush(&mut self, out: &mut BytesMut) -> io::Result<()> {
        let codec = self.codec();
        while !with_room(out, MIN_ROOM, |output| codec.flush(output))? {}
        Ok(())
    }

    /// Ends the stream (footer, checksum).
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> io::Result<()> {
        let codec = self.codec();
        while !with_room(out, MIN_ROOM, |output| codec.finish(output))? {}
        Ok(())
    }
}

/// The error for a coding whose feature is off.
#[cold]
fn not_compiled(encoding: Encoding) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{encoding} is not compiled in"),
    )
}

/// zstd's streaming encoder with the body's size pledged when known, which
/// async-compression's wrapper cannot do.
#[cfg(feature = "compression-zstd")]
pub(crate) struct ZstdEncoder(zstd::stream::raw::Encoder<'static>);

#[cfg(feature = "compression-zstd")]
impl ZstdEncoder {
    fn new(level: i32, size: Option<u64>) -> io::Result<Self> {
        let mut encoder = zstd::stream::raw::Encoder::new(level)?;
        if level >= 17 {
            // Browsers decode windows up to 8 MiB (log 23); levels from 17
            // up would pick larger ones.
            encoder.set_parameter(zstd::stream::raw::CParameter::WindowLog(23))?;
        }
        // The size is for choosing parameters; writing it into the frame
        // would cost up to 8 bytes that HTTP already says.
        encoder.set_parameter(zstd::stream::raw::CParameter::ContentSizeFlag(false))?;
        encoder.set_pledged_src_size(size)?;
        Ok(ZstdEncoder(encoder))
    }

    /// Runs one zstd step from `input` into `output`'s free room.
    fn step(
        &mut self,
        input: &mut PartialBuffer<&[u8]>,
        output: &mut WriteBuffer<'_>,
        run: impl FnOnce(
            &mut zstd::stream::raw::Encoder<'static>,
            &mut zstd::stream::raw::InBuffer<'_>,
            &mut zstd::stream::raw::OutBuffer<'_, [u8]>,
        ) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut source = zstd::stream::raw::InBuffer::around(input.unwritten());
        let room = output.initialize_unwritten();
        let mut target = zstd::stream::raw::OutBuffer::around(room);
        let left = run(&mut self.0, &mut source, &mut target)?;
        let (read, written) = (source.pos(), target.pos());
        input.advance(read);
        output.advance(written);
        Ok(left)
    }
}

#[cfg(feature = "compression-zstd")]
impl EncodeV2 for ZstdEncoder {
    fn encode(
        &mut self,
        input: &mut PartialBuffer<&[u8]>,
        output: &mut WriteBuffer<'_>,
    ) -> io::Result<()> {
        use zstd::stream::raw::Operation;
        self.step(input, output, |zstd, source, target| {
            zstd.run(source, target)
        })
        .map(drop)
    }

    fn flush(&mut self, output: &mut WriteBuffer<'_>) -> io::Result<bool> {
        use zstd::stream::raw::Operation;
        let left = self.step(
            &mut PartialBuffer::new(&[][..]),
            output,
            |zstd, _, target| zstd.flush(target),
        )?;
        Ok(left == 0)
    }

    fn finish(&mut self, output: &mut WriteBuffer<'_>) -> io::Result<bool> {
        use zstd::stream::raw::Operation;
        let left = self.step(
            &mut PartialBuffer::new(&[][..]),
            output,
            |zstd, _, target| zstd.finish(target, true),
        )?;
        Ok(left == 0)
    }
}

/// A streaming decompressor for one request body.
pub(crate) enum Decoder {
    #[cfg(feature = "compression-gzip")]
    Gzip(GzipDecoder),
    #[cfg(feature = "compression-deflate")]
    Deflate(ZlibDecoder),
    #[cfg(feature = "compression-br")]
    Brotli(Box<BrotliDecoder>),
    #[cfg(feature = "compression-zstd")]
    Zstd(ZstdDecoder),
}

/// How far a decoding call got.
pub(crate) struct Decoded {
    /// Input bytes used.
    pub(crate) consumed: usize,
    /// The coded stream ended.
    pub(crate) done: bool,
}

impl Decoder {
    /// A decoder for `encoding`; `None` when that coding is not compiled in.
    pub(crate) fn new(encoding: Encoding) -> Option<Decoder> {
        Some(match encoding {
            #[cfg(feature = "compression-gzip")]
            Encoding::Gzip => Decoder::Gzip(GzipDecoder::new()),
            #[cfg(feature = "compression-deflate")]
            Encoding::Deflate => Decoder::Deflate(ZlibDecoder::new()),
            #[cfg(feature = "compression-br")]
            Encoding::Brotli => Decoder::Brotli(Box::new(BrotliDecoder::new())),
            #[cfg(feature = "compression-zstd")]
            Encoding::Zstd => Decoder::Zstd(ZstdDecoder::new()),
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    /// The coding it decodes.
    pub(crate) fn encoding(&self) -> Encoding {
        match self {
            #[cfg(feature = "compression-gzip")]
            Decoder::Gzip(_) => Encoding::Gzip,
            #[cfg(feature = "compression-deflate")]
            Decoder::Deflate(_) => Encoding::Deflate,
            #[cfg(feature = "compression-br")]
            Decoder::Brotli(_) => Encoding::Brotli,
            #[cfg(feature = "compression-zstd")]
            Decoder::Zstd(_) => Encoding::Zstd,
        }
    }

    fn codec(&mut self) -> &mut dyn DecodeV2 {
        match self {
            #[cfg(feature = "compression-gzip")]
            Decoder::Gzip(codec) => codec,
            #[cfg(feature = "compression-deflate")]
            Decoder::Deflate(codec) => codec,
            #[cfg(feature = "compression-br")]
            Decoder::Brotli(codec) => &mut **codec,
            #[cfg(feature = "compression-zstd")]
            Decoder::Zstd(codec) => codec,
        }
    }

    /// Decodes from `input` into `out`, writing at most `limit` bytes.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> io::Result<Decoded> {
        let mut input = PartialBuffer::new(input);
        let done = with_room(out, limit, |output| self.codec().decode(&mut input, output))?;
        Ok(Decoded {
            consumed: input.written_len(),
            done,
        })
    }

    /// Writes at most `limit` bytes of what the codec still holds once the
    /// input has ended; `true` when all is out and the stream was complete.
    pub(crate) fn finish(&mut self, out: &mut BytesMut, limit: usize) -> io::Result<bool> {
        with_room(out, limit, |output| self.codec().finish(output))
    }

    /// Gets ready for another coded stream after one ended (concatenated
    /// gzip members or zstd frames).
    pub(crate) fn reinit(&mut self) -> io::Result<()> {
        self.codec().reinit()
    }
}

/// Runs `write` over `room` zeroed bytes at the end of `out`, then keeps
/// only what it wrote.
fn with_room<T>(
    out: &mut BytesMut,
    room: usize,
    write: impl FnOnce(&mut WriteBuffer<'_>) -> io::Result<T>,
) -> io::Result<T> {
    let start = out.len();
    out.resize(start + room, 0);
    let mut buffer = WriteBuffer::new_initialized(&mut out[start..]);
    let result = write(&mut buffer);
    let written = buffer.written_len();
    out.truncate(start + written);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(encoding: Encoding, input: &[u8]) -> Vec<u8> {
        let mut encoder = Encoder::new(encoding, &Levels::default(), None).unwrap();
        let mut coded = BytesMut::new();
        for chunk in input.chunks(1000) {
            encoder.encode(chunk, &mut coded).unwrap();
        }
        encoder.finish(&mut coded).unwrap();
        let mut decoder = Decoder::new(encoding).unwrap();
        let mut plain = BytesMut::new();
        let mut rest = &coded[..];
        loop {
            let step = decoder.decode(rest, &mut plain, 64 * 1024).unwrap();
            rest = &rest[step.consumed..];
            if step.done {
                break;
            }
        }
        while !decoder.finish(&mut plain, 64 * 1024).unwrap() {}
        plain.to_vec()
    }

    #[test]
    fn every_coding_round_trips() {
        let input: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},").into_bytes())
            .collect();
        for encoding in Encoding::compiled() {
            assert_eq!(roundtrip(encoding, &input), input, "{encoding}");
        }
    }
}
