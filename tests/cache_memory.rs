//! A 50 MiB miss streams through the cache with bounded memory: the client
//! gets each chunk as the origin makes it, the cache keeps at most its
//! entry limit while it might still store the body, and nothing is kept
//! once the body outgrows it. Live heap measured by a counting allocator.
//! (A test binary of its own, so no other test allocates meanwhile.)

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use tower::{Service, ServiceExt, service_fn};
use tower_armor::cache::CacheLayer;

#[path = "support/live_bytes.rs"]
mod live_bytes;

#[global_allocator]
static ALLOCATOR: live_bytes::Counting = live_bytes::Counting;

const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 800; // 50 MiB
const ENTRY_LIMIT: usize = 4 << 20;

#[tokio::test(flavor = "current_thread")]
async fn a_50_mib_miss_streams_in_bounded_memory_and_is_not_stored() {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    // Each chunk is made when the body is polled for it: nothing is ready
    // ahead, so the cache can only pass on what the client asks for.
    let origin = service_fn(move |_: Request<Empty<Bytes>>| {
        let counter = counter.clone();
        async move {
            let chunks = futures_util_stream(counter);
            let response = Response::builder()
                .header("cache-control", "max-age=600")
                .header("content-length", (CHUNK * CHUNKS).to_string())
                .body(StreamBody::new(chunks))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let layer = CacheLayer::builder()
        .max_entry_bytes(ENTRY_LIMIT)
        .build()
        .unwrap();
    let mut service = tower::ServiceBuilder::new().layer(layer).service(origin);

    let before = live_bytes::live();
    live_bytes::reset_peak();
    let response = get(&mut service).await;
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        received += data.len();
        // The client holds chunk n as the origin has made exactly n.
        assert_eq!(made.load(Ordering::SeqCst), received / CHUNK);
    }
    assert_eq!(received, CHUNK * CHUNKS);
    let peak = live_bytes::peak() - before;
    assert!(
        peak < (ENTRY_LIMIT + 4 * CHUNK) as isize,
        "peak {peak} bytes while streaming 50 MiB"
    );

    // Too large to keep: the next request goes to the origin again.
    let response = get(&mut service).await;
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("fwd=uri-miss")
    );
}

/// The response to a GET through `service`.
async fn get<S: Service<Request<Empty<Bytes>>>>(service: &mut S) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    service
        .ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap()
}

/// A stream of `CHUNKS` fresh chunks, counting each one made.
fn futures_util_stream(
    made: Arc<AtomicUsize>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    struct Chunks(Arc<AtomicUsize>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let n = self.0.load(Ordering::SeqCst);
            if n == CHUNKS {
                return std::task::Poll::Ready(None);
            }
            self.0.store(n + 1, Ordering::SeqCst);
            std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; CHUNK])))))
        }
    }
    Chunks(made)
}
