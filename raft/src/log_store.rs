//! The openraft log store on Chronik's WAL.
//!
//! Entries are WAL records keyed by their Raft index. The vote and the last purged log id live
//! in small `raft_vote` / `raft_purged` files beside the segments, written atomically; deleting
//! `raft_*` (the guide's Emergency Cluster Rebuild) therefore forgets the Raft identity of the
//! group while its state machine and segments stay.
//!
//! Durability follows openraft's contract: `append` returns once the entries are written and
//! signals `IOFlushed` from the WAL flusher only after the covering fdatasync, in append order.

use std::fmt::Debug;
use std::fs;
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chronik_shared::wal::{Payload, Wal, WalError, WalOptions};
use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use prometheus::Histogram;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec::EntryCodec;

pub const VOTE_FILE: &str = "raft_vote";
pub const PURGED_FILE: &str = "raft_purged";

/// What `purge` does with the WAL segments openraft no longer needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeMode {
    /// Delete them (the control plane: its state machine holds everything).
    Delete,
    /// Keep them: on the data plane the log is the partition's data, removed only by retention.
    Keep,
}

struct State<C: EntryCodec> {
    vote: Option<VoteOf<C>>,
    last_purged: Option<LogIdOf<C>>,
    last_log_id: Option<LogIdOf<C>>,
}

/// A cheap-to-clone handle: the log store and its readers share one WAL.
pub struct WalLogStore<C: EntryCodec> {
    wal: Wal,
    dir: PathBuf,
    purge_mode: PurgeMode,
    state: Arc<Mutex<State<C>>>,
    append_latency: Option<Histogram>,
}

impl<C: EntryCodec> Clone for WalLogStore<C> {
    fn clone(&self) -> Self {
        Self {
            wal: self.wal.clone(),
            dir: self.dir.clone(),
            purge_mode: self.purge_mode,
            state: self.state.clone(),
            append_latency: self.append_latency.clone(),
        }
    }
}

impl<C> WalLogStore<C>
where
    C: EntryCodec,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Opens the group's log in `dir`, recovering the WAL (a torn tail is truncated and
    /// reported; corruption elsewhere is an error).
    pub fn open(dir: &Path, stream: u32, opts: WalOptions, purge_mode: PurgeMode) -> io::Result<Self> {
        let (wal, _report) = Wal::open(dir, stream, opts).map_err(wal_io)?;
        let vote = read_json::<VoteOf<C>>(&dir.join(VOTE_FILE))?;
        let last_purged = read_json::<LogIdOf<C>>(&dir.join(PURGED_FILE))?;
        let last_log_id = match wal.last_id() {
            Some(last) => {
                let recs = wal.read(last, last + 1, usize::MAX).map_err(wal_io)?;
                match recs.into_iter().next() {
                    Some((_, bytes)) => Some(C::decode_entry(bytes)?.log_id()),
                    None => None,
                }
            }
            None => None,
        };
        let last_log_id = std::cmp::max(last_log_id, last_purged.clone());
        Ok(Self {
            wal,
            dir: dir.to_path_buf(),
            purge_mode,
            state: Arc::new(Mutex::new(State { vote, last_purged, last_log_id })),
            append_latency: None,
        })
    }

    /// Observes the time from append to durability into `histogram`
    /// (`chronik_raft_append_latency_ms`).
    pub fn with_append_latency(mut self, histogram: Histogram) -> Self {
        self.append_latency = Some(histogram);
        self
    }
}

impl<C> WalLogStore<C>
where
    C: EntryCodec,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Saves the vote outside openraft (offline recovery).
    pub fn save_vote_now(&self, vote: &VoteOf<C>) -> io::Result<()> {
        write_json_atomic(&self.dir, VOTE_FILE, vote)?;
        self.lock().vote = Some(vote.clone());
        Ok(())
    }

    /// Declares everything up to `log_id` purged: the group resumes from a state machine that
    /// already holds it.
    pub fn set_purged(&self, log_id: LogIdOf<C>) -> io::Result<()> {
        write_json_atomic(&self.dir, PURGED_FILE, &log_id)?;
        let mut st = self.lock();
        if st.last_log_id.as_ref() < Some(&log_id) {
            st.last_log_id = Some(log_id.clone());
        }
        st.last_purged = Some(log_id);
        Ok(())
    }

    pub fn vote(&self) -> Option<VoteOf<C>> {
        self.lock().vote.clone()
    }
}

impl<C: EntryCodec> WalLogStore<C> {
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this group has Raft state of its own (a vote): false on a new node and after
    /// the `raft_*` files were deleted.
    pub fn has_raft_state(&self) -> bool {
        self.lock().vote.is_some()
    }

    pub fn last_log_id(&self) -> Option<LogIdOf<C>> {
        self.lock().last_log_id.clone()
    }

    pub fn last_purged(&self) -> Option<LogIdOf<C>> {
        self.lock().last_purged.clone()
    }

    /// Appends `entries` and waits until they are durable, outside openraft (offline recovery
    /// tools, before the group starts).
    pub async fn append_now(&self, entries: Vec<C::Entry>) -> io::Result<()> {
        let records = entries.iter().map(record::<C>).collect::<io::Result<Vec<_>>>()?;
        self.wal.append_durable(records).await.map_err(wal_io)?;
        if let Some(last) = entries.last() {
            self.lock().last_log_id = Some(last.log_id());
        }
        Ok(())
    }

    /// Every entry still in the log, oldest first.
    pub fn entries(&self) -> io::Result<Vec<C::Entry>> {
        self.read_range(..)
    }

    /// Discards every entry and the Raft state (used when rebuilding a group from its state
    /// machine after `raft_*` was deleted).
    pub fn reset(&self) -> io::Result<()> {
        self.wal.truncate_from(0).map_err(wal_io)?;
        for f in [VOTE_FILE, PURGED_FILE] {
            match fs::remove_file(self.dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut st = self.lock();
        st.vote = None;
        st.last_purged = None;
        st.last_log_id = None;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<C>> {
        // A poisoned lock means a panic mid-update of three plain fields; the values are still
        // the last ones written, so carry on rather than cascade the panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> io::Result<Vec<C::Entry>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        // Purged entries may still be on disk (whole segments are deleted lazily, or kept for
        // retention on the data plane) but openraft must never see them again.
        let start = match self.lock().last_purged.as_ref() {
            Some(p) => start.max(p.index() + 1),
            None => start,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        let recs = self.wal.read(start, end, usize::MAX).map_err(wal_io)?;
        recs.into_iter().map(|(_, b)| C::decode_entry(b)).collect()
    }
}

impl<C> RaftLogReader<C> for WalLogStore<C>
where
    C: EntryCodec,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        self.read_range(range)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.lock().vote.clone())
    }
}

impl<C> RaftLogStorage<C> for WalLogStore<C>
where
    C: EntryCodec,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let st = self.lock();
        Ok(LogState { last_purged_log_id: st.last_purged.clone(), last_log_id: st.last_log_id.clone() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let (dir, v) = (self.dir.clone(), vote.clone());
        off_runtime(move || write_json_atomic(&dir, VOTE_FILE, &v)).await?;
        self.lock().vote = Some(vote.clone());
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut last = None;
        for entry in entries {
            records.push(record::<C>(&entry)?);
            last = Some(entry.log_id());
        }
        let Some(last) = last else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let started = Instant::now();
        let latency = self.append_latency.clone();
        self.wal
            .append(
                records,
                Box::new(move |res: Result<(), WalError>| {
                    if let Some(h) = latency {
                        h.observe(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    callback.io_completed(res.map_err(wal_io));
                }),
            )
            .map_err(wal_io)?;
        self.lock().last_log_id = Some(last);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        let wal = self.wal.clone();
        off_runtime(move || wal.truncate_from(from).map_err(wal_io)).await?;
        let mut st = self.lock();
        // Truncating after an index beyond the end removes nothing.
        let kept = std::cmp::min(last_log_id, st.last_log_id.clone());
        st.last_log_id = std::cmp::max(kept, st.last_purged.clone());
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let (dir, l) = (self.dir.clone(), log_id.clone());
        off_runtime(move || write_json_atomic(&dir, PURGED_FILE, &l)).await?;
        {
            let mut st = self.lock();
            if st.last_log_id.as_ref() < Some(&log_id) {
                st.last_log_id = Some(log_id.clone());
            }
            st.last_purged = Some(log_id.clone());
        }
        if self.purge_mode == PurgeMode::Delete {
            let (wal, before) = (self.wal.clone(), log_id.index() + 1);
            off_runtime(move || wal.purge_before(before).map(|_| ()).map_err(wal_io)).await?;
        }
        Ok(())
    }
}

/// Runs file-system work that fsyncs on tokio's blocking pool, so an election storm across many
/// groups does not stall the async workers that carry every group's heartbeats.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
}

/// `entry` as a WAL record: its encoded head, and the record batch it carries by reference.
fn record<C: EntryCodec>(entry: &C::Entry) -> io::Result<(u64, Payload)> {
    let mut head = Vec::new();
    let tail = C::encode_entry(entry, &mut head)?;
    Ok((entry.index(), Payload::new(Bytes::from(head), tail)))
}

pub fn wal_io(e: WalError) -> io::Error {
    io::Error::other(e.to_string())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not valid Raft state ({e}); restore it from a backup or follow the guide's Emergency Cluster Rebuild", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))),
    }
}

/// Writes `name` in `dir` so that a crash leaves either the old or the new content.
pub fn write_json_atomic<T: Serialize + ?Sized>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    {
        let mut f = fs::File::create(&tmp)?;
        serde_json::to_writer(&mut f, value).map_err(io::Error::other)?;
        f.flush()?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &target)?;
    fs::File::open(dir)?.sync_all()
}
