//! Everything the control plane persists, in one redb file (`data_dir/control/state.redb`).
//! Values are JSON of the records in `types.rs`.
//!
//! - [`META`]: `applied` → the last applied log id; `membership` → the last applied `__meta`
//!   membership. Together they let a node rebuild its Raft group from its state machine.
//! - [`NODES`]: node id → registered data node or gateway ([`crate::types::NodeRecord`]).
//! - [`TOPICS`]: topic name → topic with its partition assignments ([`crate::types::TopicRecord`]).

use redb::TableDefinition;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
pub const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");

pub const META_APPLIED: &str = "applied";
pub const META_MEMBERSHIP: &str = "membership";
