//! Consumer groups (design §3): the group coordinator runs on the `__meta` leader.
//!
//! - `state.rs`: one group as a typed state machine (Empty, PreparingRebalance,
//!   CompletingRebalance, Stable, Dead); no I/O.
//! - `phases.rs`: the same state machine's SyncGroup, Heartbeat, LeaveGroup and timers.
//! - `coordinator.rs`: the in-memory groups of the current term, session and rebalance timers,
//!   JoinGroup / SyncGroup / Heartbeat / LeaveGroup.
//! - `offsets.rs`: OffsetCommit / OffsetFetch / OffsetDelete and the consumer-lag gauge.
//! - `admin.rs`: ListGroups / DescribeGroups / DeleteGroups.
//! - `writer.rs`: the single, ordered path into Raft that coalesces concurrent offset commits.
//!
//! Persisted (through Raft, in `schema::GROUPS` and `schema::OFFSETS`): group metadata when a
//! generation's assignment is stored or membership changes, and every committed offset.
//! In memory only: sessions, waiting requests. A new leader loads the groups and gives every
//! member a session timeout to come back; clients rediscover the coordinator by themselves.

mod admin;
mod coordinator;
mod offsets;
mod phases;
pub mod state;
mod writer;

pub use coordinator::GroupCoordinator;

#[cfg(test)]
mod state_tests;
