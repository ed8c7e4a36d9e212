//! The compression stacks measured by `benches/compression.rs` and counted by
//! `examples/perreq.rs`: ours and tower-http's, around the driver's handler.
#![allow(dead_code)]

use std::fmt::Debug;

use bytes::Bytes;
use http::Response;
use http_body::Body;
use tower::{Layer, Service};

use super::compression_driver::{Req, handler};

pub fn armor(
    body: &[u8],
    content_type: &'static str,
) -> impl Service<Req, Response = Response<impl Body<Error: Debug>>, Error: Debug> {
    tower_armor::compression::CompressionLayer::builder()
        .build()
        .expect("a valid layer")
        .layer(handler(Bytes::copy_from_slice(body), content_type))
}

pub fn tower_http(
    body: &[u8],
    content_type: &'static str,
) -> impl Service<Req, Response = Response<impl Body<Error: Debug>>, Error: Debug> {
    tower_http::compression::CompressionLayer::new()
        .layer(handler(Bytes::copy_from_slice(body), content_type))
}
