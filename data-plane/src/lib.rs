//! The data plane: partition replicas, each an openraft group whose log is the partition's
//! data on the WAL.
//!
//! - `node.rs`: [`DataNode`], the builder that starts a data node, registers it with the
//!   control plane, runs the replicas it is assigned and shuts them down.
//! - `partition/`: one replica: its Raft group, offset index (state machine), produce, fetch
//!   and list-offsets.
//! - `quiesce.rs`: asks the followers of idle groups this node leads to go quiet.
//! - `service.rs`: `chronik.data.DataService` for gateways and the control plane.
//! - `batch.rs`: Kafka v2 record batch validation and header fields.
//! - `types.rs`: the partition groups' type config and log entry encoding.

pub mod batch;
/// Entry point of the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod node;
pub mod partition;
mod quiesce;
pub mod service;
pub mod types;

pub use node::{DataNode, DataNodeBuilder};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot listen on {addr} for gRPC: {source}; is another process using the port? Change listeners.grpc")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("refusing to start: {0}")]
    Corrupt(String),
    #[error("data node storage: {0}")]
    Storage(#[from] std::io::Error),
}
