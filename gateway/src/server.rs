//! The Kafka listener: the accept loop and one task per connection.
//!
//! A connection reads frames, decodes each request's header and body with kafka-protocol, and
//! runs the handler in its own task, so pipelined requests are served concurrently; a writer
//! sends the responses strictly in request order. At most [`MAX_IN_FLIGHT`] requests, and at
//! most `kafka.max_request_size` bytes of them, are in flight per connection, and at most
//! `kafka.queued_max_request_bytes` over all connections; past that a connection stops reading
//! (TCP pushes back on the client). Produce with acks=0 gets no
//! response.
//!
//! As Kafka does, a frame of a bad size, an unknown API key, an unsupported version or an
//! undecodable request closes the connection with the reason logged; ApiVersions of an unknown
//! version is answered instead (v0, UNSUPPORTED_VERSION, the supported ranges), so a newer
//! client can retry with an older version.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::context::Ctx;
use crate::frame::{self, FrameError};
use crate::handlers::api_versions;
use crate::response_frame::{self, ResponseFrame};
use crate::router;

/// Requests of one connection being handled or waiting for their turn to be answered.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// A connection that sends nothing for this long is closed (Kafka's connections.max.idle.ms).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Accepts connections until `shutdown` turns true, then closes them all.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, ctx.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(target: "chronik_gateway", "cannot accept a Kafka connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}

/// Who sent the request being handled (its header's client id and the peer address), for
/// handlers that record it, such as JoinGroup for DescribeGroups.
#[derive(Clone, Debug, Default)]
pub(crate) struct Client {
    pub id: String,
    pub host: String,
}

tokio::task_local! {
    pub(crate) static CLIENT: Client;
}

/// The client of the request this task handles (empty outside a request).
pub(crate) fn client() -> Client {
    CLIENT.try_with(Client::clone).unwrap_or_default()
}

/// A response on its way to the writer, holding its in-flight permit until written.
struct Pending {
    response: Response,
    _permit: OwnedSemaphorePermit,
}

enum Response {
    Ready(ResponseFrame),
    Handling(JoinHandle<Result<ResponseFrame, String>>),
}

async fn connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let write = write_loop(writer, peer, rx);
    tokio::pin!(write);
    tokio::select! {
        end = read_loop(reader, peer, ctx, tx) => {
            // The peer stopped sending: answer what it already asked. After bad input, close
            // at once, as Kafka does.
            if end == ReadEnd::Drain {
                write.await;
            }
        }
        _ = &mut write => {}
    }
}

/// How the reader stopped.
#[derive(PartialEq, Eq)]
enum ReadEnd {
    /// Write the responses still due, then close.
    Drain,
    /// Close now.
    Close,
}

async fn read_loop(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    tx: mpsc::UnboundedSender<Pending>,
) -> ReadEnd {
    let max = usize::try_from(ctx.config.kafka.max_request_size).unwrap_or(usize::MAX).min(i32::MAX as usize);
    let requests = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let bytes = Arc::new(Semaphore::new(max));
    loop {
        let Ok(permit) = requests.clone().acquire_owned().await else { return ReadEnd::Close };
        let size = match tokio::time::timeout(IDLE_TIMEOUT, frame::read_size(&mut reader, max)).await {
            Ok(Ok(size)) => size,
            Ok(Err(e)) => return frame_error(peer, e),
            Err(_) => {
                tracing::debug!(target: "chronik_gateway", "closing Kafka connection from {peer}: idle for {IDLE_TIMEOUT:?}");
                return ReadEnd::Close;
            }
        };
        let Ok(body_permit) = bytes.clone().acquire_many_owned(size as u32).await else { return ReadEnd::Close };
        // A request larger than the whole budget takes all of it, rather than waiting forever.
        let want = size.min(ctx.queued_capacity) as u32;
        let Ok(queued_permit) = ctx.queued_bytes.clone().acquire_many_owned(want).await else {
            return ReadEnd::Close;
        };
        let body = match frame::read_body(&mut reader, size).await {
            Ok(body) => body,
            Err(e) => return frame_error(peer, e),
        };
        let response = match parse(body) {
            Parsed::Request { key, version, correlation_id, client_id, request } => {
                let no_response = matches!(&*request, RequestKind::Produce(p) if p.acks == 0);
                let ctx = ctx.clone();
                // Kafka's form of the client host, as DescribeGroups reports it.
                let client = Client { id: client_id, host: format!("/{}", peer.ip()) };
                // Handling and encoding share the request's record sets (response_frame.rs).
                let task = response_frame::scope(async move {
                    let _body = (body_permit, queued_permit);
                    let response = CLIENT
                        .scope(client, router::dispatch(&ctx, key, version, *request))
                        .await
                        .ok_or_else(|| format!("no handler for {key:?}"))?;
                    response_frame::encode(key, version, correlation_id, response)
                });
                if no_response {
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _ = task.await;
                    });
                    continue;
                }
                Response::Handling(tokio::spawn(task))
            }
            Parsed::Answer(frame) => Response::Ready(frame),
            Parsed::Reject(reason) => {
                tracing::warn!(target: "chronik_gateway", "closing Kafka connection from {peer}: {reason}");
                return ReadEnd::Close;
            }
        };
        if tx.send(Pending { response, _permit: permit }).is_err() {
            return ReadEnd::Close;
        }
    }
}

fn frame_error(peer: SocketAddr, e: FrameError) -> ReadEnd {
    match e {
        FrameError::Closed => {
            tracing::trace!(target: "chronik_gateway", "Kafka client {peer} disconnected");
            ReadEnd::Drain
        }
        FrameError::Truncated { .. } | FrameError::Io(_) => {
            tracing::debug!(target: "chronik_gateway", "closing Kafka connection from {peer}: {e}");
            ReadEnd::Close
        }
        FrameError::BadSize { .. } => {
            tracing::warn!(target: "chronik_gateway", "closing Kafka connection from {peer}: {e}");
            ReadEnd::Close
        }
    }
}

async fn write_loop(mut writer: OwnedWriteHalf, peer: SocketAddr, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(pending) = rx.recv().await {
        let mut frame = match pending.response {
            Response::Ready(frame) => frame,
            Response::Handling(task) => match task.await {
                Ok(Ok(frame)) => frame,
                Ok(Err(reason)) => {
                    tracing::error!(target: "chronik_gateway", "closing Kafka connection from {peer}: {reason}");
                    break;
                }
                Err(e) => {
                    tracing::error!(target: "chronik_gateway", "closing Kafka connection from {peer}: a request handler failed: {e}");
                    break;
                }
            },
        };
        if let Err(e) = writer.write_all_buf(&mut frame).await {
            tracing::debug!(target: "chronik_gateway", "cannot write to Kafka client {peer}: {e}");
            break;
        }
    }
    // Whatever is still queued has nobody to go to.
    rx.close();
    while let Ok(pending) = rx.try_recv() {
        if let Response::Handling(task) = pending.response {
            task.abort();
        }
    }
    let _ = writer.shutdown().await;
}

pub(crate) enum Parsed {
    Request {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        client_id: String,
        request: Box<RequestKind>,
    },
    /// Answered without a handler (ApiVersions of an unknown version).
    Answer(ResponseFrame),
    /// Close the connection, for this reason.
    Reject(String),
}

pub(crate) fn parse(body: Bytes) -> Parsed {
    if body.len() < 8 {
        return Parsed::Reject(format!("a request of {} bytes is too short for a request header", body.len()));
    }
    let api_key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let key = match ApiKey::try_from(api_key) {
        Ok(k) => k,
        Err(()) => return Parsed::Reject(format!("unknown API key {api_key}")),
    };
    let Some(range) = router::versions(key) else {
        return Parsed::Reject(format!("{key:?} (API key {api_key}) is not supported by Chronik"));
    };
    if version < range.min || version > range.max {
        if key == ApiKey::ApiVersions {
            let response = ResponseKind::ApiVersions(api_versions::unsupported_version());
            return match response_frame::encode(key, 0, correlation_id, response) {
                Ok(frame) => Parsed::Answer(frame),
                Err(reason) => Parsed::Reject(reason),
            };
        }
        return Parsed::Reject(format!(
            "{key:?} v{version} is not supported (Chronik handles v{}-v{})",
            range.min, range.max
        ));
    }
    let mut rest = body;
    let header = match RequestHeader::decode(&mut rest, key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            return Parsed::Reject(format!(
                "undecodable {key:?} v{version} request header: {}",
                format!("{e:#}").trim_end()
            ));
        }
    };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    match router::decode(key, version, rest) {
        Ok(request) => Parsed::Request { key, version, correlation_id, client_id, request: Box::new(request) },
        Err(e) => Parsed::Reject(format!("undecodable {key:?} v{version} request: {e}")),
    }
}
