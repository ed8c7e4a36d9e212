//! gzip throughput and output size of tower-http's `CompressionLayer` in its
//! default build, on the same bodies as `benches/compression.rs`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};

#[path = "../../support/compression_inputs.rs"]
mod inputs;

fn gzip_len<S, B>(service: &mut S) -> usize
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let request = Request::get("/data")
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let Poll::Ready(Ok(response)) = pin!(service.call(request)).poll(&mut cx) else {
        panic!("answers at once")
    };
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = pin!(response.into_body());
    let mut received = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                received += frame.data_ref().map_or(0, |data| data.remaining())
            }
            Poll::Ready(None) => return received,
            _ => panic!("a complete body"),
        }
    }
}

fn bench(c: &mut Criterion) {
    for (name, body, content_type) in [
        ("json-64k", inputs::json_64k(), "application/json"),
        ("html-1m", inputs::html_1m(), "text/html; charset=utf-8"),
    ] {
        let body = Bytes::from(body);
        let length = body.len();
        let mut service = tower_http::compression::CompressionLayer::new().layer(
            tower::service_fn(move |_req: Request<Full<Bytes>>| {
                let response = Response::builder()
                    .header("content-type", content_type)
                    .body(Full::new(body.clone()))
                    .unwrap();
                std::future::ready(Ok::<_, std::convert::Infallible>(response))
            }),
        );
        println!("output size, tower-http default build: {name} gzip {length} -> {} bytes", gzip_len(&mut service));
        let mut group = c.benchmark_group(format!("compression/{name}"));
        group.throughput(Throughput::Bytes(length as u64));
        if length > 512 * 1024 {
            group.sample_size(20);
        }
        group.bench_function("gzip/tower-http-default-build", |b| b.iter(|| gzip_len(&mut service)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
