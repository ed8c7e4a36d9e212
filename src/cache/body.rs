//! The cache's response body: a stored body replayed, or the origin's
//! body passed through — and, when the response is being stored, copied
//! into the entry as the client reads it (the client never waits for the
//! store, and nothing is read ahead of it).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::entry::Entry;
use super::flight::Flight;
use super::store::CacheStore;
use crate::BoxError;
use crate::body::poll_as_bytes;

pin_project! {
    /// The body of every response of the cache layer: stored, or the inner
    /// service's. It yields `Bytes` and fails with [`BoxError`], like every
    /// body of this crate.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Stored { chunks: Arc<[Bytes]>, next: usize, trailers: Option<HeaderMap> },
        Upstream { #[pin] body: B, recording: Option<Box<Recording>> },
    }
}

/// A response being stored as it streams: the entry made from its head,
/// the body so far, and what the body must add up to.
pub(crate) struct Recording {
    pub(crate) entry: Entry,
    pub(crate) key: Arc<str>,
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) limit: usize,
    /// `Content-Length`, when the response had one.
    pub(crate) expected: Option<u64>,
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) size: usize,
    pub(crate) trailers: Option<HeaderMap>,
    /// Held until the entry is stored or given up, so waiters wake to it.
    pub(crate) flight: Option<Flight>,
}

impl Recording {
    /// Keeps a data frame; `false` once the body outgrows the limit.
    fn keep(&mut self, data: &Bytes) -> bool {
        self.size += data.len();
        if self.size > self.limit {
            return false;
        }
        if !data.is_empty() {
            self.chunks.push(data.clone());
        }
        true
    }

    /// Stores the entry if the body is whole.
    pub(crate) fn finish(self) {
        let Recording {
            mut entry,
            key,
            store,
            expected,
            chunks,
            size,
            trailers,
            flight,
            ..
        } = self;
        if expected.is_some_and(|expected| expected != size as u64) {
            return;
        }
        entry.body = Arc::from(chunks);
        entry.trailers = trailers;
        // Waiters wake when the flight ends: after the entry is stored.
        store.put(key, Arc::new(entry)).run_detached(flight);
    }
}

impl<B> CacheBody<B> {
    /// A stored body.
    pub(crate) fn stored(chunks: Arc<[Bytes]>, trailers: Option<HeaderMap>) -> Self {
        CacheBody {
            kind: Kind::Stored {
                chunks,
                next: 0,
                trailers,
            },
        }
    }

    /// An empty body (HEAD, 304, 504).
    pub(crate) fn empty() -> Self {
        CacheBody::stored(Arc::from(Vec::new()), None)
    }

    /// A small body the cache made.
    pub(crate) fn full(data: Bytes) -> Self {
        CacheBody::stored(Arc::from(vec![data]), None)
    }

    /// The inner service's body, passed through.
    pub(crate) fn upstream(body: B) -> Self {
        CacheBody {
            kind: Kind::Upstream {
                body,
                recording: None,
            },
        }
    }

    /// The inner service's body, stored as it streams; a body that is
    /// already over (a 204's, which servers never read) is stored now.
    pub(crate) fn recorded(body: B, recording: Recording) -> Self
    where
        B: Body,
    {
        if body.is_end_stream() {
            recording.finish();
            return CacheBody::upstream(body);
        }
        CacheBody {
            kind: Kind::Upstream {
                body,
                recording: Some(Box::new(recording)),
            },
        }
    }
}

impl<B> Body for CacheBody<B>
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
            KindProj::Stored {
                chunks,
                next,
                trailers,
            } => {
                if let Some(chunk) = chunks.get(*next) {
                    *next += 1;
                    return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
                }
                Poll::Ready(
                    trailers
                        .take()
                        .map(|trailers| Ok(Frame::trailers(trailers))),
                )
            }
            KindProj::Upstream {
                mut body,
                recording,
            } => {
                let frame = ready!(poll_as_bytes(body.as_mut(), cx));
                let Some(recorder) = recording.as_mut() else {
                    return Poll::Ready(frame);
                };
                let next = match &frame {
                    Some(Ok(frame)) => match frame.data_ref() {
                        Some(data) if !recorder.keep(data) => Next::GiveUp,
                        Some(_) if body.is_end_stream() => Next::Finish,
                        Some(_) => Next::Continue,
                        None => {
                            recorder.trailers = frame.trailers_ref().cloned();
                            Next::Finish
                        }
                    },
                    // A failed body is never stored.
                    Some(Err(_)) => Next::GiveUp,
                    None => Next::Finish,
                };
                match next {
                    Next::Continue => {}
                    Next::GiveUp => *recording = None,
                    Next::Finish => {
                        if let Some(recorder) = recording.take() {
                            recorder.finish();
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stored {
                chunks,
                next,
                trailers,
            } => *next >= chunks.len() && trailers.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stored { chunks, next, .. } => SizeHint::with_exact(
                chunks[(*next).min(chunks.len())..]
                    .iter()
                    .map(|c| c.len() as u64)
                    .sum(),
            ),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

/// What a frame means for the entry being recorded.
enum Next {
    Continue,
    /// The body is complete: store it.
    Finish,
    /// Too large or failed: pass the rest through, store nothing.
    GiveUp,
}

impl<B> std::fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Stored { .. } => "CacheBody::Stored",
            Kind::Upstream { .. } => "CacheBody::Upstream",
        })
    }
}
