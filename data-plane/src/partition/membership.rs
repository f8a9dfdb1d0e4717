//! Carries the control plane's desired replicas into the partition's Raft group, on its
//! leader: a new replica joins as a learner, becomes a voter once it has caught up, and the
//! replica it replaces is removed in the same membership change. A leader that is itself
//! being moved away first hands leadership to a replica that stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chronik_raft::observer::FollowerLag;
use openraft::BasicNode;
use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;

use super::Partition;

/// A learner at most this many entries behind is caught up enough to vote.
const CAUGHT_UP_ENTRIES: u64 = 64;
/// A partition handed over because its node refused writes is not handed over again sooner:
/// when every replica's disk refuses writes (a cluster-wide full disk), leadership would
/// otherwise go round the replicas every few hundred milliseconds, disturbing the readers
/// for nothing.
const HAND_OVER_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// The Raft membership as this replica knows it.
pub struct Members {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

impl Partition {
    pub fn members(&self) -> Members {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        Members { voters: membership.voter_ids().collect(), learners: membership.learner_ids().collect() }
    }

    /// Starts one step towards `replicas` in the background, if this replica leads and no
    /// step is already running.
    pub fn follow_assignment(self: &Arc<Self>, replicas: &[u64], addrs: &HashMap<u64, String>) {
        if replicas.is_empty() || !self.is_leader() || self.membership_busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let (me, wanted, addrs) = (self.clone(), replicas.iter().copied().collect::<BTreeSet<u64>>(), addrs.clone());
        tokio::spawn(async move {
            if let Err(e) = me.membership_step(&wanted, &addrs).await {
                tracing::warn!(target: "chronik_cluster", partition = %me.name, "replica move step failed: {e}");
            }
            me.membership_busy.store(false, Ordering::SeqCst);
        });
    }

    async fn membership_step(&self, wanted: &BTreeSet<u64>, addrs: &HashMap<u64, String>) -> Result<(), String> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.membership_config.membership().get_joint_config().len() > 1 {
            // A previous leader left a change half done (leadership moved between its two
            // steps): finish it towards the desired voters.
            tracing::info!(target: "chronik_cluster", partition = %self.name, "Completing a membership change towards {wanted:?}");
            return self.change(ChangeMembers::ReplaceAllVoters(wanted.clone())).await;
        }
        let Members { voters, learners } = self.members();
        let lag = self.observer.lag();
        let caught_up = |n: &u64| *n == self.node_id || lag.get(n).is_some_and(|l| l.entries <= CAUGHT_UP_ENTRIES);
        if !wanted.contains(&self.node_id) {
            if let Some(to) = voters.iter().find(|v| wanted.contains(v) && self.ready_to_lead(**v, &lag).is_ok()) {
                tracing::info!(target: "chronik_cluster", partition = %self.name, "Moving off node {}: transferring leadership to node {to}", self.node_id);
                self.quiet.touch();
                self.raft.trigger().transfer_leader(*to).await.map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        for n in wanted.iter().filter(|n| !voters.contains(n) && !learners.contains(n)) {
            let Some(addr) = addrs.get(n) else { continue };
            tracing::info!(target: "chronik_cluster", partition = %self.name, "Adding node {n} as a learner");
            self.quiet.touch();
            self.raft.add_learner(*n, BasicNode { addr: addr.clone() }, false).await.map_err(|e| e.to_string())?;
            return Ok(());
        }
        if &voters != wanted {
            if !wanted.iter().all(caught_up) {
                return Ok(()); // The learners are still catching up.
            }
            tracing::info!(target: "chronik_cluster", partition = %self.name, "Changing voters from {voters:?} to {wanted:?}");
            return self.change(ChangeMembers::ReplaceAllVoters(wanted.clone())).await;
        }
        let stray: BTreeSet<u64> = learners.difference(wanted).copied().collect();
        if !stray.is_empty() {
            tracing::info!(target: "chronik_cluster", partition = %self.name, "Removing learners {stray:?}");
            return self.change(ChangeMembers::RemoveNodes(stray)).await;
        }
        Ok(())
    }

    /// Whether voter `n` could take this group over now: it holds nearly all of the log and
    /// has answered within the quorum window. openraft stops leading as soon as it hands over,
    /// so handing over to a replica that cannot win (its group stopped by a disk error, its
    /// node cut off) left the partition without a leader until an election timed out; the
    /// balancer did that once a second to a node whose log had fail-stopped (fault campaign,
    /// seed 1795817705036654036). Err says why not. `lag` is [`RaftObserver::lag`], read once
    /// by the caller.
    ///
    /// [`RaftObserver::lag`]: chronik_raft::RaftObserver::lag
    pub(super) fn ready_to_lead(&self, n: u64, lag: &BTreeMap<u64, FollowerLag>) -> Result<(), String> {
        if n == self.node_id {
            return Ok(());
        }
        let window = self.quorum_window.as_millis() as u64;
        match lag.get(&n) {
            Some(l) if l.entries <= CAUGHT_UP_ENTRIES && l.ms <= window => Ok(()),
            Some(l) => Err(format!(
                "it is {} entries behind and last caught up or answered {} ms ago (more than {CAUGHT_UP_ENTRIES} entries or {window} ms: its replica may be stopped, cut off or catching up)",
                l.entries, l.ms
            )),
            None => Err("this leader has no replication state for it yet".into()),
        }
    }

    /// Hands leadership to the most caught-up voter that can take over, if this replica
    /// leads and there is one: this node refuses writes (`why`).
    pub async fn hand_over(&self, why: &str) -> Result<(), String> {
        let last = *self.handed_over.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_leader() || last.is_some_and(|t| t.elapsed() < HAND_OVER_AGAIN_AFTER) {
            return Ok(());
        }
        let lag = self.observer.lag();
        let Members { voters, .. } = self.members();
        let Some(to) = voters
            .into_iter()
            .filter(|v| *v != self.node_id && self.ready_to_lead(*v, &lag).is_ok())
            .min_by_key(|v| lag.get(v).map(|l| (l.entries, l.ms)))
        else {
            return Ok(());
        };
        tracing::warn!(target: "chronik_cluster", partition = %self.name, "Handing leadership to node {to}: {why}");
        *self.handed_over.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        self.quiet.touch();
        self.raft.trigger().transfer_leader(to).await.map_err(|e| e.to_string())
    }

    /// One membership change; replaced voters are removed, not kept as learners.
    async fn change(&self, change: ChangeMembers<u64, BasicNode>) -> Result<(), String> {
        self.quiet.touch();
        self.raft.change_membership(change, false).await.map(|_| ()).map_err(|e| e.to_string())
    }
}
