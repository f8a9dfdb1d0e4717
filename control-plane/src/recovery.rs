//! Recovering `__meta` when Raft alone cannot: the guide's Force Quorum
//! (`chronik-server admin force-membership`) and Emergency Cluster Rebuild (`raft_*` deleted).
//!
//! Both append one membership entry naming the surviving voters, under a term newer than any
//! the node has seen and with a vote for itself, so the node starts as the candidate of that
//! membership and commits it with everything before it. Topics, assignments and offsets live
//! in the state machine and the log, and are kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chronik_raft::{PurgeMode, WalLogStore};
use openraft::alias::{LogIdOf, VoteOf};
use openraft::vote::RaftLeaderId;
use openraft::{BasicNode, EntryPayload, LogId, Membership, RaftTypeConfig};

use crate::state_machine::ControlStateMachine;
use crate::{ControlError, META_GROUP, MetaTypeConfig};

type C = MetaTypeConfig;

/// Node addresses known to this node: the last membership in its log, else its state machine.
fn known_addrs(log: &WalLogStore<C>, sm: &ControlStateMachine) -> Result<BTreeMap<u64, String>, ControlError> {
    let mut addrs = BTreeMap::new();
    let (_, stored) = sm.applied()?;
    for (id, n) in stored.membership().nodes() {
        addrs.insert(*id, n.addr.clone());
    }
    for e in log.entries()? {
        if let EntryPayload::Membership(m) = &e.payload {
            for (id, n) in m.nodes() {
                addrs.insert(*id, n.addr.clone());
            }
        }
    }
    Ok(addrs)
}

/// Makes `voters` (and `learners`) the membership of `__meta` on this node's log.
pub async fn force_membership(
    log: &WalLogStore<C>,
    node_id: u64,
    voters: &BTreeSet<u64>,
    learners: &BTreeSet<u64>,
    addrs: &BTreeMap<u64, String>,
) -> Result<LogIdOf<C>, ControlError> {
    if !voters.contains(&node_id) {
        return Err(ControlError::Recovery(format!(
            "voters {voters:?} must include this node ({node_id}): it is the one that restarts the cluster"
        )));
    }
    let mut nodes = BTreeMap::new();
    for id in voters.iter().chain(learners.iter()) {
        let addr = addrs.get(id).ok_or_else(|| {
            ControlError::Recovery(format!(
                "node {id} has no known address in this node's log or state; it cannot be a member"
            ))
        })?;
        nodes.insert(*id, BasicNode { addr: addr.clone() });
    }
    let membership = Membership::new(vec![voters.clone()], nodes)
        .map_err(|e| ControlError::Recovery(format!("invalid membership: {e}")))?;
    let last = log.last_log_id();
    let term = std::cmp::max(
        log.vote().map(|v| v.leader_id().term).unwrap_or(0),
        last.as_ref().map(|l| l.leader_id.term).unwrap_or(0),
    ) + 1;
    let leader = <<C as RaftTypeConfig>::LeaderId as RaftLeaderId>::new(term, node_id).to_committed();
    let log_id = LogId::new(leader, last.as_ref().map(|l| l.index + 1).unwrap_or(0));
    log.save_vote_now(&VoteOf::<C>::new_committed(term, node_id))?;
    log.append_now(vec![openraft::Entry { log_id, payload: EntryPayload::Membership(membership) }]).await?;
    Ok(log_id)
}

/// `chronik-server admin force-membership`: on a stopped node's data directory.
pub async fn force_membership_offline(
    data_dir: &Path,
    wal: chronik_shared::wal::WalOptions,
    node_id: u64,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
) -> Result<String, ControlError> {
    let dir = data_dir.join("wal").join(META_GROUP);
    if !dir.exists() {
        return Err(ControlError::Recovery(format!(
            "{} does not exist: is --config the stopped node's config?",
            dir.display()
        )));
    }
    // The WAL is locked by a running node, so this fails rather than race one.
    let log = WalLogStore::<C>::open(&dir, 0, wal, PurgeMode::Delete).map_err(|e| {
        ControlError::Recovery(format!(
            "cannot open {} ({e}); stop the node first (systemctl stop chronik)",
            dir.display()
        ))
    })?;
    let sm = ControlStateMachine::open(&data_dir.join("control"))?;
    let addrs = known_addrs(&log, &sm)?;
    let log_id = force_membership(&log, node_id, &voters, &learners, &addrs).await?;
    log.wal().close();
    Ok(format!(
        "__meta membership forced to voters {voters:?}, learners {learners:?} at log index {} (term {}); start the node now",
        log_id.index, log_id.leader_id.term
    ))
}

/// Emergency Cluster Rebuild, first node: `raft_*` is gone but the state machine holds the
/// cluster's state. The state machine's last applied entry becomes the purge point (with a
/// snapshot there), and this node alone is made the voter.
pub async fn rebuild_single(
    log: &WalLogStore<C>,
    sm: &mut ControlStateMachine,
    node_id: u64,
    addr: String,
) -> Result<(), ControlError> {
    let (applied, _) = sm.applied()?;
    let Some(applied) = applied else { return Ok(()) };
    tracing::warn!(
        target: "chronik_cluster",
        "__meta Raft state is missing but the state machine holds everything up to index {}: rebuilding the control plane with node {node_id} as its only voter (Emergency Cluster Rebuild)",
        applied.index
    );
    // Entries after the applied point stay: they may be committed writes another node
    // acknowledged. Everything up to it is in the state machine, and in a snapshot that
    // covers the new purge point for nodes that rejoin.
    sm.snapshot_now().await?;
    log.set_purged(applied)?;
    let addrs = BTreeMap::from([(node_id, addr)]);
    force_membership(log, node_id, &BTreeSet::from([node_id]), &BTreeSet::new(), &addrs).await?;
    Ok(())
}
