//! A caching reverse proxy: a hyper server, the cache layer, and a
//! hyper-util client forwarding every method, path, query and body to one
//! origin. It is what the HTTP cache conformance suite (cache-tests) runs
//! against, and a handy tool on its own.
//!
//! ```text
//! cargo run --release --features cache --example cache_proxy -- \
//!     --listen 127.0.0.1:8001 --origin http://127.0.0.1:8000
//! ```
//!
//! An origin that cannot be reached answers 502 (or a stale entry, within
//! `stale-if-error`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use std::time::Duration;

use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE};
use http::{HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower::service_fn;
use tower_armor::ServiceBuilderExt;
use tower_armor::cache::{CacheLayer, VaryNormalizer};

type ProxyBody = Either<Incoming, Full<Bytes>>;

struct Args {
    listen: SocketAddr,
    origin: Uri,
}

fn args() -> Result<Args, String> {
    let mut listen = "127.0.0.1:8001".to_owned();
    let mut origin = "http://127.0.0.1:8000".to_owned();
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--origin" => origin = value,
            _ => {
                return Err(format!(
                    "unknown argument {flag}; use --listen ADDR --origin URL"
                ));
            }
        }
    }
    let listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let origin: Uri = origin
        .parse()
        .map_err(|e| format!("--origin {origin}: {e}"))?;
    if origin.scheme_str() != Some("http") || origin.authority().is_none() {
        return Err(format!("--origin {origin}: expected http://host:port"));
    }
    Ok(Args { listen, origin })
}

/// The request's path and query on the origin.
fn upstream_uri(origin: &Uri, request: &Uri) -> Uri {
    let path = request.path_and_query().map_or("/", |path| path.as_str());
    format!("{}{path}", origin.to_string().trim_end_matches('/'))
        .parse()
        .unwrap_or_else(|_| origin.clone())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = args()?;
    // Idle connections are dropped before common origins close them (Node's
    // keep-alive is 5 s), so a request never goes out on a connection the
    // origin is closing: a request with a body could not be sent again.
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(4))
        .build_http();
    let origin = args.origin.clone();
    let forward = service_fn(move |mut request: Request<Incoming>| {
        let client = client.clone();
        *request.uri_mut() = upstream_uri(&origin, request.uri());
        async move {
            let response: Response<ProxyBody> = match client.request(request).await {
                Ok(response) => response.map(Either::Left),
                Err(error) => {
                    eprintln!("origin: {error}");
                    let mut response = Response::new(Either::Right(Full::from("bad gateway\n")));
                    *response.status_mut() = StatusCode::BAD_GATEWAY;
                    response
                }
            };
            Ok::<_, Infallible>(response)
        }
    });
    // A reverse proxy is the cache CDN-Cache-Control targets (RFC 9213),
    // and it may serve stale for an hour when the origin fails or cannot
    // be reached and the response forbids nothing of the kind.
    let cache = CacheLayer::builder()
        .name("cache-proxy")
        .targeted_fields([HeaderName::from_static("cdn-cache-control")])
        .stale_if_error(Duration::from_secs(3600))
        // Requests that accept the same codings or languages share a variant.
        .vary_normalizer(ACCEPT_ENCODING, VaryNormalizer::accept_encoding())
        .vary_normalizer(ACCEPT_LANGUAGE, VaryNormalizer::accept_language())
        .build()?;
    let service = ServiceBuilder::new().armor_cache(cache).service(forward);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "caching {} on http://{}",
        args.origin,
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = connection
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection: {error}");
            }
        });
    }
}
