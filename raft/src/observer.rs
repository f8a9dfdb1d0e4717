//! Watches a group's openraft metrics and turns changes into the operations guide's log lines
//! ("Starting leader election, term=5", "Became leader for term 5", ...) and into the
//! `chronik_raft_*` Prometheus families.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_shared::metrics as m;
use openraft::alias::InstantOf;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::TypeConfigExt;
use openraft::{Instant, Raft, RaftMetrics, RaftTypeConfig, ServerState};
use tracing::{info, warn};

/// How far one follower is behind, as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLag {
    pub entries: u64,
    /// How long the follower's state has been stale: since the leader's log first went past
    /// what the follower holds, or since it last acknowledged anything, whichever is longer.
    pub ms: u64,
}

/// Reads the lag a [`RaftObserver`] measures.
#[derive(Clone, Default)]
pub struct LagView(Arc<Mutex<BTreeMap<u64, FollowerLag>>>);

impl LagView {
    pub fn get(&self) -> BTreeMap<u64, FollowerLag> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Watches one group; [`RaftObserver::lag`] answers how far its followers are behind.
pub struct RaftObserver {
    task: tokio::task::JoinHandle<()>,
    lag: Arc<Mutex<BTreeMap<u64, FollowerLag>>>,
}

/// Leaders re-evaluate lag at least this often, so a follower that stopped answering shows
/// up even when nothing else changes.
const TICK: Duration = Duration::from_millis(500);

impl RaftObserver {
    /// Spawns the watcher; it ends when the group shuts down. A follower further behind than
    /// `lag_threshold` is reported in the log (the guide's Issue 3).
    /// A group that can go `quiet` is not watched over time while it is.
    pub fn spawn<C, SM>(
        partition: String,
        raft: &Raft<C, SM>,
        lag_threshold: Duration,
        quiet: Option<Arc<crate::Quiet>>,
    ) -> RaftObserver
    where
        C: RaftTypeConfig<NodeId = u64, Term = u64>,
        SM: openraft::storage::RaftStateMachine<C>,
    {
        let mut rx = raft.metrics();
        let lag: Arc<Mutex<BTreeMap<u64, FollowerLag>>> = Arc::default();
        let shared = lag.clone();
        let raft = raft.clone();
        let task = tokio::spawn(async move {
            let mut prev: Option<(ServerState, u64, Option<u64>)> = None;
            let mut tracker = LagTracker::new(lag_threshold);
            let mut ticking = true;
            loop {
                let snapshot = rx.borrow_watched().clone();
                // A leader that is the group's only member has nobody to heartbeat and no
                // election to fear: its timer only woke it (and this watcher) ten times a
                // second, which with thousands of single-replica partitions kept both cores
                // busy. The timer comes back as soon as anyone else joins.
                let alone = alone(&snapshot);
                if alone == ticking {
                    ticking = !alone;
                    raft.runtime_config().tick(ticking);
                }
                observe(&partition, &snapshot, &mut prev);
                if let Some(q) = &quiet {
                    q.reconcile(crate::quiesce::Seen {
                        leading: snapshot.state == ServerState::Leader,
                        following: snapshot.state == ServerState::Follower,
                        term: snapshot.current_term,
                        leader: snapshot.current_leader,
                        last_log_index: snapshot.last_log_index,
                    });
                    tracker.woke = q.last_wake();
                }
                // Quiet, the leader's followers hold everything it has (the group went quiet
                // only then) and their nodes answer: no lag, whatever was measured last.
                let settled = quiet.as_ref().is_some_and(|q| q.is_quiet()) && snapshot.state == ServerState::Leader;
                if settled {
                    *shared.lock().unwrap_or_else(|p| p.into_inner()) = tracker.settle(&partition, &snapshot);
                } else if let Some(now) = tracker.update(&partition, &snapshot) {
                    *shared.lock().unwrap_or_else(|p| p.into_inner()) = now;
                }
                if snapshot.state == ServerState::Shutdown {
                    break;
                }
                // Alone, there is no follower lag to recompute over time; quiet, nothing changes
                // until the group wakes.
                if alone || quiet.as_ref().is_some_and(|q| q.is_quiet()) {
                    if rx.changed().await.is_err() {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    changed = rx.changed() => { if changed.is_err() { break } }
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
            tracker.forget(&partition);
            clear(&partition);
        });
        RaftObserver { task, lag }
    }

    /// Lag of every follower while this node leads; empty otherwise.
    pub fn lag(&self) -> BTreeMap<u64, FollowerLag> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A handle that reads [`RaftObserver::lag`] from elsewhere.
    pub fn lag_view(&self) -> LagView {
        LagView(self.lag.clone())
    }

    pub fn abort(&self) {
        self.task.abort();
    }

    /// Stops watching and waits until the watcher is gone.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Leads a group in which it is the only voter and there are no learners.
fn alone<C>(m: &RaftMetrics<C>) -> bool
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
{
    m.state == ServerState::Leader
        && m.current_leader == Some(m.id)
        && sole_voter(m)
        && m.membership_config.membership().learner_ids().next().is_none()
}

/// This node is the group's only voter: it needs nobody's vote to lead.
pub fn sole_voter<C>(m: &RaftMetrics<C>) -> bool
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
{
    m.membership_config.membership().voter_ids().eq([m.id])
}

/// The leader's recent log growth, to tell how long a follower has been behind.
struct LagTracker {
    /// (when, last log index), oldest first; one sample per change of the index.
    history: VecDeque<(std::time::Instant, u64)>,
    threshold: Duration,
    /// Followers currently reported as lagging, so each crossing is logged once.
    warned: BTreeMap<u64, (bool, bool)>,
    /// When lag was last computed: metrics change on every append and every heartbeat ack,
    /// far more often than lag needs to be known.
    computed: Option<std::time::Instant>,
    /// When this node began to lead (the first update as leader).
    leading_since: Option<std::time::Instant>,
    /// Followers with `chronik_raft_replication_lag_*` samples: removed when this node stops
    /// leading or the follower leaves the group, so no stale lag is exported.
    reported: BTreeSet<u64>,
    /// When the group last woke from quiet: its followers were silent because it was.
    woke: Option<std::time::Instant>,
}

/// Lag is recomputed at most this often, and the log's growth sampled at this granularity.
const RESOLUTION: Duration = Duration::from_millis(50);

/// Lag entries above which the guide's "is N entries behind" warning appears.
const ENTRIES_WARNING: u64 = 10_000;
const HISTORY: usize = 4096;

impl LagTracker {
    fn new(threshold: Duration) -> Self {
        Self {
            history: VecDeque::new(),
            threshold,
            warned: BTreeMap::new(),
            computed: None,
            leading_since: None,
            reported: BTreeSet::new(),
            woke: None,
        }
    }

    /// Every follower of a quiet group in sync: lag 0, exported as such.
    fn settle<C>(&mut self, partition: &str, mt: &RaftMetrics<C>) -> BTreeMap<u64, FollowerLag>
    where
        C: RaftTypeConfig<NodeId = u64, Term = u64>,
    {
        let mut out = BTreeMap::new();
        for node in mt.replication.iter().flat_map(|r| r.keys()).copied().filter(|n| *n != mt.id) {
            let node_s = node.to_string();
            m::RAFT_REPLICATION_LAG_ENTRIES.with_label_values(&[partition, &node_s]).set(0);
            m::RAFT_REPLICATION_LAG_MS.with_label_values(&[partition, &node_s]).set(0);
            self.warned.remove(&node);
            self.reported.insert(node);
            out.insert(node, FollowerLag { entries: 0, ms: 0 });
        }
        out
    }

    /// Removes the lag samples of every follower this tracker reported.
    fn forget(&mut self, partition: &str) {
        for node in std::mem::take(&mut self.reported) {
            remove_lag(partition, node);
        }
    }

    /// New lag figures, when it is time to compute them.
    fn update<C>(&mut self, partition: &str, mt: &RaftMetrics<C>) -> Option<BTreeMap<u64, FollowerLag>>
    where
        C: RaftTypeConfig<NodeId = u64, Term = u64>,
    {
        let mut out = BTreeMap::new();
        let Some(repl) = mt.replication.as_ref().filter(|_| mt.state == ServerState::Leader) else {
            self.history.clear();
            self.warned.clear();
            self.computed = None;
            self.leading_since = None;
            self.forget(partition);
            return Some(out);
        };
        let wall = std::time::Instant::now();
        self.leading_since.get_or_insert(wall);
        let last = mt.last_log_index.unwrap_or(0);
        // A leader's log only grows, so the history stays sorted by index. Within one
        // resolution step the newest sample is moved up rather than a new one added.
        match self.history.back_mut() {
            Some((t, i)) if *i != last && wall.duration_since(*t) < RESOLUTION => *i = last,
            Some((_, i)) if *i == last => {}
            _ => self.history.push_back((wall, last)),
        }
        if self.computed.is_some_and(|t| wall.duration_since(t) < RESOLUTION) {
            return None;
        }
        self.computed = Some(wall);
        let keep_for = self.threshold * 2;
        while self.history.len() > HISTORY
            || self.history.front().is_some_and(|(t, _)| wall.duration_since(*t) > keep_for)
        {
            self.history.pop_front();
        }
        let now = C::now();
        for (node, matched) in repl.iter() {
            if *node == mt.id {
                continue;
            }
            let matched = matched.as_ref().map(|l| l.index()).unwrap_or(0);
            let entries = last.saturating_sub(matched);
            let behind = if entries == 0 {
                Duration::ZERO
            } else {
                // Behind since the leader's log first went past `matched` (or at least since
                // the history starts).
                let at = self.history.partition_point(|(_, i)| *i <= matched);
                let since = self.history.get(at).or(self.history.front()).map(|(t, _)| *t).unwrap_or(wall);
                wall.duration_since(since)
            };
            let ack: Option<InstantOf<C>> =
                mt.heartbeat.as_ref().and_then(|h| h.get(node).cloned().flatten()).map(|t| *t);
            // Not heard from yet in this term: silent since this node began to lead.
            let silent = match ack {
                Some(a) => now.saturating_duration_since(a),
                None => wall.duration_since(*self.leading_since.get_or_insert(wall)),
            };
            let silent = self.woke.map_or(silent, |w| silent.min(wall.duration_since(w)));
            let lag = FollowerLag { entries, ms: behind.max(silent).as_millis() as u64 };
            let node_s = node.to_string();
            m::RAFT_REPLICATION_LAG_ENTRIES.with_label_values(&[partition, &node_s]).set(entries as i64);
            m::RAFT_REPLICATION_LAG_MS.with_label_values(&[partition, &node_s]).set(lag.ms as i64);
            let warned = self.warned.entry(*node).or_default();
            let (many, slow) = (entries > ENTRIES_WARNING, u128::from(lag.ms) > self.threshold.as_millis());
            if many && !warned.0 {
                warn!(target: "chronik_raft", partition, "Follower node {node} is {entries} entries behind leader");
            }
            if slow && !warned.1 {
                warn!(target: "chronik_raft", partition, "Replication lag exceeds threshold ({} seconds): follower node {node} is {} ms behind", self.threshold.as_secs(), lag.ms);
            }
            *warned = (many, slow);
            out.insert(*node, lag);
            self.reported.insert(*node);
        }
        // Followers that left the group.
        let gone: Vec<u64> = self.reported.iter().copied().filter(|n| !out.contains_key(n)).collect();
        for node in gone {
            self.reported.remove(&node);
            self.warned.remove(&node);
            remove_lag(partition, node);
        }
        Some(out)
    }
}

fn observe<C>(partition: &str, mt: &RaftMetrics<C>, prev: &mut Option<(ServerState, u64, Option<u64>)>)
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
{
    let state = mt.state;
    let term = mt.current_term;
    let leader = mt.current_leader;
    if prev.as_ref() != Some(&(state, term, leader)) {
        let (pstate, pterm, pleader) = prev.unwrap_or((ServerState::Learner, 0, None));
        if state == ServerState::Candidate && (pstate != ServerState::Candidate || pterm != term) {
            info!(target: "chronik_raft", partition, "Election timeout reached");
            info!(target: "chronik_raft", partition, "Starting leader election, term={term}");
        }
        if state == ServerState::Leader && (pstate != ServerState::Leader || pterm != term) {
            info!(target: "chronik_raft", partition, "Became leader for term {term}");
        }
        if state == ServerState::Follower && pstate != ServerState::Follower {
            info!(target: "chronik_raft", partition, "Became follower in term {term}, leader={:?}", leader);
        }
        if leader != pleader
            && state != ServerState::Leader
            && let Some(l) = leader
        {
            info!(target: "chronik_raft", partition, "Leader changed: node {l} leads term {term}");
        }
        *prev = Some((state, term, leader));
    }
    let state_code = match state {
        ServerState::Follower => 0,
        ServerState::Leader => 1,
        ServerState::Candidate => 2,
        ServerState::Learner => 3,
        ServerState::Shutdown => 0,
    };
    m::RAFT_STATE.with_label_values(&[partition]).set(state_code);
    m::RAFT_TERM.with_label_values(&[partition]).set(term as i64);
    m::RAFT_LOG_INDEX.with_label_values(&[partition]).set(mt.last_log_index.unwrap_or(0) as i64);
    // Raft's commitIndex of this node: the last entry it knows to be committed (and may apply).
    let committed = mt.local_committed.as_ref().map(|l| l.index()).unwrap_or(0) as i64;
    let gauge = m::RAFT_COMMIT_INDEX.with_label_values(&[partition]);
    if gauge.get() != committed {
        // The guide's "Log committed" line; debug, as it moves with every produce.
        tracing::debug!(target: "chronik_raft", partition, "Log committed: index={committed}");
    }
    gauge.set(committed);
}

fn remove_lag(partition: &str, node: u64) {
    let node = node.to_string();
    let _ = m::RAFT_REPLICATION_LAG_ENTRIES.remove_label_values(&[partition, &node]);
    let _ = m::RAFT_REPLICATION_LAG_MS.remove_label_values(&[partition, &node]);
}

fn clear(partition: &str) {
    for g in [&m::RAFT_STATE, &m::RAFT_TERM, &m::RAFT_LOG_INDEX, &m::RAFT_COMMIT_INDEX] {
        let _ = g.remove_label_values(&[partition]);
    }
}
