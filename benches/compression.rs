//! Response compression throughput and output size of every coding, ours
//! against tower-http's `CompressionLayer` in the same run (so both use
//! flate2's zlib-rs backend here), for a 64 KiB JSON body and a 1 MiB HTML
//! body; and the time to the first compressed byte of a server-sent-event
//! stream. tower-http in its default build (miniz_oxide) is measured by the
//! package in `benches/tower-http-default/`.

use std::fmt::Debug;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};

#[path = "support/compression_driver.rs"]
mod compression_driver;
#[path = "support/compression_inputs.rs"]
mod inputs;
#[path = "support/compression_stacks.rs"]
mod stacks;
use compression_driver::{Req, compressed_len, handler, request};
use stacks::{armor, tower_http};

fn throughput(c: &mut Criterion) {
    let bodies = [
        ("json-64k", inputs::json_64k(), "application/json"),
        ("html-1m", inputs::html_1m(), "text/html; charset=utf-8"),
    ];
    println!("output size, ours / tower-http (same build):");
    for (name, body, content_type) in &bodies {
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let ours = compressed_len(&mut armor(body, content_type), coding);
            let theirs = compressed_len(&mut tower_http(body, content_type), coding);
            println!(
                "  {name:8} {coding:7} {} -> {ours} / {theirs} bytes ({:.4})",
                body.len(),
                ours as f64 / theirs as f64
            );
        }
    }
    for (name, body, content_type) in &bodies {
        let mut group = c.benchmark_group(format!("compression/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() > 512 * 1024 {
            group.sample_size(20);
        }
        for coding in ["gzip", "deflate", "br", "zstd"] {
            let mut ours = armor(body, content_type);
            group.bench_function(format!("{coding}/armor"), |b| {
                b.iter(|| compressed_len(&mut ours, coding))
            });
            let mut theirs = tower_http(body, content_type);
            group.bench_function(format!("{coding}/tower-http"), |b| {
                b.iter(|| compressed_len(&mut theirs, coding))
            });
        }
        group.finish();
    }
}

/// An event stream: each event is followed by a pause (one `Pending`), as
/// events from a live source are.
struct Events {
    left: u32,
    paused: bool,
}

impl Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if !self.paused {
            self.paused = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.paused = false;
        self.left -= 1;
        let event = format!(
            "id: {}\nevent: tick\ndata: {{\"orders\":{}}}\n\n",
            self.left,
            self.left * 3
        );
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }
}

const EVENTS: u32 = 50;

fn sse_handler<B>()
-> impl Service<Request<B>, Response = Response<Events>, Error = std::convert::Infallible> + Clone {
    tower::service_fn(|_req: Request<B>| {
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(Events {
                left: EVENTS,
                paused: false,
            })
            .expect("a valid response");
        std::future::ready(Ok(response))
    })
}

/// Polls until the first compressed byte; returns how many events the
/// source had sent by then.
fn events_before_first_byte<S, B>(service: &mut S) -> u32
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(response)) = pin!(service.call(request("gzip"))).poll(&mut cx) else {
        panic!("answers at once")
    };
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = pin!(response.into_body());
    let mut polls = 0;
    loop {
        polls += 1;
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| d.has_remaining()) => {
                return polls / 2;
            }
            Poll::Ready(None) => return EVENTS,
            Poll::Ready(Some(Err(error))) => panic!("{error:?}"),
            _ => {}
        }
    }
}

fn sse_first_byte(c: &mut Criterion) {
    let mut ours = tower_armor::compression::CompressionLayer::builder()
        .build()
        .expect("a valid layer")
        .layer(sse_handler());
    // tower-http skips event streams by default; this makes it compress them.
    let mut theirs = tower_http::compression::CompressionLayer::new()
        .compress_when(tower_http::compression::predicate::SizeAbove::new(0))
        .layer(sse_handler());
    println!(
        "events sent before the first compressed byte (of {EVENTS}): ours {}, tower-http {}",
        events_before_first_byte(&mut ours),
        events_before_first_byte(&mut theirs)
    );
    let mut group = c.benchmark_group("compression/sse_first_byte");
    group.bench_function("armor", |b| b.iter(|| events_before_first_byte(&mut ours)));
    group.bench_function("tower-http", |b| {
        b.iter(|| events_before_first_byte(&mut theirs))
    });
    group.finish();
}

/// The cost of the layer on a response it leaves alone: a small JSON answer
/// to a client accepting gzip and br (too small for either layer).
fn pass_through(c: &mut Criterion) {
    let small = br#"{"ok":true}"#;
    let mut group = c.benchmark_group("compression/pass_through");
    let mut bare = handler(Bytes::from_static(small), "application/json");
    group.bench_function("bare", |b| b.iter(|| compressed_len(&mut bare, "gzip, br")));
    let mut ours = armor(small, "application/json");
    group.bench_function("armor", |b| {
        b.iter(|| compressed_len(&mut ours, "gzip, br"))
    });
    let mut theirs = tower_http(small, "application/json");
    group.bench_function("tower-http", |b| {
        b.iter(|| compressed_len(&mut theirs, "gzip, br"))
    });
    group.finish();
}

criterion_group!(benches, pass_through, throughput, sse_first_byte);
criterion_main!(benches);
