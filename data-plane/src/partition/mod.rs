//! One partition replica: its openraft group over the WAL, its offset index, and the produce,
//! fetch and list-offsets operations on it.

mod checkpoint;
mod data;
mod membership;
pub(crate) mod quiet;
mod read;
mod retention;
mod sequencer;
pub mod state_machine;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_raft::errors::write_error;
use chronik_raft::{GrpcNetworkFactory, Liveness, PeerPool, PurgeMode, Quiet, RaftObserver, WalLogStore};
use chronik_shared::error::{ChronikError, ErrorCode, LeaderHint};
use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::error::RaftError;
use openraft::impls::ProgressResponder;
use openraft::type_config::TypeConfigExt;

use crate::batch;
use crate::types::{DataCommand, DataResponse, PartitionTypeConfig};
pub use state_machine::{IndexedBatch, PartitionStateMachine};

pub type PartitionRaft = openraft::Raft<PartitionTypeConfig, PartitionStateMachine>;

/// Everything needed to open a partition replica.
pub struct PartitionSpec {
    pub topic: String,
    pub partition: u32,
    pub dir: std::path::PathBuf,
    pub wal: chronik_shared::wal::WalOptions,
    pub raft: Arc<openraft::Config>,
    pub pool: PeerPool,
    pub chunk_size: usize,
    pub snapshot_timeout: Duration,
    /// Followers further behind than this are out of the ISR.
    pub lag_threshold: Duration,
    /// Refuses produce while the disk is nearly full.
    pub disk: Arc<chronik_shared::wal::DiskGuard>,
    /// The node's pings, which stand in for a quiet group's heartbeats.
    pub liveness: Arc<Liveness>,
}

pub struct Partition {
    pub topic: String,
    pub partition: u32,
    pub name: String,
    pub node_id: u64,
    pub raft: PartitionRaft,
    pub store: WalLogStore<PartitionTypeConfig>,
    pub sm: PartitionStateMachine,
    observer: RaftObserver,
    lag_threshold: Duration,
    /// A leader that has not heard from a quorum for this long no longer acts as one.
    quorum_window: Duration,
    /// The largest batch one Raft message can carry to followers.
    max_batch_bytes: usize,
    sequencer: sequencer::Sequencer,
    /// A membership step of a replica move is running (`membership.rs`).
    membership_busy: std::sync::atomic::AtomicBool,
    disk: Arc<chronik_shared::wal::DiskGuard>,
    /// Whether the group is quiet (no timers) and what stands in for its heartbeats.
    pub quiet: Arc<Quiet>,
    liveness: Arc<Liveness>,
    /// This replica's stop as leader has been reported to the peers' pings.
    stop_reported: std::sync::atomic::AtomicBool,
    /// When this replica last handed leadership over because its node refused writes
    /// (`membership.rs`, `hand_over`).
    handed_over: std::sync::Mutex<Option<std::time::Instant>>,
}

pub fn group_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

fn storage_error(e: impl std::fmt::Display, what: &str) -> ChronikError {
    ChronikError::new(ErrorCode::StorageError, format!("{what}: {e}"))
}

/// The replica's log and offset index, read back from `dir`.
fn open_storage(
    dir: &std::path::Path,
    partition: u32,
    wal: chronik_shared::wal::WalOptions,
    name: &str,
) -> Result<(WalLogStore<PartitionTypeConfig>, PartitionStateMachine), ChronikError> {
    std::fs::create_dir_all(dir).map_err(|e| storage_error(e, &format!("creating {}", dir.display())))?;
    let store = WalLogStore::<PartitionTypeConfig>::open(dir, partition, wal, PurgeMode::Keep)
        .map_err(|e| storage_error(e, &format!("opening the log of {name}")))?
        .with_append_latency(chronik_shared::metrics::RAFT_APPEND_LATENCY_MS.with_label_values(&[name]));
    let sm = PartitionStateMachine::open(dir, store.wal().clone())
        .map_err(|e| storage_error(e, &format!("loading the offset index of {name}")))?
        .with_snapshot_size(chronik_shared::metrics::RAFT_SNAPSHOT_SIZE_BYTES.with_label_values(&[name]));
    Ok((store, sm))
}

impl Partition {
    /// Opens the replica's log and starts its Raft group (replaying the log into the index).
    pub async fn open(node_id: u64, spec: PartitionSpec) -> Result<Partition, ChronikError> {
        let name = group_name(&spec.topic, spec.partition);
        // Reading the log back is blocking I/O (the whole log after a restart): off the
        // runtime's workers, so replicas open side by side and nothing else waits for them.
        let (store, sm) = {
            let (dir, partition, wal, group) = (spec.dir.clone(), spec.partition, spec.wal, name.clone());
            tokio::task::spawn_blocking(move || open_storage(&dir, partition, wal, &group))
                .await
                .map_err(|e| ChronikError::new(ErrorCode::Internal, format!("opening the log of {name}: {e}")))??
        };
        let max_batch_bytes = spec.pool.max_message_size().saturating_sub(64 * 1024);
        let network = GrpcNetworkFactory::<PartitionTypeConfig>::new(
            name.clone(),
            spec.pool,
            spec.chunk_size,
            spec.snapshot_timeout,
        );
        // The raft config has SnapshotPolicy::Never: the log is the partition's data and only
        // retention removes it, never openraft's purge.
        let quorum_window = Duration::from_millis(spec.raft.election_timeout_max.max(1) * 2);
        let raft = openraft::Raft::new(node_id, spec.raft, network, store.clone(), sm.clone())
            .await
            .map_err(|e| ChronikError::new(ErrorCode::Unavailable, format!("starting Raft group {name}: {e}")))?;
        let quiet = {
            let raft = raft.clone();
            Arc::new(Quiet::new(quorum_window, spec.liveness.clone(), move |on| raft.runtime_config().tick(on)))
        };
        let observer = RaftObserver::spawn(name.clone(), &raft, spec.lag_threshold, Some(quiet.clone()));
        // The only voter needs nobody's vote: after a restart it leads at once instead of
        // after an election timeout.
        if store.has_raft_state() {
            let loaded = raft
                .wait(Some(Duration::from_secs(1)))
                .metrics(|m| m.membership_config.membership().voter_ids().next().is_some(), "membership loaded")
                .await;
            let sole =
                loaded.is_ok_and(|m| m.current_leader != Some(node_id) && chronik_raft::observer::sole_voter(&m));
            if sole && let Err(e) = raft.trigger().elect(false).await {
                tracing::debug!(target: "chronik_raft", "partition {name}: no immediate election: {e}");
            }
        }
        Ok(Partition {
            topic: spec.topic,
            partition: spec.partition,
            name,
            node_id,
            raft,
            store,
            sm,
            observer,
            lag_threshold: spec.lag_threshold,
            quorum_window,
            max_batch_bytes,
            sequencer: Default::default(),
            membership_busy: Default::default(),
            disk: spec.disk,
            quiet,
            liveness: spec.liveness,
            stop_reported: Default::default(),
            handed_over: Default::default(),
        })
    }

    pub fn is_fresh(&self) -> bool {
        !self.store.has_raft_state()
    }

    /// Leads and has heard from a quorum recently. Raft keeps a cut-off leader in office until
    /// it sees a higher term; such a leader can commit nothing, so it must not attract
    /// producers (gateways route by what data nodes report here).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        m.current_leader == Some(self.node_id) && m.running_state.is_ok() && self.has_quorum(&m)
    }

    fn has_quorum(&self, m: &openraft::RaftMetrics<PartitionTypeConfig>) -> bool {
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return true;
        }
        let acked = match &m.last_quorum_acked {
            Some(at) => PartitionTypeConfig::now().saturating_duration_since(**at) < self.quorum_window,
            None => false,
        };
        acked || self.quiet_quorum(m)
    }

    /// Leads and has applied an entry of its own term, so its index holds everything
    /// committed (a new leader learns the commit point only by committing in its term).
    pub fn ensure_serving(&self) -> Result<(), ChronikError> {
        let m = self.raft.metrics().borrow_watched().clone();
        // A group stopped by a storage failure keeps its last metrics (still "leader"), and
        // its frozen high watermark would send consumers that read further elsewhere back to
        // the start as out of range.
        if m.current_leader != Some(self.node_id) || m.running_state.is_err() || !self.has_quorum(&m) {
            return Err(self.not_leader());
        }
        if m.last_applied.as_ref().map(|l| l.leader_id.term) != Some(m.current_term) {
            return Err(ChronikError::new(
                ErrorCode::NoLeader,
                format!("partition {} has a new leader that is still catching up; retry shortly", self.name),
            ));
        }
        Ok(())
    }

    /// The in-sync replicas while this replica leads: itself and the voters whose state is no
    /// more than `cluster.raft.replica_lag_time_max_ms` stale. Empty when it does not lead.
    pub fn isr(&self) -> Vec<u64> {
        if !self.is_leader() {
            return Vec::new();
        }
        let m = self.raft.metrics().borrow_watched().clone();
        let lag = self.observer.lag();
        let max = self.lag_threshold.as_millis() as u64;
        // Quiet, a follower that had everything when the group went quiet still has it while
        // its node answers.
        let quiet_since = self.quiet.credit(m.current_term);
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|v| {
                *v == self.node_id
                    || lag.get(v).is_some_and(|l| l.ms <= max)
                    || quiet_since.is_some_and(|s| self.liveness.healthy_since(*v, s))
            })
            .collect()
    }

    /// The Raft term this replica is in.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    pub fn high_watermark(&self) -> i64 {
        *self.sm.hw.borrow()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.sm.lock().log_start_offset
    }

    fn not_leader(&self) -> ChronikError {
        let m = self.raft.metrics().borrow_watched().clone();
        // A cut-off leader still believes it leads; pointing clients back at it would loop.
        let hint = m.current_leader.filter(|id| *id != self.node_id).and_then(|id| {
            m.membership_config.membership().get_node(&id).map(|n| LeaderHint { node_id: id, addr: n.addr.clone() })
        });
        ChronikError::not_leader(hint, &format!("partition {}", self.name))
    }

    /// Validates and appends one batch; returns once it is committed and applied.
    ///
    /// If this leader loses its quorum while the write waits, the write fails as "not leader"
    /// instead of waiting for a term that may never come back: the client retries at the new
    /// leader. (The entry may still commit if the quorum returns, so a retry can duplicate it;
    /// the idempotent producer is what removes such duplicates.)
    pub async fn produce(&self, batch_bytes: Bytes) -> Result<DataResponse, ChronikError> {
        let info = batch::validate(&batch_bytes)?;
        self.disk.admit(batch_bytes.len() as u64)?;
        if batch_bytes.len() > self.max_batch_bytes {
            return Err(ChronikError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "record batch of {} bytes exceeds the {} bytes a replica can receive (cluster.network.max_message_size); lower the producer's batch.size",
                    batch_bytes.len(),
                    self.max_batch_bytes
                ),
            ));
        }
        self.quiet.touch();
        // Not before this leader has applied an entry of its own term: the sequencer starts each
        // producer from the state machine, which until then may lack batches committed under
        // the previous leader, and would hold a retried batch's successors waiting for a
        // sequence that is already in the log.
        self.ensure_serving()?;
        self.ensure_lease().await;
        let group = format!("partition {}", self.name);
        let term = self.raft.metrics().borrow_watched().current_term;
        let committed = || {
            let idx = self.sm.lock();
            let p = idx.producers.get(&info.producer_id)?;
            p.recent.back().map(|(_, last, _)| (p.epoch, *last))
        };
        let (in_order, written) = {
            let turn =
                if info.producer_id >= 0 { Some(self.sequencer.admit(term, &info, committed).await?) } else { None };
            let in_order = turn.as_ref().is_some_and(|t| t.in_order());
            // Handed to Raft before the turn ends, so the producer's next batch lands after
            // this one in the log.
            let (responder, written) = ProgressResponder::complete_only();
            // Again: the group may have gone quiet while the batch waited for its turn.
            self.quiet.touch();
            self.raft
                .client_write_ff(DataCommand::Append { batch: batch_bytes }, Some(responder))
                .await
                .map_err(|f| write_error(RaftError::Fatal(f), &group))?;
            if let Some(turn) = turn {
                turn.proposed();
            }
            (in_order, written)
        };
        let write = async {
            match written.await {
                Ok(Err(e @ openraft::error::ClientWriteError::ForwardToLeader(_))) => {
                    // Refused, not appended: the producer's sequence must not move past it.
                    if info.producer_id >= 0 {
                        self.sequencer.rewind(term, info.producer_id, info.producer_epoch, info.base_sequence);
                    }
                    Err(write_error(RaftError::APIError(e), &group))
                }
                Ok(r) => r.map_err(|e| write_error(RaftError::APIError(e), &group)),
                Err(_) => Err(ChronikError::new(
                    ErrorCode::OutcomeUnknown,
                    format!("{group} stopped before the write committed; its outcome is unknown, retry it"),
                )),
            }
        };
        tokio::pin!(write);
        let check = self.quorum_window / 4;
        loop {
            tokio::select! {
                r = &mut write => {
                    let resp = r?.data;
                    return match resp.error {
                        Some((code, message)) if in_order && code == ErrorCode::OutOfOrderSequence.id() => {
                            // A batch before this one was refused by Raft (the leader's lease
                            // had lapsed; the next write, after an ack, was taken) after this one
                            // had been queued behind it: the gap is this leader's doing, so the
                            // client retries both, in order. Refused as out of order it would be
                            // fatal to the producer.
                            self.sequencer.resync(term, &info, committed());
                            Err(ChronikError::new(
                                ErrorCode::SequenceAhead,
                                format!("{message}: a batch before it did not reach the log; send it again after that one"),
                            ))
                        }
                        Some((code, message)) => {
                            Err(ChronikError::new(ErrorCode::from_id(code).unwrap_or(ErrorCode::Internal), message))
                        }
                        None => Ok(resp),
                    };
                }
                _ = tokio::time::sleep(check) => {
                    if !self.is_leader() {
                        return Err(ChronikError {
                            leader: self.not_leader().leader,
                            ..ChronikError::new(
                                ErrorCode::OutcomeUnknown,
                                format!("partition {} lost its leader's quorum while the write waited; its outcome is unknown, retry", self.name),
                            )
                        });
                    }
                }
            }
        }
    }

    /// openraft refuses writes from a leader that has not heard from a quorum within its lease
    /// (`election_timeout_max`), yet stays leader in the same term: a quiet group just woken
    /// has heard from nobody for as long as it was quiet. Its first write would be refused
    /// (and retried by the client), so a leader whose last quorum ack is near or past the
    /// lease asks for a heartbeat round and waits for it, up to the lease. It never fails
    /// here: under load acks come late, and a write openraft does refuse rewinds the
    /// producer's sequence (`Sequencer::rewind`). Requiring more than openraft does stalled
    /// producers for half a minute in the fault campaign.
    async fn ensure_lease(&self) {
        let lease = self.quorum_window / 2;
        let fresh = |m: &openraft::RaftMetrics<PartitionTypeConfig>| {
            m.membership_config.membership().voter_ids().count() <= 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|t| PartitionTypeConfig::now().saturating_duration_since(**t) < lease * 3 / 4)
        };
        if fresh(&self.raft.metrics().borrow_watched()) {
            return;
        }
        let _ = self.raft.trigger().heartbeat().await;
        let _ = self.raft.wait(Some(lease)).metrics(|m| fresh(m), "a fresh quorum ack").await;
    }

    /// ListOffsets: -2 earliest, -1 latest, -3 the record with the largest timestamp,
    /// otherwise the first offset whose timestamp is at least `ts`. Returns (offset, timestamp).
    pub fn list_offset(&self, ts: i64) -> Result<(i64, i64), ChronikError> {
        self.ensure_serving()?;
        let (start, hw, candidates) = {
            let idx = self.sm.lock();
            let hw = idx.next_offset;
            match ts {
                -2 => return Ok((idx.log_start_offset, -1)),
                -1 => return Ok((hw, -1)),
                -3 => {
                    let best = idx.batches.iter().max_by_key(|b| (b.max_timestamp, std::cmp::Reverse(b.base_offset)));
                    return Ok(best.map(|b| (b.last_offset, b.max_timestamp)).unwrap_or((-1, -1)));
                }
                _ => {}
            }
            let first = idx.batches.partition_point(|b| b.max_timestamp < ts);
            (idx.log_start_offset, hw, idx.batches.get(first).copied())
        };
        let _ = (start, hw);
        let Some(b) = candidates else { return Ok((-1, -1)) };
        let bytes = self.read(b.base_offset, 1)?;
        let delta = batch::first_offset_delta_at_or_after(&bytes, ts).unwrap_or(0);
        let at = batch::info(&bytes).map(|i| i.base_timestamp).unwrap_or(b.max_timestamp);
        Ok((b.base_offset + delta, at.max(ts)))
    }

    /// Hands leadership to replica `target` (it must be a voter of this partition).
    pub async fn transfer_leader(&self, target: u64) -> Result<(), ChronikError> {
        self.ensure_serving()?;
        let m = self.raft.metrics().borrow_watched().clone();
        if !m.membership_config.membership().voter_ids().any(|v| v == target) {
            return Err(ChronikError::new(
                ErrorCode::InvalidRequest,
                format!("node {target} is not a replica of partition {}", self.name),
            ));
        }
        if let Err(why) = self.ready_to_lead(target, &self.observer.lag()) {
            return Err(ChronikError::new(
                ErrorCode::Unavailable,
                format!(
                    "node {target} cannot take partition {} over now: {why}; retry once it has caught up",
                    self.name
                ),
            ));
        }
        tracing::info!(target: "chronik_cluster", partition = %self.name, "Transferring leadership to node {target}");
        self.quiet.touch();
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|e| ChronikError::new(ErrorCode::Unavailable, format!("{}: {e}", self.name)))
    }

    pub async fn shutdown(&self) {
        // Quiet followers wait for this node's pings to tell them (they have no timer).
        if self.raft.metrics().borrow_watched().current_leader == Some(self.node_id) {
            self.report_stop();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(target: "chronik_raft", partition = %self.name, "Raft group did not stop cleanly: {e}");
        }
        self.observer.abort();
        // Both block (a file write, joining the log's flusher thread): off the runtime's
        // workers, so replicas stopping side by side do not wait on each other.
        let sm = self.sm.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = sm.write_checkpoint_at_stop();
            sm.data.close();
            written
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "chronik_raft", partition = %self.name, "could not write the offset index checkpoint at stop: {e}")
            }
            // The task panicked: the log is closed when its last handle goes.
            Err(e) => tracing::warn!(target: "chronik_raft", partition = %self.name, "stopping the log: {e}"),
        }
    }
}
