//! openraft's log-store conformance suite on a partition's WAL store (record-batch entries,
//! segments kept on purge) with the partition state machine.

use chronik_data_plane::partition::PartitionStateMachine;
use chronik_data_plane::types::PartitionTypeConfig;
use chronik_raft::PurgeMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_log_store_passes_openraft_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    chronik_raft::testing::run_suite::<PartitionTypeConfig, _>(dir.path().to_path_buf(), PurgeMode::Keep, |dir| {
        // The suite drives the log store; the state machine reads a WAL of its own here.
        let (wal, _) = chronik_shared::wal::Wal::open(&dir.join("data"), 0, Default::default()).expect("wal");
        PartitionStateMachine::open(&dir, wal).expect("state machine")
    })
    .await
    .expect("suite passes");
}
