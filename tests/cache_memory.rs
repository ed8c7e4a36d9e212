//! A 50 MiB miss streams through the cache with bounded memory: the client
//! gets each chunk as the origin makes it, the cache keeps at most its
//! entry limit while it might still store the body, and nothing is kept
//! once the body outgrows it. Live heap measured by a counting allocator.
//! (A test binary of its own, so no other test allocates meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use tower::{Service, ServiceExt, service_fn};
use tower_armor::cache::CacheLayer;

/// The system allocator, keeping count of the bytes live and the peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        received += data.len();
        // The client holds chunk n as the origin has made exactly n.
        assert_eq!(made.load(Ordering::SeqCst), received / CHUNK);
    }
    assert_eq!(received, CHUNK * CHUNKS);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(
        peak < (ENTRY_LIMIT + 4 * CHUNK) as isize,
        "peak {peak} bytes while streaming 50 MiB"
    );

    // Too large to keep: the next request goes to the origin again.
    let response = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(Empty::new()))
        .await
        .unwrap();
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("fwd=uri-miss")
    );
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
