//! openraft's log-store conformance suite on the `__meta` WAL store with the redb state machine.

use chronik_control_plane::MetaTypeConfig;
use chronik_control_plane::state_machine::ControlStateMachine;
use chronik_raft::PurgeMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_log_store_passes_openraft_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    chronik_raft::testing::run_suite::<MetaTypeConfig, _>(dir.path().to_path_buf(), PurgeMode::Delete, |d| {
        ControlStateMachine::open(&d).expect("state machine")
    })
    .await
    .expect("suite passes");
}
