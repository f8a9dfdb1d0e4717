//! Quiescent groups: a partition group with nothing to replicate stops its Raft timers, and
//! one ping per pair of data nodes watches for the failures its heartbeats would have found.
//!
//! A thousand idle RF=3 partitions heartbeating every 100 ms kept three data nodes on this
//! machine at two thirds of a core each. Quiet, a group costs nothing until it is written to:
//!
//! - The leader of a group that has been idle and fully replicated for
//!   `cluster.raft.quiesce_after_ms` asks its followers to go quiet (`Quiesce`). Each follower
//!   that agrees stops its openraft ticker (no election timer); once all have, the leader stops
//!   its own (no heartbeats).
//! - A write, a membership change or a leadership transfer wakes the leader first
//!   ([`Quiet::touch`]); the entries it sends wake the followers once they are stored.
//! - [`Liveness`] pings every peer a quiet group depends on every heartbeat interval. A peer
//!   that has not answered for an election timeout is down: the followers of the groups it led
//!   wake one after another (so one of them wins the election at once instead of splitting
//!   the vote), and the groups this node leads with a follower there wake to find out. A peer
//!   that restarted, or reports a quiet group it led as stopped, wakes the same way.
//! - While quiet, a leader counts a follower towards its quorum (`Partition::is_leader`) only
//!   if that follower's node has answered every ping since the group went quiet: the cut-off
//!   leader that heartbeats would have exposed stops serving as it would have.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_proto::raft::{PingRequest, PingResponse};

use crate::network::PeerPool;
use crate::service::RaftGroups;

/// Stopped quiet groups a node remembers for its peers' pings.
const STOPPED_KEPT: usize = 1024;

#[derive(Clone, Debug, Default, PartialEq)]
enum Role {
    #[default]
    Awake,
    /// `index`: the last log index when the group went quiet; a log that grows past it means
    /// a write got in without waking the leader.
    Leading { term: u64, index: u64, followers: Vec<u64> },
    /// `rank`: this follower's place among the group's followers, which staggers their
    /// elections when the leader goes away.
    Following { leader: u64, term: u64, rank: u32 },
}

/// Until when a woken leader may still count on the pings instead of its followers' acks.
#[derive(Clone, Copy)]
struct Credit {
    term: u64,
    since: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
struct State {
    role: Role,
    /// Changes with every role change: a delayed wake-up only applies to the role it was for.
    generation: u64,
    credit: Option<Credit>,
    last_wake: Option<Instant>,
    /// A quiet follower that has heard its leader may be gone (and wakes soon) no longer
    /// speaks up for it in elections.
    doubting: bool,
}

/// One group's quiescence.
pub struct Quiet {
    tick: Box<dyn Fn(bool) + Send + Sync>,
    quiet: AtomicBool,
    /// Bumped by every write the leader is about to make: a group written to while its
    /// followers were being asked does not go quiet.
    activity: AtomicU64,
    /// How long a woken leader may rely on the pings before its followers' acks must show.
    window: Duration,
    liveness: Arc<Liveness>,
    st: Mutex<State>,
}

/// What openraft's metrics say of a group, for [`Quiet::reconcile`].
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub leading: bool,
    pub following: bool,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
}

/// What the pings found out about a peer.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    Down,
    Restarted,
    /// Quiet groups the peer led that stopped there.
    Stopped(HashSet<String>),
    /// More stopped than it remembers: any group it led may be affected.
    Overflow,
}

impl Quiet {
    /// `tick` turns the group's openraft ticker on or off.
    pub fn new(window: Duration, liveness: Arc<Liveness>, tick: impl Fn(bool) + Send + Sync + 'static) -> Self {
        Self {
            tick: Box::new(tick),
            quiet: AtomicBool::new(false),
            activity: AtomicU64::new(0),
            window,
            liveness,
            st: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::SeqCst)
    }

    pub fn activity(&self) -> u64 {
        self.activity.load(Ordering::SeqCst)
    }

    /// The leader is about to write: heartbeats resume first. (A quiet follower asked to
    /// write stays quiet: awake, it would campaign against a leader that is fine.)
    pub fn touch(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
        if self.is_quiet() {
            let mut st = self.lock();
            if matches!(st.role, Role::Leading { .. }) {
                self.wake_locked(&mut st);
            }
        }
    }

    /// Goes quiet as leader of `term` at log `index` unless something was written since
    /// `activity` was read. `since`: when the followers' nodes were last all known to be up.
    pub fn lead_quietly(&self, term: u64, index: u64, followers: Vec<u64>, since: Instant, activity: u64) -> bool {
        let mut st = self.lock();
        // Set before the activity is read again, so a concurrent `touch` either is seen here
        // or sees the flag and wakes the group.
        self.quiet.store(true, Ordering::SeqCst);
        if self.activity.load(Ordering::SeqCst) != activity {
            self.quiet.store(false, Ordering::SeqCst);
            return false;
        }
        st.role = Role::Leading { term, index, followers };
        st.generation += 1;
        st.doubting = false;
        st.credit = Some(Credit { term, since, until: None });
        (self.tick)(false);
        true
    }

    /// Stops the election timer of this follower of `leader` in `term`.
    pub fn follow_quietly(&self, leader: u64, term: u64, rank: u32) {
        let mut st = self.lock();
        st.role = Role::Following { leader, term, rank };
        st.generation += 1;
        st.doubting = false;
        self.quiet.store(true, Ordering::SeqCst);
        (self.tick)(false);
    }

    /// An AppendEntries was stored: entries, or any message from another leader or term, end
    /// this follower's quiet (heartbeats the leader sent before it went quiet do not).
    pub fn on_append(&self, leader: u64, term: u64, has_entries: bool) {
        if !self.is_quiet() {
            return;
        }
        let mut st = self.lock();
        let same = matches!(st.role, Role::Following { leader: l, term: t, .. } if l == leader && t == term);
        if has_entries || !same {
            self.wake_locked(&mut st);
        }
    }

    /// The group as openraft reports it: a quiet role the group no longer has ends (a quiet
    /// follower that won an election or voted for another leader, a quiet leader that saw a
    /// higher term or whose log grew).
    pub fn reconcile(&self, seen: Seen) {
        if !self.is_quiet() {
            return;
        }
        let mut st = self.lock();
        let stale = match st.role {
            Role::Leading { term, index, .. } => {
                !seen.leading || seen.term != term || seen.last_log_index != Some(index)
            }
            Role::Following { leader, term, .. } => !seen.following || seen.term != term || seen.leader != Some(leader),
            Role::Awake => false,
        };
        if stale {
            self.wake_locked(&mut st);
        }
    }

    /// Timers back on.
    pub fn wake(&self) {
        let mut st = self.lock();
        self.wake_locked(&mut st);
    }

    /// Checked and changed under one lock, so a role taken meanwhile is not woken by mistake.
    fn wake_locked(&self, st: &mut State) {
        if st.role == Role::Awake {
            return;
        }
        let now = Instant::now();
        st.role = Role::Awake;
        st.generation += 1;
        st.last_wake = Some(now);
        if let Some(c) = st.credit.as_mut()
            && c.until.is_none()
        {
            c.until = Some(now + self.window);
        }
        self.quiet.store(false, Ordering::SeqCst);
        (self.tick)(true);
    }

    fn wake_if(&self, generation: u64) {
        let mut st = self.lock();
        if st.generation == generation {
            self.wake_locked(&mut st);
        }
    }

    /// While quiet (or just woken) as leader of `term`: since when the followers' nodes must
    /// have answered every ping for them to count towards the quorum.
    pub fn credit(&self, term: u64) -> Option<Instant> {
        let c = self.lock().credit?;
        (c.term == term && c.until.is_none_or(|u| Instant::now() < u)).then_some(c.since)
    }

    /// Whether this quiet replica refuses `candidate`. Without heartbeats every lease has
    /// long expired, so a replica cut off from the leader alone (or woken by mistake) would
    /// otherwise win the others over and depose a working leader. A quiet follower refuses
    /// while its leader's node answers its pings, unless the candidate is that leader (it
    /// lost leadership, say by handing it over); a quiet leader always, and wakes to bring
    /// the candidate back in line with its heartbeats.
    pub fn refuses_candidate(&self, candidate: u64) -> bool {
        if !self.is_quiet() {
            return false;
        }
        let mut st = self.lock();
        if st.doubting {
            return false;
        }
        match st.role {
            Role::Following { leader, .. } => {
                let leader_up = leader != candidate && self.liveness.answering(leader);
                if !leader_up {
                    st.doubting = true;
                }
                leader_up
            }
            Role::Leading { .. } => {
                self.wake_locked(&mut st);
                true
            }
            Role::Awake => false,
        }
    }

    /// When the timers last came back on.
    pub fn last_wake(&self) -> Option<Instant> {
        self.lock().last_wake
    }

    /// Whether `event` on `peer` concerns this group and, if so, after how long it wakes
    /// (followers wait `step` per rank) and for which role.
    fn affected(&self, peer: u64, event: &PeerEvent, group: &str, step: Duration) -> Option<(Duration, u64)> {
        if !self.is_quiet() {
            return None;
        }
        let mut st = self.lock();
        let delay = match (&st.role, event) {
            (Role::Leading { followers, .. }, PeerEvent::Down | PeerEvent::Restarted) if followers.contains(&peer) => {
                Duration::ZERO
            }
            (Role::Following { leader, rank, .. }, PeerEvent::Down | PeerEvent::Restarted | PeerEvent::Overflow)
                if *leader == peer =>
            {
                step * *rank
            }
            (Role::Following { leader, rank, .. }, PeerEvent::Stopped(names))
                if *leader == peer && names.contains(group) =>
            {
                step * *rank
            }
            _ => return None,
        };
        st.doubting = true;
        Some((delay, st.generation))
    }
}

/// What this node knows of one peer from its pings.
struct Peer {
    addr: String,
    last_ok: Instant,
    /// Answering every ping since then; `None` while down or not yet heard from.
    healthy_since: Option<Instant>,
    down: bool,
    incarnation: Option<u64>,
    seen_epoch: u64,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct StoppedLog {
    epoch: u64,
    recent: VecDeque<(u64, String)>,
}

/// How this node pings its peers; set when a data node starts.
#[derive(Clone)]
struct Monitor {
    me: u64,
    pool: PeerPool,
    groups: RaftGroups,
    interval: Duration,
    down_after: Duration,
}

/// Node-level liveness: this process's identity for its peers' pings, and its view of the
/// peers its quiet groups depend on.
pub struct Liveness {
    incarnation: u64,
    stopped: Mutex<StoppedLog>,
    peers: Mutex<HashMap<u64, Peer>>,
    monitor: Mutex<Option<Monitor>>,
}

impl Default for Liveness {
    fn default() -> Self {
        // Distinct per process start; a clock that goes back still changes it.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        Self {
            incarnation: (nanos as u64) ^ u64::from(std::process::id()).rotate_left(48),
            stopped: Mutex::default(),
            peers: Mutex::default(),
            monitor: Mutex::default(),
        }
    }
}

impl Liveness {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching peers (data nodes only): node `me` pings every `interval`, and a peer
    /// silent for `down_after` is down.
    pub fn start(&self, me: u64, pool: PeerPool, groups: RaftGroups, interval: Duration, down_after: Duration) {
        *self.monitor.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Monitor { me, pool, groups, interval, down_after });
    }

    /// Stops every ping task (the node is stopping).
    pub fn stop(&self) {
        self.monitor.lock().unwrap_or_else(|p| p.into_inner()).take();
        for (_, p) in self.peers().drain() {
            if let Some(t) = p.task {
                t.abort();
            }
        }
    }

    /// Pings `peer` at `addr` from now on (a quiet group depends on it). `known`: the peer's
    /// incarnation and stop epoch as it told this node, so that a restart or a stop after
    /// that is not taken for the state the first ping finds.
    pub fn track(self: &Arc<Self>, peer: u64, addr: &str, known: Option<(u64, u64)>) {
        let Some(monitor) = self.monitor.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return };
        let mut peers = self.peers();
        if let Some(p) = peers.get_mut(&peer) {
            if p.addr != addr {
                p.addr = addr.to_string();
            }
            if let (None, Some((incarnation, epoch))) = (p.incarnation, known) {
                p.incarnation = Some(incarnation);
                p.seen_epoch = epoch;
            }
            return;
        }
        let task = tokio::spawn(ping_loop(self.clone(), monitor, peer));
        peers.insert(
            peer,
            Peer {
                addr: addr.to_string(),
                last_ok: Instant::now(),
                healthy_since: None,
                down: false,
                incarnation: known.map(|k| k.0),
                seen_epoch: known.map_or(0, |k| k.1),
                task: Some(task),
            },
        );
    }

    fn down_after(&self) -> Option<Duration> {
        self.monitor.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|m| m.down_after)
    }

    /// Whether `peer` is up, has answered every ping since `since`, and answered one lately
    /// (a node that was itself stalled knows nothing of the time it was away).
    pub fn healthy_since(&self, peer: u64, since: Instant) -> bool {
        let Some(down_after) = self.down_after() else { return false };
        self.peers()
            .get(&peer)
            .is_some_and(|p| !p.down && p.healthy_since.is_some_and(|h| h <= since) && p.last_ok.elapsed() < down_after)
    }

    /// This node's incarnation and stop epoch, for its followers to start watching from.
    pub fn identity(&self) -> (u64, u64) {
        (self.incarnation, self.stopped.lock().unwrap_or_else(|p| p.into_inner()).epoch)
    }

    /// Whether `peer` answered a ping within the last half of the time that makes it down.
    pub fn answering(&self, peer: u64) -> bool {
        let Some(recent) = self.down_after().map(|d| d / 2) else { return false };
        self.peers().get(&peer).is_some_and(|p| !p.down && p.healthy_since.is_some() && p.last_ok.elapsed() < recent)
    }

    /// Whether `peer` is tracked and up.
    pub fn is_up(&self, peer: u64) -> bool {
        self.peers().get(&peer).is_some_and(|p| !p.down && p.healthy_since.is_some())
    }

    /// A quiet group this node led has stopped leading without telling its followers.
    pub fn record_stopped(&self, group: &str) {
        let mut log = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        log.epoch += 1;
        let epoch = log.epoch;
        log.recent.push_back((epoch, group.to_string()));
        while log.recent.len() > STOPPED_KEPT {
            log.recent.pop_front();
        }
    }

    /// The answer to a peer's ping.
    pub fn answer(&self, me: u64, req: &PingRequest) -> PingResponse {
        let log = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let overflow = log.recent.front().is_some_and(|(e, _)| *e > req.seen_epoch + 1);
        let stopped = if overflow {
            Vec::new()
        } else {
            log.recent.iter().filter(|(e, _)| *e > req.seen_epoch).map(|(_, g)| g.clone()).collect()
        };
        PingResponse { node_id: me, incarnation: self.incarnation, epoch: log.epoch, stopped, overflow }
    }

    /// Updates `peer` from one ping's outcome; returns what changed.
    fn record(&self, peer: u64, answer: Option<PingResponse>, down_after: Duration) -> Vec<PeerEvent> {
        let now = Instant::now();
        let mut events = Vec::new();
        let mut peers = self.peers();
        let Some(p) = peers.get_mut(&peer) else { return events };
        match answer {
            Some(a) => {
                let first = p.incarnation.is_none();
                if p.incarnation.is_some_and(|i| i != a.incarnation) {
                    events.push(PeerEvent::Restarted);
                    p.healthy_since = Some(now);
                    p.seen_epoch = 0;
                }
                p.incarnation = Some(a.incarnation);
                // An answer after a silence as long as a down peer's (this node was stalled,
                // or the pings were late) counts as a fresh start: what depended on the peer
                // meanwhile is re-checked.
                if !p.down && p.healthy_since.is_some() && now.duration_since(p.last_ok) >= down_after {
                    events.push(PeerEvent::Down);
                    p.healthy_since = None;
                }
                if p.down || p.healthy_since.is_none() {
                    p.healthy_since = Some(now);
                }
                p.down = false;
                p.last_ok = now;
                // What stopped before this node first heard from the peer cannot concern
                // groups that went quiet since.
                if a.epoch > p.seen_epoch && !first {
                    events.push(if a.overflow {
                        PeerEvent::Overflow
                    } else {
                        PeerEvent::Stopped(a.stopped.into_iter().collect())
                    });
                }
                p.seen_epoch = a.epoch;
            }
            None => {
                if !p.down && now.duration_since(p.last_ok) >= down_after {
                    p.down = true;
                    p.healthy_since = None;
                    events.push(PeerEvent::Down);
                }
            }
        }
        events
    }
}

async fn ping_loop(liveness: Arc<Liveness>, m: Monitor, peer: u64) {
    let mut ticker = tokio::time::interval(m.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (addr, seen_epoch) = match liveness.peers().get(&peer) {
            Some(p) => (p.addr.clone(), p.seen_epoch),
            None => return,
        };
        let answer = if m.pool.cut_either_way(peer) {
            None
        } else {
            match m.pool.client(&addr) {
                Ok(mut c) => {
                    let req = PingRequest { node_id: m.me, seen_epoch };
                    match tokio::time::timeout(m.down_after, c.ping(req)).await {
                        Ok(Ok(r)) => Some(r.into_inner()),
                        _ => None,
                    }
                }
                Err(_) => None,
            }
        };
        for event in liveness.record(peer, answer, m.down_after) {
            tracing::info!(target: "chronik_raft", "Peer node {peer}: {}; waking the quiet groups that depend on it", describe(&event));
            wake_affected(&m.groups, peer, &event, m.down_after);
        }
    }
}

fn describe(e: &PeerEvent) -> String {
    match e {
        PeerEvent::Down => "not answering pings".into(),
        PeerEvent::Restarted => "restarted".into(),
        PeerEvent::Stopped(g) => format!("{} quiet group(s) it led stopped", g.len()),
        PeerEvent::Overflow => "many quiet groups it led stopped".into(),
    }
}

/// Wakes every quiet group `event` on `peer` concerns; followers one election timeout apart
/// by rank.
fn wake_affected(groups: &RaftGroups, peer: u64, event: &PeerEvent, step: Duration) {
    for (name, g) in groups.all_named() {
        let Some(q) = g.quiet() else { continue };
        let Some((delay, generation)) = q.affected(peer, event, &name, step) else { continue };
        if delay.is_zero() {
            q.wake_if(generation);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                q.wake_if(generation);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> (Arc<Quiet>, Arc<Mutex<Vec<bool>>>) {
        let ticks: Arc<Mutex<Vec<bool>>> = Arc::default();
        let t = ticks.clone();
        let q = Quiet::new(Duration::from_secs(1), Arc::default(), move |on| t.lock().unwrap().push(on));
        (Arc::new(q), ticks)
    }

    #[test]
    fn a_write_between_asking_and_going_quiet_keeps_the_leader_awake() {
        let (q, ticks) = quiet();
        let seen = q.activity();
        q.touch();
        assert!(!q.lead_quietly(3, 7, vec![2, 3], Instant::now(), seen));
        assert!(!q.is_quiet());
        assert!(ticks.lock().unwrap().is_empty(), "the ticker was never touched");
        assert!(q.lead_quietly(3, 7, vec![2, 3], Instant::now(), q.activity()));
        assert_eq!(*ticks.lock().unwrap(), vec![false]);
        q.touch();
        assert!(!q.is_quiet());
        assert_eq!(*ticks.lock().unwrap(), vec![false, true]);
        // Woken, it still counts on the pings for the window, in its own term only.
        assert!(q.credit(3).is_some());
        assert!(q.credit(4).is_none());
    }

    #[test]
    fn followers_wake_on_entries_or_another_leader_not_on_old_heartbeats() {
        let (q, ticks) = quiet();
        q.follow_quietly(1, 5, 0);
        q.on_append(1, 5, false);
        assert!(q.is_quiet());
        q.on_append(1, 5, true);
        assert!(!q.is_quiet());
        q.follow_quietly(1, 5, 0);
        q.on_append(2, 6, false);
        assert!(!q.is_quiet());
        assert_eq!(*ticks.lock().unwrap(), vec![false, true, false, true]);
    }

    #[test]
    fn peer_events_concern_the_groups_that_depend_on_the_peer() {
        let (q, _) = quiet();
        let step = Duration::from_millis(100);
        q.follow_quietly(1, 5, 1);
        assert_eq!(q.affected(1, &PeerEvent::Down, "t-0", step).map(|a| a.0), Some(step));
        assert!(q.affected(2, &PeerEvent::Down, "t-0", step).is_none());
        let stopped = PeerEvent::Stopped(["t-1".to_string()].into());
        assert!(q.affected(1, &stopped, "t-0", step).is_none());
        assert!(q.affected(1, &stopped, "t-1", step).is_some());
        let (l, _) = quiet();
        assert!(l.lead_quietly(5, 9, vec![2, 3], Instant::now(), l.activity()));
        assert_eq!(l.affected(3, &PeerEvent::Restarted, "t-0", step).map(|a| a.0), Some(Duration::ZERO));
        assert!(l.affected(3, &stopped, "t-1", step).is_none());
        // A wake-up meant for an earlier role does nothing.
        let (_, generation) = q.affected(1, &PeerEvent::Down, "t-0", step).unwrap();
        q.wake();
        q.follow_quietly(4, 6, 0);
        q.wake_if(generation);
        assert!(q.is_quiet());
    }

    #[test]
    fn a_quiet_role_the_group_no_longer_has_ends() {
        let seen = |leading, term, leader, last| Seen {
            leading,
            following: !leading,
            term,
            leader: Some(leader),
            last_log_index: Some(last),
        };
        let (l, _) = quiet();
        assert!(l.lead_quietly(5, 9, vec![2, 3], Instant::now(), l.activity()));
        l.reconcile(seen(true, 5, 1, 9));
        assert!(l.is_quiet());
        // An entry got into the log without a touch: the leader must heartbeat again.
        l.reconcile(seen(true, 5, 1, 10));
        assert!(!l.is_quiet());
        let (f, _) = quiet();
        f.follow_quietly(1, 5, 0);
        f.reconcile(seen(false, 5, 1, 9));
        assert!(f.is_quiet());
        // It voted for the node its leader handed leadership to.
        f.reconcile(seen(false, 6, 3, 9));
        assert!(!f.is_quiet());
    }

    #[test]
    fn a_quiet_follower_never_refuses_its_own_leader() {
        let (f, _) = quiet();
        f.follow_quietly(1, 5, 0);
        assert!(!f.refuses_candidate(1));
        let (l, ticks) = quiet();
        assert!(l.lead_quietly(5, 9, vec![2, 3], Instant::now(), l.activity()));
        assert!(l.refuses_candidate(2), "a quiet leader keeps its group");
        assert!(!l.is_quiet(), "and wakes to heartbeat the candidate back");
        assert_eq!(*ticks.lock().unwrap(), vec![false, true]);
    }

    #[test]
    fn pings_report_what_stopped_since_the_asker_last_looked() {
        let l = Liveness::default();
        l.record_stopped("a-0");
        l.record_stopped("a-1");
        let r = l.answer(1, &PingRequest { node_id: 2, seen_epoch: 1 });
        assert_eq!((r.epoch, r.stopped, r.overflow), (2, vec!["a-1".to_string()], false));
        for i in 0..STOPPED_KEPT + 5 {
            l.record_stopped(&format!("b-{i}"));
        }
        let r = l.answer(1, &PingRequest { node_id: 2, seen_epoch: 2 });
        assert!(r.overflow && r.stopped.is_empty());
    }
}
