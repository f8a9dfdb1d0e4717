//! Raft plumbing shared by the control plane (`__meta`) and the data plane (one group per
//! partition replica), on openraft.
//!
//! - `codec.rs`: the binary encoding of log entries, used both on disk and on the wire, so a
//!   record batch is never re-encoded between the producer and a follower's disk.
//! - `log_store.rs`: the openraft log store on the segmented WAL of `chronik_shared::wal`,
//!   with vote and purge state in `raft_*` files beside the segments.
//! - `network.rs`: the openraft network over `chronik.raft.RaftService`; every group on a node
//!   shares one gRPC connection per peer.
//! - `admin.rs`: snapshot, snapshot info and compaction of this process's groups for the admin
//!   API (`/admin/snapshot`, `/admin/compact`).
//! - `service.rs`: the server side of `RaftService`, routing messages to groups by name.
//! - `quiesce.rs`: idle partition groups without timers, and the node-level pings that watch
//!   for failures in their place.
//! - `observer.rs`: turns openraft's metrics stream into the guide's log lines and Prometheus
//!   metrics (`chronik_raft_*`, labelled by partition).
//!
//! Tracing target: `chronik_raft` (this crate's name), as the operations guide expects.

pub mod admin;
pub mod codec;
pub mod config;
pub mod errors;
pub mod faults;
pub mod host;
pub mod log_store;
pub mod network;
pub mod observer;
mod pipeline;
pub mod quiesce;
pub mod service;
mod snapshot_receive;
pub mod testing;
mod until_error;

pub use codec::EntryCodec;
pub use config::raft_config;
pub use faults::Faults;
pub use host::{GrpcHost, GrpcServer};
pub use log_store::{PurgeMode, WalLogStore};
pub use network::{GrpcNetworkFactory, PeerPool};
pub use observer::RaftObserver;
pub use quiesce::{Liveness, Quiet};
pub use service::{GroupHandler, RaftGroups, RaftServiceImpl};
