use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::CompressionBody;
use super::codec::Encoder;
use super::negotiate::Encoding;
use super::rules;
use super::settings::Shared;

pin_project! {
    /// The response future of [`Compression`](super::Compression).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            shared: Arc<Shared>,
            encoding: Option<Encoding>,
            head_request: bool,
        },
        PassThrough { #[pin] future: F },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        future: F,
        shared: Arc<Shared>,
        encoding: Option<Encoding>,
        head_request: bool,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                shared,
                encoding,
                head_request,
            },
        }
    }

    pub(crate) fn pass_through(future: F) -> Self {
        ResponseFuture {
            kind: Kind::PassThrough { future },
        }
    }

    pub(crate) fn refused(response: Response<Bytes>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<CompressionBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, shared, encoding, head_request) = match self.project().kind.project() {
            KindProj::PassThrough { future } => {
                return future
                    .poll(cx)
                    .map_ok(|response| response.map(CompressionBody::identity));
            }
            KindProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                return Poll::Ready(Ok(response.map(CompressionBody::full)));
            }
            KindProj::Called {
                future,
                shared,
                encoding,
                head_request,
            } => (future, shared, *encoding, *head_request),
        };
        let response = ready!(future.poll(cx))?;
        let (mut parts, body) = response.into_parts();
        let size = body.size_hint();
        if !rules::compressible(
            head_request,
            parts.status,
            &parts.headers,
            &size,
            shared.min_size,
        ) {
            return Poll::Ready(Ok(Response::from_parts(
                parts,
                CompressionBody::identity(body),
            )));
        }
        // Another client might get another coding of this response.
        rules::vary_on_accept_encoding(&mut parts.headers);
        let encoder = match encoding {
            Some(encoding)
                if shared
                    .compress_when
                    .as_ref()
                    .is_none_or(|check| check(&parts)) =>
            {
                // A codec that cannot start (out of memory) leaves the
                // response as it is rather than failing it.
                Encoder::new(encoding, &shared.levels, size.exact())
                    .ok()
                    .map(|encoder| (encoding, encoder))
            }
            _ => None,
        };
        let Some((encoding, encoder)) = encoder else {
            return Poll::Ready(Ok(Response::from_parts(
                parts,
                CompressionBody::identity(body),
            )));
        };
        rules::mark_encoded(&mut parts.headers, encoding);
        let body = CompressionBody::encoded(body, encoder, shared.flush, shared.counters(encoding));
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}
