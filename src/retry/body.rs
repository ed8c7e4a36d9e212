//! [`ReplayBody`]: a request body that can be sent again without `Clone`.
//!
//! The first attempt streams the caller's body as usual while each frame is
//! kept (up to a byte cap); a retry replays those frames, trailers included,
//! and then goes on reading the original where the earlier attempt left off.
//! Past the cap the kept frames are dropped and the request is no longer
//! retried, but the attempt in flight still gets every byte.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body::{BoxedBody, poll_as_bytes};
use crate::sync::lock;

pin_project! {
    /// The request body each attempt of the [retry](super) layer sends.
    ///
    /// It keeps the crate's [body rule](crate::body): any body whose error
    /// converts into [`BoxError`] can be replayed, and it yields [`Bytes`]
    /// and fails with [`BoxError`]: the original body's error, boxed as it
    /// was, or [`NotReplayable`] for a replay that cannot be served (which the
    /// layer never starts).
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // The request will not be retried: the body goes through untouched.
        Once { #[pin] body: B },
        // The caller's body was empty: every attempt sends an empty body.
        Empty,
        Replay { reader: Reader<B> },
    }
}

/// One attempt's view of the recording.
struct Reader<B> {
    recording: Arc<Mutex<Recording<B>>>,
    /// Frames of the recording this reader has yielded.
    position: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

/// The caller's body and every frame read from it so far.
struct Recording<B> {
    source: Pin<Box<B>>,
    /// Kept frames `dropped..dropped + kept.len()` of all frames read.
    kept: VecDeque<Bytes>,
    dropped: usize,
    kept_bytes: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
    /// The source has ended.
    finished: bool,
    /// Frames were dropped (over the cap) or the source failed: no more replays.
    spoiled: bool,
}

impl<B> Recording<B> {
    fn read(&self) -> usize {
        self.dropped + self.kept.len()
    }
}

/// The error of a [`ReplayBody`] asked to replay frames it no longer holds.
#[derive(Debug)]
#[non_exhaustive]
pub struct NotReplayable;

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body can no longer be replayed")
    }
}

impl std::error::Error for NotReplayable {}

/// One frame of a replay, or why there is none.
type FrameResult = Result<Frame<Bytes>, BoxError>;

impl<B: Body> ReplayBody<B> {
    /// Sends `body` once, with no way to replay it.
    pub(crate) fn once(body: B) -> Self {
        ReplayBody {
            kind: Kind::Once { body },
        }
    }

    /// Records `body` for replays, keeping at most `cap` bytes. Returns
    /// the body for the first attempt and the handle later attempts come from.
    #[inline]
    pub(crate) fn record(body: B, cap: usize) -> (Self, Replayer<B>) {
        if body.is_end_stream() {
            return (
                ReplayBody { kind: Kind::Empty },
                Replayer { recording: None },
            );
        }
        let hint = body.size_hint();
        let recording = Arc::new(Mutex::new(Recording {
            source: Box::pin(body),
            kept: VecDeque::new(),
            dropped: 0,
            kept_bytes: 0,
            cap,
            trailers: None,
            finished: false,
            spoiled: false,
        }));
        let first = ReplayBody::reader(recording.clone(), hint);
        (
            first,
            Replayer {
                recording: Some((recording, hint)),
            },
        )
    }

    fn reader(recording: Arc<Mutex<Recording<B>>>, hint: SizeHint) -> Self {
        ReplayBody {
            kind: Kind::Replay {
                reader: Reader {
                    recording,
                    position: 0,
                    trailers_sent: false,
                    hint,
                },
            },
        }
    }
}

/// Makes the bodies of later attempts.
pub(crate) struct Replayer<B> {
    recording: Option<(Arc<Mutex<Recording<B>>>, SizeHint)>,
}

impl<B: Body> Replayer<B> {
    /// Whether a replay would send the whole body again.
    pub(crate) fn can_replay(&self) -> bool {
        self.recording
            .as_ref()
            .is_none_or(|(recording, _)| !lock(recording).spoiled)
    }

    /// The body for one more attempt.
    pub(crate) fn replay(&self) -> ReplayBody<B> {
        match &self.recording {
            None => ReplayBody { kind: Kind::Empty },
            Some((recording, hint)) => ReplayBody::reader(recording.clone(), *hint),
        }
    }
}

impl<B> Reader<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        let mut recording = lock(&self.recording);
        if self.position < recording.read() {
            // Replaying: this attempt is behind the recording.
            let Some(index) = self.position.checked_sub(recording.dropped) else {
                return Poll::Ready(Some(Err(Box::new(NotReplayable))));
            };
            self.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(recording.kept[index].clone()))));
        }
        if recording.finished {
            if self.trailers_sent {
                return Poll::Ready(None);
            }
            self.trailers_sent = true;
            return Poll::Ready(recording.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        // At the front: read on from the source, keeping what it yields.
        let recording = &mut *recording;
        match recording.source.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                recording.finished = true;
                self.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                recording.spoiled = true;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => data.copy_to_bytes(data.remaining()),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            // Trailers end a body.
                            recording.finished = true;
                            recording.trailers = Some(trailers.clone());
                            self.trailers_sent = true;
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        // A frame kind http-body does not know yet: nothing to send.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                };
                if recording.source.is_end_stream() {
                    recording.finished = true;
                }
                recording.kept_bytes += frame.len();
                if recording.spoiled || recording.kept_bytes > recording.cap {
                    recording.spoiled = true;
                    recording.dropped += recording.kept.len() + 1;
                    recording.kept.clear();
                } else {
                    recording.kept.push_back(frame.clone());
                }
                self.position += 1;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let recording = lock(&self.recording);
        recording.finished
            && self.position == recording.read()
            && (self.trailers_sent || recording.trailers.is_none())
    }
}

impl<B> Body for ReplayBody<B>
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
            KindProj::Once { body } => poll_as_bytes(body, cx),
            KindProj::Empty => Poll::Ready(None),
            KindProj::Replay { reader } => reader.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Once { body } => body.is_end_stream(),
            Kind::Empty => true,
            Kind::Replay { reader } => reader.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Once { body } => body.size_hint(),
            Kind::Empty => SizeHint::with_exact(0),
            // Every attempt sends the same bytes as the first.
            Kind::Replay { reader } => reader.hint,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Once { .. } => "once",
            Kind::Empty => "empty",
            Kind::Replay { .. } => "replay",
        };
        f.debug_tuple("ReplayBody").field(&kind).finish()
    }
}

/// Turns one attempt's [`ReplayBody`] into the body the inner service takes.
pub trait AttemptBody<B>: Clone + Send + Sync + 'static {
    /// The inner service's request body.
    type Body;

    /// The body for one attempt.
    fn attempt_body(&self, body: ReplayBody<B>) -> Self::Body;
}

/// The inner service receives [`ReplayBody`] (the default): for services
/// generic over their body, such as a hyper-util `Client`, an axum `Router`
/// or a tonic server.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsReplayBody;

impl<B> AttemptBody<B> for AsReplayBody {
    type Body = ReplayBody<B>;

    fn attempt_body(&self, body: ReplayBody<B>) -> ReplayBody<B> {
        body
    }
}

/// The inner service receives the type-erased body `T` (see
/// [`RetryBuilder::inner_body`](super::RetryBuilder::inner_body)), e.g. `tonic::body::Body` for a tonic `Channel`.
pub struct Boxed<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Clone for Boxed<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Boxed<T> {}

impl<T> std::fmt::Debug for Boxed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Boxed<{}>", std::any::type_name::<T>())
    }
}

impl<T> Default for Boxed<T> {
    fn default() -> Self {
        Boxed(std::marker::PhantomData)
    }
}

impl<B, T> AttemptBody<B> for Boxed<T>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
    T: BoxedBody + 'static,
{
    type Body = T;

    fn attempt_body(&self, body: ReplayBody<B>) -> T {
        T::boxed(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    type Frames = Vec<Result<Frame<Bytes>, Infallible>>;

    fn streamed(chunks: &[&'static str], trailers: bool) -> StreamBody<futures_util_stream::Iter> {
        let mut frames: Frames = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        if trailers {
            let mut map = HeaderMap::new();
            map.insert("x-checksum", "abc".parse().unwrap());
            frames.push(Ok(Frame::trailers(map)));
        }
        StreamBody::new(futures_util_stream::Iter(frames.into_iter()))
    }

    /// A minimal `Stream` over an iterator, so the tests need no extra crate.
    mod futures_util_stream {
        use super::*;
        pub(crate) struct Iter(pub(crate) std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>);
        impl futures_core::Stream for Iter {
            type Item = Result<Frame<Bytes>, Infallible>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.next())
            }
        }
    }

    async fn collect<B>(body: ReplayBody<B>) -> (Bytes, Option<HeaderMap>)
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_replay_sends_the_same_bytes_and_trailers() {
        let (first, replayer) = ReplayBody::record(streamed(&["ab", "cd", "e"], true), 1024);
        let (bytes, trailers) = collect(first).await;
        assert_eq!(bytes, "abcde");
        assert_eq!(trailers.unwrap()["x-checksum"], "abc");
        assert!(replayer.can_replay());
        for _ in 0..2 {
            let (bytes, trailers) = collect(replayer.replay()).await;
            assert_eq!(bytes, "abcde");
            assert_eq!(trailers.unwrap()["x-checksum"], "abc");
        }
    }

    #[tokio::test]
    async fn a_replay_continues_where_an_abandoned_attempt_stopped() {
        let (mut first, replayer) = ReplayBody::record(streamed(&["ab", "cd", "ef"], false), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        drop(first);
        let (bytes, _) = collect(replayer.replay()).await;
        assert_eq!(bytes, "abcdef");
    }

    #[tokio::test]
    async fn past_the_cap_the_first_attempt_still_gets_everything() {
        let (first, replayer) = ReplayBody::record(streamed(&["abcd", "efgh", "ij"], false), 6);
        assert!(replayer.can_replay());
        let (bytes, _) = collect(first).await;
        assert_eq!(bytes, "abcdefghij");
        assert!(!replayer.can_replay());
        let replay = replayer.replay().collect().await;
        assert!(replay.unwrap_err().is::<NotReplayable>());
    }

    #[tokio::test]
    async fn an_empty_body_needs_no_recording() {
        let (first, replayer) = ReplayBody::record(http_body_util::Empty::<Bytes>::new(), 1024);
        assert!(first.is_end_stream());
        assert!(replayer.can_replay());
        assert_eq!(replayer.replay().size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn the_size_hint_of_a_replay_is_the_original_one() {
        let (first, replayer) = ReplayBody::record(
            http_body_util::Full::new(Bytes::from_static(b"hello")),
            1024,
        );
        assert_eq!(first.size_hint().exact(), Some(5));
        collect(first).await;
        let replay = replayer.replay();
        assert_eq!(replay.size_hint().exact(), Some(5));
        assert!(!replay.is_end_stream());
        assert_eq!(collect(replay).await.0, "hello");
    }
}
