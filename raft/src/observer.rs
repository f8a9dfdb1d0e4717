//! Watches a group's openraft metrics and turns changes into the operations guide's log lines
//! ("Starting leader election, term=5", "Became leader for term 5", ...) and into the
//! `chronik_raft_*` Prometheus families.

use chronik_shared::metrics as m;
use openraft::alias::InstantOf;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::TypeConfigExt;
use openraft::{Instant, Raft, RaftMetrics, RaftTypeConfig, ServerState};
use tracing::info;

pub struct RaftObserver;

impl RaftObserver {
    /// Spawns the watcher; it ends when the group shuts down.
    pub fn spawn<C, SM>(partition: String, raft: &Raft<C, SM>) -> tokio::task::JoinHandle<()>
    where
        C: RaftTypeConfig<NodeId = u64, Term = u64>,
        SM: openraft::storage::RaftStateMachine<C>,
    {
        let mut rx = raft.metrics();
        tokio::spawn(async move {
            let mut prev: Option<(ServerState, u64, Option<u64>)> = None;
            loop {
                let snapshot = rx.borrow_watched().clone();
                observe(&partition, &snapshot, &mut prev);
                if snapshot.state == ServerState::Shutdown || rx.changed().await.is_err() {
                    break;
                }
            }
            clear(&partition);
        })
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
        if leader != pleader && state != ServerState::Leader {
            if let Some(l) = leader {
                info!(target: "chronik_raft", partition, "Leader changed: node {l} leads term {term}");
            }
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
    m::RAFT_COMMIT_INDEX
        .with_label_values(&[partition])
        .set(mt.cluster_committed.as_ref().map(|l| l.index()).unwrap_or(0) as i64);
    let last = mt.last_log_index.unwrap_or(0);
    if let Some(repl) = &mt.replication {
        let now = C::now();
        for (node, matched) in repl.iter() {
            if *node == mt.id {
                continue;
            }
            let node_s = node.to_string();
            let matched = matched.as_ref().map(|l| l.index()).unwrap_or(0);
            m::RAFT_REPLICATION_LAG_ENTRIES
                .with_label_values(&[partition, &node_s])
                .set(last.saturating_sub(matched) as i64);
            let ack: Option<InstantOf<C>> =
                mt.heartbeat.as_ref().and_then(|h| h.get(node).cloned().flatten()).map(|t| *t);
            if let Some(ack) = ack {
                let ms = now.saturating_duration_since(ack).as_millis();
                m::RAFT_REPLICATION_LAG_MS.with_label_values(&[partition, &node_s]).set(ms as i64);
            }
        }
    }
}

fn clear(partition: &str) {
    for g in [&m::RAFT_STATE, &m::RAFT_TERM, &m::RAFT_LOG_INDEX, &m::RAFT_COMMIT_INDEX] {
        let _ = g.remove_label_values(&[partition]);
    }
}
