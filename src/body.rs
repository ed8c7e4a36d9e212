//! Body types shared by the layers, and the one rule every body of this
//! crate keeps.
//!
//! **The body rule.** Every layer accepts any [`http_body::Body`] whose error
//! converts into [`BoxError`] (its data is always a `Buf`), and every body a
//! layer hands on, request or response, yields [`Bytes`] and fails with
//! [`BoxError`]. Those are the bounds axum, tonic and hyper put on bodies, so
//! any body of ours is accepted by every layer of ours, by axum, by tonic and
//! by hyper, in any order. Passing `Bytes` through costs nothing, and the
//! error is only converted when there is one.
//!
//! * [`ArmorBody`] is the response body of every layer that can answer on its
//!   own: either the inner service's body, passed through, or a small full
//!   body the layer made (a refusal).
//! * [`GuardBody`] wraps a body and fires a callback exactly once when the body
//!   ends: at end of stream (with the trailers, if any), on a body error, or
//!   when it is dropped early. Layers use it to record outcomes, durations and
//!   release permits at the *end* of the body rather than at the response head.
//! * [`BoxedBody`] is a type-erased body (tonic's, axum's) that any body can
//!   become, for services that take only that one body type.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

/// One frame of `B` under the body rule: its data as `Bytes` (free when it
/// is `Bytes` already) and its error boxed.
#[inline]
pub(crate) fn frame_as_bytes<D: Buf, E: Into<BoxError>>(
    frame: Option<Result<Frame<D>, E>>,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    frame.map(|frame| match frame {
        Ok(frame) => Ok(frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))),
        Err(error) => Err(error.into()),
    })
}

/// The inner body's next frame under the body rule (see [`frame_as_bytes`]).
#[inline]
pub(crate) fn poll_as_bytes<B>(
    body: Pin<&mut B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    body.poll_frame(cx).map(frame_as_bytes)
}

pin_project! {
    /// Either the inner service's body or a small body made by a layer.
    ///
    /// It yields `Bytes` and fails with [`BoxError`], like every body of
    /// this crate (see the [module docs](self)).
    pub struct ArmorBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ArmorBody<B> {
    /// Passes the inner body through.
    pub fn inner(body: B) -> Self {
        ArmorBody {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body made of `data`.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ArmorBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ArmorBody {
            kind: Kind::Full { data: None },
        }
    }
}

impl<B> Default for ArmorBody<B> {
    fn default() -> Self {
        ArmorBody::empty()
    }
}

impl<B> Body for ArmorBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => poll_as_bytes(body, cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for ArmorBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ArmorBody::Inner"),
            Kind::Full { data } => f
                .debug_tuple("ArmorBody::Full")
                .field(&data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

/// How a guarded body ended.
#[derive(Debug, Clone, Copy)]
pub enum BodyEnd<'a> {
    /// Every frame was delivered; the trailers, if the body had any.
    Complete {
        /// The body's trailers (gRPC puts `grpc-status` here).
        trailers: Option<&'a HeaderMap>,
    },
    /// The body yielded an error.
    Error,
    /// The body was dropped before its end: the client went away or a layer gave up.
    Dropped,
}

/// Called once when a [`GuardBody`] ends. Closures `FnOnce(BodyEnd<'_>)` implement it.
pub trait OnBodyEnd {
    /// The body ended as `end` says.
    fn on_body_end(self, end: BodyEnd<'_>);

    /// A data frame of `len` bytes went by (before the end). Does nothing
    /// unless a handler counts bytes.
    #[inline]
    fn on_data(&mut self, len: usize) {
        let _ = len;
    }
}

impl<F> OnBodyEnd for F
where
    F: FnOnce(BodyEnd<'_>),
{
    fn on_body_end(self, end: BodyEnd<'_>) {
        self(end)
    }
}

pin_project! {
    /// A body that reports its end exactly once: see [`BodyEnd`].
    ///
    /// An empty body (one that is at its end from the start) reports
    /// `Complete` immediately, because servers never poll such a body; a body
    /// whose last data frame leaves it at its end reports `Complete` with that
    /// frame, because servers stop polling it there too.
    pub struct GuardBody<B, H: OnBodyEnd> {
        #[pin]
        body: B,
        handler: Option<H>,
    }

    impl<B, H: OnBodyEnd> PinnedDrop for GuardBody<B, H> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(handler) = this.project().handler.take() {
                handler.on_body_end(BodyEnd::Dropped);
            }
        }
    }
}

impl<B: Body, H: OnBodyEnd> GuardBody<B, H> {
    /// Guards `body`, calling `handler` when it ends.
    pub fn new(body: B, handler: H) -> Self {
        let handler = if body.is_end_stream() {
            handler.on_body_end(BodyEnd::Complete { trailers: None });
            None
        } else {
            Some(handler)
        };
        GuardBody { body, handler }
    }
}

impl<B, H> Body for GuardBody<B, H>
where
    B: Body,
    B::Error: Into<BoxError>,
    H: OnBodyEnd,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.body.as_mut().poll_frame(cx));
        if let (Some(Ok(frame)), Some(handler)) = (&frame, this.handler.as_mut()) {
            if let Some(data) = frame.data_ref() {
                handler.on_data(data.remaining());
            }
        }
        let end = match &frame {
            None => Some(BodyEnd::Complete { trailers: None }),
            Some(Err(_)) => Some(BodyEnd::Error),
            Some(Ok(frame)) => match frame.trailers_ref() {
                Some(trailers) => Some(BodyEnd::Complete {
                    trailers: Some(trailers),
                }),
                None if this.body.is_end_stream() => Some(BodyEnd::Complete { trailers: None }),
                None => None,
            },
        };
        if let Some(end) = end {
            if let Some(handler) = this.handler.take() {
                handler.on_body_end(end);
            }
        }
        Poll::Ready(frame_as_bytes(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A type-erased body type that any body of this crate can become.
///
/// Some services take one body type only: a tonic `Channel` takes
/// `tonic::body::Body`. A layer that must hand such a service a body of its
/// own making (the [retry](crate::retry) layer's replays) boxes it into this
/// type. Implemented for `tonic::body::Body` (feature `tonic`),
/// `axum::body::Body` (feature `axum`) and http-body-util's
/// `UnsyncBoxBody<Bytes, BoxError>`.
pub trait BoxedBody: Body + Sized {
    /// `body`, boxed into this type.
    fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static;
}

impl BoxedBody for http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError> {
    fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        http_body_util::combinators::UnsyncBoxBody::new(body)
    }
}

#[cfg(feature = "tonic")]
impl BoxedBody for tonic::body::Body {
    fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        tonic::body::Body::new(body)
    }
}

#[cfg(feature = "axum")]
impl BoxedBody for axum::body::Body {
    fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        axum::body::Body::new(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    fn recorder(log: &Log) -> impl FnOnce(BodyEnd<'_>) + use<> {
        let log = log.clone();
        move |end: BodyEnd<'_>| {
            let entry = match end {
                BodyEnd::Complete { trailers: None } => "complete".to_string(),
                BodyEnd::Complete { trailers: Some(t) } => {
                    format!("complete grpc-status={:?}", t.get("grpc-status").unwrap())
                }
                BodyEnd::Error => "error".to_string(),
                BodyEnd::Dropped => "dropped".to_string(),
            };
            log.lock().unwrap().push(entry);
        }
    }

    /// A body that yields the given frames in order.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, &'static str>>);

    fn frames(items: Vec<Result<Frame<Bytes>, &'static str>>) -> Frames {
        Frames(items.into())
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    #[tokio::test]
    async fn reports_complete_with_trailers_once() {
        let log = Log::default();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::trailers(trailers)),
        ]);
        let collected = GuardBody::new(body, recorder(&log))
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "14");
        assert_eq!(*log.lock().unwrap(), ["complete grpc-status=\"14\""]);
    }

    #[tokio::test]
    async fn reports_error_then_nothing_on_drop() {
        let log = Log::default();
        let body = frames(vec![Ok(Frame::data(Bytes::from_static(b"a"))), Err("boom")]);
        assert!(
            GuardBody::new(body, recorder(&log))
                .collect()
                .await
                .is_err()
        );
        assert_eq!(*log.lock().unwrap(), ["error"]);
    }

    #[tokio::test]
    async fn reports_dropped_when_abandoned_mid_stream() {
        let log = Log::default();
        let body = frames(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]);
        let mut guarded = GuardBody::new(body, recorder(&log));
        guarded.frame().await.unwrap().unwrap();
        drop(guarded);
        assert_eq!(*log.lock().unwrap(), ["dropped"]);
    }

    #[tokio::test]
    async fn empty_and_exact_bodies_complete_without_a_final_poll() {
        let log = Log::default();
        drop(GuardBody::new(Empty::<Bytes>::new(), recorder(&log)));
        let mut full = GuardBody::new(Full::new(Bytes::from_static(b"hi")), recorder(&log));
        full.frame().await.unwrap().unwrap();
        drop(full);
        assert_eq!(*log.lock().unwrap(), ["complete", "complete"]);
    }

    #[tokio::test]
    async fn armor_body_passes_inner_through_and_serves_full_bytes() {
        let inner: ArmorBody<Full<Bytes>> = ArmorBody::inner(Full::new(Bytes::from_static(b"x")));
        assert_eq!(inner.size_hint().exact(), Some(1));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "x");
        let made: ArmorBody<Empty<Bytes>> = ArmorBody::full("refused");
        assert_eq!(made.size_hint().exact(), Some(7));
        assert_eq!(made.collect().await.unwrap().to_bytes(), "refused");
        let empty: ArmorBody<Full<Bytes>> = ArmorBody::default();
        assert!(empty.is_end_stream());
    }
}
