//! gzip throughput and output size of tower-http's `CompressionLayer` in its
//! default build, on the same bodies and with the same driver as
//! `benches/compression.rs`.

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::Layer;

#[path = "../../support/compression_driver.rs"]
mod driver;
#[path = "../../support/compression_inputs.rs"]
mod inputs;

fn bench(c: &mut Criterion) {
    for (name, body, content_type) in [
        ("json-64k", inputs::json_64k(), "application/json"),
        ("html-1m", inputs::html_1m(), "text/html; charset=utf-8"),
    ] {
        let length = body.len();
        let mut service = tower_http::compression::CompressionLayer::new()
            .layer(driver::handler(Bytes::from(body), content_type));
        let size = driver::compressed_len(&mut service, "gzip");
        assert!(size < length / 2, "compressed");
        println!("output size, tower-http default build: {name} gzip {length} -> {size} bytes");
        let mut group = c.benchmark_group(format!("compression/{name}"));
        group.throughput(Throughput::Bytes(length as u64));
        if length > 512 * 1024 {
            group.sample_size(20);
        }
        group.bench_function("gzip/tower-http-default-build", |b| {
            b.iter(|| driver::compressed_len(&mut service, "gzip"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
