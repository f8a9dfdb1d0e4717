//! The live log: writing, indexing, reading, rolling, truncating and purging segments.
//!
//! One `RwLock` guards the segment list and its id index. Appends take it for writing only long
//! enough to write (`writev`) and queue their callback; reads share it. Syncing happens on the flusher
//! thread outside the lock, except for the rare syncs that must precede a change of layout (rolling
//! to a new segment, truncation), which take it so no append can slip between.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use super::flusher::{Callback, Flusher, Pending, SegFile};
use super::format::{self, FRAME_HEADER_LEN, MAX_PAYLOAD, Payload};
use super::recovery;
use super::sealed;
use super::segment::{Frames, Segment, create_segment, open_locked, open_segment, read_frames};
use super::{RecoveryReport, SegmentInfo, WalError, WalOptions};

/// A segmented write-ahead log for one stream. Cloning is cheap; all clones are the same log.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    stream: u32,
    opts: WalOptions,
    state: RwLock<State>,
    flusher: Arc<Flusher>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    /// Ascending seq; only the last (active) one may be empty.
    segments: Vec<Segment>,
    closed: bool,
}

impl State {
    fn active(&mut self) -> Result<&mut Segment, WalError> {
        self.segments.last_mut().ok_or(WalError::Closed)
    }

    fn last_id(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(|s| s.ids.last().copied())
    }

    /// Index of the first segment holding an id >= `id` (or the trailing empty one).
    fn segment_reaching(&self, id: u64) -> usize {
        self.segments.partition_point(|s| s.ids.last().is_some_and(|&last| last < id))
    }
}

/// Undoes a failed append so the files end where the index says they do.
struct Undo {
    segments: usize,
    size: u64,
    records: usize,
}

impl Wal {
    /// Opens the log `dir/wal_{stream}_{seq:08}.log`, creating it if absent, and recovers it.
    ///
    /// A torn tail of the last segment is cut off and reported; other damage is
    /// [`WalError::Corrupt`].
    pub fn open(dir: &Path, stream: u32, opts: WalOptions) -> Result<(Wal, RecoveryReport), WalError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|e| WalError::io(dir, "create directory", e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                recovery::sync_dir(parent)?;
            }
        }
        let files: Vec<_> = recovery::list_segment_files(dir)?.into_iter().filter(|f| f.stream == stream).collect();
        // Locked before anything is read or repaired: a log open elsewhere is not ours to touch.
        let mut handles =
            files.iter().map(|f| open_locked(dir, &f.path)).collect::<Result<Vec<File>, WalError>>()?.into_iter();
        let mut scan = recovery::scan_stream(&files, true, true, !opts.verify_sealed_on_start)?;
        if let (Some(tail), Some(last)) = (&scan.torn, scan.segments.last_mut()) {
            recovery::repair_torn_tail(tail, stream, last)?;
        }

        let flusher = Flusher::new(opts.profile, opts.linger);
        let mut segments = Vec::with_capacity(scan.segments.len());
        let count = scan.segments.len();
        for (i, seg) in scan.segments.into_iter().enumerate() {
            let Some(file) = handles.next() else { break };
            if seg.ids.is_empty() && i + 1 < count {
                // Holds nothing; dropping it keeps "only the last segment is empty" true.
                fs::remove_file(&seg.path).map_err(|e| WalError::io(&seg.path, "remove", e))?;
                continue;
            }
            segments.push(open_segment(seg, file));
        }
        // The active segment grows again, so an index left from a roll that did not finish
        // would describe it wrongly.
        if let Some(active) = segments.last() {
            sealed::remove(&active.file.path);
        }
        if segments.is_empty() {
            segments.push(create_segment(dir, stream, 1, &flusher)?);
            flusher.guarded_sync(dir, "directory fsync", || File::open(dir).and_then(|d| d.sync_all()))?;
        }

        let report = RecoveryReport {
            truncated: scan.torn.take(),
            segments: segments.len(),
            records: segments.iter().map(|s| s.ids.len() as u64).sum(),
        };
        let thread = flusher
            .spawn(format!("wal-flush-{stream}"))
            .map_err(|e| WalError::io(dir, "start the flusher thread for", e))?;
        let inner = Inner {
            dir: dir.to_path_buf(),
            stream,
            opts,
            state: RwLock::new(State { segments, closed: false }),
            flusher,
            thread: Mutex::new(Some(thread)),
        };
        Ok((Wal { inner: Arc::new(inner) }, report))
    }

    /// Writes `records` (ids strictly increasing, above [`Wal::last_id`]) before returning, and
    /// calls `on_durable` from the flusher thread once they are synced (or the log failed).
    /// Callbacks complete in append order.
    ///
    /// If this returns `Err`, nothing was written and `on_durable` is dropped without being called.
    pub fn append<P: Into<Payload>>(
        &self,
        records: Vec<(u64, P)>,
        on_durable: Box<dyn FnOnce(Result<(), WalError>) + Send + 'static>,
    ) -> Result<(), WalError> {
        let records: Vec<(u64, Payload)> = records.into_iter().map(|(id, p)| (id, p.into())).collect();
        let inner = &self.inner;
        let mut st = inner.write_state();
        if st.closed {
            return Err(WalError::Closed);
        }
        if let Some(err) = inner.flusher.failed() {
            return Err(err);
        }
        let mut prev = st.last_id();
        for (id, payload) in &records {
            if let Some(last) = prev.filter(|&last| *id <= last) {
                return Err(WalError::OutOfOrder { last, got: *id });
            }
            if payload.len() as u64 > MAX_PAYLOAD {
                return Err(WalError::RecordTooLarge { id: *id, len: payload.len(), max: MAX_PAYLOAD });
            }
            prev = Some(*id);
        }

        let segments = st.segments.len();
        let active = st.active()?;
        let undo = Undo { segments, size: active.size, records: active.ids.len() };
        let (files, bytes) = match inner.write_records(&mut st, &records) {
            Ok(done) => done,
            Err(e) => {
                inner.undo(&mut st, &undo);
                return Err(e);
            }
        };
        if inner.flusher.enqueue(Pending::new(files, bytes, on_durable)).is_err() {
            // Unreachable while `closed` is set before the flusher is told to stop, but the
            // contract is that an Err leaves nothing written.
            inner.undo(&mut st, &undo);
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// [`Wal::append`], then waits until the records are durable.
    pub async fn append_durable<P: Into<Payload>>(&self, records: Vec<(u64, P)>) -> Result<(), WalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let callback: Callback = Box::new(move |result| {
            // The receiver is gone only if the caller stopped waiting.
            let _ = tx.send(result);
        });
        self.append(records, callback)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Records with `from <= id < to`, in order. Stops before a record that would take the payload
    /// total past `max_bytes`, but always returns at least one record if there is one.
    pub fn read(&self, from: u64, to: u64, max_bytes: usize) -> Result<Vec<(u64, Bytes)>, WalError> {
        let st = self.inner.read_state();
        if st.closed {
            return Err(WalError::Closed);
        }
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let mut total = 0usize;
        for seg in &st.segments[st.segment_reaching(from)..] {
            let start = seg.ids.partition_point(|&id| id < from);
            let mut end = start;
            let mut stop = false;
            while end < seg.ids.len() && seg.ids[end] < to {
                let len = (seg.frame_end(end) - seg.positions[end] - FRAME_HEADER_LEN) as usize;
                let first = out.is_empty() && end == start;
                if !first && total.saturating_add(len) > max_bytes {
                    stop = true;
                    break;
                }
                total = total.saturating_add(len);
                end += 1;
            }
            if end > start {
                read_frames(seg, start, end, &mut out)?;
            }
            if stop || seg.ids.get(end).is_some_and(|&id| id >= to) {
                break;
            }
        }
        Ok(out)
    }

    pub fn first_id(&self) -> Option<u64> {
        let st = self.inner.read_state();
        st.segments.iter().find_map(|s| s.ids.first().copied())
    }

    pub fn last_id(&self) -> Option<u64> {
        self.inner.read_state().last_id()
    }

    /// Removes every record with id >= `from` (Raft conflict truncation), durably.
    pub fn truncate_from(&self, from: u64) -> Result<(), WalError> {
        let inner = &self.inner;
        let mut st = inner.write_state();
        if st.closed {
            return Err(WalError::Closed);
        }
        if let Some(err) = inner.flusher.failed() {
            return Err(err);
        }
        let k = st.segment_reaching(from);
        if k >= st.segments.len() || st.segments[k].ids.is_empty() {
            return Ok(());
        }
        // Newest first, so a crash part-way leaves a shorter log, never one with a hole.
        let mut removed_any = false;
        while st.segments.len() > k + 1 {
            let Some(seg) = st.segments.last() else { break };
            sealed::remove(&seg.file.path);
            fs::remove_file(&seg.file.path).map_err(|e| WalError::io(&seg.file.path, "remove", e))?;
            st.segments.pop();
            removed_any = true;
        }
        if removed_any {
            inner.sync_dir()?;
        }
        let seg = &mut st.segments[k];
        let idx = seg.ids.partition_point(|&id| id < from);
        let Some(&cut) = seg.positions.get(idx) else {
            return Ok(());
        };
        let file = Arc::clone(&seg.file);
        sealed::remove(&file.path);
        file.file.set_len(cut).map_err(|e| WalError::io(&file.path, "truncate", e))?;
        seg.ids.truncate(idx);
        seg.positions.truncate(idx);
        seg.size = cut;
        inner.flusher.guarded_sync(&file.path, "fsync", || file.file.sync_all())
    }

    /// Deletes the oldest segments whose records all have id < `before`; never the active one.
    /// Returns the bytes freed.
    pub fn purge_before(&self, before: u64) -> Result<u64, WalError> {
        let inner = &self.inner;
        let removed: Vec<Segment> = {
            let mut st = inner.write_state();
            if st.closed {
                return Err(WalError::Closed);
            }
            let n = st.segments[..st.segments.len().saturating_sub(1)]
                .iter()
                .take_while(|s| s.ids.last().is_none_or(|&last| last < before))
                .count();
            st.segments.drain(..n).collect()
        };
        if removed.is_empty() {
            return Ok(0);
        }
        // Outside the lock: appends need not wait for unlinks. Oldest first, so a crash part-way
        // leaves a log that merely starts later.
        let mut freed = 0;
        for seg in &removed {
            sealed::remove(&seg.file.path);
            fs::remove_file(&seg.file.path).map_err(|e| WalError::io(&seg.file.path, "remove", e))?;
            freed += seg.size;
        }
        inner.sync_dir()?;
        Ok(freed)
    }

    /// The segment files that hold records `from..=to`, each with the length of its prefix
    /// that ends with the last of those records, for hard-linking into a snapshot.
    ///
    /// Records up to `to` are committed and never rewritten, so such a prefix stays valid
    /// while the log goes on appending to (or truncating the uncommitted tail of) the file.
    pub fn files_through(&self, from: u64, to: u64) -> Vec<(PathBuf, u64)> {
        let st = self.inner.read_state();
        let mut out = Vec::new();
        if from > to {
            return out;
        }
        for seg in &st.segments[st.segment_reaching(from)..] {
            let Some(&first) = seg.ids.first() else { break };
            if first > to {
                break;
            }
            let end = seg.ids.partition_point(|&id| id <= to);
            out.push((seg.file.path.clone(), seg.frame_end(end - 1)));
        }
        out
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.inner.read_state();
        st.segments
            .iter()
            .map(|s| SegmentInfo {
                path: s.file.path.clone(),
                seq: s.seq,
                first_id: s.ids.first().copied(),
                last_id: s.ids.last().copied(),
                bytes: s.size,
                records: s.ids.len() as u64,
            })
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn stream(&self) -> u32 {
        self.inner.stream
    }

    pub fn options(&self) -> &WalOptions {
        &self.inner.opts
    }

    /// fsyncs issued so far (segment data, rolls, truncation, directories).
    pub fn sync_count(&self) -> u64 {
        self.inner.flusher.sync_count()
    }

    /// Fail-stops the log as an fsync error would (there is no portable way to make one happen).
    #[cfg(test)]
    pub(crate) fn inject_failure(&self, msg: &str) {
        self.inner.flusher.fail(msg.to_string());
    }

    /// Stops the flusher after it has completed every pending callback, and releases the
    /// segment locks. Later appends, reads and truncations return [`WalError::Closed`].
    pub fn close(&self) {
        self.inner.close();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("stream", &self.inner.stream)
            .field("profile", &self.inner.opts.profile)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // Every mutation of State leaves it consistent before anything that can panic.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_dir(&self) -> Result<(), WalError> {
        self.flusher.guarded_sync(&self.dir, "directory fsync", || File::open(&self.dir).and_then(|d| d.sync_all()))
    }

    /// Frames and writes `records`, rolling as needed; returns the files touched and bytes written.
    fn write_records(&self, st: &mut State, records: &[(u64, Payload)]) -> Result<(Vec<Arc<SegFile>>, u64), WalError> {
        let total: usize = records.iter().map(|(_, p)| p.len() + FRAME_HEADER_LEN as usize).sum();
        let mut frames = Frames::default();
        let mut files = vec![Arc::clone(&st.active()?.file)];
        for (id, payload) in records {
            let frame = FRAME_HEADER_LEN + payload.len() as u64;
            let active = st.active()?;
            if !active.ids.is_empty() && active.size + frames.len() + frame > self.opts.segment_bytes {
                frames.write_to(active)?;
                self.roll(st)?;
                files.push(Arc::clone(&st.active()?.file));
            }
            let active = st.active()?;
            active.ids.push(*id);
            active.positions.push(active.size + frames.len());
            frames.push(*id, payload);
        }
        frames.write_to(st.active()?)?;
        Ok((files, total as u64))
    }

    /// Starts the next segment. The full one is synced first so that, after a crash, damage can
    /// only be at the end of the last segment.
    fn roll(&self, st: &mut State) -> Result<(), WalError> {
        let old = st.active()?;
        let seq = old.seq + 1;
        let file = Arc::clone(&old.file);
        self.flusher.guarded_sync(&file.path, "fdatasync", || file.file.sync_data())?;
        sealed::write(old);
        let seg = create_segment(&self.dir, self.stream, seq, &self.flusher)?;
        st.segments.push(seg);
        self.sync_dir()
    }

    fn undo(&self, st: &mut State, undo: &Undo) {
        let rolled = st.segments.len() > undo.segments;
        while st.segments.len() > undo.segments {
            let Some(seg) = st.segments.pop() else { break };
            if let Err(e) = fs::remove_file(&seg.file.path) {
                // Emptied, it is harmless: recovery and the next roll both accept a header-only
                // segment.
                let _ = seg.file.file.set_len(format::HEADER_LEN);
                tracing::warn!(path = %seg.file.path.display(), error = %e,
                    "could not remove the new segment of a failed append");
            }
        }
        let Some(seg) = st.segments.last_mut() else {
            return;
        };
        if rolled {
            sealed::remove(&seg.file.path);
        }
        seg.ids.truncate(undo.records);
        seg.positions.truncate(undo.records);
        seg.size = undo.size;
        let file = Arc::clone(&seg.file);
        let cut = file
            .file
            .set_len(undo.size)
            .map_err(|e| format!("truncate {} after a failed append: {e}", file.path.display()));
        let result = cut
            .map_err(WalError::Failed)
            .and_then(|()| self.flusher.guarded_sync(&file.path, "fsync", || file.file.sync_all()));
        if let Err(e) = result {
            // The file may now hold bytes the index does not: no further append is safe.
            self.flusher.fail(e.to_string());
        }
    }

    fn close(&self) {
        self.write_state().closed = true;
        self.flusher.shut_down();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            // Closing from inside a callback (the flusher thread itself) must not join itself;
            // the thread exits on its own once the queue is drained.
            if handle.thread().id() != std::thread::current().id() && handle.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "WAL flusher thread panicked");
            }
        }
        // Handles to the files may outlive the log (a reader's, a pending callback's); the
        // locks must not.
        for seg in &self.read_state().segments {
            let _ = seg.file.file.unlock();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
