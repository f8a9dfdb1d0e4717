//! Liveness of data nodes and gateways, from their heartbeats. Kept in memory on whichever
//! control node receives them: it is soft state that the next heartbeats rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chronik_proto::control::ReplicaStatus;

#[derive(Debug)]
struct Seen {
    at: Instant,
    /// Start of the current run of heartbeats (reset when the node was considered dead).
    since: Instant,
    wall_ms: u64,
    /// The node's last replica report by topic, then partition: looked up for every partition
    /// of every metadata answer, so with 10,000 partitions a scan (or a copy) per lookup
    /// kept a core busy.
    replicas: HashMap<String, HashMap<u32, ReplicaStatus>>,
}

impl Seen {
    fn replica(&self, topic: &str, partition: u32) -> Option<&ReplicaStatus> {
        self.replicas.get(topic).and_then(|t| t.get(&partition))
    }
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
        let entry =
            map.entry(node_id).or_insert_with(|| Seen { at: now, since: now, wall_ms, replicas: HashMap::new() });
        if entry.at.elapsed() >= self.timeout {
            entry.since = now;
        }
        entry.at = now;
        entry.wall_ms = wall_ms;
        if let Some(report) = replicas {
            let mut by_topic: HashMap<String, HashMap<u32, ReplicaStatus>> = HashMap::new();
            for r in report {
                match by_topic.get_mut(&r.topic) {
                    Some(t) => {
                        t.insert(r.partition, r);
                    }
                    None => {
                        by_topic.entry(r.topic.clone()).or_default().insert(r.partition, r);
                    }
                }
            }
            entry.replicas = by_topic;
        }
    }

    /// Node `node_id` registered: it registers once per start, so it has just (re)started,
    /// even when it came back within the node timeout and no heartbeat was missed (a kill -9
    /// and a restart inside 1.5 s). Its run of heartbeats starts again, or the balancer would
    /// hand leadership straight back to a node that has not caught up; the last report of its
    /// previous run describes replicas that process no longer runs.
    pub fn registered(&self, node_id: u64) {
        self.beat(node_id, Some(Vec::new()));
        self.unsettle(node_id);
    }

    /// Node `node_id` is alive but refuses writes (its disk failed or is full): its run of
    /// heartbeats starts again, so [`Liveness::alive_for`] holds only once it has taken writes
    /// for the grace period. The balancer would otherwise hand it leadership (which it hands
    /// straight back) every round, and reassignment could move replicas onto it.
    pub fn unsettle(&self, node_id: u64) {
        if let Some(s) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&node_id) {
            s.since = Instant::now();
        }
    }

    /// Reads node `node_id`'s entry if it is live.
    fn live<T>(&self, node_id: u64, f: impl FnOnce(&Seen) -> T) -> Option<T> {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&node_id).filter(|s| s.at.elapsed() < self.timeout).map(f)
    }

    /// Whether live node `node_id` reported running a replica of the partition.
    pub fn hosts(&self, node_id: u64, topic: &str, partition: u32) -> bool {
        self.live(node_id, |s| s.replica(topic, partition).is_some()).unwrap_or(false)
    }

    pub fn is_alive(&self, node_id: u64) -> bool {
        self.live(node_id, |_| ()).is_some()
    }

    /// Alive, and without interruption for at least `grace` (not just restarted).
    pub fn alive_for(&self, node_id: u64, grace: Duration) -> bool {
        self.live(node_id, |s| s.since.elapsed() >= grace).unwrap_or(false)
    }

    /// Wall-clock time of the node's last heartbeat (alive or not), ms since the epoch.
    pub fn last_heartbeat_ms(&self, node_id: u64) -> Option<u64> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(&node_id).map(|s| s.wall_ms)
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
            let Some(r) = seen.replica(topic, partition).filter(|r| r.is_leader) else { continue };
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

    #[test]
    fn a_node_refusing_writes_is_alive_but_not_settled() {
        let l = Liveness::new(Duration::from_secs(10));
        l.beat(2, Some(Vec::new()));
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.alive_for(2, Duration::from_millis(20)));
        l.unsettle(2);
        assert!(l.is_alive(2), "it still answers and serves reads");
        assert!(!l.alive_for(2, Duration::from_millis(20)), "no leadership or replicas for it yet");
        std::thread::sleep(Duration::from_millis(30));
        l.beat(2, Some(Vec::new()));
        assert!(l.alive_for(2, Duration::from_millis(20)), "settled again once it took writes for the grace");
    }

    /// A node killed and restarted inside the node timeout never misses a heartbeat's deadline:
    /// its registration alone says it is new, and its old report no longer names it leader.
    #[test]
    fn a_node_that_registers_again_has_just_started() {
        let l = Liveness::new(Duration::from_secs(10));
        l.beat(2, Some(leading(1, 10)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.alive_for(2, Duration::from_millis(20)));
        l.registered(2);
        assert!(l.is_alive(2));
        assert!(!l.alive_for(2, Duration::from_millis(20)), "just restarted: not settled");
        assert_eq!(l.observed("t", 0).leader, None, "the report of its previous run is gone");
        assert!(!l.hosts(2, "t", 0));
        std::thread::sleep(Duration::from_millis(30));
        l.beat(2, Some(leading(1, 10)));
        assert!(l.alive_for(2, Duration::from_millis(20)), "settled once it kept beating for the grace");
    }
}
