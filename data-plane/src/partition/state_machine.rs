//! A partition's state machine: assigns Kafka offsets to batches as their entries are applied
//! and keeps the index from offsets to log entries that fetch reads through.
//!
//! The data itself stays in the Raft log (the WAL). The index is rebuilt on start by applying
//! the log again, which openraft does because this state machine reports nothing applied.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chronik_raft::service::SnapshotFiles;
use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use crate::batch::{self, BatchInfo};
use crate::types::{DataCommand, DataResponse, PartitionTypeConfig};
use chronik_shared::error::ErrorCode;

type C = PartitionTypeConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_index: u64,
    pub max_timestamp: i64,
    pub bytes: u32,
}

/// What the partition remembers of one idempotent producer: its epoch and its last batches,
/// enough to recognise a retry (Kafka keeps five).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerState {
    pub epoch: i16,
    /// (base sequence, last sequence, base offset), oldest first.
    pub recent: std::collections::VecDeque<(i32, i32, i64)>,
}

const PRODUCER_BATCHES_KEPT: usize = 5;

/// The verdict on a batch from an idempotent producer.
enum Check {
    Accept,
    Duplicate(i64),
    Reject(ErrorCode, String),
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionIndex {
    pub applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    pub log_start_offset: i64,
    pub next_offset: i64,
    pub batches: Vec<IndexedBatch>,
    /// Idempotent producers by producer id.
    #[serde(default)]
    pub producers: std::collections::BTreeMap<i64, ProducerState>,
}

impl PartitionIndex {
    /// Position in `batches` of the batch holding `offset`, or of the first one after it.
    pub fn find(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last_offset < offset)
    }

    fn check_producer(&self, info: &BatchInfo) -> Check {
        let last_seq = last_sequence(info);
        let Some(state) = self.producers.get(&info.producer_id) else { return Check::Accept };
        if info.producer_epoch < state.epoch {
            return Check::Reject(
                ErrorCode::InvalidProducerEpoch,
                format!("producer {} epoch {} is older than {}", info.producer_id, info.producer_epoch, state.epoch),
            );
        }
        if info.producer_epoch > state.epoch {
            return if info.base_sequence == 0 {
                Check::Accept
            } else {
                Check::Reject(
                    ErrorCode::OutOfOrderSequence,
                    format!(
                        "producer {} starts epoch {} at sequence {}, not 0",
                        info.producer_id, info.producer_epoch, info.base_sequence
                    ),
                )
            };
        }
        if let Some((_, _, base)) = state.recent.iter().find(|(b, l, _)| *b == info.base_sequence && *l == last_seq) {
            return Check::Duplicate(*base);
        }
        let expected = state.recent.back().map(|(_, l, _)| if *l == i32::MAX { 0 } else { l + 1 }).unwrap_or(0);
        if info.base_sequence == expected {
            Check::Accept
        } else {
            Check::Reject(
                ErrorCode::OutOfOrderSequence,
                format!(
                    "producer {} sent sequence {} where {expected} was expected",
                    info.producer_id, info.base_sequence
                ),
            )
        }
    }

    fn record_producer(&mut self, info: &BatchInfo, base_offset: i64) {
        let state = self.producers.entry(info.producer_id).or_default();
        if info.producer_epoch != state.epoch {
            state.epoch = info.producer_epoch;
            state.recent.clear();
        }
        state.recent.push_back((info.base_sequence, last_sequence(info), base_offset));
        while state.recent.len() > PRODUCER_BATCHES_KEPT {
            state.recent.pop_front();
        }
    }

    /// Forgets batches whose log entries are below `first_index` (deleted by retention) and
    /// moves the log start offset to the first batch still present.
    pub fn trim_below(&mut self, first_index: u64) {
        let keep = self.batches.partition_point(|b| b.log_index < first_index);
        self.batches.drain(..keep);
        self.log_start_offset = self.batches.first().map(|b| b.base_offset).unwrap_or(self.next_offset);
    }
}

const CURRENT: &str = "current.json";

#[derive(Clone)]
pub struct PartitionStateMachine {
    pub index: Arc<Mutex<PartitionIndex>>,
    /// Where snapshots of the index are written.
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotOf<C, SnapshotFiles>>>>,
    /// The high watermark (next offset after the last applied batch), for long polls.
    pub hw: watch::Sender<i64>,
}

impl PartitionStateMachine {
    pub fn new(snapshot_dir: PathBuf) -> Self {
        let (hw, _) = watch::channel(0);
        Self { index: Arc::default(), hw, snapshot_dir, current: Arc::default() }
    }

    /// Opens the state machine from its latest snapshot, if any: the index as of that point,
    /// trimmed to the entries the log still has (`first_index`). openraft replays the rest.
    pub fn open(snapshot_dir: PathBuf, first_index: Option<u64>) -> io::Result<Self> {
        let sm = Self::new(snapshot_dir);
        let Ok(bytes) = std::fs::read(sm.snapshot_dir.join(CURRENT)) else { return Ok(sm) };
        let (meta, files): (SnapshotMetaOf<C>, SnapshotFiles) = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", sm.snapshot_dir.join(CURRENT).display()))
        })?;
        let mut index: PartitionIndex = serde_json::from_slice(&files.read_single("partition index")?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("partition snapshot index: {e}")))?;
        if let Some(first) = first_index {
            index.trim_below(first);
        }
        sm.hw.send_replace(index.next_offset);
        *sm.index.lock().unwrap_or_else(|p| p.into_inner()) = index;
        *sm.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(openraft::Snapshot { meta, snapshot: files });
        Ok(sm)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PartitionIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftStateMachine<C> for PartitionStateMachine {
    type SnapshotData = SnapshotFiles;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let idx = self.lock();
        Ok((idx.applied, idx.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let resp = {
                let mut idx = self.lock();
                idx.applied = Some(entry.log_id);
                match &entry.payload {
                    EntryPayload::Normal(DataCommand::Append { batch }) => {
                        // Batches were validated before they were proposed; a header that does
                        // not parse here is stored data gone bad.
                        let info = batch::info(batch).ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("log entry {} holds no record batch", entry.log_id),
                            )
                        })?;
                        // Idempotent producers: a retried batch gets its first offset again and is
                        // not stored twice; gaps and fenced epochs are refused. Every replica
                        // decides the same, since it only looks at the log.
                        let verdict = if info.producer_id >= 0 { idx.check_producer(&info) } else { Check::Accept };
                        match verdict {
                            Check::Duplicate(base) => {
                                tracing::info!(target: "chronik_server", "Duplicate batch from producer {} (sequence {}): answered with its original offset {base}", info.producer_id, info.base_sequence);
                                let resp = DataResponse {
                                    base_offset: base,
                                    log_start_offset: idx.log_start_offset,
                                    error: None,
                                };
                                drop(idx);
                                if let Some(r) = responder {
                                    r.send(resp);
                                }
                                continue;
                            }
                            Check::Reject(code, message) => {
                                let resp = DataResponse {
                                    base_offset: -1,
                                    log_start_offset: idx.log_start_offset,
                                    error: Some((code.id(), message)),
                                };
                                drop(idx);
                                if let Some(r) = responder {
                                    r.send(resp);
                                }
                                continue;
                            }
                            Check::Accept => {}
                        }
                        let base = idx.next_offset;
                        if info.producer_id >= 0 {
                            idx.record_producer(&info, base);
                        }
                        let last = base + info.last_offset_delta as i64;
                        idx.batches.push(IndexedBatch {
                            base_offset: base,
                            last_offset: last,
                            log_index: entry.log_id.index,
                            max_timestamp: info.max_timestamp,
                            bytes: batch.len() as u32,
                        });
                        idx.next_offset = last + 1;
                        // Published while the index is still locked, so nothing reads an index
                        // that is ahead of the high watermark it reports.
                        self.hw.send_replace(idx.next_offset);
                        DataResponse { base_offset: base, log_start_offset: idx.log_start_offset, error: None }
                    }
                    EntryPayload::Membership(m) => {
                        idx.membership = StoredMembershipOf::<C>::new(Some(entry.log_id), m.clone());
                        DataResponse { base_offset: -1, log_start_offset: idx.log_start_offset, error: None }
                    }
                    EntryPayload::Blank => {
                        DataResponse { base_offset: -1, log_start_offset: idx.log_start_offset, error: None }
                    }
                }
            };
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFiles) -> Result<(), io::Error> {
        let mut index: PartitionIndex = serde_json::from_slice(&snapshot.read_single("partition index")?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("partition snapshot index: {e}")))?;
        index.applied = meta.last_log_id;
        index.membership = meta.last_membership.clone();
        let hw = index.next_offset;
        *self.lock() = index;
        self.hw.send_replace(hw);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(openraft::Snapshot { meta: meta.clone(), snapshot });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotFiles>>, io::Error> {
        Ok(self.current.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl RaftSnapshotBuilder<C> for PartitionStateMachine {
    type SnapshotData = SnapshotFiles;

    /// A snapshot of the offset index. The batches stay in the WAL segments; sending those to
    /// a follower that lost them is replication's job (design §4).
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotFiles>, io::Error> {
        let (bytes, meta) = {
            let idx = self.lock();
            let meta = SnapshotMetaOf::<C> { last_log_id: idx.applied, last_membership: idx.membership.clone() };
            (serde_json::to_vec(&*idx).map_err(io::Error::other)?, meta)
        };
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let name = format!("index_{index:08}.json");
        let snapshot =
            openraft::Snapshot { meta, snapshot: SnapshotFiles::write_single(&self.snapshot_dir, &name, &bytes)? };
        chronik_raft::log_store::write_json_atomic(&self.snapshot_dir, CURRENT, &(&snapshot.meta, &snapshot.snapshot))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        Ok(snapshot)
    }
}

fn last_sequence(info: &BatchInfo) -> i32 {
    // Sequences wrap from i32::MAX to 0, as Kafka's do.
    ((info.base_sequence as i64 + info.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}
