//! The server side of `chronik.raft.RaftService`: routes each message to the group it names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chronik_proto::raft::raft_service_server::RaftService;
use chronik_proto::raft::{
    GroupState, HeartbeatRequest, HeartbeatResponse, PingRequest, PingResponse, QuiesceRequest, QuiesceResponse,
    RaftMessage, SnapshotChunk,
};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, future};
use openraft::alias::{SnapshotMetaOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::storage::RaftStateMachine;
use openraft::vote::{RaftLeaderId, RaftVote};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::{Request, Response, Status, Streaming};

use chronik_shared::admin::types::GroupSnapshot;
use chronik_shared::error::ChronikError;

use crate::codec::EntryCodec;
use crate::quiesce::{Liveness, Quiet};

/// A snapshot as files in one directory; streamed to followers chunk by chunk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotFiles {
    pub dir: PathBuf,
    /// File names within `dir` with their sizes, in streaming order.
    pub files: Vec<(String, u64)>,
}

impl SnapshotFiles {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }

    /// Writes a one-file snapshot durably (temp file, fsync, rename) and describes it.
    pub fn write_single(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<SnapshotFiles> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(SnapshotFiles { dir: dir.to_path_buf(), files: vec![(name.to_string(), bytes.len() as u64)] })
    }

    /// The content of a one-file snapshot; `what` names it in the error.
    pub fn read_single(&self, what: &str) -> std::io::Result<Vec<u8>> {
        let (name, _) = self.files.first().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{what} snapshot in {} has no file", self.dir.display()),
            )
        })?;
        std::fs::read(self.dir.join(name))
    }
}

/// One Raft group as the RPC server sees it.
pub trait GroupHandler: Send + Sync + 'static {
    fn append_entries(&self, header: Bytes, entries: Vec<Bytes>) -> BoxFuture<'_, Result<Bytes, Status>>;
    /// Pipelined AppendEntries: each `(header, entries)` of `input` answered in order.
    fn stream_append(
        &self,
        input: BoxStream<'static, Result<(Bytes, Vec<Bytes>), Status>>,
    ) -> BoxStream<'static, Result<Bytes, Status>>;
    fn vote(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>>;
    fn pre_vote(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>>;
    fn transfer_leader(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>>;
    /// Installs a snapshot whose files were received into `files.dir`.
    fn install_snapshot(&self, header: Bytes, files: SnapshotFiles) -> BoxFuture<'_, Result<Bytes, Status>>;
    /// Where incoming snapshot files are staged.
    fn staging_dir(&self) -> PathBuf;
    fn state(&self) -> GroupState;
    /// The admin API's view of the group's latest snapshot (see `admin.rs`).
    fn snapshot_info(&self) -> chronik_shared::admin::types::GroupSnapshot;
    fn snapshot_now(&self) -> BoxFuture<'_, Result<GroupSnapshot, ChronikError>>;
    fn compact(&self) -> BoxFuture<'_, Result<GroupSnapshot, ChronikError>>;
    /// The group's quiescence, if it can go quiet (partition groups).
    fn quiet(&self) -> Option<Arc<Quiet>> {
        None
    }
    /// Leader `leader` of `term`, whose log ends at `last_log_index`, asks this follower to
    /// stop its election timer. Returns the leader's address when it did.
    fn quiesce(&self, _leader: u64, _term: u64, _last_log_index: u64) -> Option<String> {
        None
    }
}

/// Every Raft group hosted by this node, by name (`__meta`, `<topic>-<partition>`).
#[derive(Clone, Default)]
pub struct RaftGroups {
    groups: Arc<RwLock<HashMap<String, Arc<dyn GroupHandler>>>>,
    liveness: Arc<Liveness>,
}

impl RaftGroups {
    /// This process's node-level liveness (pings between data nodes, `quiesce.rs`).
    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.liveness
    }

    /// Every hosted group with its name, unordered.
    pub fn all_named(&self) -> Vec<(String, Arc<dyn GroupHandler>)> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, g)| (n.clone(), g.clone())).collect()
    }

    pub fn insert(&self, name: String, handler: Arc<dyn GroupHandler>) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert(name, handler);
    }

    pub fn remove(&self, name: &str) -> Option<Arc<dyn GroupHandler>> {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn GroupHandler>, Status> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("Raft group {name} is not hosted on this node")))
    }

    /// Every hosted group, by name.
    pub fn all(&self) -> Vec<Arc<dyn GroupHandler>> {
        let mut groups = self.all_named();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups.into_iter().map(|(_, g)| g).collect()
    }

    pub fn states(&self) -> Vec<GroupState> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).values().map(|g| g.state()).collect()
    }
}

pub struct RaftServiceImpl {
    node_id: u64,
    role: &'static str,
    groups: RaftGroups,
    /// Turns true (or its sender goes) when the server stops: open `StreamAppend` streams
    /// end then, else a graceful stop would wait for peers that never close them.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl RaftServiceImpl {
    pub fn new(
        node_id: u64,
        role: &'static str,
        groups: RaftGroups,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self { node_id, role, groups, stopping }
    }
}

fn reply(header: Bytes) -> Response<RaftMessage> {
    Response::new(RaftMessage { group: String::new(), header, entries: Vec::new() })
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    type StreamAppendStream = BoxStream<'static, Result<RaftMessage, Status>>;

    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let g = self.groups.get(&m.group)?;
        Ok(reply(g.append_entries(m.header, m.entries).await?))
    }

    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let mut input = request.into_inner();
        // The first message names the group the whole stream is for.
        let Some(first) = input.message().await? else {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        };
        let g = self.groups.get(&first.group)?;
        // Both directions end at stop: openraft reads the requests on a task of its own,
        // which holds the call open until they end.
        let stopped = || {
            let mut stopping = self.stopping.clone();
            async move {
                let _ = stopping.wait_for(|s| *s).await;
            }
        };
        let messages = futures::stream::once(future::ready(Ok(first)))
            .chain(input)
            .map(|m| m.map(|m| (m.header, m.entries)))
            .take_until(stopped());
        let answers = g.stream_append(Box::pin(messages));
        Ok(Response::new(Box::pin(answers.map(|a| a.map(|header| reply(header).into_inner())).take_until(stopped()))))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let g = self.groups.get(&m.group)?;
        Ok(reply(g.vote(m.header).await?))
    }

    async fn pre_vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let g = self.groups.get(&m.group)?;
        Ok(reply(g.pre_vote(m.header).await?))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let mut stream = request.into_inner();
        let mut receiving: Option<(Arc<dyn GroupHandler>, Bytes, crate::snapshot_receive::Receiver)> = None;
        while let Some(chunk) = stream.message().await? {
            if receiving.is_none() {
                let g = self.groups.get(&chunk.group)?;
                let header = chunk.header.clone();
                let (_, _, files): (serde_json::Value, serde_json::Value, Vec<(String, u64)>) =
                    serde_json::from_slice(&header)
                        .map_err(|e| Status::invalid_argument(format!("snapshot header: {e}")))?;
                let r = crate::snapshot_receive::Receiver::new(&g.staging_dir(), &chunk.group, files)?;
                receiving = Some((g, header, r));
            }
            let Some((_, _, r)) = receiving.as_mut() else { break };
            r.accept(&chunk)?;
            if r.done {
                break;
            }
        }
        let (g, header, r) = receiving.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let (dir, files) = r.finish()?;
        Ok(reply(g.install_snapshot(header, SnapshotFiles { dir, files }).await?))
    }

    async fn transfer_leader(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let g = self.groups.get(&m.group)?;
        Ok(reply(g.transfer_leader(m.header).await?))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let from = request.into_inner().node_id;
        tracing::trace!(target: "chronik_raft", "Heartbeat probe from node {from}");
        Ok(Response::new(HeartbeatResponse {
            node_id: self.node_id,
            role: self.role.to_string(),
            groups: self.groups.states(),
        }))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(self.groups.liveness().answer(self.node_id, request.get_ref())))
    }

    async fn quiesce(&self, request: Request<QuiesceRequest>) -> Result<Response<QuiesceResponse>, Status> {
        let req = request.into_inner();
        let mut accepted = Vec::new();
        let mut leader_addr = None;
        for q in req.groups {
            let Ok(g) = self.groups.get(&q.group) else { continue };
            if let Some(addr) = g.quiesce(req.node_id, q.term, q.last_log_index) {
                // Watched before anything depends on it.
                if leader_addr.as_ref() != Some(&addr) {
                    self.groups.liveness().track(req.node_id, &addr, Some((req.incarnation, req.epoch)));
                    leader_addr = Some(addr);
                }
                accepted.push(q.group);
            }
        }
        Ok(Response::new(QuiesceResponse { accepted }))
    }
}

/// [`GroupHandler`] for an openraft group whose snapshots are [`SnapshotFiles`].
pub struct RaftGroup<C, SM>
where
    C: EntryCodec,
    SM: RaftStateMachine<C, SnapshotData = SnapshotFiles>,
{
    pub name: String,
    pub raft: Raft<C, SM>,
    pub staging: PathBuf,
    pub quiet: Option<Arc<Quiet>>,
}

fn json<T: Serialize>(v: &T) -> Result<Bytes, Status> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| Status::internal(e.to_string()))
}

fn parse<T: DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(b).map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

/// An AppendEntries as it travels: JSON without entries, each entry in the group's encoding.
fn append_request<C: EntryCodec>(header: Bytes, entries: Vec<Bytes>) -> Result<AppendEntriesRequest<C>, Status>
where
    AppendEntriesRequest<C>: DeserializeOwned,
{
    let mut rpc: AppendEntriesRequest<C> = parse(&header)?;
    rpc.entries = entries
        .into_iter()
        .map(C::decode_entry)
        .collect::<Result<_, _>>()
        .map_err(|e| Status::invalid_argument(format!("malformed log entry: {e}")))?;
    Ok(rpc)
}

/// The leader and term an AppendEntries comes from, and whether it carries entries.
fn sender<C>(rpc: &AppendEntriesRequest<C>) -> (u64, u64, bool)
where
    C: EntryCodec<NodeId = u64, Term = u64>,
{
    let lid = rpc.vote.leader_id();
    (*lid.node_id(), lid.term(), !rpc.entries.is_empty())
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("Raft group is shutting down: {e}"))
}

impl<C, SM> RaftGroup<C, SM>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode, Term = u64>,
    SM: RaftStateMachine<C, SnapshotData = SnapshotFiles>,
{
    /// What a quiet replica says to a candidate (see [`Quiet::refuses_candidate`]); a
    /// transfer the leader asked for goes through.
    fn refuse_vote(&self, req: &VoteRequest<C>) -> Option<openraft::raft::VoteResponse<C>> {
        if req.leadership_transfer || self.raft.metrics().borrow_watched().running_state.is_err() {
            return None;
        }
        if !self.quiet.as_ref()?.refuses_candidate(*req.vote.leader_id().node_id()) {
            return None;
        }
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        // Quiet, its log ends where it was applied: nothing arrived since, or it would be awake.
        Some(openraft::raft::VoteResponse::new(&m.vote, m.last_applied.clone(), false))
    }
}

impl<C, SM> GroupHandler for RaftGroup<C, SM>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode, Term = u64>,
    SM: RaftStateMachine<C, SnapshotData = SnapshotFiles>,
    VoteOf<C>: Serialize + DeserializeOwned,
{
    fn append_entries(&self, header: Bytes, entries: Vec<Bytes>) -> BoxFuture<'_, Result<Bytes, Status>> {
        Box::pin(async move {
            let rpc = append_request::<C>(header, entries)?;
            let (leader, term, has_entries) = sender::<C>(&rpc);
            let resp = self.raft.append_entries(rpc).await.map_err(fatal)?;
            // Once stored: a follower woken before would time out on an old lease.
            if let Some(q) = &self.quiet {
                q.on_append(leader, term, has_entries);
            }
            json(&resp)
        })
    }

    fn stream_append(
        &self,
        input: BoxStream<'static, Result<(Bytes, Vec<Bytes>), Status>>,
    ) -> BoxStream<'static, Result<Bytes, Status>> {
        // A message that does not decode (or a broken input) ends the requests; its error
        // follows the answers to the requests before it.
        // Each request's sender and whether it carried entries, for the quiet follower to
        // wake once the answer shows it was stored.
        let sent: Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u64, bool)>>> = Arc::default();
        // Groups that never go quiet (`__meta`) keep no such record.
        let noted = self.quiet.is_some().then(|| sent.clone());
        let (requests, failed) = crate::until_error::until_error(input.map(move |m| {
            let rpc = m.and_then(|(header, entries)| append_request::<C>(header, entries))?;
            if let Some(noted) = &noted {
                noted.lock().unwrap_or_else(|p| p.into_inner()).push_back(sender::<C>(&rpc));
            }
            Ok(rpc)
        }));
        let quiet = self.quiet.clone();
        let answers = self.raft.stream_append(requests).map(move |r| {
            if let Some(q) = &quiet
                && let Some((leader, term, has_entries)) = sent.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
            {
                q.on_append(leader, term, has_entries);
            }
            match r {
                Ok(result) => json(&result),
                Err(f) => Err(fatal(f)),
            }
        });
        let tail = futures::stream::once(async move { failed.take() }).filter_map(|s| future::ready(s.map(Err)));
        Box::pin(answers.chain(tail))
    }

    fn vote(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>> {
        Box::pin(async move {
            let rpc: VoteRequest<C> = parse(&header)?;
            if let Some(refused) = self.refuse_vote(&rpc) {
                return json(&refused);
            }
            let resp = self.raft.vote(rpc).await.map_err(fatal)?;
            json(&resp)
        })
    }

    fn pre_vote(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>> {
        Box::pin(async move {
            let rpc: VoteRequest<C> = parse(&header)?;
            if let Some(refused) = self.refuse_vote(&rpc) {
                return json(&refused);
            }
            let resp = self.raft.pre_vote(rpc).await.map_err(fatal)?;
            json(&resp)
        })
    }

    fn transfer_leader(&self, header: Bytes) -> BoxFuture<'_, Result<Bytes, Status>> {
        Box::pin(async move {
            let rpc: TransferLeaderRequest<C> = parse(&header)?;
            let resp = self.raft.handle_transfer_leader(rpc).await.map_err(fatal)?;
            json(&resp)
        })
    }

    fn install_snapshot(&self, header: Bytes, files: SnapshotFiles) -> BoxFuture<'_, Result<Bytes, Status>> {
        Box::pin(async move {
            let (vote, meta, _): (VoteOf<C>, SnapshotMetaOf<C>, serde_json::Value) = parse(&header)?;
            let snapshot = openraft::Snapshot { meta, snapshot: files };
            let resp = self.raft.install_full_snapshot(vote, snapshot).await.map_err(fatal)?;
            json(&resp)
        })
    }

    fn staging_dir(&self) -> PathBuf {
        self.staging.clone()
    }

    fn snapshot_info(&self) -> GroupSnapshot {
        crate::admin::snapshot_info(&self.name, &self.raft)
    }

    fn snapshot_now(&self) -> BoxFuture<'_, Result<GroupSnapshot, ChronikError>> {
        Box::pin(crate::admin::snapshot_now(&self.name, &self.raft))
    }

    fn compact(&self) -> BoxFuture<'_, Result<GroupSnapshot, ChronikError>> {
        Box::pin(crate::admin::compact(&self.name, &self.raft))
    }

    fn quiet(&self) -> Option<Arc<Quiet>> {
        self.quiet.clone()
    }

    fn quiesce(&self, leader: u64, term: u64, last_log_index: u64) -> Option<String> {
        let quiet = self.quiet.as_ref()?;
        let (rank, addr) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let caught_up = m.last_log_index == Some(last_log_index)
                && m.local_committed.as_ref().map(|l| l.index()) == Some(last_log_index);
            if m.state != ServerState::Follower
                || m.current_leader != Some(leader)
                || m.current_term != term
                || !caught_up
                || m.running_state.is_err()
            {
                return None;
            }
            let membership = m.membership_config.membership();
            let followers: Vec<u64> = membership.voter_ids().filter(|v| *v != leader).collect();
            let rank = followers.iter().position(|v| *v == m.id)?;
            (rank as u32, membership.get_node(&leader)?.addr.clone())
        };
        quiet.follow_quietly(leader, term, rank);
        Some(addr)
    }

    fn state(&self) -> GroupState {
        let m = self.raft.metrics().borrow_watched().clone();
        GroupState {
            group: self.name.clone(),
            state: state_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.cluster_committed.as_ref().map(|l| l.index()).unwrap_or(0),
        }
    }
}

pub fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}
