//! The data node's side of quiescence (`chronik_raft::quiesce`): every so often, the groups
//! this node leads that have been idle and fully replicated for `cluster.raft.quiesce_after_ms`
//! ask their followers, one message per follower node, to go quiet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronik_proto::raft::{QuiesceGroup, QuiesceRequest};

use crate::node::DataInner;
use crate::partition::Partition;
use crate::partition::quiet::QuietCandidate;

/// Since when each leader's log has stood still, and at which write count.
type Idle = HashMap<String, (u64, u64, Instant)>;

pub(crate) async fn quiesce_loop(inner: Arc<DataInner>) {
    let after = Duration::from_millis(inner.cfg.cluster.raft.quiesce_after_ms);
    if after.is_zero() {
        return;
    }
    let every = (after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let liveness = inner.groups.liveness().clone();
    let node = inner.node_id.to_string();
    let mut idle: Idle = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let mut quiet = 0i64;
        let mut ready: Vec<(Arc<Partition>, QuietCandidate)> = Vec::new();
        let partitions = inner.partitions();
        for p in &partitions {
            if p.leader_failed() {
                tracing::warn!(target: "chronik_raft", partition = %p.name, "Group stopped while leading; its quiet followers are told through the pings");
            }
            if p.quiet.is_quiet() {
                quiet += 1;
                continue;
            }
            let Some(c) = p.quiet_candidate() else {
                idle.remove(&p.name);
                continue;
            };
            let since = match idle.get(&p.name) {
                Some((a, i, since)) if *a == c.activity && *i == c.last_log_index => *since,
                _ => {
                    idle.insert(p.name.clone(), (c.activity, c.last_log_index, now));
                    continue;
                }
            };
            if now.duration_since(since) < after {
                continue;
            }
            // Its followers' nodes must be watched, and up, before the group depends on them.
            let mut up = true;
            for (f, addr) in &c.followers {
                liveness.track(*f, addr, None);
                up &= liveness.is_up(*f);
            }
            if up {
                ready.push((p.clone(), c));
            }
        }
        let names: HashSet<&str> = partitions.iter().map(|p| p.name.as_str()).collect();
        idle.retain(|n, _| names.contains(n.as_str()));
        chronik_shared::metrics::RAFT_QUIESCENT_GROUPS.with_label_values(&[&node]).set(quiet);
        if ready.is_empty() {
            continue;
        }
        let accepted = ask_followers(&inner, &ready).await;
        for (p, c) in ready {
            let all = c.followers.iter().all(|(f, _)| accepted.get(f).is_some_and(|a| a.contains(&p.name)));
            let followers = c.followers.iter().map(|(f, _)| *f).collect();
            if all && p.quiet.lead_quietly(c.term, c.last_log_index, followers, now, c.activity) {
                tracing::debug!(target: "chronik_raft", partition = %p.name, "Group quiet at index {}", c.last_log_index);
            }
        }
    }
}

/// One Quiesce per follower node; the groups each accepted.
async fn ask_followers(inner: &DataInner, ready: &[(Arc<Partition>, QuietCandidate)]) -> HashMap<u64, HashSet<String>> {
    let mut asks: HashMap<u64, (String, Vec<QuiesceGroup>)> = HashMap::new();
    for (p, c) in ready {
        for (f, addr) in &c.followers {
            asks.entry(*f).or_insert_with(|| (addr.clone(), Vec::new())).1.push(QuiesceGroup {
                group: p.name.clone(),
                term: c.term,
                last_log_index: c.last_log_index,
            });
        }
    }
    let me = inner.node_id;
    let (incarnation, epoch) = inner.groups.liveness().identity();
    let timeout = Duration::from_millis(inner.cfg.cluster.raft.election_timeout_ms);
    let calls = asks.into_iter().map(|(f, (addr, groups))| async move {
        let mut accepted = HashSet::new();
        let Ok(mut client) = inner.pool.client(&addr) else { return (f, accepted) };
        if inner.pool.cut_either_way(f) {
            return (f, accepted);
        }
        let req = QuiesceRequest { node_id: me, groups, incarnation, epoch };
        match tokio::time::timeout(timeout, client.quiesce(req)).await {
            Ok(Ok(r)) => accepted.extend(r.into_inner().accepted),
            Ok(Err(e)) => {
                tracing::debug!(target: "chronik_raft", "node {f} did not take quiet groups: {}", e.message())
            }
            Err(_) => tracing::debug!(target: "chronik_raft", "node {f} did not answer a Quiesce in time"),
        }
        (f, accepted)
    });
    futures::future::join_all(calls).await.into_iter().collect()
}
