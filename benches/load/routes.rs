//! The routes every stack of the load bench serves, shared by our server
//! (`benches/load/server.rs`) and the peer stack's (`benches/load/peer`), so
//! both answer byte for byte the same.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::routing::get;
use bytes::Bytes;

/// A JSON array of `items` objects of 63 bytes each: 1 KiB at 16, 8 KiB
/// at 128.
pub fn json(items: usize) -> Bytes {
    let objects: Vec<String> = (0..items)
        .map(|i| {
            format!(
                "{{\"id\":{i:06},\"name\":\"item-{i:06}\",\"ok\":true,\"pad\":\"abcdefghijk\"}}"
            )
        })
        .collect();
    Bytes::from(format!("[{}]", objects.join(",")))
}

/// `/json1k` (1 KiB of JSON), `/json8k` (8 KiB), `/cached` (1 KiB, fresh
/// for an hour).
pub fn routes() -> Router {
    let small = json(16);
    let large = json(128);
    let cached = small.clone();
    Router::new()
        .route(
            "/json1k",
            get(move || {
                let body = small.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/json8k",
            get(move || {
                let body = large.clone();
                async move { ([(CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route(
            "/cached",
            get(move || {
                let body = cached.clone();
                async move {
                    (
                        [
                            (CONTENT_TYPE, "application/json"),
                            (CACHE_CONTROL, "max-age=3600"),
                        ],
                        body,
                    )
                }
            }),
        )
}

/// Serves `app` on `port` (127.0.0.1) with the peer address as
/// `ConnectInfo`, one Tokio thread (the bench pins the server to one core).
pub fn serve(app: Router, port: u16) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("the port is free");
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("serving");
        });
}
