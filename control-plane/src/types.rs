//! The `__meta` group's type config and the records its state machine keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use bytes::Bytes;
use chronik_raft::codec::AppPayload;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    pub MetaTypeConfig:
        D = ControlCommand,
        R = ControlResponse,
);

chronik_raft::impl_entry_codec!(MetaTypeConfig);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Control,
    Data,
    Gateway,
}

/// A registered data node or gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u64,
    pub role: Role,
    /// gRPC address for control and data nodes, Kafka address for gateways.
    pub addr: String,
    #[serde(default)]
    pub rack: String,
    /// Being decommissioned: no new replicas, and its replicas move away.
    #[serde(default)]
    pub draining: bool,
    /// `host:port` of its HTTP API, for `chronik-server doctor`'s discovery.
    #[serde(default)]
    pub http_addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    /// Desired replicas of each partition, by partition number.
    pub assignments: Vec<Vec<u64>>,
    /// Partitions whose replicas have been changed since creation: their Raft group exists,
    /// so no node forms it again.
    #[serde(default)]
    pub moved: BTreeSet<u32>,
}

impl TopicRecord {
    /// The node that forms partition `p`'s Raft group: its first replica, until it moved.
    pub fn founder(&self, p: u32) -> u64 {
        if self.moved.contains(&p) {
            return 0;
        }
        self.assignments.get(p as usize).and_then(|r| r.first().copied()).unwrap_or(0)
    }
}

/// A consumer group as persisted: what a new leader needs to carry the group on after a
/// failover (members get a session timeout to reappear). Liveness stays in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub group_id: String,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
}

/// A committed offset of (group, topic, partition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    pub group_id: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: u64,
}

impl OffsetRecord {
    /// Its key in [`crate::schema::OFFSETS`]; group ids with NUL are refused, so keys of one
    /// group form one range starting at [`offset_key_prefix`].
    pub fn key(&self) -> String {
        offset_key(&self.group_id, &self.topic, self.partition)
    }
}

pub fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}\u{0}{topic}\u{0}{partition}")
}

pub fn offset_key_prefix(group: &str) -> (String, String) {
    (format!("{group}\u{0}"), format!("{group}\u{1}"))
}

/// One change to the control plane's state. Placement is decided by the leader before it
/// proposes, so applying is deterministic on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    RegisterNode(NodeRecord),
    CreateTopic(TopicRecord),
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        new_assignments: Vec<Vec<u64>>,
    },
    /// Hands out the next producer id (the allocator lives in `meta`).
    AllocateProducerId,
    /// Creates or replaces a group's metadata.
    StoreGroup(GroupRecord),
    /// Removes a group and all its committed offsets.
    DeleteGroup {
        group_id: String,
    },
    /// Offset commits of possibly many groups, coalesced into one entry by the leader.
    CommitOffsets(Vec<OffsetRecord>),
    DeleteOffsets {
        group_id: String,
        partitions: Vec<(String, u32)>,
    },
    /// New desired replicas of one partition (decided by the leader's reassigner).
    MoveReplicas {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// Starts (or cancels) the decommissioning of a data node.
    SetDraining {
        node_id: u64,
        draining: bool,
    },
}

impl fmt::Display for ControlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlCommand::RegisterNode(n) => write!(f, "register node {} ({:?})", n.node_id, n.role),
            ControlCommand::AllocateProducerId => write!(f, "allocate a producer id"),
            ControlCommand::CreateTopic(t) => write!(f, "create topic {}", t.name),
            ControlCommand::DeleteTopic { name } => write!(f, "delete topic {name}"),
            ControlCommand::CreatePartitions { name, new_assignments } => {
                write!(f, "add {} partitions to {name}", new_assignments.len())
            }
            ControlCommand::StoreGroup(g) => write!(f, "store group {} generation {}", g.group_id, g.generation),
            ControlCommand::DeleteGroup { group_id } => write!(f, "delete group {group_id}"),
            ControlCommand::CommitOffsets(o) => write!(f, "commit {} offsets", o.len()),
            ControlCommand::DeleteOffsets { group_id, partitions } => {
                write!(f, "delete {} offsets of group {group_id}", partitions.len())
            }
            ControlCommand::MoveReplicas { topic, partition, replicas } => {
                write!(f, "move {topic}-{partition} to replicas {replicas:?}")
            }
            ControlCommand::SetDraining { node_id, draining } => write!(f, "set node {node_id} draining={draining}"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    #[default]
    Ok,
    Topic(TopicRecord),
    ProducerId(i64),
    /// A command that was valid to propose but not to apply (e.g. the topic was created by a
    /// concurrent request first): the code and message from the shared error table.
    Rejected {
        code: i32,
        message: String,
    },
}

impl fmt::Display for ControlResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl AppPayload for ControlCommand {
    fn encode_payload(&self, out: &mut Vec<u8>) -> io::Result<Bytes> {
        serde_json::to_writer(out, self).map_err(io::Error::other)?;
        Ok(Bytes::new())
    }

    fn decode_payload(body: Bytes) -> io::Result<Self> {
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
