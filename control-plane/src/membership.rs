//! Control-plane membership on the `__meta` group: join, add learner, promote, remove, and
//! leadership transfer. All run on the leader; a follower answers with the leader hint.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chronik_proto::control::{MembersResponse, NodeInfo, NodeRole};
use chronik_raft::errors::write_error;
use chronik_shared::error::{ChronikError, ErrorCode};
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};

use crate::service::ControlServiceImpl;

impl ControlServiceImpl {
    /// Every node's view: voters, learners, leader and term as this node sees them. `alive`:
    /// on the leader, replicating within `cluster.raft.replica_lag_time_max_ms`; a follower
    /// cannot tell, and reports every member alive.
    pub fn members(&self) -> MembersResponse {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let leading = m.current_leader == Some(self.node_id);
        let lag = if leading { self.lag.get() } else { Default::default() };
        let alive = |id: u64| !leading || id == self.node_id || lag.get(&id).is_some_and(|l| l.ms <= self.lag_max_ms);
        let http: std::collections::HashMap<u64, String> = self
            .sm
            .nodes()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.role == crate::types::Role::Control)
            .map(|n| (n.node_id, n.http_addr))
            .collect();
        let mut resp = MembersResponse {
            voters: Vec::new(),
            learners: Vec::new(),
            leader: m.current_leader,
            term: m.current_term,
        };
        for (id, node) in membership.nodes() {
            let info = NodeInfo {
                node_id: *id,
                role: NodeRole::Control as i32,
                addr: node.addr.clone(),
                rack: String::new(),
                alive: alive(*id),
                last_heartbeat_ms: 0,
                http_addr: http.get(id).cloned().unwrap_or_default(),
            };
            if voters.contains(id) {
                resp.voters.push(info);
            } else {
                resp.learners.push(info);
            }
        }
        resp
    }

    fn is_voter(&self, id: u64) -> bool {
        self.raft.metrics().borrow_watched().membership_config.membership().voter_ids().any(|v| v == id)
    }

    fn is_member(&self, id: u64) -> bool {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).is_some()
    }

    fn need_addr(addr: &str) -> Result<BasicNode, ChronikError> {
        if addr.is_empty() || !addr.contains(':') {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("member address {addr:?} must be the node's gRPC host:port, e.g. \"node4:9093\""),
            ));
        }
        Ok(BasicNode { addr: addr.to_string() })
    }

    /// A new control node asking to join: learner first, caught up, then voter. Idempotent, so
    /// a node that retries after a timeout ends up a voter exactly once.
    pub async fn join(&self, id: u64, addr: &str) -> Result<MembersResponse, ChronikError> {
        self.ensure_leader()?;
        if self.is_voter(id) {
            return Ok(self.members());
        }
        let node = Self::need_addr(addr)?;
        tracing::info!(target: "chronik_cluster", "Node {id} at {addr} is joining the control plane: adding it as a learner");
        self.raft.add_learner(id, node, true).await.map_err(|e| write_error(e, "__meta"))?;
        tracing::info!(target: "chronik_cluster", "Node {id} caught up; promoting it to voter");
        self.promote(id).await
    }

    pub async fn add_learner(&self, id: u64, addr: &str) -> Result<MembersResponse, ChronikError> {
        self.ensure_leader()?;
        let node = Self::need_addr(addr)?;
        // Not blocking: the learner catches up in the background; promote it when it has.
        self.raft.add_learner(id, node, false).await.map_err(|e| write_error(e, "__meta"))?;
        tracing::info!(target: "chronik_cluster", "Added node {id} at {addr} as a learner");
        Ok(self.members())
    }

    pub async fn promote(&self, id: u64) -> Result<MembersResponse, ChronikError> {
        self.ensure_leader()?;
        if !self.is_member(id) {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("node {id} is not a learner of the control plane; add it as a learner first"),
            ));
        }
        if !self.is_voter(id) {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
                .map_err(|e| write_error(e, "__meta"))?;
            tracing::info!(target: "chronik_cluster", "Promoted node {id} to voter");
        }
        Ok(self.members())
    }

    pub async fn remove(&self, id: u64) -> Result<MembersResponse, ChronikError> {
        self.ensure_leader()?;
        if self.is_voter(id) {
            let voters = self.members().voters.len();
            if voters <= 1 {
                return Err(ChronikError::new(ErrorCode::InvalidRequest, format!("node {id} is the last voter")));
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| write_error(e, "__meta"))?;
        } else if self.is_member(id) {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(|e| write_error(e, "__meta"))?;
        } else {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("node {id} is not a member of the control plane"),
            ));
        }
        tracing::info!(target: "chronik_cluster", "Removed node {id} from the control plane");
        Ok(self.members())
    }

    /// Hands leadership to `target` and waits (up to a few election timeouts) until it leads.
    pub async fn transfer_leader(&self, target: u64, wait: Duration) -> Result<MembersResponse, ChronikError> {
        self.ensure_leader()?;
        if target == self.node_id {
            return Ok(self.members());
        }
        if !self.is_voter(target) {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("node {target} is not a voter; only voters can lead"),
            ));
        }
        tracing::info!(target: "chronik_cluster", "Transferring __meta leadership to node {target}");
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| ChronikError::new(ErrorCode::Unavailable, format!("leader transfer: {e}")))?;
        let deadline = Instant::now() + wait;
        let mut rx = self.raft.metrics();
        while Instant::now() < deadline {
            if rx.borrow_watched().current_leader == Some(target) {
                return Ok(self.members());
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
        Err(ChronikError::new(
            ErrorCode::Timeout,
            format!("node {target} did not take over leadership within {wait:?}"),
        ))
    }
}
