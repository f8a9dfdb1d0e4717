//! The offset index checkpoint: the state machine's index written to disk now and then, so a
//! restart replays only the log entries applied after it instead of the whole log (M9 restart
//! goal).
//!
//! `offset-index.ckpt` in the partition's directory: `CHRCKP01`, u32 length of a JSON header
//! (the [`PartitionIndex`] without its batches), the header, u64 batch count, the batches as
//! fixed 36-byte records, then a CRC32C of everything before it; little endian. It is a cache,
//! renamed into place but not synced: a missing or damaged checkpoint, or one that does not fit
//! the log it sits next to, is ignored and the log is replayed as before.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::state_machine::{IndexedBatch, PartitionIndex};

const FILE: &str = "offset-index.ckpt";
const MAGIC: &[u8; 8] = b"CHRCKP01";
const BATCH_LEN: usize = 36;
/// Checkpoints wait for at least this many applied bytes per byte of index they write, so they
/// cost a fraction of writing the log even when batches are small.
const INDEX_SIZE_FACTOR: u64 = 4;
/// A stop writes a checkpoint only if at least this much was applied since the last one:
/// replaying less costs the next start little, and 10,000 idle partitions would otherwise
/// write 10,000 files on every stop.
const AT_STOP_MIN_BYTES: u64 = 1024 * 1024;

/// When the state machine of one partition writes its next checkpoint.
#[derive(Clone)]
pub struct Checkpointer {
    path: PathBuf,
    /// Applied bytes between two checkpoints, at least (a WAL segment's worth: a restart
    /// replays about what it reads of the active segment anyway).
    every_bytes: u64,
    applied_bytes: Arc<AtomicU64>,
    writing: Arc<AtomicBool>,
}

impl Checkpointer {
    pub fn new(dir: &Path, every_bytes: u64) -> Checkpointer {
        Checkpointer { path: dir.join(FILE), every_bytes, applied_bytes: Arc::default(), writing: Arc::default() }
    }

    /// Counts `bytes` more applied; true when a checkpoint of an index of `batches` batches is
    /// due and none is being written (the caller then calls [`Checkpointer::write_in_background`]).
    pub fn due(&self, bytes: u64, batches: usize) -> bool {
        let total = self.applied_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let threshold = self.every_bytes.max(INDEX_SIZE_FACTOR * (batches * BATCH_LEN) as u64);
        total >= threshold && !self.writing.swap(true, Ordering::AcqRel)
    }

    /// Writes `index` on the blocking pool; a failure is logged and only costs replay time.
    pub fn write_in_background(&self, index: PartitionIndex) {
        self.applied_bytes.store(0, Ordering::Relaxed);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = write(&this.path, &index) {
                tracing::warn!(target: "chronik_raft", path = %this.path.display(), "could not write the offset index checkpoint: {e}; the next start replays more of the log");
            }
            this.writing.store(false, Ordering::Release);
        });
    }

    /// Whether a stop should write a checkpoint: enough was applied since the last one.
    pub fn worth_writing_at_stop(&self) -> bool {
        self.applied_bytes.load(Ordering::Relaxed) >= AT_STOP_MIN_BYTES
    }

    /// Writes `index` now, unless a background write is running (it shares the temporary
    /// file, and holds an index almost as new).
    pub fn write_now(&self, index: &PartitionIndex) -> io::Result<()> {
        if self.writing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.applied_bytes.store(0, Ordering::Relaxed);
        let written = write(&self.path, index);
        self.writing.store(false, Ordering::Release);
        written
    }

    /// The checkpoint on disk, if there is one and it is intact.
    pub fn read(&self) -> Option<PartitionIndex> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(target: "chronik_raft", path = %self.path.display(), "offset index checkpoint unreadable ({e}); replaying the log");
                return None;
            }
        };
        let decoded = decode(&bytes);
        if decoded.is_none() {
            tracing::warn!(target: "chronik_raft", path = %self.path.display(), "offset index checkpoint is damaged; replaying the log");
        }
        decoded
    }
}

fn write(path: &Path, index: &PartitionIndex) -> io::Result<()> {
    let header = PartitionIndex {
        applied: index.applied,
        membership: index.membership.clone(),
        log_start_offset: index.log_start_offset,
        next_offset: index.next_offset,
        batches: Vec::new(),
        producers: index.producers.clone(),
        archive: index.archive.clone(),
    };
    let header = serde_json::to_vec(&header).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(8 + 4 + header.len() + 8 + index.batches.len() * BATCH_LEN + 4);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(header.len() as u32).to_le_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&(index.batches.len() as u64).to_le_bytes());
    for b in &index.batches {
        buf.extend_from_slice(&b.base_offset.to_le_bytes());
        buf.extend_from_slice(&b.last_offset.to_le_bytes());
        buf.extend_from_slice(&b.log_index.to_le_bytes());
        buf.extend_from_slice(&b.max_timestamp.to_le_bytes());
        buf.extend_from_slice(&b.bytes.to_le_bytes());
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let tmp = path.with_extension("ckpt.tmp");
    std::fs::File::create(&tmp)?.write_all(&buf)?;
    std::fs::rename(&tmp, path)
}

fn decode(bytes: &[u8]) -> Option<PartitionIndex> {
    if bytes.len() < 8 + 4 + 8 + 4 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let header_len = u32::from_le_bytes(body[8..12].try_into().ok()?) as usize;
    let header = body.get(12..12 + header_len)?;
    let mut index: PartitionIndex = serde_json::from_slice(header).ok()?;
    let rest = &body[12 + header_len..];
    let count = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    let batches = &rest[8..];
    if batches.len() != count.checked_mul(BATCH_LEN)? {
        return None;
    }
    let i64_at = |b: &[u8], at: usize| b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(i64::from_le_bytes);
    index.batches = batches
        .chunks_exact(BATCH_LEN)
        .map(|b| {
            Some(IndexedBatch {
                base_offset: i64_at(b, 0)?,
                last_offset: i64_at(b, 8)?,
                log_index: i64_at(b, 16)? as u64,
                max_timestamp: i64_at(b, 24)?,
                bytes: u32::from_le_bytes(b.get(32..36)?.try_into().ok()?),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: u64 = 64 * 1024 * 1024;

    fn index(batches: usize) -> PartitionIndex {
        let mut idx =
            PartitionIndex { log_start_offset: 3, next_offset: 3 + 10 * batches as i64, ..Default::default() };
        for i in 0..batches as i64 {
            idx.batches.push(IndexedBatch {
                base_offset: 3 + 10 * i,
                last_offset: 12 + 10 * i,
                log_index: 7 + i as u64,
                max_timestamp: 1_700_000_000_000 + i,
                bytes: 1000 + i as u32,
            });
        }
        idx.producers.insert(42, Default::default());
        idx.archive = Some("archive-00000000000000000005".into());
        idx
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = Checkpointer::new(dir.path(), EVERY);
        assert!(ckpt.read().is_none());
        let idx = index(1000);
        ckpt.write_now(&idx).expect("write");
        let back = ckpt.read().expect("read back");
        assert_eq!(back.batches, idx.batches);
        assert_eq!((back.log_start_offset, back.next_offset), (idx.log_start_offset, idx.next_offset));
        assert_eq!(back.archive, idx.archive);
        assert!(back.producers.contains_key(&42));

        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(ckpt.read().is_none(), "a flipped bit was believed");
        std::fs::write(&path, &bytes[..bytes.len() / 3]).expect("write");
        assert!(ckpt.read().is_none(), "a torn checkpoint was believed");
    }

    #[test]
    fn due_after_enough_bytes_and_one_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ckpt = Checkpointer::new(dir.path(), EVERY);
        assert!(!ckpt.due(EVERY - 1, 10));
        assert!(ckpt.due(1, 10));
        assert!(!ckpt.due(EVERY, 10), "a second writer while one is running");
        // A large index waits for proportionally more data.
        let big = (EVERY as usize / BATCH_LEN) * 2;
        let ckpt = Checkpointer::new(dir.path(), EVERY);
        assert!(!ckpt.due(EVERY * 2, big));
        assert!(ckpt.due(EVERY * 7, big));
    }
}
