//! openraft's network over `chronik.raft.RaftService`.
//!
//! Every group on a node reaches a peer through the same [`PeerPool`] channel, so all groups
//! between two nodes share one HTTP/2 connection. Entries travel in the binary entry encoding
//! of `codec.rs`; the rest of each message is JSON in `RaftMessage.header`.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chronik_proto::raft::raft_service_client::RaftServiceClient;
use chronik_proto::raft::{RaftMessage, SnapshotChunk};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use openraft::alias::{LogIdOf, SnapshotOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use serde::{Serialize, de::DeserializeOwned};
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::codec::EntryCodec;
use crate::faults::Faults;
use crate::service::SnapshotFiles;

/// The shortest deadline of an AppendEntries that carries entries.
const MIN_APPEND_TIMEOUT: Duration = Duration::from_secs(2);

/// One lazily connected channel per peer address, shared by every group of this node.
#[derive(Clone)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    max_message_size: usize,
    /// This node's id and the test harness's fault layer, when there is one.
    faults: Option<(u64, Faults)>,
    /// Most AppendEntries in flight to one follower of a group, when replication is pipelined
    /// (`cluster.raft.enable_pipeline`, `max_in_flight`); `None` sends one at a time.
    pipeline: Option<usize>,
}

impl PeerPool {
    pub fn new(max_message_size: usize) -> Self {
        Self { channels: Arc::default(), max_message_size, faults: None, pipeline: None }
    }

    /// The pool `[cluster.network]` and `[cluster.raft]` describe.
    pub fn for_config(cfg: &chronik_shared::config::ChronikConfig) -> Self {
        let r = &cfg.cluster.raft;
        Self::new(cfg.cluster.network.max_message_size as usize)
            .with_pipeline(r.enable_pipeline.then_some(usize::try_from(r.max_in_flight).unwrap_or(usize::MAX)))
    }

    /// Pipelines replication with at most `max_in_flight` AppendEntries awaiting an answer.
    pub fn with_pipeline(mut self, max_in_flight: Option<usize>) -> Self {
        self.pipeline = max_in_flight.map(|n| n.max(1));
        self
    }

    /// Routes every message from node `me` through `faults` (test clusters only).
    pub fn with_faults(mut self, me: u64, faults: Faults) -> Self {
        self.faults = Some((me, faults));
        self
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn blocked(&self, to: u64) -> bool {
        self.faults.as_ref().is_some_and(|(me, f)| f.is_blocked(*me, to))
    }

    /// Either direction to `to` is cut: a round trip (a ping) cannot complete.
    pub fn cut_either_way(&self, to: u64) -> bool {
        self.faults.as_ref().is_some_and(|(me, f)| f.is_blocked(*me, to) || f.is_blocked(to, *me))
    }

    fn drop_chunk(&self) -> bool {
        self.faults.as_ref().is_some_and(|(_, f)| f.take_chunk_drop())
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, tonic::transport::Error> {
        Ok(RaftServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }
}

pub struct GrpcNetworkFactory<C> {
    group: String,
    pool: PeerPool,
    chunk_size: usize,
    snapshot_timeout: Duration,
    _c: PhantomData<fn() -> C>,
}

impl<C> GrpcNetworkFactory<C> {
    pub fn new(group: impl Into<String>, pool: PeerPool, chunk_size: usize, snapshot_timeout: Duration) -> Self {
        Self { group: group.into(), pool, chunk_size, snapshot_timeout, _c: PhantomData }
    }
}

pub struct GrpcNetwork<C> {
    pub(crate) group: String,
    pub(crate) target: u64,
    addr: String,
    pub(crate) pool: PeerPool,
    chunk_size: usize,
    snapshot_timeout: Duration,
    _c: PhantomData<fn() -> C>,
}

impl<C> RaftNetworkFactory<C> for GrpcNetworkFactory<C>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
    VoteOf<C>: Serialize + DeserializeOwned,
{
    type Network = GrpcNetwork<C>;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcNetwork {
            group: self.group.clone(),
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
            chunk_size: self.chunk_size,
            snapshot_timeout: self.snapshot_timeout,
            _c: PhantomData,
        }
    }
}

pub(crate) fn unreachable<C: openraft::RaftTypeConfig>(e: &(impl std::error::Error + 'static)) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::new(e))
}

pub(crate) fn status_err<C: openraft::RaftTypeConfig>(s: tonic::Status) -> RPCError<C> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&s))
        }
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

fn to_json<C: openraft::RaftTypeConfig, T: Serialize>(v: &T) -> Result<Bytes, RPCError<C>> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

pub(crate) fn from_json<C: openraft::RaftTypeConfig, T: DeserializeOwned>(b: &[u8]) -> Result<T, RPCError<C>> {
    serde_json::from_slice(b).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

impl<C> GrpcNetwork<C>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
{
    fn request(&self, header: Bytes, entries: Vec<Bytes>, option: &RPCOption) -> tonic::Request<RaftMessage> {
        // openraft gives every AppendEntries the heartbeat interval as its deadline. One that
        // carries entries can take longer on a loaded follower; timing it out only makes
        // openraft send it again, more load on the same follower, and replication stalls.
        let ttl = if entries.is_empty() { option.hard_ttl() } else { option.hard_ttl().max(MIN_APPEND_TIMEOUT) };
        let mut req = tonic::Request::new(RaftMessage { group: self.group.clone(), header, entries });
        req.set_timeout(ttl);
        req
    }

    pub(crate) fn client(&self) -> Result<RaftServiceClient<Channel>, RPCError<C>> {
        if self.pool.blocked(self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "link to node {} cut by the fault layer",
                self.target
            )))));
        }
        self.pool.client(&self.addr).map_err(|e| unreachable(&e))
    }
}

impl PeerPool {
    /// Bytes of entries one message may carry, below the gRPC limit.
    pub(crate) fn append_budget(&self) -> usize {
        self.max_message_size.saturating_sub(64 * 1024).max(64 * 1024)
    }
}

impl<C> GrpcNetwork<C>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
{
    pub(crate) fn append_failed(&self, s: tonic::Status) -> RPCError<C> {
        if s.code() == tonic::Code::NotFound {
            // The follower has not created this replica yet (a new partition starts on every
            // replica at about the same time): openraft retries, nothing failed.
            tracing::debug!(target: "chronik_raft", group = %self.group, "AppendEntries to node {} waits for its replica: {}", self.target, s.message());
        } else {
            warn!(target: "chronik_raft", group = %self.group, "AppendEntries failed: node={}, error={}", self.target, s.message());
        }
        status_err(s)
    }

    pub(crate) fn append_done(&self, entries: usize) {
        if entries > 0 {
            tracing::debug!(target: "chronik_raft", group = %self.group, "AppendEntries successful: node={}, entries={}", self.target, entries);
        } else {
            tracing::trace!(target: "chronik_raft", group = %self.group, "Heartbeat sent to follower {}", self.target);
        }
    }
}

/// One message of an AppendEntries: its JSON header, its encoded entries, and the log id it
/// continues from.
pub(crate) struct AppendPart<C: openraft::RaftTypeConfig> {
    pub header: Bytes,
    pub entries: Vec<Bytes>,
    pub prev: Option<LogIdOf<C>>,
}

/// openraft bounds an AppendEntries by entry count, not bytes: a run of large record batches
/// would exceed the gRPC message limit. It goes as consecutive appends of at most `budget`
/// bytes of entries (one entry at least), each continuing from the last entry of the one
/// before.
pub(crate) fn split_append<C>(
    mut rpc: AppendEntriesRequest<C>,
    budget: usize,
) -> Result<Vec<AppendPart<C>>, RPCError<C>>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
{
    let entries = std::mem::take(&mut rpc.entries);
    let mut groups: Vec<Vec<(LogIdOf<C>, Bytes)>> = vec![Vec::new()];
    let mut size = 0usize;
    for e in &entries {
        let mut buf = Vec::new();
        let tail = C::encode_entry(e, &mut buf).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        buf.extend_from_slice(&tail);
        if size + buf.len() > budget && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            size = 0;
        }
        size += buf.len();
        if let Some(g) = groups.last_mut() {
            g.push((e.log_id(), Bytes::from(buf)));
        }
    }
    let mut parts = Vec::with_capacity(groups.len());
    let mut prev = rpc.prev_log_id.clone();
    for group in groups {
        let last = group.last().map(|(id, _)| id.clone()).or_else(|| prev.clone());
        rpc.prev_log_id = prev.clone();
        parts.push(AppendPart {
            header: to_json(&rpc)?,
            entries: group.into_iter().map(|(_, b)| b).collect(),
            prev: prev.clone(),
        });
        prev = last;
    }
    Ok(parts)
}

impl<C> RaftNetworkV2<C> for GrpcNetwork<C>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
    VoteOf<C>: Serialize + DeserializeOwned,
{
    type SnapshotData = SnapshotFiles;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let parts = split_append(rpc, self.pool.append_budget())?;
        let n_parts = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let n = part.entries.len();
            let req = self.request(part.header, part.entries, &option);
            let resp = self.client()?.append_entries(req).await.map_err(|s| self.append_failed(s))?;
            let resp: AppendEntriesResponse<C> = from_json(&resp.into_inner().header)?;
            self.append_done(n);
            match resp {
                AppendEntriesResponse::Success if i + 1 < n_parts => {}
                AppendEntriesResponse::Success => return Ok(AppendEntriesResponse::Success),
                // A later part conflicting or stopping short: report what was accepted so far.
                AppendEntriesResponse::Conflict if i > 0 => {
                    return Ok(AppendEntriesResponse::PartialSuccess(part.prev));
                }
                other => return Ok(other),
            }
        }
        Ok(AppendEntriesResponse::Success)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        match self.pool.pipeline {
            Some(max_in_flight) => Box::pin(crate::pipeline::stream_append(self, input, option, max_in_flight)),
            None => openraft::network::stream_append_sequential(self, input, option),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        info!(target: "chronik_raft", group = %self.group, "RequestVote sent to node {}", self.target);
        let req = self.request(to_json(&rpc)?, Vec::new(), &option);
        let resp = self.client()?.vote(req).await.map_err(status_err)?;
        let resp: VoteResponse<C> = from_json(&resp.into_inner().header)?;
        if resp.vote_granted {
            info!(target: "chronik_raft", group = %self.group, "Vote granted by node {}", self.target);
        }
        Ok(resp)
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let req = self.request(to_json(&rpc)?, Vec::new(), &option);
        let resp = self.client()?.pre_vote(req).await.map_err(status_err)?;
        from_json(&resp.into_inner().header)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, SnapshotFiles>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let size = snapshot.snapshot.total_bytes();
        info!(target: "chronik_raft", group = %self.group, "Sending snapshot to follower {} (size: {} bytes)", self.target, size);
        let header = serde_json::to_vec(&(&vote, &snapshot.meta, &snapshot.snapshot.files))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let chunks = chunk_stream(snapshot.snapshot, self.group.clone(), Bytes::from(header), self.chunk_size);
        let pool = self.pool.clone();
        let chunks = chunks.filter(move |c| std::future::ready(c.done || !pool.drop_chunk()));
        if self.pool.blocked(self.target) {
            return Err(StreamingError::Unreachable(Unreachable::new(&std::io::Error::other(
                "link cut by the fault layer",
            ))));
        }
        let mut client = self.pool.client(&self.addr).map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let mut req = tonic::Request::new(chunks);
        req.set_timeout(self.snapshot_timeout);
        let send = client.install_snapshot(req);
        let resp = tokio::select! {
            r = send => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let resp = resp.map_err(|s| {
            warn!(target: "chronik_raft", group = %self.group, "InstallSnapshot failed: {}: node={}", s.message(), self.target);
            StreamingError::Network(NetworkError::new(&s))
        })?;
        let resp: SnapshotResponse<C> = serde_json::from_slice(&resp.into_inner().header)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        info!(target: "chronik_raft", group = %self.group, "Snapshot transfer complete: node={}, size={} bytes", self.target, size);
        Ok(resp)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let req = self.request(to_json(&req)?, Vec::new(), &option);
        let resp = self.client()?.transfer_leader(req).await.map_err(status_err)?;
        from_json(&resp.into_inner().header)
    }
}

/// Streams snapshot files as gRPC chunks, reading one chunk at a time: a snapshot of retained
/// segments can be far larger than memory should hold. Each file contributes exactly its listed
/// size (a hard-linked segment may have grown since). A file that cannot be read ends the
/// stream without `done`, which the receiver rejects, so openraft retries the transfer.
pub(crate) fn chunk_stream(
    files: SnapshotFiles,
    group: String,
    header: Bytes,
    chunk_size: usize,
) -> impl futures::Stream<Item = SnapshotChunk> + Send + 'static {
    let cursor = ChunkCursor {
        files,
        group,
        header: Some(header),
        chunk_size,
        file: 0,
        open: None,
        at: 0,
        offset: 0,
        finished: false,
    };
    futures::stream::unfold(cursor, |mut c| async move {
        match c.next_chunk() {
            Ok(Some(chunk)) => Some((chunk, c)),
            Ok(None) => None,
            Err(e) => {
                warn!(target: "chronik_raft", group = %c.group, "Snapshot file unreadable while sending: {e}");
                None
            }
        }
    })
}

struct ChunkCursor {
    files: SnapshotFiles,
    group: String,
    /// Sent with the first chunk only.
    header: Option<Bytes>,
    chunk_size: usize,
    file: usize,
    open: Option<std::fs::File>,
    /// Position within the current file.
    at: u64,
    /// Position within the whole stream.
    offset: u64,
    finished: bool,
}

impl ChunkCursor {
    fn next_chunk(&mut self) -> std::io::Result<Option<SnapshotChunk>> {
        use std::os::unix::fs::FileExt;
        while let Some((name, len)) = self.files.files.get(self.file) {
            if self.at >= *len {
                (self.file, self.at, self.open) = (self.file + 1, 0, None);
                continue;
            }
            let f = match self.open.take() {
                Some(f) => f,
                None => std::fs::File::open(self.files.dir.join(name))?,
            };
            let n = (*len - self.at).min(self.chunk_size.max(1) as u64) as usize;
            let mut piece = vec![0u8; n];
            f.read_exact_at(&mut piece, self.at)?;
            self.open = Some(f);
            let chunk = SnapshotChunk {
                group: self.group.clone(),
                header: self.header.take().unwrap_or_default(),
                offset: self.offset,
                crc32c: crc32c::crc32c(&piece),
                data: Bytes::from(piece),
                done: false,
            };
            self.at += n as u64;
            self.offset += n as u64;
            return Ok(Some(chunk));
        }
        if self.finished {
            return Ok(None);
        }
        self.finished = true;
        Ok(Some(SnapshotChunk {
            group: self.group.clone(),
            header: self.header.take().unwrap_or_default(),
            offset: self.offset,
            data: Bytes::new(),
            done: true,
            crc32c: 0,
        }))
    }
}
