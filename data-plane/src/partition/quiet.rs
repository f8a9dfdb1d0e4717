//! When a partition replica may go quiet, and how a quiet leader still knows it leads
//! (`chronik_raft::quiesce` has the protocol).

use std::sync::atomic::Ordering;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use super::Partition;
use crate::types::PartitionTypeConfig;

/// A leader's idle, fully replicated group, ready to ask its followers to go quiet.
pub struct QuietCandidate {
    pub term: u64,
    pub last_log_index: u64,
    /// Each follower with its address.
    pub followers: Vec<(u64, String)>,
    /// The leader's write count when the candidate was taken.
    pub activity: u64,
}

impl Partition {
    /// Quiet (or just woken) as leader: a quorum of voters' nodes have answered every ping
    /// since the group went quiet.
    pub(super) fn quiet_quorum(&self, m: &openraft::RaftMetrics<PartitionTypeConfig>) -> bool {
        let Some(since) = self.quiet.credit(m.current_term) else { return false };
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let live = voters.iter().filter(|v| **v == self.node_id || self.liveness.healthy_since(**v, since)).count();
        live * 2 > voters.len()
    }

    /// This replica leads a group with nothing left to replicate, whose followers' nodes
    /// answer pings: what to ask them. `None` otherwise (and for a group led alone, which
    /// the observer already keeps without timers).
    pub fn quiet_candidate(&self) -> Option<QuietCandidate> {
        if self.quiet.is_quiet() || self.membership_busy.load(Ordering::SeqCst) {
            return None;
        }
        let activity = self.quiet.activity();
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state != ServerState::Leader || m.current_leader != Some(self.node_id) || m.running_state.is_err() {
            return None;
        }
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 || membership.learner_ids().next().is_some() {
            return None;
        }
        let last = m.last_log_index?;
        let applied = m.last_applied.as_ref()?;
        let committed = m.cluster_committed.as_ref()?;
        if applied.index != last || committed.index != last || applied.leader_id.term != m.current_term {
            return None;
        }
        let repl = m.replication.as_ref()?;
        let mut followers = Vec::new();
        for v in membership.voter_ids().filter(|v| *v != self.node_id) {
            let matched = repl.get(&v).and_then(|l| l.as_ref()).map(|l| l.index);
            let addr = membership.get_node(&v)?.addr.clone();
            if matched != Some(last) {
                return None;
            }
            followers.push((v, addr));
        }
        if followers.is_empty() {
            return None;
        }
        Some(QuietCandidate { term: m.current_term, last_log_index: last, followers, activity })
    }

    /// A quiet leader whose group stopped on a storage failure: its followers must hear of
    /// it from the pings. True once, when that is first seen.
    pub fn quiet_leader_failed(&self) -> bool {
        if !self.quiet.is_quiet_leader() || self.raft.metrics().borrow_watched().running_state.is_ok() {
            return false;
        }
        self.quiet.wake();
        self.liveness.record_stopped(&self.name);
        true
    }
}
