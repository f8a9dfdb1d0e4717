//! `chronik.control.ControlService`: registration, heartbeats, topics and metadata.
//! Writes go through Raft on the leader; a follower answers with the leader hint.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chronik_proto::control::control_service_server::ControlService;
use chronik_proto::control::*;
use chronik_proto::data::ApplyAssignmentsRequest;
use chronik_raft::errors::write_error;
use chronik_shared::error::{ChronikError, ErrorCode};
use openraft::async_runtime::WatchReceiver;
use tonic::{Request, Response, Status};

use crate::liveness::Liveness;
use crate::placement::place;
use crate::types::{ControlCommand, ControlResponse, NodeRecord, Role, TopicRecord};
use crate::{MetaRaft, state_machine::ControlStateMachine};

#[derive(Clone)]
pub struct ControlServiceImpl {
    pub(crate) node_id: u64,
    pub(crate) raft: MetaRaft,
    pub(crate) sm: ControlStateMachine,
    pub(crate) liveness: Liveness,
    pub(crate) max_message_size: usize,
    pub(crate) election_timeout_ms: u64,
    pub(crate) groups: crate::groups::GroupCoordinator,
    /// Follower lag as this node's observer measures it while leading (`__meta` ISR).
    pub(crate) lag: chronik_raft::observer::LagView,
    pub(crate) lag_max_ms: u64,
}

fn internal(e: std::io::Error) -> Status {
    ChronikError::new(ErrorCode::Internal, e.to_string()).into()
}

pub fn validate_topic_name(name: &str) -> Result<(), ChronikError> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ChronikError::new(
            ErrorCode::InvalidTopic,
            format!("topic name {name:?} is invalid: use 1-249 characters of [a-zA-Z0-9._-], not \".\" or \"..\""),
        ))
    }
}

impl ControlServiceImpl {
    /// Topics (all when `wanted` is empty), data nodes and gateways, as this node's state has them.
    pub fn metadata(&self, wanted: &[String]) -> Result<ClusterMetadata, ChronikError> {
        let io = |e: std::io::Error| ChronikError::new(ErrorCode::Internal, e.to_string());
        let topics = self
            .sm
            .topics()
            .map_err(io)?
            .into_iter()
            .filter(|t| wanted.is_empty() || wanted.contains(&t.name))
            .map(|t| self.topic_info(&t))
            .collect();
        let nodes = self.sm.nodes().map_err(io)?;
        let m = self.raft.metrics().borrow_watched().clone();
        Ok(ClusterMetadata {
            topics,
            data_nodes: nodes.iter().filter(|n| n.role == Role::Data).map(|n| self.node_info(n)).collect(),
            gateways: nodes.iter().filter(|n| n.role == Role::Gateway).map(|n| self.node_info(n)).collect(),
            control_leader: m.current_leader,
        })
    }

    pub(crate) async fn write(&self, cmd: ControlCommand) -> Result<ControlResponse, ChronikError> {
        let resp = self.raft.client_write(cmd).await.map_err(|e| write_error(e, "__meta"))?;
        match resp.data {
            ControlResponse::Rejected { code, message } => {
                Err(ChronikError::new(ErrorCode::from_id(code).unwrap_or(ErrorCode::Internal), message))
            }
            other => Ok(other),
        }
    }

    pub(crate) fn ensure_leader(&self) -> Result<(), ChronikError> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader == Some(self.node_id) {
            return Ok(());
        }
        let hint = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| chronik_shared::error::LeaderHint { node_id: id, addr: n.addr.clone() })
        });
        Err(ChronikError::not_leader(hint, "__meta"))
    }

    fn live_data_nodes(&self) -> Result<Vec<NodeRecord>, Status> {
        let mut nodes: Vec<NodeRecord> = self
            .sm
            .nodes()
            .map_err(internal)?
            .into_iter()
            .filter(|n| n.role == Role::Data && !n.draining && self.liveness.is_alive(n.node_id))
            .collect();
        nodes.sort_by_key(|n| n.node_id);
        Ok(nodes)
    }

    fn assignments_for(
        &self,
        node_id: Option<u64>,
        topics: &[TopicRecord],
    ) -> Result<Vec<PartitionAssignment>, Status> {
        let addrs: HashMap<u64, String> =
            self.sm.nodes().map_err(internal)?.into_iter().map(|n| (n.node_id, n.addr)).collect();
        let mut out = Vec::new();
        for t in topics {
            for (p, replicas) in t.assignments.iter().enumerate() {
                // A node a replica is moving off keeps hearing of the partition until the
                // leader has removed it from the group; then the omission deletes its copy.
                let leaving = |id: u64| {
                    self.liveness.hosts(id, &t.name, p as u32)
                        && self.liveness.observed(&t.name, p as u32).voters.contains(&id)
                };
                if node_id.is_some_and(|id| !replicas.contains(&id) && !leaving(id)) {
                    continue;
                }
                out.push(PartitionAssignment {
                    founder: t.founder(p as u32),
                    topic: t.name.clone(),
                    topic_id: bytes::Bytes::copy_from_slice(t.topic_id.as_bytes()),
                    partition: p as u32,
                    replicas: replicas.clone(),
                    replica_addrs: replicas.iter().filter_map(|r| addrs.get(r).map(|a| (*r, a.clone()))).collect(),
                });
            }
        }
        Ok(out)
    }

    /// Tells the data nodes of `topic` about their new replicas at once rather than at their
    /// next heartbeat, so a topic is writable right after it is created.
    pub(crate) fn push_assignments(&self, topic: &TopicRecord) {
        let Ok(all) = self.assignments_for(None, std::slice::from_ref(topic)) else { return };
        let Ok(nodes) = self.sm.nodes() else { return };
        let max = self.max_message_size;
        for node in nodes.into_iter().filter(|n| n.role == Role::Data) {
            let mine: Vec<_> = all.iter().filter(|a| a.replicas.contains(&node.node_id)).cloned().collect();
            if mine.is_empty() {
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut client) = chronik_proto::client::data_client(&node.addr, max) else { return };
                let req = ApplyAssignmentsRequest { assignments: mine, full: false };
                if let Err(e) = tokio::time::timeout(Duration::from_secs(5), client.apply_assignments(req)).await {
                    tracing::debug!(target: "chronik_cluster", "pushing assignments to node {} timed out: {e}", node.node_id);
                }
            });
        }
    }

    fn topic_info(&self, t: &TopicRecord) -> TopicInfo {
        TopicInfo {
            name: t.name.clone(),
            topic_id: bytes::Bytes::copy_from_slice(t.topic_id.as_bytes()),
            replication_factor: t.replication_factor,
            configs: t.configs.clone().into_iter().collect(),
            partitions: t
                .assignments
                .iter()
                .enumerate()
                .map(|(p, replicas)| {
                    let o = self.liveness.observed(&t.name, p as u32);
                    PartitionInfo {
                        partition: p as u32,
                        replicas: replicas.clone(),
                        leader: o.leader,
                        // As the leader measures it; a replica on a node that stopped
                        // heartbeating is out at once, without waiting for the lag to show.
                        isr: o.isr.into_iter().filter(|r| self.liveness.is_alive(*r)).collect(),
                        high_watermark: o.high_watermark,
                        log_start_offset: o.log_start_offset,
                    }
                })
                .collect(),
        }
    }

    fn node_info(&self, n: &NodeRecord) -> NodeInfo {
        NodeInfo {
            node_id: n.node_id,
            role: match n.role {
                Role::Control => NodeRole::Control,
                Role::Data => NodeRole::Data,
                Role::Gateway => NodeRole::Gateway,
            } as i32,
            addr: n.addr.clone(),
            rack: n.rack.clone(),
            alive: self.liveness.is_alive(n.node_id),
            last_heartbeat_ms: self.liveness.last_heartbeat_ms(n.node_id).unwrap_or(0),
            http_addr: n.http_addr.clone(),
        }
    }
}

#[tonic::async_trait]
impl ControlService for ControlServiceImpl {
    async fn register_node(
        &self,
        request: Request<RegisterNodeRequest>,
    ) -> Result<Response<RegisterNodeResponse>, Status> {
        let node = request.into_inner().node.ok_or_else(|| Status::invalid_argument("RegisterNode without node"))?;
        let role = match NodeRole::try_from(node.role) {
            Ok(NodeRole::Data) => Role::Data,
            Ok(NodeRole::Gateway) => Role::Gateway,
            // Control nodes register only their addresses (membership is Raft's).
            Ok(NodeRole::Control) => Role::Control,
            _ => return Err(Status::invalid_argument("RegisterNode needs a role")),
        };
        self.ensure_leader()?;
        let rec = NodeRecord {
            node_id: node.node_id,
            role,
            addr: node.addr,
            rack: node.rack,
            draining: false,
            http_addr: node.http_addr,
        };
        let known = self.sm.nodes().map_err(internal)?.into_iter().any(|n| n == rec);
        if !known {
            self.write(ControlCommand::RegisterNode(rec.clone())).await?;
            tracing::info!(target: "chronik_cluster", "Registered {:?} node {} at {}", rec.role, rec.node_id, rec.addr);
        }
        self.liveness.registered(rec.node_id);
        Ok(Response::new(RegisterNodeResponse { cluster_epoch: 0 }))
    }

    async fn node_heartbeat(
        &self,
        request: Request<NodeHeartbeatRequest>,
    ) -> Result<Response<NodeHeartbeatResponse>, Status> {
        let req = request.into_inner();
        self.ensure_leader()?;
        // The reply tells a data node which replicas to run (and, by omission, which to
        // delete): it must reflect every committed change, not a lagging state machine.
        self.raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| ChronikError::new(ErrorCode::Unavailable, format!("__meta is not ready to answer: {e}")))?;
        let replicas = if req.role == NodeRole::Data as i32 { Some(req.replicas) } else { None };
        self.liveness.beat(req.node_id, replicas);
        if !req.refusing_writes.is_empty() {
            self.liveness.unsettle(req.node_id);
        }
        let assignments = if req.role == NodeRole::Data as i32 {
            self.assignments_for(Some(req.node_id), &self.sm.topics().map_err(internal)?)?
        } else {
            Vec::new()
        };
        Ok(Response::new(NodeHeartbeatResponse { assignments }))
    }

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let req = request.into_inner();
        validate_topic_name(&req.name)?;
        if req.partitions == 0 {
            return Err(ChronikError::new(ErrorCode::InvalidPartitions, "a topic needs at least 1 partition").into());
        }
        self.ensure_leader()?;
        if self.sm.topic(&req.name).map_err(internal)?.is_some() {
            return Err(
                ChronikError::new(ErrorCode::TopicAlreadyExists, format!("topic {} already exists", req.name)).into()
            );
        }
        let nodes: Vec<u64> = self.live_data_nodes()?.iter().map(|n| n.node_id).collect();
        let assignments = place(&nodes, 0, req.partitions, req.replication_factor)?;
        let record = TopicRecord {
            name: req.name.clone(),
            topic_id: uuid::Uuid::new_v4(),
            replication_factor: req.replication_factor,
            configs: req.configs.into_iter().collect::<BTreeMap<_, _>>(),
            assignments,
            moved: Default::default(),
        };
        if req.validate_only {
            return Ok(Response::new(CreateTopicResponse { topic: Some(self.topic_info(&record)) }));
        }
        let t = match self.write(ControlCommand::CreateTopic(record)).await? {
            ControlResponse::Topic(t) => t,
            other => return Err(Status::internal(format!("unexpected response {other}"))),
        };
        tracing::info!(target: "chronik_cluster", "Created topic {} with {} partitions (RF {})", t.name, t.assignments.len(), t.replication_factor);
        self.push_assignments(&t);
        Ok(Response::new(CreateTopicResponse { topic: Some(self.topic_info(&t)) }))
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = request.into_inner().name;
        self.ensure_leader()?;
        let t = match self.write(ControlCommand::DeleteTopic { name }).await? {
            ControlResponse::Topic(t) => t,
            other => return Err(Status::internal(format!("unexpected response {other}"))),
        };
        tracing::info!(target: "chronik_cluster", "Deleted topic {}", t.name);
        Ok(Response::new(DeleteTopicResponse { topic_id: bytes::Bytes::copy_from_slice(t.topic_id.as_bytes()) }))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let req = request.into_inner();
        self.ensure_leader()?;
        let t = self.sm.topic(&req.name).map_err(internal)?.ok_or_else(|| {
            ChronikError::new(ErrorCode::UnknownTopicOrPartition, format!("topic {} does not exist", req.name))
        })?;
        let current = t.assignments.len() as u32;
        if req.count <= current {
            return Err(ChronikError::new(
                ErrorCode::InvalidPartitions,
                format!("topic {} has {current} partitions; the new count {} must be larger", req.name, req.count),
            )
            .into());
        }
        let nodes: Vec<u64> = self.live_data_nodes()?.iter().map(|n| n.node_id).collect();
        let new_assignments = place(&nodes, current, req.count - current, t.replication_factor)?;
        if req.validate_only {
            return Ok(Response::new(CreatePartitionsResponse { topic: Some(self.topic_info(&t)) }));
        }
        let t = match self.write(ControlCommand::CreatePartitions { name: req.name, new_assignments }).await? {
            ControlResponse::Topic(t) => t,
            other => return Err(Status::internal(format!("unexpected response {other}"))),
        };
        self.push_assignments(&t);
        Ok(Response::new(CreatePartitionsResponse { topic: Some(self.topic_info(&t)) }))
    }

    async fn get_metadata(&self, request: Request<GetMetadataRequest>) -> Result<Response<ClusterMetadata>, Status> {
        // Partition leaders and ISRs come from data-node heartbeats, which only the leader
        // receives: a follower's copy goes stale the moment leadership moves.
        self.ensure_leader()?;
        Ok(Response::new(self.metadata(&request.into_inner().topics)?))
    }

    async fn decommission_node(
        &self,
        request: Request<DecommissionNodeRequest>,
    ) -> Result<Response<DecommissionNodeResponse>, Status> {
        let DecommissionNodeRequest { node_id: id, cancel } = request.into_inner();
        self.ensure_leader()?;
        let node = self.sm.nodes().map_err(internal)?.into_iter().find(|n| n.node_id == id && n.role == Role::Data);
        let Some(node) = node else {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("node {id} is not a registered data node"),
            )
            .into());
        };
        if cancel {
            if node.draining {
                self.write(ControlCommand::SetDraining { node_id: id, draining: false }).await?;
                tracing::info!(target: "chronik_cluster", "Data node {id} is no longer being decommissioned: it takes replicas again");
            }
        } else if !node.draining {
            self.write(ControlCommand::SetDraining { node_id: id, draining: true }).await?;
            tracing::info!(target: "chronik_cluster", "Decommissioning data node {id}: its replicas move to the other data nodes");
        }
        let (in_flight, remaining) = self.move_progress(&self.sm.topics().map_err(internal)?, Some(id));
        Ok(Response::new(DecommissionNodeResponse {
            remaining_replicas: remaining as u32,
            moves_in_flight: in_flight as u32,
        }))
    }

    async fn init_producer_id(
        &self,
        _request: Request<chronik_proto::control::InitProducerIdRequest>,
    ) -> Result<Response<chronik_proto::control::InitProducerIdResponse>, Status> {
        self.ensure_leader()?;
        match self.write(ControlCommand::AllocateProducerId).await? {
            ControlResponse::ProducerId(id) => {
                Ok(Response::new(chronik_proto::control::InitProducerIdResponse { producer_id: id, producer_epoch: 0 }))
            }
            other => Err(Status::internal(format!("unexpected response {other}"))),
        }
    }

    async fn get_members(&self, _request: Request<GetMembersRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(self.members()))
    }

    async fn join_cluster(&self, request: Request<MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.join(r.node_id, &r.addr).await?))
    }

    async fn add_learner(&self, request: Request<MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(ControlServiceImpl::add_learner(self, r.node_id, &r.addr).await?))
    }

    async fn promote_member(&self, request: Request<MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(self.promote(request.into_inner().node_id).await?))
    }

    async fn remove_member(&self, request: Request<MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(self.remove(request.into_inner().node_id).await?))
    }

    async fn transfer_leader(
        &self,
        request: Request<chronik_proto::control::TransferLeaderRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let wait = Duration::from_millis(self.election_timeout_ms * 10);
        Ok(Response::new(ControlServiceImpl::transfer_leader(self, request.into_inner().target_node_id, wait).await?))
    }

    async fn join_group(&self, request: Request<JoinGroupRequest>) -> Result<Response<JoinGroupResponse>, Status> {
        Ok(Response::new(self.groups.join(request.into_inner()).await?))
    }

    async fn sync_group(&self, request: Request<SyncGroupRequest>) -> Result<Response<SyncGroupResponse>, Status> {
        Ok(Response::new(self.groups.sync(request.into_inner()).await?))
    }

    async fn group_heartbeat(
        &self,
        request: Request<GroupHeartbeatRequest>,
    ) -> Result<Response<GroupHeartbeatResponse>, Status> {
        Ok(Response::new(self.groups.heartbeat(request.into_inner()).await?))
    }

    async fn leave_group(&self, request: Request<LeaveGroupRequest>) -> Result<Response<LeaveGroupResponse>, Status> {
        Ok(Response::new(self.groups.leave(request.into_inner()).await?))
    }

    async fn offset_commit(
        &self,
        request: Request<OffsetCommitRequest>,
    ) -> Result<Response<OffsetCommitResponse>, Status> {
        Ok(Response::new(self.groups.offset_commit(request.into_inner()).await?))
    }

    async fn offset_fetch(
        &self,
        request: Request<OffsetFetchRequest>,
    ) -> Result<Response<OffsetFetchResponse>, Status> {
        Ok(Response::new(self.groups.offset_fetch(request.into_inner()).await?))
    }

    async fn list_groups(&self, request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        Ok(Response::new(self.groups.list_groups(request.into_inner()).await?))
    }

    async fn describe_groups(
        &self,
        request: Request<DescribeGroupsRequest>,
    ) -> Result<Response<DescribeGroupsResponse>, Status> {
        Ok(Response::new(self.groups.describe_groups(request.into_inner()).await?))
    }

    async fn delete_groups(
        &self,
        request: Request<DeleteGroupsRequest>,
    ) -> Result<Response<DeleteGroupsResponse>, Status> {
        Ok(Response::new(self.groups.delete_groups(request.into_inner()).await?))
    }

    async fn offset_delete(
        &self,
        request: Request<OffsetDeleteRequest>,
    ) -> Result<Response<OffsetDeleteResponse>, Status> {
        Ok(Response::new(self.groups.offset_delete(request.into_inner()).await?))
    }
}
