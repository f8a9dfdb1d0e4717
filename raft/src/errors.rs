//! How openraft's write errors become Chronik errors: "forward to leader" keeps the leader's
//! id and address as the hint every client follows.

use chronik_shared::error::{ChronikError, ErrorCode, LeaderHint};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftTypeConfig};

pub fn write_error<C>(e: RaftError<C, ClientWriteError<C>>, group: &str) -> ChronikError
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    if let Some(ClientWriteError::LogEntryDiscarded(_)) = e.api_error() {
        return ChronikError::new(
            ErrorCode::Timeout,
            format!("the leader of {group} changed before the write committed; its outcome is unknown, retry it"),
        );
    }
    if let Some(f) = e.forward_to_leader() {
        let hint = match (f.leader_id, f.leader_node.as_ref()) {
            (Some(id), Some(node)) => Some(LeaderHint { node_id: id, addr: node.addr.clone() }),
            _ => None,
        };
        return ChronikError::not_leader(hint, group);
    }
    if let Some(ClientWriteError::ChangeMembershipError(c)) = e.api_error() {
        let code = match c {
            openraft::error::ChangeMembershipError::InProgress(_) => ErrorCode::Unavailable,
            _ => ErrorCode::InvalidRequest,
        };
        return ChronikError::new(code, format!("membership change of {group}: {c}"));
    }
    match e {
        RaftError::Fatal(f) => ChronikError::new(ErrorCode::Unavailable, format!("Raft group {group} stopped: {f}")),
        other => ChronikError::new(ErrorCode::Internal, format!("Raft group {group}: {other}")),
    }
}
