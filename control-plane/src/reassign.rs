//! Replica placement after creation: moves replicas onto data nodes that joined, off nodes
//! being decommissioned, and reorders replica lists so preferred leaders stay spread.
//!
//! The control plane only changes the desired replicas (`MoveReplicas`); the partition's
//! leader carries the move out in its Raft group (learner, then voter, then the old replica
//! removed; `data-plane/src/membership.rs`). A move is in flight while the leader's reported
//! voters differ from the desired set; only a few are in flight at once, so moving data never
//! starves producers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::service::ControlServiceImpl;
use crate::types::{ControlCommand, NodeRecord, Role, TopicRecord};

/// Replica moves (data copied to a new node) in flight at once, cluster-wide.
const MAX_MOVES_IN_FLIGHT: usize = 2;

/// One decision of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<u64>,
}

/// The state a round decides from.
pub(crate) struct View<'a> {
    pub topics: &'a [TopicRecord],
    /// Data nodes that may receive replicas: alive for a while, not draining.
    pub eligible: BTreeSet<u64>,
    pub draining: BTreeSet<u64>,
    /// Partitions whose Raft voters are not yet the desired set.
    pub in_flight: usize,
}

/// Per eligible node, how many of the replicas `pick` selects from each list it holds.
fn count(view: &View, pick: fn(&[u64]) -> &[u64]) -> BTreeMap<u64, usize> {
    let mut counts: BTreeMap<u64, usize> = view.eligible.iter().map(|n| (*n, 0)).collect();
    for r in view.topics.iter().flat_map(|t| t.assignments.iter()).flat_map(|r| pick(r)) {
        if let Some(c) = counts.get_mut(r) {
            *c += 1;
        }
    }
    counts
}

/// Replica counts per eligible node.
fn loads(view: &View) -> BTreeMap<u64, usize> {
    count(view, |r| r)
}

/// The most and the least counted node, when they differ by more than one.
fn uneven(counts: &BTreeMap<u64, usize>) -> Option<(u64, u64)> {
    let (&most, &high) = counts.iter().max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))?;
    let (&least, &low) = counts.iter().min_by_key(|(n, c)| (**c, **n))?;
    (high > low + 1).then_some((most, least))
}

/// The first partition for which `change` gives a new replica list.
fn first_change(view: &View, mut change: impl FnMut(&[u64]) -> Option<Vec<u64>>) -> Option<Move> {
    for t in view.topics {
        for (p, replicas) in t.assignments.iter().enumerate() {
            if let Some(next) = change(replicas) {
                return Some(Move { topic: t.name.clone(), partition: p as u32, replicas: next });
            }
        }
    }
    None
}

/// The next replica move, if one is due: first off draining nodes, then from the most to the
/// least loaded eligible node when they differ by more than one. The new node takes the old
/// one's place in the list, so it also inherits its preferred leadership.
pub(crate) fn next_move(view: &View) -> Option<Move> {
    if view.in_flight >= MAX_MOVES_IN_FLIGHT || view.eligible.is_empty() {
        return None;
    }
    let load = loads(view);
    let off_draining = first_change(view, |replicas| {
        let pos = replicas.iter().position(|r| view.draining.contains(r))?;
        let to = load.iter().filter(|(n, _)| !replicas.contains(n)).min_by_key(|(n, c)| (**c, **n))?.0;
        let mut next = replicas.to_vec();
        next[pos] = *to;
        Some(next)
    });
    if off_draining.is_some() {
        return off_draining;
    }
    let (most, least) = uneven(&load)?;
    first_change(view, |replicas| {
        let pos = replicas.iter().position(|r| *r == most).filter(|_| !replicas.contains(&least))?;
        let mut next = replicas.to_vec();
        next[pos] = least;
        Some(next)
    })
}

/// A reordering of one replica list that spreads preferred leaders (first replicas) more
/// evenly over the eligible nodes; it moves no data.
pub(crate) fn next_reorder(view: &View) -> Option<Move> {
    let (most, least) = uneven(&count(view, |r| r.get(..1).unwrap_or_default()))?;
    first_change(view, |replicas| {
        let pos = replicas.iter().position(|r| *r == least).filter(|_| replicas.first() == Some(&most))?;
        let mut next = replicas.to_vec();
        next.swap(0, pos);
        Some(next)
    })
}

impl ControlServiceImpl {
    /// Partitions whose leader reports voters other than the desired replicas, and the
    /// replicas still assigned to `node`.
    pub(crate) fn move_progress(&self, topics: &[TopicRecord], node: Option<u64>) -> (usize, usize) {
        let mut in_flight = 0;
        let mut on_node = 0;
        for t in topics {
            for (p, replicas) in t.assignments.iter().enumerate() {
                let voters: BTreeSet<u64> = self.liveness.observed(&t.name, p as u32).voters.into_iter().collect();
                let wanted: BTreeSet<u64> = replicas.iter().copied().collect();
                if !voters.is_empty() && voters != wanted {
                    in_flight += 1;
                }
                if node.is_some_and(|n| wanted.contains(&n) || voters.contains(&n)) {
                    on_node += 1;
                }
            }
        }
        (in_flight, on_node)
    }

    /// One round on the control-plane leader: at most one replica move and one reordering.
    pub(crate) async fn reassign_round(&self, grace: Duration) {
        let (Ok(topics), Ok(nodes)) = (self.sm.topics(), self.sm.nodes()) else { return };
        let data: Vec<&NodeRecord> = nodes.iter().filter(|n| n.role == Role::Data).collect();
        let view = View {
            topics: &topics,
            eligible: data
                .iter()
                .filter(|n| !n.draining && self.liveness.alive_for(n.node_id, grace))
                .map(|n| n.node_id)
                .collect(),
            draining: data.iter().filter(|n| n.draining).map(|n| n.node_id).collect(),
            in_flight: self.move_progress(&topics, None).0,
        };
        for m in [next_move(&view), next_reorder(&view)].into_iter().flatten() {
            let Move { topic, partition, replicas } = m;
            tracing::info!(target: "chronik_cluster", "Reassigning {topic}-{partition} to replicas {replicas:?}");
            match self.write(ControlCommand::MoveReplicas { topic: topic.clone(), partition, replicas }).await {
                Ok(crate::types::ControlResponse::Topic(t)) => self.push_assignments(&t),
                Ok(_) => {}
                Err(e) => tracing::warn!(target: "chronik_cluster", "reassigning {topic}-{partition} failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(assignments: Vec<Vec<u64>>) -> TopicRecord {
        TopicRecord {
            name: "t".into(),
            topic_id: uuid::Uuid::nil(),
            replication_factor: 3,
            configs: Default::default(),
            assignments,
            moved: Default::default(),
        }
    }

    fn apply(t: &mut TopicRecord, m: Move) {
        t.assignments[m.partition as usize] = m.replicas;
    }

    #[test]
    fn a_new_node_gets_its_share_and_preferred_leaders_spread() {
        let mut t = topic(crate::placement::place(&[1, 2, 3], 0, 12, 3).unwrap());
        let eligible: BTreeSet<u64> = [1, 2, 3, 4].into();
        loop {
            let view = View {
                topics: std::slice::from_ref(&t),
                eligible: eligible.clone(),
                draining: [].into(),
                in_flight: 0,
            };
            match next_move(&view).or_else(|| next_reorder(&view)) {
                Some(m) => apply(&mut t, m),
                None => break,
            }
        }
        let view = View { topics: std::slice::from_ref(&t), eligible, draining: [].into(), in_flight: 0 };
        assert_eq!(loads(&view).values().copied().collect::<Vec<_>>(), vec![9, 9, 9, 9]);
        let mut first: BTreeMap<u64, usize> = BTreeMap::new();
        for r in &t.assignments {
            *first.entry(r[0]).or_default() += 1;
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "a replica list lost a replica: {r:?}");
        }
        assert_eq!(first.values().copied().collect::<Vec<_>>(), vec![3, 3, 3, 3]);
    }

    #[test]
    fn a_draining_node_is_emptied_and_moves_wait_for_the_ones_in_flight() {
        let mut t = topic(crate::placement::place(&[1, 2, 3, 4], 0, 12, 3).unwrap());
        let view =
            View { topics: std::slice::from_ref(&t), eligible: [1, 2, 3].into(), draining: [4].into(), in_flight: 2 };
        assert_eq!(next_move(&view), None, "two moves are already in flight");
        loop {
            let view = View {
                topics: std::slice::from_ref(&t),
                eligible: [1, 2, 3].into(),
                draining: [4].into(),
                in_flight: 0,
            };
            match next_move(&view) {
                Some(m) => apply(&mut t, m),
                None => break,
            }
        }
        assert!(t.assignments.iter().all(|r| !r.contains(&4) && r.len() == 3));
    }
}
