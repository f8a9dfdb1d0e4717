//! A partition's state machine: assigns Kafka offsets to batches as their entries are applied
//! and keeps the index from offsets to log entries that fetch reads through.
//!
//! The data itself stays in the Raft log (the WAL, see `data.rs`). On start the index comes
//! from the newer of the latest snapshot and the checkpoint (`checkpoint.rs`), and openraft
//! applies the rest of the log again. A snapshot is the index plus hard links to the segments
//! it points into, so a follower that missed entries retention has since deleted receives them
//! with it.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chronik_raft::service::SnapshotFiles;
use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use super::checkpoint::Checkpointer;
use super::data::PartitionData;
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
/// How many idempotent producers a partition remembers: the ones that wrote last. Kafka
/// forgets a producer after `producer.id.expiration.ms` of wall-clock silence; a replica's
/// clock is not the log's, so here the log decides (by count), the same on every replica, and
/// a cluster of short-lived producers does not grow every index (and every checkpoint) forever.
/// One forgotten while still writing is taken as new: its retries are no longer recognised.
const PRODUCERS_KEPT: usize = 1000;

/// The verdict on a batch from an idempotent producer.
enum Check {
    Accept,
    Duplicate(i64),
    Reject(ErrorCode, String),
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionIndex {
    pub applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    pub log_start_offset: i64,
    pub next_offset: i64,
    pub batches: Vec<IndexedBatch>,
    /// Idempotent producers by producer id.
    #[serde(default)]
    pub producers: std::collections::BTreeMap<i64, ProducerState>,
    /// The archive of received segments that `batches` point into, if any (`data.rs`).
    #[serde(default)]
    pub archive: Option<String>,
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
        if self.producers.len() >= PRODUCERS_KEPT && !self.producers.contains_key(&info.producer_id) {
            let last_write = |p: &ProducerState| p.recent.back().map_or(-1, |(_, _, base)| *base);
            if let Some(oldest) = self.producers.iter().min_by_key(|(_, p)| last_write(p)).map(|(id, _)| *id) {
                self.producers.remove(&oldest);
            }
        }
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
const INDEX_FILE: &str = "index.json";
const SNAPSHOT_PREFIX: &str = "snap-";

#[derive(Clone)]
pub struct PartitionStateMachine {
    pub index: Arc<Mutex<PartitionIndex>>,
    /// Where snapshots of the index are written.
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<SnapshotOf<C, SnapshotFiles>>>>,
    /// The high watermark (next offset after the last applied batch), for long polls.
    pub hw: watch::Sender<i64>,
    pub data: PartitionData,
    /// The first log index the next snapshot keeps (retention sets it before asking for one).
    retain_from: Arc<AtomicU64>,
    /// `chronik_raft_snapshot_size_bytes` of this partition: the current snapshot's files (its
    /// index and the segment prefixes it links), as streamed to a follower.
    snapshot_size: Option<chronik_shared::metrics::IntGauge>,
    checkpoint: Checkpointer,
}

impl PartitionStateMachine {
    /// Opens the state machine of the partition in `dir` whose log is `wal`: the index of the
    /// latest snapshot or of the checkpoint, whichever is newer and fits the log, trimmed to the
    /// entries still stored. openraft replays the rest.
    pub fn open(dir: &std::path::Path, wal: chronik_shared::wal::Wal) -> io::Result<Self> {
        let snapshot_dir = dir.join("snapshots");
        let current_path = snapshot_dir.join(CURRENT);
        let (hw, _) = watch::channel(0);
        let (index, current) = match std::fs::read(&current_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => (PartitionIndex::default(), None),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", current_path.display()))),
            Ok(bytes) => {
                let (meta, files): (SnapshotMetaOf<C>, SnapshotFiles) =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", current_path.display()))
                    })?;
                (read_index(&files)?, Some(openraft::Snapshot { meta, snapshot: files }))
            }
        };
        let data = PartitionData::open(dir, wal, index.archive.as_deref())?;
        let checkpoint = Checkpointer::new(dir, data.wal().options().segment_bytes);
        // A snapshot installed or retention run after the checkpoint was written makes it stale.
        let newer = checkpoint.read().filter(|c| c.applied > index.applied && c.archive == index.archive);
        let mut index = match newer {
            Some(c) if applied_entry_is_stored(&data, &c) => {
                tracing::info!(target: "chronik_raft", "Offset index checkpoint through log index {} loaded from {}", c.applied.map_or(0, |l| l.index), dir.display());
                c
            }
            _ => index,
        };
        if let Some(first) = data.first_id() {
            index.trim_below(first);
        }
        hw.send_replace(index.next_offset);
        Ok(Self {
            index: Arc::new(Mutex::new(index)),
            snapshot_dir,
            current: Arc::new(Mutex::new(current)),
            hw,
            data,
            retain_from: Arc::default(),
            snapshot_size: None,
            checkpoint,
        })
    }

    /// Writes the offset index checkpoint at a clean stop, if enough was applied since the last
    /// one that the next start would spend time replaying it.
    pub fn write_checkpoint_at_stop(&self) -> io::Result<()> {
        if !self.checkpoint.worth_writing_at_stop() {
            return Ok(());
        }
        let index = self.lock().clone();
        self.checkpoint.write_now(&index)
    }

    /// Reports the size of the current snapshot (if any) and of every later one to `gauge`.
    pub fn with_snapshot_size(mut self, gauge: chronik_shared::metrics::IntGauge) -> Self {
        if let Some(s) = self.current.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            gauge.set(s.snapshot.total_bytes() as i64);
        }
        self.snapshot_size = Some(gauge);
        self
    }

    /// The next snapshot keeps log entries from `first` on (retention is about to delete the
    /// rest).
    pub fn retain_from(&self, first: u64) {
        self.retain_from.store(first, Ordering::SeqCst);
    }

    /// Makes `snapshot` the current one, durably, and removes the snapshot directories it
    /// replaces.
    fn set_current(&self, snapshot: SnapshotOf<C, SnapshotFiles>) -> io::Result<()> {
        chronik_raft::log_store::write_json_atomic(&self.snapshot_dir, CURRENT, &(&snapshot.meta, &snapshot.snapshot))?;
        let keep = snapshot.snapshot.dir.clone();
        if let Some(g) = &self.snapshot_size {
            g.set(snapshot.snapshot.total_bytes() as i64);
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
        for e in std::fs::read_dir(&self.snapshot_dir)?.flatten() {
            let stale = e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX) && e.path() != keep;
            if stale {
                std::fs::remove_dir_all(e.path())?;
            }
        }
        Ok(())
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
        let mut applied_bytes = 0u64;
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            if let EntryPayload::Normal(DataCommand::Append { batch }) = &entry.payload {
                applied_bytes += batch.len() as u64;
            }
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
                                tracing::warn!(target: "chronik_server", "Refused a batch at log index {}: {message}", entry.log_id.index);
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
        let batches = self.lock().batches.len();
        if self.checkpoint.due(applied_bytes, batches) {
            let index = self.lock().clone();
            self.checkpoint.write_in_background(index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFiles) -> Result<(), io::Error> {
        let sm = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || sm.install_blocking(meta, snapshot))
            .await
            .map_err(|e| io::Error::other(format!("installing a partition snapshot: {e}")))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotFiles>>, io::Error> {
        Ok(self.current.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl RaftSnapshotBuilder<C> for PartitionStateMachine {
    type SnapshotData = SnapshotFiles;

    /// The offset index from `retain_from` on, with hard links to the segment files holding
    /// its entries (design §4).
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotFiles>, io::Error> {
        let sm = self.clone();
        let dir = self.snapshot_dir.display().to_string();
        tracing::info!(target: "chronik_raft", "Creating snapshot: index={} in {dir}", self.lock().applied.map(|l| l.index).unwrap_or(0));
        let built = tokio::task::spawn_blocking(move || sm.build_blocking())
            .await
            .map_err(|e| io::Error::other(format!("building a partition snapshot: {e}")))
            .and_then(|r| r);
        match &built {
            Ok(s) => {
                let size: u64 = s.snapshot.files.iter().map(|(_, len)| *len).sum();
                tracing::info!(target: "chronik_raft", "Snapshot saved: size={size} bytes in {dir}");
            }
            Err(e) => tracing::error!(target: "chronik_raft", "Snapshot build failed in {dir}: {e}"),
        }
        built
    }
}

impl PartitionStateMachine {
    fn build_blocking(&self) -> io::Result<SnapshotOf<C, SnapshotFiles>> {
        let from = self.retain_from.load(Ordering::SeqCst);
        let (index, meta) = {
            let idx = self.lock();
            let meta = SnapshotMetaOf::<C> { last_log_id: idx.applied, last_membership: idx.membership.clone() };
            let mut index = idx.clone();
            index.trim_below(from);
            index.archive = self.data.archive_name(from);
            (index, meta)
        };
        let last = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let dir = self.snapshot_dir.join(format!("{SNAPSHOT_PREFIX}{last:020}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut files =
            SnapshotFiles::write_single(&dir, INDEX_FILE, &serde_json::to_vec(&index).map_err(io::Error::other)?)?;
        if let Some(first) = index.batches.first().map(|b| b.log_index) {
            let stream = self.data.wal().stream();
            for (seq, (path, len)) in self.data.files_through(first, last).into_iter().enumerate() {
                let name = chronik_shared::wal::segment_file_name(stream, seq as u64 + 1);
                std::fs::hard_link(&path, dir.join(&name)).map_err(|e| {
                    io::Error::new(e.kind(), format!("linking {} into a snapshot: {e}", path.display()))
                })?;
                files.files.push((name, len));
            }
            std::fs::File::open(&dir)?.sync_all()?;
        }
        let snapshot = openraft::Snapshot { meta, snapshot: files };
        self.set_current(snapshot.clone())?;
        Ok(snapshot)
    }

    /// Moves the received snapshot next to this partition's own, makes its segments the
    /// archive, and only then (with the index durable) drops what it replaces.
    fn install_blocking(&self, meta: SnapshotMetaOf<C>, received: SnapshotFiles) -> io::Result<()> {
        let mut index = read_index(&received)?;
        let last = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let dir = self.snapshot_dir.join(format!("{SNAPSHOT_PREFIX}{last:020}"));
        std::fs::create_dir_all(&self.snapshot_dir)?;
        if dir != received.dir {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&received.dir, &dir)?;
            std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        }
        let files = SnapshotFiles { dir, files: received.files };
        let segments: Vec<String> = files.files.iter().skip(1).map(|(n, _)| n.clone()).collect();
        let replaced = self.data.adopt(&files.dir, &segments, last)?;
        index.archive = self.data.archive_name(0);
        index.applied = meta.last_log_id;
        index.membership = meta.last_membership.clone();
        let hw = index.next_offset;
        let snapshot = openraft::Snapshot { meta, snapshot: files };
        // Durable before the old archive goes: a crash in between restarts from this index.
        self.set_current(snapshot)?;
        *self.lock() = index;
        self.hw.send_replace(hw);
        self.data.retire(replaced, last)?;
        tracing::info!(target: "chronik_raft", "Installed a partition snapshot through log index {last} ({} segment file(s))", segments.len());
        Ok(())
    }
}

/// Whether the log holds the entry a checkpoint was applied through, as the checkpoint saw it
/// (a checkpoint may be ahead of a log whose tail was lost, e.g. a leader's unsynced entries).
fn applied_entry_is_stored(data: &PartitionData, checkpoint: &PartitionIndex) -> bool {
    use chronik_raft::codec::EntryCodec;
    let Some(applied) = checkpoint.applied else { return false };
    match data.read(applied.index, applied.index) {
        Ok(entries) => match entries.into_iter().next() {
            Some((_, bytes)) => C::decode_entry(bytes).is_ok_and(|e| e.log_id == applied),
            // Below the first stored entry: retention removed it, the checkpoint is trimmed.
            None => data.first_id().is_some_and(|first| applied.index < first),
        },
        Err(e) => {
            tracing::warn!(target: "chronik_raft", "checking the offset index checkpoint against the log: {e}");
            false
        }
    }
}

fn read_index(files: &SnapshotFiles) -> io::Result<PartitionIndex> {
    serde_json::from_slice(&files.read_single("partition index")?).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("partition snapshot index in {}: {e}", files.dir.display()))
    })
}

fn last_sequence(info: &BatchInfo) -> i32 {
    // Sequences wrap from i32::MAX to 0, as Kafka's do.
    ((info.base_sequence as i64 + info.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, base_sequence: i32) -> BatchInfo {
        BatchInfo {
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence,
            record_count: 1,
        }
    }

    fn write(idx: &mut PartitionIndex, info: &BatchInfo) {
        assert!(matches!(idx.check_producer(info), Check::Accept), "producer {} accepted", info.producer_id);
        let base = idx.next_offset;
        idx.record_producer(info, base);
        idx.next_offset += 1;
    }

    #[test]
    fn a_partition_forgets_the_producers_that_wrote_longest_ago() {
        let mut idx = PartitionIndex::default();
        for pid in 0..PRODUCERS_KEPT as i64 {
            write(&mut idx, &batch(pid, 0));
        }
        // Producer 0 writes again: producer 1 is now the one that wrote longest ago.
        write(&mut idx, &batch(0, 1));
        write(&mut idx, &batch(5000, 0));
        assert_eq!(idx.producers.len(), PRODUCERS_KEPT);
        assert!(!idx.producers.contains_key(&1), "the producer silent longest is forgotten");
        assert!(idx.producers.contains_key(&0) && idx.producers.contains_key(&5000));
        // Producer 0 is still known: its retry is recognised, not stored again.
        assert!(matches!(idx.check_producer(&batch(0, 1)), Check::Duplicate(_)));
    }
}
