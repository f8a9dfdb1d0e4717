//! The admin API's request and response bodies. Their JSON schemas (for `/admin/openapi.json`)
//! are derived from these definitions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One node as the control plane knows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    /// gRPC address for control and data nodes, Kafka address for gateways.
    pub addr: String,
    /// `control`, `data` or `gateway`.
    pub role: String,
    /// Control voters: replicating within `cluster.raft.replica_lag_time_max_ms` of the leader
    /// (as the leader sees it). Data nodes and gateways: heartbeating within
    /// `cluster.heartbeat.node_timeout_ms`.
    pub alive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_ms: Option<u64>,
    /// `host:port` of the node's HTTP API, once the node has registered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

/// `GET /admin/cluster/members`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Members {
    /// The node that answered.
    pub node_id: u64,
    /// Whose view this is: `raft` (a control node's own `__meta` state) or `control-plane`
    /// (a data node or gateway asking the control plane).
    pub view: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<Member>,
    pub learners: Vec<Member>,
    pub data_nodes: Vec<Member>,
    pub gateways: Vec<Member>,
}

/// `GET /admin/cluster/leader`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LeaderInfo {
    /// The node that answered.
    pub node_id: u64,
    /// The control-plane leader as that node sees it; null while there is none.
    pub leader_id: Option<u64>,
    pub leader_addr: Option<String>,
    pub term: u64,
    /// Whether the answering node is the leader.
    pub is_leader: bool,
    pub view: String,
}

/// One partition's replicas: `__meta` (the control plane's own group) or a data partition.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<u64>,
}

/// A topic with its partitions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TopicView {
    pub name: String,
    /// The topic id as Kafka clients see it (32 hex digits).
    pub topic_id: String,
    pub replication_factor: u32,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRow>,
}

/// `POST /admin/topics`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    pub name: String,
    pub partitions: u32,
    /// At most the number of live data nodes.
    pub replication_factor: u32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// `POST /admin/cluster/transfer-leader`: the control plane's `__meta` group, or with `topic`
/// and `partition` a data partition.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeader {
    pub target_node_id: u64,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub partition: Option<u32>,
}

/// The outcome of a leadership transfer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Transferred {
    /// `__meta` or `<topic>-<partition>`.
    pub group: String,
    pub previous_leader: Option<u64>,
    pub leader: Option<u64>,
}

/// `POST /admin/cluster/add-learner`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLearner {
    pub node_id: u64,
    /// The node's gRPC `host:port`, e.g. `node4:9093`.
    pub addr: String,
}

/// `POST /admin/cluster/promote` and `POST /admin/cluster/remove-member`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRef {
    pub node_id: u64,
}

/// Which of this process's Raft groups a snapshot or compaction is for: all of them when
/// empty, `__meta` with `group`, a data partition with `topic` and `partition`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupTarget {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub partition: Option<u32>,
}

impl GroupTarget {
    /// The group name this target selects, if it selects one.
    pub fn name(&self) -> Option<String> {
        match (&self.group, &self.topic, self.partition) {
            (Some(g), _, _) => Some(g.clone()),
            (None, Some(t), Some(p)) => Some(format!("{t}-{p}")),
            (None, Some(t), None) => Some(format!("{t}-0")),
            _ => None,
        }
    }
}

/// One Raft group's latest snapshot on this node.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GroupSnapshot {
    /// `__meta` or `<topic>-<partition>`.
    pub group: String,
    /// The log id the snapshot ends at (leader term, node and index).
    pub snapshot_id: Option<String>,
    /// The last log index the snapshot covers.
    pub last_index: Option<u64>,
    pub size_bytes: u64,
    /// The first log index still kept (entries before it were compacted away).
    pub log_first_index: Option<u64>,
    pub last_log_index: u64,
    pub last_applied: Option<u64>,
}

/// `POST /admin/snapshot`, `GET /admin/snapshot/info`, `POST /admin/compact`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Snapshots {
    pub node_id: u64,
    pub groups: Vec<GroupSnapshot>,
}

/// `GET /admin/node/info`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    pub node_id: u64,
    pub roles: Vec<String>,
    pub version: String,
    pub started_ms: u64,
    /// This node's wall clock, for clock-skew checks across nodes.
    pub now_ms: u64,
    pub uptime_ms: u64,
    /// This node's Raft groups: `__meta` and/or the data partitions it hosts.
    pub raft_groups: Vec<RaftGroupState>,
    /// The file system holding `node.data_dir`.
    pub disk: Option<DiskInfo>,
    /// Config values that work but are risky (the start logged them too).
    pub config_warnings: Vec<String>,
    /// The last check of every record's checksum in this node's WAL.
    pub wal: Option<WalScrubStatus>,
}

/// The outcome of the last WAL scrub (`wal.scrub_interval_secs`, `POST /admin/wal/verify`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct WalScrubStatus {
    /// When the last pass started (ms since the epoch); none yet when absent.
    pub last_run_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Streams (Raft groups) read.
    pub streams: u64,
    pub records: u64,
    pub bytes: u64,
    /// Damage found: the segment file, the position and what is wrong.
    pub problems: Vec<String>,
}

/// Space on the file system holding a node's data directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DiskInfo {
    pub path: String,
    /// Used plus available, as `df` counts it (reserved blocks excluded).
    pub total_bytes: u64,
    /// Available to the node's (unprivileged) writes.
    pub free_bytes: u64,
}

/// One Raft group on this node.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RaftGroupState {
    pub group: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: u64,
    pub committed_index: u64,
}

/// Every error answer of the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The Chronik error code name (e.g. `NotLeader`), when the error has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `id@host:port` of the leader, for "not leader" answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub node_id: u64,
    pub roles: Vec<String>,
    pub version: String,
    pub checks: Vec<HealthCheck>,
    /// Why the node is unhealthy, one line per failing check.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `POST /admin/profile/stop`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProfileStopped {
    pub running: bool,
    pub samples: u64,
    pub duration_ms: u64,
    pub frequency_hz: i32,
}

/// `DELETE /admin/topics/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TopicDeleted {
    pub name: String,
    pub topic_id: String,
}
