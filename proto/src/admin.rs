//! The admin API's cluster reads and changes over `ControlService`: [`ControlView`] shapes a
//! membership + metadata answer into the admin API's JSON (for a control node's own state and
//! for everyone else's answer from the control plane alike), and [`RemoteControl`] is what data
//! nodes and gateways read from and what every process changes the cluster through.

use std::time::{Duration, Instant};

use chronik_shared::admin::types::*;
use chronik_shared::admin::{BoxFuture, ClusterControl, ClusterView};
use chronik_shared::error::{ChronikError, ErrorCode};

use crate::client::{ControlClient, data_client};
use crate::control::{
    ClusterMetadata, CreateTopicRequest, DeleteTopicRequest, GetMembersRequest, GetMetadataRequest, MemberRequest,
    MembersResponse, NodeInfo as WireNode, NodeRole, PartitionInfo, TopicInfo, TransferLeaderRequest,
};
use crate::data::{TopicPartition, TransferPartitionLeaderRequest};

/// Where a [`ControlView`] gets the control plane's membership and metadata.
pub trait ControlSource: Send + Sync + 'static {
    /// The answering node.
    fn node_id(&self) -> u64;
    /// `raft` for a control node's own state, `control-plane` for an answer asked of it.
    fn view_name(&self) -> &'static str;
    fn members(&self) -> BoxFuture<'_, Result<MembersResponse, ChronikError>>;
    fn metadata(&self) -> BoxFuture<'_, Result<ClusterMetadata, ChronikError>>;
}

/// The admin API's cluster reads over a [`ControlSource`].
pub struct ControlView<S>(pub S);

fn member(n: &WireNode) -> Member {
    let role = match NodeRole::try_from(n.role).unwrap_or(NodeRole::Unspecified) {
        NodeRole::Control => "control",
        NodeRole::Data => "data",
        NodeRole::Gateway => "gateway",
        NodeRole::Unspecified => "unknown",
    };
    Member {
        node_id: n.node_id,
        addr: n.addr.clone(),
        role: role.to_string(),
        alive: n.alive,
        last_heartbeat_ms: (n.last_heartbeat_ms > 0).then_some(n.last_heartbeat_ms),
        http_addr: (!n.http_addr.is_empty()).then(|| n.http_addr.clone()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn partition_row(topic: &str, p: &PartitionInfo) -> PartitionRow {
    PartitionRow {
        topic: topic.to_string(),
        partition: p.partition,
        leader: p.leader,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        high_watermark: Some(p.high_watermark),
        log_start_offset: Some(p.log_start_offset),
    }
}

pub fn topic_view(t: &TopicInfo) -> TopicView {
    TopicView {
        name: t.name.clone(),
        topic_id: hex(&t.topic_id),
        replication_factor: t.replication_factor,
        configs: t.configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        partitions: t.partitions.iter().map(|p| partition_row(&t.name, p)).collect(),
    }
}

/// `__meta` as a partition row: its voters are the replicas, those keeping up the ISR.
pub fn meta_row(m: &MembersResponse) -> PartitionRow {
    PartitionRow {
        topic: "__meta".to_string(),
        partition: 0,
        leader: m.leader,
        replicas: m.voters.iter().map(|v| v.node_id).collect(),
        isr: m.voters.iter().filter(|v| v.alive).map(|v| v.node_id).collect(),
        high_watermark: None,
        log_start_offset: None,
    }
}

impl<S: ControlSource> ClusterView for ControlView<S> {
    fn members(&self) -> BoxFuture<'_, Result<Members, ChronikError>> {
        Box::pin(async move {
            let m = self.0.members().await?;
            let md = self.0.metadata().await?;
            Ok(Members {
                node_id: self.0.node_id(),
                view: self.0.view_name().to_string(),
                leader: m.leader,
                term: m.term,
                voters: m.voters.iter().map(member).collect(),
                learners: m.learners.iter().map(member).collect(),
                data_nodes: md.data_nodes.iter().map(member).collect(),
                gateways: md.gateways.iter().map(member).collect(),
            })
        })
    }

    fn leader(&self) -> BoxFuture<'_, Result<LeaderInfo, ChronikError>> {
        Box::pin(async move {
            let m = self.0.members().await?;
            let node_id = self.0.node_id();
            Ok(LeaderInfo {
                node_id,
                leader_id: m.leader,
                leader_addr: m
                    .leader
                    .and_then(|l| m.voters.iter().chain(&m.learners).find(|n| n.node_id == l))
                    .map(|n| n.addr.clone()),
                term: m.term,
                is_leader: m.leader == Some(node_id),
                view: self.0.view_name().to_string(),
            })
        })
    }

    fn partitions(&self) -> BoxFuture<'_, Result<Vec<PartitionRow>, ChronikError>> {
        Box::pin(async move {
            let m = self.0.members().await?;
            let md = self.0.metadata().await?;
            let mut rows = vec![meta_row(&m)];
            for t in &md.topics {
                rows.extend(t.partitions.iter().map(|p| partition_row(&t.name, p)));
            }
            Ok(rows)
        })
    }

    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicView>, ChronikError>> {
        Box::pin(async move { Ok(self.0.metadata().await?.topics.iter().map(topic_view).collect()) })
    }
}

/// The control plane over gRPC, following its leader.
#[derive(Clone)]
pub struct RemoteControl {
    node_id: u64,
    client: ControlClient,
    max_message_size: usize,
}

impl RemoteControl {
    pub fn new(node_id: u64, client: ControlClient, max_message_size: usize) -> RemoteControl {
        RemoteControl { node_id, client, max_message_size }
    }

    async fn metadata_of(&self, topics: Vec<String>) -> Result<ClusterMetadata, ChronikError> {
        let req = GetMetadataRequest { topics };
        Ok(self
            .client
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_metadata(req).await }
            })
            .await?)
    }

    async fn member_call(&self, op: MemberOp, node_id: u64, addr: String) -> Result<Members, ChronikError> {
        let req = MemberRequest { node_id, addr };
        self.client
            .call(|mut c| {
                let req = req.clone();
                async move {
                    match op {
                        MemberOp::AddLearner => c.add_learner(req).await,
                        MemberOp::Promote => c.promote_member(req).await,
                        MemberOp::Remove => c.remove_member(req).await,
                    }
                }
            })
            .await?;
        ControlView(self.clone()).members().await
    }

    async fn transfer_partition(
        &self,
        topic: String,
        partition: u32,
        target: u64,
    ) -> Result<Transferred, ChronikError> {
        let group = format!("{topic}-{partition}");
        let deadline = Instant::now() + Duration::from_secs(15);
        let leader_of = |md: &ClusterMetadata| -> Result<Option<u64>, ChronikError> {
            md.topics
                .iter()
                .find(|t| t.name == topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
                .map(|p| p.leader)
                .ok_or_else(|| {
                    ChronikError::new(ErrorCode::UnknownTopicOrPartition, format!("partition {group} does not exist"))
                })
        };
        // A control plane that just changed leader learns partition leaders from the next
        // data-node heartbeats: wait for them rather than fail.
        let (md, previous) = loop {
            let md = self.metadata_of(vec![topic.clone()]).await?;
            match leader_of(&md)? {
                Some(l) => break (md, l),
                None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                None => return Err(ChronikError::not_leader(None, &group)),
            }
        };
        if previous == target {
            return Ok(Transferred { group, previous_leader: Some(previous), leader: Some(previous) });
        }
        let leader = previous;
        let addr = md.data_nodes.iter().find(|n| n.node_id == leader).map(|n| n.addr.clone()).ok_or_else(|| {
            ChronikError::new(
                ErrorCode::Unavailable,
                format!("the leader of {group}, node {leader}, is not a known data node"),
            )
        })?;
        let mut dc = data_client(&addr, self.max_message_size)?;
        dc.transfer_leader(TransferPartitionLeaderRequest {
            tp: Some(TopicPartition { topic: topic.clone(), partition }),
            target_node_id: target,
        })
        .await?;
        // The control plane learns the new leader from the next data-node heartbeats.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leader = leader_of(&self.metadata_of(vec![topic.clone()]).await?)?;
            if leader == Some(target) {
                return Ok(Transferred { group, previous_leader: Some(previous), leader });
            }
            if Instant::now() > deadline {
                return Err(ChronikError::new(
                    ErrorCode::Timeout,
                    format!(
                        "node {target} did not take over {group} within 15 s (leader now {leader:?}); check that it is in the partition's ISR"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Clone, Copy)]
enum MemberOp {
    AddLearner,
    Promote,
    Remove,
}

impl ControlSource for RemoteControl {
    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn view_name(&self) -> &'static str {
        "control-plane"
    }

    fn members(&self) -> BoxFuture<'_, Result<MembersResponse, ChronikError>> {
        Box::pin(async move {
            Ok(self.client.call(|mut c| async move { c.get_members(GetMembersRequest {}).await }).await?)
        })
    }

    fn metadata(&self) -> BoxFuture<'_, Result<ClusterMetadata, ChronikError>> {
        Box::pin(self.metadata_of(Vec::new()))
    }
}

impl ClusterControl for RemoteControl {
    fn create_topic(&self, req: CreateTopic) -> BoxFuture<'_, Result<TopicView, ChronikError>> {
        Box::pin(async move {
            let req = CreateTopicRequest {
                name: req.name,
                partitions: req.partitions,
                replication_factor: req.replication_factor,
                configs: req.configs.into_iter().collect(),
                validate_only: false,
            };
            let resp = self
                .client
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.create_topic(req).await }
                })
                .await?;
            let topic = resp.topic.ok_or_else(|| {
                ChronikError::new(ErrorCode::Internal, "the control plane answered without the topic")
            })?;
            Ok(topic_view(&topic))
        })
    }

    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<TopicDeleted, ChronikError>> {
        Box::pin(async move {
            let req = DeleteTopicRequest { name: name.clone() };
            let resp = self
                .client
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.delete_topic(req).await }
                })
                .await?;
            Ok(TopicDeleted { name, topic_id: hex(&resp.topic_id) })
        })
    }

    fn transfer_leader(&self, req: TransferLeader) -> BoxFuture<'_, Result<Transferred, ChronikError>> {
        Box::pin(async move {
            if let Some(topic) = req.topic {
                return self.transfer_partition(topic, req.partition.unwrap_or(0), req.target_node_id).await;
            }
            let before = ControlSource::members(self).await?.leader;
            let target = req.target_node_id;
            let after = self
                .client
                .call(|mut c| async move { c.transfer_leader(TransferLeaderRequest { target_node_id: target }).await })
                .await?;
            Ok(Transferred { group: "__meta".to_string(), previous_leader: before, leader: after.leader })
        })
    }

    fn add_learner(&self, req: AddLearner) -> BoxFuture<'_, Result<Members, ChronikError>> {
        Box::pin(self.member_call(MemberOp::AddLearner, req.node_id, req.addr))
    }

    fn promote(&self, node_id: u64) -> BoxFuture<'_, Result<Members, ChronikError>> {
        Box::pin(self.member_call(MemberOp::Promote, node_id, String::new()))
    }

    fn remove_member(&self, node_id: u64) -> BoxFuture<'_, Result<Members, ChronikError>> {
        Box::pin(self.member_call(MemberOp::Remove, node_id, String::new()))
    }
}
