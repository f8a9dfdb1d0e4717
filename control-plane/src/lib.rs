//! The control plane: the `__meta` Raft group (openraft over the WAL, state in redb) that owns
//! membership, registered data nodes and gateways, topics and partition assignments.
//!
//! - `node.rs`: [`ControlNode`], the builder that starts a control node and shuts it down.
//! - `types.rs`: the group's type config, commands and records.
//! - `schema.rs`: every redb table, documented in one place.
//! - `state_machine.rs`: applying commands, reads, snapshots.
//! - `service.rs`: `chronik.control.ControlService`.
//! - `placement.rs`: where new replicas go. `liveness.rs`: who is alive.
//! - `groups/`: the consumer-group coordinator (runs on the leader).
//! - `admin.rs`: the admin API's cluster reads from this node's own state.

pub mod admin;
mod balancer;
pub mod groups;
pub mod liveness;
pub mod membership;
pub mod node;
pub mod placement;
mod reassign;
pub mod recovery;
pub mod schema;
pub mod service;
pub mod state_machine;
pub mod types;

pub use node::{ControlNode, ControlNodeBuilder};
pub use types::MetaTypeConfig;

/// The `__meta` Raft group.
pub type MetaRaft = openraft::Raft<MetaTypeConfig, state_machine::ControlStateMachine>;

/// Name of the control plane's Raft group, also its `partition` metric label.
pub const META_GROUP: &str = "__meta";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control plane storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("__meta Raft group: {0}")]
    Raft(String),
    #[error("recovery: {0}")]
    Recovery(String),
    #[error("cannot listen on {addr} for gRPC: {source}; is another process using the port? Change listeners.grpc")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}
