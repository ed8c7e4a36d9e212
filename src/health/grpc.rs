//! `grpc.health.v1.Health` (`Check`, `Watch`, `List`) served from the same
//! checks as the HTTP routes, written by hand: three tiny messages, so no
//! code generation and no `protoc`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::registry::{Registry, SHUTDOWN_CHECK};
use super::status::{Probe, Status};
use crate::BoxError;
use crate::grpc::{GRPC_MESSAGE, GRPC_STATUS, GrpcCode};

/// The service names that stand for a probe, for Kubernetes' gRPC probes.
pub(crate) const PROBE_SERVICES: [&str; 3] = ["liveness", "readiness", "startup"];

/// The fully-qualified name of the gRPC service.
pub const SERVICE_NAME: &str = "grpc.health.v1.Health";

/// How often a `Watch` stream looks again when nothing has told it of a
/// change (on-demand checks only run when asked).
const WATCH_RECHECK: Duration = Duration::from_secs(1);

/// The largest request message read.
const MAX_REQUEST: usize = 16 * 1024;

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServingStatus {
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

impl ServingStatus {
    fn of(status: Status) -> ServingStatus {
        match status {
            Status::Pass | Status::Warn => ServingStatus::Serving,
            Status::Fail => ServingStatus::NotServing,
        }
    }
}

/// What a requested service name stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// `""`: the server as a whole, i.e. readiness.
    Overall,
    Probe(Probe),
    /// A service named with [`grpc_service`](super::HealthBuilder::grpc_service).
    Service(usize),
}

fn target(registry: &Registry, name: &str) -> Option<Target> {
    match name {
        "" => Some(Target::Overall),
        "liveness" => Some(Target::Probe(Probe::Liveness)),
        "readiness" => Some(Target::Probe(Probe::Readiness)),
        "startup" => Some(Target::Probe(Probe::Startup)),
        _ => registry
            .grpc_services
            .iter()
            .position(|service| &*service.name == name)
            .map(Target::Service),
    }
}

/// The serving status of `target` now (on-demand checks run if expired).
async fn serving(registry: &Registry, target: Target) -> ServingStatus {
    let status = match target {
        Target::Overall => registry.report(Probe::Readiness, |_| true).await.status,
        Target::Probe(probe) => registry.report(probe, |_| true).await.status,
        Target::Service(index) => {
            // Its own checks, and `shutdown`: draining fails it too.
            let service = &registry.grpc_services[index];
            let include = |name: &str| {
                name == SHUTDOWN_CHECK || service.checks.iter().any(|check| &**check == name)
            };
            registry.report(Probe::Readiness, include).await.status
        }
    };
    ServingStatus::of(status)
}

/// `grpc.health.v1.Health` over the checks of a [`HealthLayer`](super::HealthLayer),
/// from [`HealthHandle::grpc`](super::HealthHandle::grpc): a tower service
/// for `tonic::transport::Server::add_service` (with the `tonic` feature),
/// an axum route, or any HTTP/2 server.
///
/// * `Check` answers `SERVING` or `NOT_SERVING`, or `NOT_FOUND` for an
///   unknown service.
/// * `Watch` sends the status at once and again on every change; an
///   unknown service gets `SERVICE_UNKNOWN` and the stream stays open.
///   When draining begins, every stream gets its last status and ends, so
///   a graceful shutdown never waits on a watcher.
/// * `List` maps every known service to its status.
///
/// Service names: `""` is readiness (the server as a whole), `liveness`,
/// `readiness` and `startup` are the probes, and each
/// [`grpc_service`](super::HealthBuilder::grpc_service) is its own.
#[derive(Clone)]
pub struct GrpcHealthService {
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for GrpcHealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealthService")
            .field("name", &self.registry.name)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "tonic")]
impl tonic::server::NamedService for GrpcHealthService {
    const NAME: &'static str = SERVICE_NAME;
}

/// The future of [`GrpcHealthService`].
pub type GrpcHealthFuture =
    Pin<Box<dyn Future<Output = Result<Response<GrpcHealthBody>, Infallible>> + Send>>;

impl<B> tower_service::Service<Request<B>> for GrpcHealthService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<GrpcHealthBody>;
    type Error = Infallible;
    type Future = GrpcHealthFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let registry = self.registry.clone();
        let method = request
            .uri()
            .path()
            .strip_prefix("/grpc.health.v1.Health/")
            .map(str::to_owned);
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(refusal(
                    GrpcCode::Unimplemented,
                    "not grpc.health.v1.Health",
                ));
            };
            let message = match read_message(request.into_body()).await {
                Ok(message) => message,
                Err(refused) => return Ok(refused),
            };
            Ok(match method.as_str() {
                "Check" => match decode_service(&message) {
                    None => refusal(GrpcCode::Internal, "a malformed HealthCheckRequest"),
                    Some(name) => match target(&registry, &name) {
                        None => refusal(GrpcCode::NotFound, "unknown service"),
                        Some(target) => {
                            let status = serving(&registry, target).await;
                            unary(encode_frame(&encode_status(status)))
                        }
                    },
                },
                "Watch" => match decode_service(&message) {
                    None => refusal(GrpcCode::Internal, "a malformed HealthCheckRequest"),
                    Some(name) => watch(registry.clone(), target(&registry, &name)),
                },
                "List" => {
                    let mut statuses = Vec::new();
                    let names = [""]
                        .into_iter()
                        .chain(PROBE_SERVICES)
                        .chain(registry.grpc_services.iter().map(|service| &*service.name));
                    for name in names {
                        if let Some(target) = target(&registry, name) {
                            statuses.push((name.to_owned(), serving(&registry, target).await));
                        }
                    }
                    unary(encode_frame(&encode_list(&statuses)))
                }
                _ => refusal(GrpcCode::Unimplemented, "no such method"),
            })
        })
    }
}

/// Reads the one request message, refusing what is not one.
async fn read_message<B>(body: B) -> Result<Bytes, Response<GrpcHealthBody>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let bytes = match http_body_util::Limited::new(body, MAX_REQUEST + 5)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(refusal(
                GrpcCode::ResourceExhausted,
                "the request is too large or broken",
            ));
        }
    };
    match decode_frame(&bytes) {
        Some(Ok(message)) => Ok(message),
        Some(Err(())) => Err(refusal(
            GrpcCode::Unimplemented,
            "compressed requests are not supported",
        )),
        None => Err(refusal(GrpcCode::Internal, "not one gRPC message")),
    }
}

/// The message of a gRPC frame holding exactly one: `Err` if compressed.
fn decode_frame(bytes: &Bytes) -> Option<Result<Bytes, ()>> {
    let (&compressed, rest) = bytes.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if rest.len() != 4 + length {
        return None;
    }
    if compressed != 0 {
        return Some(Err(()));
    }
    Some(Ok(bytes.slice(5..)))
}

/// `HealthCheckRequest.service` (field 1), skipping unknown fields.
fn decode_service(message: &[u8]) -> Option<String> {
    let mut service = String::new();
    let mut rest = message;
    while !rest.is_empty() {
        let key = read_varint(&mut rest)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let length = usize::try_from(read_varint(&mut rest)?).ok()?;
                let value = rest.get(..length)?;
                service = String::from_utf8(value.to_vec()).ok()?;
                rest = &rest[length..];
            }
            (_, 0) => {
                read_varint(&mut rest)?;
            }
            (_, 1) => rest = rest.get(8..)?,
            (_, 2) => {
                let length = usize::try_from(read_varint(&mut rest)?).ok()?;
                rest = rest.get(length..)?;
            }
            (_, 5) => rest = rest.get(4..)?,
            _ => return None,
        }
    }
    Some(service)
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// `HealthCheckResponse { status }`.
fn encode_status(status: ServingStatus) -> Bytes {
    Bytes::copy_from_slice(&[0x08, status as u8])
}

/// `HealthListResponse { map<string, HealthCheckResponse> statuses = 1 }`.
fn encode_list(statuses: &[(String, ServingStatus)]) -> Bytes {
    let mut out = BytesMut::new();
    for (name, status) in statuses {
        let mut entry = BytesMut::new();
        entry.put_u8(0x0a);
        put_varint(&mut entry, name.len() as u64);
        entry.put_slice(name.as_bytes());
        entry.put_u8(0x12);
        let value = encode_status(*status);
        put_varint(&mut entry, value.len() as u64);
        entry.put_slice(&value);
        out.put_u8(0x0a);
        put_varint(&mut out, entry.len() as u64);
        out.put_slice(&entry);
    }
    out.freeze()
}

/// A message in a gRPC frame: uncompressed flag, length, message.
fn encode_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

fn grpc_response(body: GrpcHealthBody) -> Response<GrpcHealthBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, GrpcCode::Ok.header_value());
    trailers
}

/// One message, then `grpc-status: 0`.
fn unary(message: Bytes) -> Response<GrpcHealthBody> {
    grpc_response(GrpcHealthBody {
        kind: BodyKind::Frames(VecDeque::from([
            Frame::data(message),
            Frame::trailers(ok_trailers()),
        ])),
    })
}

/// A trailers-only answer with `code`.
fn refusal(code: GrpcCode, message: &'static str) -> Response<GrpcHealthBody> {
    let mut response = grpc_response(GrpcHealthBody {
        kind: BodyKind::Frames(VecDeque::new()),
    });
    let headers = response.headers_mut();
    headers.insert(GRPC_STATUS, code.header_value());
    headers.insert(GRPC_MESSAGE, HeaderValue::from_static(message));
    response
}

/// A `Watch` stream on `target` (`None`: an unknown service).
fn watch(registry: Arc<Registry>, target: Option<Target>) -> Response<GrpcHealthBody> {
    let changes = registry.subscribe();
    grpc_response(GrpcHealthBody {
        kind: BodyKind::Watch {
            state: Some(Watcher {
                registry,
                target,
                changes,
                last: None,
                ended: false,
            }),
            next: None,
        },
    })
}

/// Where a `Watch` stream is.
struct Watcher {
    registry: Arc<Registry>,
    target: Option<Target>,
    changes: tokio::sync::watch::Receiver<()>,
    last: Option<ServingStatus>,
    ended: bool,
}

type NextFrame = Pin<Box<dyn Future<Output = Option<(Frame<Bytes>, Watcher)>> + Send>>;

impl Watcher {
    /// The stream's next frame: a status that differs from the last one
    /// sent, or, once draining, the trailers that end it.
    async fn next(mut self) -> Option<(Frame<Bytes>, Watcher)> {
        if self.ended {
            return None;
        }
        loop {
            self.changes.borrow_and_update();
            let status = match self.target {
                Some(target) => serving(&self.registry, target).await,
                None => ServingStatus::ServiceUnknown,
            };
            if self.last != Some(status) {
                self.last = Some(status);
                return Some((Frame::data(encode_frame(&encode_status(status))), self));
            }
            if self.registry.is_draining() {
                self.ended = true;
                return Some((Frame::trailers(ok_trailers()), self));
            }
            tokio::select! {
                _ = self.changes.changed() => {}
                () = tokio::time::sleep(WATCH_RECHECK) => {}
            }
        }
    }
}

/// The body of a [`GrpcHealthService`] answer.
pub struct GrpcHealthBody {
    kind: BodyKind,
}

enum BodyKind {
    Frames(VecDeque<Frame<Bytes>>),
    Watch {
        state: Option<Watcher>,
        next: Option<NextFrame>,
    },
}

impl std::fmt::Debug for GrpcHealthBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcHealthBody").finish_non_exhaustive()
    }
}

impl Body for GrpcHealthBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.kind {
            BodyKind::Frames(frames) => Poll::Ready(frames.pop_front().map(Ok)),
            BodyKind::Watch { state, next } => {
                if next.is_none() {
                    let Some(watcher) = state.take() else {
                        return Poll::Ready(None);
                    };
                    *next = Some(Box::pin(watcher.next()));
                }
                let Some(future) = next.as_mut() else {
                    return Poll::Ready(None);
                };
                match future.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(produced) => {
                        *next = None;
                        Poll::Ready(produced.map(|(frame, watcher)| {
                            *state = Some(watcher);
                            Ok(frame)
                        }))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Frames(frames) => frames.is_empty(),
            BodyKind::Watch { state, next } => state.is_none() && next.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Frames(frames) => SizeHint::with_exact(
                frames
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|data| data.len() as u64)
                    .sum(),
            ),
            BodyKind::Watch { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_responses_written_as_protobuf_has_them() {
        // service = "shop.Orders", then an unknown varint field 2 = 7.
        let message = [&[0x0a, 11][..], b"shop.Orders", &[0x10, 7]].concat();
        assert_eq!(decode_service(&message).as_deref(), Some("shop.Orders"));
        assert_eq!(decode_service(&[]).as_deref(), Some(""));
        // Unknown fields of every wire type are skipped: a fixed64 (field 3),
        // a length-delimited one (field 4) and a fixed32 (field 5).
        let padded = [
            &[0x19, 1, 2, 3, 4, 5, 6, 7, 8][..],
            &[0x22, 2, b'z', b'z'],
            &[0x2d, 1, 2, 3, 4],
            &[0x0a, 1, b's'],
        ]
        .concat();
        assert_eq!(decode_service(&padded).as_deref(), Some("s"));
        for broken in [
            &[0x0a, 5, b'a'][..],
            &[0x0a],
            &[0x80],
            &[0x0b],
            &[0x0a, 1, 0xff],
        ] {
            assert_eq!(decode_service(broken), None, "{broken:?}");
        }
        assert_eq!(&encode_status(ServingStatus::NotServing)[..], [0x08, 2]);
        assert_eq!(
            &encode_frame(&encode_status(ServingStatus::Serving))[..],
            [0, 0, 0, 0, 2, 0x08, 1]
        );
        assert_eq!(
            &encode_list(&[("a".into(), ServingStatus::Serving)])[..],
            [0x0a, 7, 0x0a, 1, b'a', 0x12, 2, 0x08, 1]
        );
        let framed = encode_frame(b"xyz");
        assert_eq!(decode_frame(&framed), Some(Ok(Bytes::from_static(b"xyz"))));
        assert_eq!(
            decode_frame(&Bytes::from_static(&[1, 0, 0, 0, 0])),
            Some(Err(()))
        );
        for broken in [&[][..], &[0, 0, 0], &[0, 0, 0, 0, 2, 1]] {
            assert_eq!(
                decode_frame(&Bytes::copy_from_slice(broken)),
                None,
                "{broken:?}"
            );
        }
        let mut long = BytesMut::new();
        put_varint(&mut long, 300);
        assert_eq!(&long[..], [0xac, 0x02]);
        assert_eq!(read_varint(&mut &long[..]), Some(300));
    }
}
