//! Liveness of data nodes and gateways, from their heartbeats. Kept in memory on whichever
//! control node receives them: it is soft state that the next heartbeats rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronik_proto::control::ReplicaStatus;

#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    /// Start of the current run of heartbeats (reset when the node was considered dead).
    pub since: Instant,
    pub wall_ms: u64,
    pub replicas: Vec<ReplicaStatus>,
}

/// A partition as its leader reports it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub leader: Option<u64>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub isr: Vec<u64>,
    /// The partition's Raft membership as its leader has it.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Clone)]
pub struct Liveness {
    seen: Arc<Mutex<HashMap<u64, Seen>>>,
    timeout: Duration,
}

impl Liveness {
    pub fn new(timeout: Duration) -> Self {
        Self { seen: Arc::default(), timeout }
    }

    pub fn beat(&self, node_id: u64, replicas: Option<Vec<ReplicaStatus>>) {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = map.entry(node_id).or_insert_with(|| Seen { at: now, since: now, wall_ms, replicas: Vec::new() });
        if entry.at.elapsed() >= self.timeout {
            entry.since = now;
        }
        entry.at = now;
        entry.wall_ms = wall_ms;
        if let Some(r) = replicas {
            entry.replicas = r;
        }
    }

    /// Whether live node `node_id` reported running a replica of the partition.
    pub fn hosts(&self, node_id: u64, topic: &str, partition: u32) -> bool {
        self.get(node_id).is_some_and(|s| {
            s.at.elapsed() < self.timeout && s.replicas.iter().any(|r| r.topic == topic && r.partition == partition)
        })
    }

    pub fn is_alive(&self, node_id: u64) -> bool {
        self.get(node_id).is_some_and(|s| s.at.elapsed() < self.timeout)
    }

    /// Alive, and without interruption for at least `grace` (not just restarted).
    pub fn alive_for(&self, node_id: u64, grace: Duration) -> bool {
        self.get(node_id).is_some_and(|s| s.at.elapsed() < self.timeout && s.since.elapsed() >= grace)
    }

    pub fn get(&self, node_id: u64) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(&node_id).cloned()
    }

    /// What the live leader of a partition reports of it. A leader killed a moment ago still
    /// counts as live until it times out, and its last report says it leads: of several
    /// reports the one of the highest term wins (then the newest), or producers would be sent
    /// to the dead node until then.
    pub fn observed(&self, topic: &str, partition: u32) -> Observed {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Observed::default();
        let mut best: Option<(u64, Instant)> = None;
        for (node, seen) in map.iter() {
            if seen.at.elapsed() >= self.timeout {
                continue;
            }
            for r in &seen.replicas {
                if r.topic == topic && r.partition == partition && r.is_leader {
                    if best.is_some_and(|b| b >= (r.term, seen.at)) {
                        continue;
                    }
                    best = Some((r.term, seen.at));
                    out = Observed {
                        leader: Some(*node),
                        high_watermark: r.high_watermark,
                        log_start_offset: r.log_start_offset,
                        isr: r.isr.clone(),
                        voters: r.voters.clone(),
                        learners: r.learners.clone(),
                    };
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(term: u64, high_watermark: u64) -> Vec<ReplicaStatus> {
        vec![ReplicaStatus {
            topic: "t".into(),
            partition: 0,
            is_leader: true,
            high_watermark,
            term,
            ..Default::default()
        }]
    }

    /// A killed leader's last report ("I lead term 1") is still within the node timeout when
    /// its successor reports term 2: the successor is the leader, whichever node id sorts first.
    #[test]
    fn the_report_of_the_highest_term_names_the_leader() {
        for (old, new) in [(2, 4), (4, 2)] {
            let l = Liveness::new(Duration::from_secs(10));
            l.beat(old, Some(leading(1, 10)));
            l.beat(new, Some(leading(2, 12)));
            let o = l.observed("t", 0);
            assert_eq!((o.leader, o.high_watermark), (Some(new), 12), "old leader {old}, new {new}");
            // Its next heartbeat changes nothing either.
            l.beat(old, Some(leading(1, 10)));
            assert_eq!(l.observed("t", 0).leader, Some(new));
        }
    }
}
