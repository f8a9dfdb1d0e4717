//! The `__meta` group's type config and the records its state machine keeps.

use std::collections::BTreeMap;
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
    /// gRPC address for data nodes, Kafka address for gateways.
    pub addr: String,
    #[serde(default)]
    pub rack: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    /// Desired replicas of each partition, by partition number.
    pub assignments: Vec<Vec<u64>>,
}

/// One change to the control plane's state. Placement is decided by the leader before it
/// proposes, so applying is deterministic on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlCommand {
    RegisterNode(NodeRecord),
    CreateTopic(TopicRecord),
    DeleteTopic { name: String },
    CreatePartitions { name: String, new_assignments: Vec<Vec<u64>> },
}

impl fmt::Display for ControlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlCommand::RegisterNode(n) => write!(f, "register node {} ({:?})", n.node_id, n.role),
            ControlCommand::CreateTopic(t) => write!(f, "create topic {}", t.name),
            ControlCommand::DeleteTopic { name } => write!(f, "delete topic {name}"),
            ControlCommand::CreatePartitions { name, new_assignments } => {
                write!(f, "add {} partitions to {name}", new_assignments.len())
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    #[default]
    Ok,
    Topic(TopicRecord),
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
    fn encode_payload(&self, out: &mut Vec<u8>) -> io::Result<()> {
        serde_json::to_writer(out, self).map_err(io::Error::other)
    }

    fn decode_payload(body: Bytes) -> io::Result<Self> {
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
