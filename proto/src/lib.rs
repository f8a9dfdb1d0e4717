//! Wire types of Chronik's three gRPC services and the clients every role uses to call them.
//!
//! - `raft`: `chronik.raft.RaftService`, node-to-node Raft traffic for all groups of a node.
//! - `control`: `chronik.control.ControlService`, the control plane's API.
//! - `data`: `chronik.data.DataService`, a data node's API for gateways and the control plane.
//!
//! `admin.rs` answers the admin API's cluster reads and changes over `ControlService`;
//! `record_set.rs` reads a fetched partition's records in either of their two forms.
//!
//! No role crate depends on another: each talks to the others only through these types.

pub mod admin;
pub mod client;
pub mod record_set;

pub mod raft {
    tonic::include_proto!("chronik.raft");
}

pub mod control {
    tonic::include_proto!("chronik.control");
}

pub mod data {
    tonic::include_proto!("chronik.data");
}

/// Encoded descriptors of every service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("chronik_descriptor");
