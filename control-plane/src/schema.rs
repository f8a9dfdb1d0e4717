//! Everything the control plane persists, in one redb file (`data_dir/control/state.redb`).
//! Values are JSON of the records in `types.rs`.
//!
//! - [`META`]: `applied` → the last applied log id; `membership` → the last applied `__meta`
//!   membership; `next_producer_id` → the producer-id allocator. Together they let a node rebuild its Raft group from its state machine.
//! - [`NODES`]: node id → registered data node or gateway ([`crate::types::NodeRecord`]).
//! - [`TOPICS`]: topic name → topic with its partition assignments ([`crate::types::TopicRecord`]).
//! - [`GROUPS`]: group id → consumer group metadata: protocol, generation, leader, members and
//!   their assignments ([`crate::types::GroupRecord`]). Session liveness is not persisted.
//! - [`OFFSETS`]: `group NUL topic NUL partition` → committed offset with leader epoch, metadata
//!   and commit time ([`crate::types::OffsetRecord`]).

use redb::TableDefinition;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
pub const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
pub const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
pub const OFFSETS: TableDefinition<&str, &[u8]> = TableDefinition::new("offsets");

pub const META_APPLIED: &str = "applied";
pub const META_MEMBERSHIP: &str = "membership";
/// The next producer id to hand out (JSON i64).
pub const META_NEXT_PRODUCER_ID: &str = "next_producer_id";
