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
            // Heard from through Raft at all since it began to lead. (Not "lately": with a
            // thousand groups heartbeating on two cores acks come late, and demanding fresh
            // ones kept every group awake and the nodes saturated.)
            let acked = m.heartbeat.as_ref().and_then(|h| h.get(&v).cloned().flatten()).is_some();
            let addr = membership.get_node(&v)?.addr.clone();
            if matched != Some(last) || !acked {
                return None;
            }
            followers.push((v, addr));
        }
        if followers.is_empty() {
            return None;
        }
        Some(QuietCandidate { term: m.current_term, last_log_index: last, followers, activity })
    }

    /// A group this replica led stopped on a storage failure. Followers that went quiet
    /// under it (the leader itself may have woken since) hear of it only from the pings.
    /// True once, when that is first seen.
    pub fn leader_failed(&self) -> bool {
        let failed = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.running_state.is_err() && m.current_leader == Some(self.node_id)
        };
        failed && self.report_stop()
    }

    /// This replica stops leading without telling its followers (a failure, a stop, its
    /// removal): reported once in this node's pings.
    pub(super) fn report_stop(&self) -> bool {
        if self.stop_reported.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.quiet.wake();
        self.liveness.record_stopped(&self.name);
        true
    }
}
