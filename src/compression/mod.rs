//! Response compression that streams, and request decompression with a cap:
//! two layers, because one touches responses and the other request bodies.
//!
//! [`CompressionLayer`] compresses a response with the best coding the client
//! accepts (`Accept-Encoding` q-values, `*`, `identity;q=0`) among zstd, br,
//! gzip and deflate, in a server preference order you can change. If the
//! client accepts none of them and excludes identity, it answers 406 before
//! the inner service runs.
//!
//! Not compressed: answers to HEAD; 1xx, 204, 206, 304; bodies that already
//! have a `Content-Encoding` or a `Content-Range`; `Cache-Control:
//! no-transform`; gRPC (it compresses its own messages); types that are
//! compressed already (images but SVG, audio, video, zip, gzip, woff, ...);
//! bodies known to be under [`min_size`](CompressionBuilder::min_size); and
//! whatever your [`compress_when`](CompressionBuilder::compress_when) check
//! refuses.
//!
//! A response the rules leave alone goes out as it is, even to a client that
//! excluded identity: RFC 9110 §12.5.3 allows it, and the 406 is only for
//! what can be known before the handler runs.
//!
//! A compressed response gets `Content-Encoding`, loses `Content-Length` and
//! `Accept-Ranges`, has a strong `ETag` made weak, and `Vary:
//! accept-encoding` is merged in (never twice). Bodies are compressed as
//! they stream: with the default [`Flush::OnPending`], whatever was encoded
//! goes out whenever the inner body has nothing more ready, so each event of
//! a server-sent-event stream reaches the client at once. Trailers pass
//! through after the data.
//!
//! [`RequestDecompressionLayer`] decodes request bodies sent with
//! `Content-Encoding` gzip, deflate, br or zstd for the inner service, which
//! no longer sees that header. Another coding gets 415 with
//! `Accept-Encoding`. Decoding stops at
//! [`max_decompressed_bytes`](RequestDecompressionBuilder::max_decompressed_bytes):
//! the handler gets a [`DecompressionError`] while reading and the caller a
//! 413, and nothing past the cap is decoded or kept. A corrupt body gets 400.
//! [`CompressionLayer`] leaves request bodies alone: add this layer only
//! where clients send compressed uploads.
//!
//! Metrics: `armor.compression.bytes{name,direction,encoding}` counts body
//! bytes as sent or received (`out`: responses, `in`: requests) and
//! `armor.compression.uncompressed_bytes{…}` the same bodies as the
//! application sees them, so their ratio is the compression ratio.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor::compression::CompressionLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let json = Bytes::from("{\"items\":[1,2,3]}".repeat(200));
//! let service = ServiceBuilder::new()
//!     .layer(CompressionLayer::default())
//!     .service_fn(move |_req: Request<_>| {
//!         let json = json.clone();
//!         async move { Ok::<_, Infallible>(Response::new(Full::new(json))) }
//!     });
//!
//! let request = Request::get("/items")
//!     .header("accept-encoding", "gzip, br;q=0.9")
//!     .body(Full::new(Bytes::new()))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["content-encoding"], "gzip");
//! assert_eq!(response.headers()["vary"], "accept-encoding");
//! let compressed = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(compressed.len() < 200);
//! # }
//! ```

mod body;
mod codec;
mod decompression;
mod future;
mod layer;
mod negotiate;
mod rules;
mod service;
mod settings;

pub use body::{CompressionBody, DecompressionBody, DecompressionError, Flush};
pub use decompression::{
    RequestDecompression, RequestDecompressionBuilder, RequestDecompressionFuture,
    RequestDecompressionLayer,
};
pub use future::ResponseFuture;
pub use layer::{CompressionBuilder, CompressionLayer};
pub use negotiate::Encoding;
pub use service::Compression;
