//! openraft's settings from Chronik's `[cluster.raft]` and `[cluster.network]`.

use chronik_shared::config::ChronikConfig;
use openraft::SnapshotPolicy;

pub fn raft_config(cfg: &ChronikConfig, snapshot_policy: SnapshotPolicy) -> Result<openraft::Config, String> {
    let r = &cfg.cluster.raft;
    openraft::Config {
        cluster_name: "chronik".into(),
        election_timeout_min: r.election_timeout_ms,
        // Randomised up to twice the minimum so candidates rarely split the vote.
        election_timeout_max: r.election_timeout_ms * 2,
        heartbeat_interval: r.heartbeat_interval_ms,
        max_payload_entries: r.max_payload_entries,
        snapshot_policy,
        install_snapshot_timeout: cfg.cluster.network.install_snapshot_timeout_secs * 1000,
        // A node that was cut off (or rejoins after a rebuild) must not depose a healthy leader
        // by campaigning with a higher term it cannot win.
        enable_pre_vote: Some(true),
        // A restarted leader must win an election (a new term, whose first entry it commits
        // and applies) before it serves: restored at once in its old term, it would answer
        // from a state machine that has not applied what was committed before the restart
        // (a consumer was sent back to offset 0 as out of range; the fault campaign found it).
        enable_leader_restore: Some(false),
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("invalid [cluster.raft] settings: {e}"))
}
