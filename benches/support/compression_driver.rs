//! How the compression benches drive a stack: the request, a handler
//! answering a fixed body, and reading the whole response. Shared with the
//! tower-http default-build package, so it uses nothing of this crate.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

pub type Req = Request<Full<Bytes>>;

pub fn request(coding: &'static str) -> Req {
    Request::get("/data")
        .header("accept-encoding", coding)
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

/// A handler answering `body` with `content_type`, whatever the request body.
pub fn handler<B>(
    body: Bytes,
    content_type: &'static str,
) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = std::convert::Infallible> + Clone
{
    tower::service_fn(move |_req: Request<B>| {
        let response = Response::builder()
            .header("content-type", content_type)
            .body(Full::new(body.clone()))
            .expect("a valid response");
        std::future::ready(Ok(response))
    })
}

/// Sends one request and reads the whole body; returns the bytes received.
/// Every body here is complete at once, so nothing is ever pending.
pub fn compressed_len<S, B>(service: &mut S, coding: &'static str) -> usize
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
        panic!("always ready")
    };
    let Poll::Ready(Ok(response)) = pin!(service.call(request(coding))).poll(&mut cx) else {
        panic!("answers at once")
    };
    let mut body = pin!(response.into_body());
    let mut received = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                received += frame.data_ref().map_or(0, |data| data.remaining())
            }
            Poll::Ready(None) => return received,
            other => panic!(
                "a complete body: {:?}",
                other.map(|f| f.map(|f| f.map(|_| ())))
            ),
        }
    }
}
