//! The compression layer through its service: what each client gets, what
//! is never compressed, how headers change, streams, and request decoding.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::ChannelBody;
use tower::{Service, ServiceExt};
use tower_armor::compression::{
    CompressionLayer, DecompressionBody, DecompressionError, Encoding, Flush,
    RequestDecompressionLayer,
};
use tower_armor::reject::{Reason, Rejection};

mod support;

/// 64 KiB-ish of JSON that compresses well but not trivially.
fn json(items: u32) -> Bytes {
    let body: String = (0..items)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"item-{}\",\"tags\":[\"a\",\"b\"]}},",
                i * 7919 % 1000
            )
        })
        .collect();
    Bytes::from(body)
}

/// Decodes `coded` with a decoder that shares no code with our encoders.
fn decode_independently(encoding: &str, coded: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => {
            // RFC 1952: a 10-byte header (our encoder sets no flags), raw
            // deflate, then CRC-32 and the length mod 2^32.
            assert_eq!(&coded[..3], &[0x1f, 0x8b, 8], "gzip magic and method");
            assert_eq!(coded[3], 0, "no optional header fields");
            let plain = miniz_oxide::inflate::decompress_to_vec(&coded[10..coded.len() - 8])
                .expect("valid deflate data");
            let size = u32::from_le_bytes(coded[coded.len() - 4..].try_into().unwrap());
            assert_eq!(
                size as usize,
                plain.len() % (1 << 32),
                "gzip length trailer"
            );
            plain
        }
        "deflate" => miniz_oxide::inflate::decompress_to_vec_zlib(coded).expect("valid zlib data"),
        "br" => {
            let mut plain = Vec::new();
            brotli_decompressor::Decompressor::new(coded, 4096)
                .read_to_end(&mut plain)
                .expect("valid brotli data");
            plain
        }
        "zstd" => {
            let mut plain = Vec::new();
            ruzstd::decoding::StreamingDecoder::new(coded)
                .expect("a zstd frame")
                .read_to_end(&mut plain)
                .expect("valid zstd data");
            plain
        }
        other => panic!("unexpected coding {other}"),
    }
}

/// A handler answering `body` with `headers`, counting its calls.
fn answering(
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: Bytes,
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let headers = headers.to_vec();
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::builder().status(status);
        for (name, value) in &headers {
            response = response.header(*name, *value);
        }
        let response = response.body(Full::new(body.clone())).unwrap();
        async move { Ok::<_, Infallible>(response) }
    })
}

fn get(accept_encoding: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get("/data");
    if let Some(value) = accept_encoding {
        request = request.header("accept-encoding", value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// Sends `request` through the default layer around a handler answering
/// `headers` and `body`; returns the response head and the body bytes.
async fn exchange(
    request: Request<Full<Bytes>>,
    status: u16,
    headers: &[(&'static str, &'static str)],
    body: Bytes,
) -> (http::response::Parts, Bytes) {
    let layer = CompressionLayer::builder().build().unwrap();
    let service = tower::Layer::layer(&layer, answering(status, headers, body, Default::default()));
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn every_coding_decodes_with_an_independent_decoder() {
    let original = json(2_000);
    assert!(original.len() > 64 * 1024);
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let (parts, coded) = exchange(get(Some(coding)), 200, &[], original.clone()).await;
        assert_eq!(parts.headers["content-encoding"], coding);
        assert!(
            coded.len() < original.len() / 4,
            "{coding}: {} bytes from {}",
            coded.len(),
            original.len()
        );
        assert_eq!(decode_independently(coding, &coded), original, "{coding}");
    }
}

#[tokio::test]
async fn each_level_is_honoured_and_still_decodes() {
    let original = json(2_000);
    let mut sizes = Vec::new();
    for (fast, best) in [(1, 9)] {
        for level in [fast, best] {
            let layer = CompressionLayer::builder()
                .gzip_level(level)
                .build()
                .unwrap();
            let service = tower::Layer::layer(
                &layer,
                answering(200, &[], original.clone(), Default::default()),
            );
            let response = service.oneshot(get(Some("gzip"))).await.unwrap();
            let coded = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(decode_independently("gzip", &coded), original);
            sizes.push(coded.len());
        }
    }
    assert!(
        sizes[1] < sizes[0],
        "level 9 is smaller than level 1: {sizes:?}"
    );
}

#[tokio::test]
async fn negotiation_follows_q_values_star_and_the_preference_order() {
    let body = json(100);
    for (accept, expected) in [
        (None, None),
        (Some("gzip, deflate, br, zstd"), Some("zstd")),
        (Some("gzip, br"), Some("br")),
        (Some("gzip;q=1, br;q=0.5"), Some("gzip")),
        (Some("*"), Some("zstd")),
        (Some("*, zstd;q=0"), Some("br")),
        (Some("identity"), None),
        (Some("gzip;q=0.3, identity;q=0.8"), None),
        (Some("compress"), None),
        (Some("gzip;q=2"), None),
    ] {
        let (parts, _) = exchange(get(accept), 200, &[], body.clone()).await;
        assert_eq!(
            parts
                .headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            expected,
            "Accept-Encoding: {accept:?}"
        );
        assert_eq!(parts.headers["vary"], "accept-encoding", "{accept:?}");
    }
    // A custom order decides between equals.
    let layer = CompressionLayer::builder()
        .encodings([Encoding::Gzip, Encoding::Brotli])
        .build()
        .unwrap();
    let service = tower::Layer::layer(&layer, answering(200, &[], body, Default::default()));
    let response = service.oneshot(get(Some("zstd, br, gzip"))).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn nothing_acceptable_is_406_before_the_handler_runs() {
    for accept in ["identity;q=0", "*;q=0", "snappy, identity;q=0"] {
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = CompressionLayer::builder().build().unwrap();
        let service = tower::Layer::layer(&layer, answering(200, &[], json(100), calls.clone()));
        let response = service.oneshot(get(Some(accept))).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE, "{accept}");
        assert_eq!(response.headers()["vary"], "accept-encoding");
        assert_eq!(
            response.extensions().get::<Rejection>().unwrap().reason(),
            Reason::NotAcceptable
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    }
    // Excluding identity while accepting a coding we have is fine.
    let (parts, coded) = exchange(get(Some("br, identity;q=0")), 200, &[], json(100)).await;
    assert_eq!(parts.headers["content-encoding"], "br");
    assert_eq!(decode_independently("br", &coded), json(100));
}

#[tokio::test]
async fn responses_that_are_never_compressed() {
    let big = json(500);
    type Case<'a> = (&'a str, u16, &'a [(&'a str, &'a str)], Bytes);
    let cases: &[Case<'_>] = &[
        (
            "already coded",
            200,
            &[("content-encoding", "br")],
            big.clone(),
        ),
        (
            "a range",
            206,
            &[("content-range", "bytes 0-99/5000")],
            big.clone(),
        ),
        (
            "no-transform",
            200,
            &[("cache-control", "public, no-transform")],
            big.clone(),
        ),
        (
            "an image",
            200,
            &[("content-type", "image/png")],
            big.clone(),
        ),
        (
            "a video",
            200,
            &[("content-type", "video/mp4")],
            big.clone(),
        ),
        (
            "a zip",
            200,
            &[("content-type", "application/zip")],
            big.clone(),
        ),
        (
            "a font",
            200,
            &[("content-type", "font/woff2")],
            big.clone(),
        ),
        ("no content", 204, &[], Bytes::new()),
        ("not modified", 304, &[("etag", "\"v1\"")], Bytes::new()),
        (
            "a small body",
            200,
            &[],
            Bytes::from_static(b"{\"ok\":true}"),
        ),
    ];
    for (what, status, headers, body) in cases {
        let (parts, received) = exchange(get(Some("gzip")), *status, headers, body.clone()).await;
        let coding_set = headers.iter().find(|(name, _)| *name == "content-encoding");
        assert_eq!(
            parts
                .headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            coding_set.map(|(_, value)| *value),
            "{what}: no coding of ours"
        );
        assert_eq!(&received, body, "{what}: the body passes untouched");
        assert!(
            !parts.headers.contains_key("vary"),
            "{what}: the same for every client"
        );
    }
    // SVG is an image that is text, and is compressed.
    let (parts, coded) = exchange(
        get(Some("gzip")),
        200,
        &[("content-type", "image/svg+xml")],
        big.clone(),
    )
    .await;
    assert_eq!(parts.headers["content-encoding"], "gzip");
    assert_eq!(decode_independently("gzip", &coded), big);
}

#[tokio::test]
async fn head_requests_and_the_user_check_are_not_compressed() {
    let mut head = get(Some("gzip"));
    *head.method_mut() = http::Method::HEAD;
    let (parts, _) = exchange(head, 200, &[], json(500)).await;
    assert!(!parts.headers.contains_key("content-encoding"));

    let layer = CompressionLayer::builder()
        .compress_when(|response| !response.headers.contains_key("x-no-compress"))
        .build()
        .unwrap();
    let service = tower::Layer::layer(
        &layer,
        answering(
            200,
            &[("x-no-compress", "1")],
            json(500),
            Default::default(),
        ),
    );
    let response = service.oneshot(get(Some("gzip"))).await.unwrap();
    assert!(!response.headers().contains_key("content-encoding"));
}

#[tokio::test]
async fn the_minimum_size_is_configurable_and_unknown_sizes_are_compressed() {
    let body = Bytes::from_static(b"0123456789012345678901234567890123456789");
    let layer = CompressionLayer::builder().min_size(16).build().unwrap();
    let service = tower::Layer::layer(
        &layer,
        answering(200, &[], body.clone(), Default::default()),
    );
    let response = service.oneshot(get(Some("gzip"))).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");

    // A stream has no known size, however small it is.
    let (sender, events) = channel_body();
    sender.send(Bytes::from_static(b"tiny")).await.unwrap();
    drop(sender);
    let service = tower::Layer::layer(
        &CompressionLayer::builder().build().unwrap(),
        serving_once(events, "text/plain"),
    );
    let response = service.oneshot(get(Some("gzip"))).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let coded = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(decode_independently("gzip", &coded), b"tiny");
}

#[tokio::test]
async fn compressed_responses_get_their_headers_fixed() {
    let (parts, _) = exchange(
        get(Some("gzip")),
        200,
        &[
            ("content-length", "19000"),
            ("accept-ranges", "bytes"),
            ("etag", "\"abc\""),
            ("vary", "Origin, Accept-Encoding"),
        ],
        json(500),
    )
    .await;
    assert_eq!(parts.headers["content-encoding"], "gzip");
    assert!(!parts.headers.contains_key("content-length"));
    assert!(!parts.headers.contains_key("accept-ranges"));
    assert_eq!(parts.headers["etag"], "W/\"abc\"");
    let vary: Vec<_> = parts.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["Origin, Accept-Encoding"], "merged, not duplicated");

    // Identity for this client, but another could get a coding: Vary still.
    let (parts, _) = exchange(
        get(None),
        200,
        &[("vary", "origin"), ("etag", "\"abc\"")],
        json(500),
    )
    .await;
    let vary: Vec<_> = parts.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["origin", "accept-encoding"]);
    assert_eq!(
        parts.headers["etag"], "\"abc\"",
        "untouched bytes keep a strong ETag"
    );
}

#[tokio::test]
async fn grpc_passes_through_untouched() {
    let service = tower::Layer::layer(
        &CompressionLayer::builder().build().unwrap(),
        answering(
            200,
            &[("content-type", "application/grpc"), ("grpc-status", "0")],
            json(500),
            Default::default(),
        ),
    );
    let request = Request::post("/pkg.Service/Method")
        .header("content-type", "application/grpc")
        .header("accept-encoding", "gzip")
        .header("content-encoding", "snappy")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("content-encoding"));
    assert!(!response.headers().contains_key("vary"));
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        json(500)
    );
}

#[tokio::test(start_paused = true)]
async fn sse_events_arrive_compressed_one_by_one_before_the_stream_ends() {
    let (sender, events) = channel_body();
    let service = tower::Layer::layer(
        &CompressionLayer::builder().build().unwrap(),
        serving_once(events, "text/event-stream"),
    );
    let response = service.oneshot(get(Some("gzip"))).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    for n in 0..5 {
        let event = format!("id: {n}\ndata: {{\"tick\":{n}}}\n\n");
        sender.send(Bytes::from(event.clone())).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(1), body.frame())
            .await
            .expect("the event is flushed without waiting for more")
            .unwrap()
            .unwrap();
        decoder.write_all(frame.data_ref().unwrap()).unwrap();
        decoder.flush().unwrap();
        let seen = String::from_utf8(decoder.get_ref().clone()).unwrap();
        assert!(
            seen.ends_with(&event),
            "event {n} decodes on its own: {seen:?}"
        );
        // The next event comes a minute later; the stream is still open.
        tokio::time::advance(Duration::from_secs(60)).await;
    }
    drop(sender);
    while let Some(frame) = body.frame().await {
        decoder
            .write_all(frame.unwrap().data_ref().unwrap())
            .unwrap();
    }
    let all = decoder.finish().unwrap();
    assert_eq!(String::from_utf8(all).unwrap().matches("data:").count(), 5);
}

/// Room for every frame a test sends before the body is read.
fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, ChannelBody) {
    support::channel_body(4096)
}

/// A handler that answers its one request with `body`.
fn serving_once(
    body: ChannelBody,
    content_type: &'static str,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<ChannelBody>,
    Error = Infallible,
    Future = impl Send,
> {
    let mut body = Some(body);
    tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let response = Response::builder()
            .header("content-type", content_type)
            .body(body.take().expect("one request"))
            .unwrap();
        async move { Ok::<_, Infallible>(response) }
    })
}

#[tokio::test]
async fn trailers_pass_through_after_the_compressed_data() {
    let service = tower::Layer::layer(
        &CompressionLayer::builder().build().unwrap(),
        tower::service_fn(|_req: Request<Full<Bytes>>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc123".parse().unwrap());
            let body = Full::new(json(500))
                .map_err(|never| match never {})
                .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
            Ok::<_, Infallible>(Response::new(body))
        }),
    );
    let response = service.oneshot(get(Some("gzip"))).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc123");
    assert_eq!(
        decode_independently("gzip", &collected.to_bytes()),
        json(500)
    );
}

#[tokio::test]
async fn every_frame_flushing_sends_each_frame_decodable() {
    let (sender, events) = channel_body();
    let service = tower::Layer::layer(
        &CompressionLayer::builder()
            .flush(Flush::EveryFrame)
            .build()
            .unwrap(),
        serving_once(events, "text/plain"),
    );
    for part in ["first part ", "second part"] {
        sender.send(Bytes::from(part)).await.unwrap();
    }
    drop(sender);
    let mut body = service
        .oneshot(get(Some("deflate")))
        .await
        .unwrap()
        .into_body();
    let mut decoder = flate2::write::ZlibDecoder::new(Vec::new());
    for expected in ["first part ", "first part second part"] {
        let frame = body.frame().await.unwrap().unwrap();
        decoder.write_all(frame.data_ref().unwrap()).unwrap();
        decoder.flush().unwrap();
        assert_eq!(decoder.get_ref(), expected.as_bytes());
    }
}

/// `plain` in `coding`, made by encoders other than ours.
fn encode_request_body(coding: &str, plain: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(plain).unwrap();
            encoder.finish().unwrap()
        }
        "deflate" => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(plain).unwrap();
            encoder.finish().unwrap()
        }
        "br" => {
            let mut coded = Vec::new();
            let params = brotli::enc::BrotliEncoderParams {
                quality: 5,
                ..Default::default()
            };
            brotli::BrotliCompress(&mut &plain[..], &mut coded, &params).unwrap();
            coded
        }
        "zstd" => zstd::encode_all(plain, 3).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
}

/// A request whose body is `coded`, sent in frames of `frame` bytes.
fn post(coding: &str, coded: Vec<u8>, frame: usize) -> Request<ChannelBody> {
    let (sender, body) = channel_body();
    for chunk in coded.chunks(frame) {
        sender
            .try_send(Bytes::copy_from_slice(chunk))
            .expect("room for every frame");
    }
    Request::post("/upload")
        .header("content-encoding", coding)
        .header("content-length", coded.len().to_string())
        .body(body)
        .unwrap()
}

/// A handler that reads the whole request body and echoes what it saw:
/// the body's length, or the error it got, and the headers it was given.
fn reading_handler(
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> impl Service<
    Request<DecompressionBody<ChannelBody>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |request: Request<DecompressionBody<ChannelBody>>| {
        let seen = seen.clone();
        async move {
            let headers = format!(
                "content-encoding={:?} content-length={:?}",
                request.headers().get("content-encoding"),
                request.headers().get("content-length")
            );
            let mut body = request.into_body();
            let mut received = Vec::new();
            let mut largest_frame = 0;
            let outcome = loop {
                match body.frame().await {
                    None => break "complete".to_owned(),
                    Some(Ok(frame)) => {
                        let data = frame.into_data().unwrap();
                        largest_frame = largest_frame.max(data.len());
                        received.extend_from_slice(&data);
                    }
                    Some(Err(error)) => {
                        let error = error.downcast::<DecompressionError>().expect("our error");
                        break format!("{error:?}");
                    }
                }
            };
            seen.lock().unwrap().push(format!(
                "{headers} received={} largest_frame={largest_frame} {outcome}",
                received.len()
            ));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(received))))
        }
    })
}

async fn upload(
    layer: &RequestDecompressionLayer,
    request: Request<ChannelBody>,
) -> (StatusCode, HeaderMap, Bytes, Vec<String>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = tower::Layer::layer(layer, reading_handler(seen.clone()));
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().clone();
    (parts.status, parts.headers, body, seen)
}

#[tokio::test]
async fn compressed_request_bodies_are_decoded_for_the_handler() {
    let layer = RequestDecompressionLayer::default();
    let original = json(3_000);
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let coded = encode_request_body(coding, &original);
        let (status, _, echoed, seen) = upload(&layer, post(coding, coded, 1000)).await;
        assert_eq!(status, 200, "{coding}");
        assert_eq!(echoed, original, "{coding}");
        assert!(
            seen[0].starts_with("content-encoding=None content-length=None"),
            "{coding}: the handler sees a plain body: {seen:?}"
        );
        assert!(seen[0].ends_with("complete"), "{seen:?}");
    }
    // Two gzip members in a row are one body (RFC 1952).
    let mut two = encode_request_body("gzip", b"hello ");
    two.extend(encode_request_body("gzip", b"world"));
    let (status, _, echoed, _) = upload(&layer, post("gzip", two, 7)).await;
    assert_eq!((status, &echoed[..]), (StatusCode::OK, &b"hello world"[..]));
}

#[tokio::test]
async fn unsupported_or_malformed_request_codings_are_refused() {
    let layer = RequestDecompressionLayer::default();
    for coding in ["snappy", "gzip, br", "compress"] {
        let (status, headers, _, seen) = upload(&layer, post(coding, b"data".to_vec(), 100)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{coding}");
        assert_eq!(headers["accept-encoding"], "gzip, deflate, br, zstd");
        assert!(seen.is_empty(), "the handler never ran");
    }
    let garbage = b"this is not gzip at all".to_vec();
    let (status, _, _, seen) = upload(&layer, post("gzip", garbage, 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(seen[0].ends_with("Malformed"), "{seen:?}");

    let mut truncated = encode_request_body("zstd", &json(1_000));
    truncated.truncate(truncated.len() / 2);
    let (status, _, _, seen) = upload(&layer, post("zstd", truncated, 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(seen[0].ends_with("Malformed"), "{seen:?}");
}

#[tokio::test]
async fn response_compression_leaves_request_bodies_as_sent() {
    // Without the decompression layer, coded bodies reach the handler as sent.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = tower::Layer::layer(
        &CompressionLayer::default(),
        tower::service_fn({
            let seen = seen.clone();
            move |request: Request<ChannelBody>| {
                let seen = seen.clone();
                async move {
                    let encoding = request.headers().get("content-encoding").cloned();
                    let body = request.into_body().collect().await.unwrap().to_bytes();
                    seen.lock().unwrap().push(format!("{encoding:?}"));
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            }
        }),
    );
    let coded = encode_request_body("gzip", b"as sent");
    let response = service
        .oneshot(post("gzip", coded.clone(), 100))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed, Bytes::from(coded));
    assert_eq!(*seen.lock().unwrap(), ["Some(\"gzip\")"]);
}

#[tokio::test]
async fn a_decompression_bomb_gets_413_and_memory_stays_bounded() {
    // 32 MiB of zeros squeezes into a few dozen KiB.
    let zeros = vec![0u8; 32 * 1024 * 1024];
    for coding in ["gzip", "zstd", "br"] {
        let bomb = encode_request_body(coding, &zeros);
        assert!(bomb.len() < 100 * 1024, "{coding}: {} bytes", bomb.len());
        let cap = 1024 * 1024;
        let layer = RequestDecompressionLayer::builder()
            .max_decompressed_bytes(cap)
            .build()
            .unwrap();
        let (status, _, _, seen) = upload(&layer, post(coding, bomb, 16 * 1024)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{coding}");
        let seen = &seen[0];
        assert!(
            seen.ends_with(&format!("TooLarge {{ limit: {cap} }}")),
            "{seen}"
        );
        // The handler got at most the cap, in frames of at most 64 KiB:
        // nothing past the cap was decoded into memory.
        let received: u64 = seen
            .split("received=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let largest: u64 = seen
            .split("largest_frame=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(received <= cap, "{coding}: {received}");
        assert!(largest <= 64 * 1024, "{coding}: {largest}");
    }
}

#[test]
fn byte_counters_per_direction_and_coding() {
    let counters = support::counters_recorded(|| async {
        let layer = CompressionLayer::builder().name("api").build().unwrap();
        let service =
            tower::Layer::layer(&layer, answering(200, &[], json(1_000), Default::default()));
        let response = service.oneshot(get(Some("br"))).await.unwrap();
        response.into_body().collect().await.unwrap();
        let decompression = RequestDecompressionLayer::builder()
            .name("api")
            .build()
            .unwrap();
        let coded = encode_request_body("gzip", &json(100));
        upload(&decompression, post("gzip", coded, 100)).await;
    });
    let value = |name: &str, direction: &str, encoding: &str| {
        counters
            .iter()
            .find(|(n, labels, _)| {
                n == name
                    && labels.contains(&"name=api".to_owned())
                    && labels.contains(&format!("direction={direction}"))
                    && labels.contains(&format!("encoding={encoding}"))
            })
            .map(|(_, _, value)| *value)
    };
    let out_plain = value("armor.compression.uncompressed_bytes", "out", "br").unwrap();
    let out_coded = value("armor.compression.bytes", "out", "br").unwrap();
    assert_eq!(out_plain, json(1_000).len() as u64);
    assert!(out_coded < out_plain / 4, "{out_coded} of {out_plain}");
    let in_plain = value("armor.compression.uncompressed_bytes", "in", "gzip").unwrap();
    let in_coded = value("armor.compression.bytes", "in", "gzip").unwrap();
    assert_eq!(in_plain, json(100).len() as u64);
    assert_eq!(
        in_coded,
        encode_request_body("gzip", &json(100)).len() as u64
    );
    assert_eq!(value("armor.compression.bytes", "out", "gzip"), None);
}

#[test]
fn bad_settings_fail_at_build() {
    for (builder, message) in [
        (CompressionLayer::builder().gzip_level(10), "gzip"),
        (CompressionLayer::builder().deflate_level(12), "deflate"),
        (CompressionLayer::builder().brotli_quality(12), "brotli"),
        (CompressionLayer::builder().zstd_level(23), "zstd"),
        (CompressionLayer::builder().zstd_level(-8), "zstd"),
        (
            CompressionLayer::builder().encodings([Encoding::Gzip, Encoding::Gzip]),
            "twice",
        ),
    ] {
        let error = builder.build().unwrap_err();
        assert_eq!(error.layer(), "compression");
        assert!(error.to_string().contains(message), "{error}");
    }
    let error = RequestDecompressionLayer::builder()
        .max_decompressed_bytes(0)
        .build()
        .unwrap_err();
    assert_eq!(error.layer(), "compression");
    assert!(
        error.to_string().contains("max_decompressed_bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn streams_of_unknown_size_decode_in_every_coding() {
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let (sender, events) = channel_body();
        let service = tower::Layer::layer(
            &CompressionLayer::builder().build().unwrap(),
            serving_once(events, "application/x-ndjson"),
        );
        let lines: Vec<Bytes> = (0..50)
            .map(|i| Bytes::from(format!("{{\"line\":{i},\"text\":\"row number {i}\"}}\n")))
            .collect();
        for line in &lines {
            sender.send(line.clone()).await.unwrap();
        }
        drop(sender);
        let response = service.oneshot(get(Some(coding))).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], coding);
        let coded = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            decode_independently(coding, &coded),
            lines.concat(),
            "{coding}"
        );
    }
}
