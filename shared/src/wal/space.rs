//! Refusing writes before the disk is full: an append that hits ENOSPC in the middle of a Raft
//! log leaves the group unable to go on, while a produce refused up front with
//! `KAFKA_STORAGE_ERROR` costs nothing and succeeds again as soon as space is freed.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ChronikError, ErrorCode};

/// How long a free-space reading is trusted (a statvfs per produce would be wasteful).
const FRESH: Duration = Duration::from_millis(500);

pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    last: Mutex<Option<Reading>>,
}

/// A free-space reading and what was let in since: at hundreds of MB/s, half a second of
/// writes is more than `wal.min_free_bytes`, so a reading alone would let the disk fill.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    free: u64,
    admitted: u64,
}

impl DiskGuard {
    /// Guards the file system holding `dir`; `min_free` 0 turns the guard off.
    pub fn new(dir: PathBuf, min_free: u64) -> DiskGuard {
        DiskGuard { dir, min_free, last: Mutex::new(None) }
    }

    /// Bytes available on the file system: a reading at most [`FRESH`] old, less what
    /// [`DiskGuard::admit`] let in since.
    pub fn free_bytes(&self) -> Option<u64> {
        self.reading().map(|r| r.free.saturating_sub(r.admitted))
    }

    fn reading(&self) -> Option<Reading> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = *last
            && r.at.elapsed() < FRESH
        {
            return Some(r);
        }
        let st = rustix::fs::statvfs(&self.dir).ok()?;
        let r = Reading { at: Instant::now(), free: st.f_bavail.saturating_mul(st.f_frsize), admitted: 0 };
        *last = Some(r);
        Some(r)
    }

    /// [`DiskGuard::check`] for a write of `bytes`, counted against the free space until the
    /// next reading.
    pub fn admit(&self, bytes: u64) -> Result<(), ChronikError> {
        self.check()?;
        if let Some(r) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            r.admitted = r.admitted.saturating_add(bytes);
        }
        Ok(())
    }

    /// `Err(StorageError)` while less than `wal.min_free_bytes` is free.
    pub fn check(&self) -> Result<(), ChronikError> {
        // A log on this node fail-stopped (a sync failed): the disk cannot be trusted with
        // writes until an operator has looked at it and restarted the node.
        if let Some(why) = super::failures().first() {
            return Err(ChronikError::new(
                ErrorCode::StorageError,
                format!(
                    "this node stopped taking writes: {why}; check the disk (dmesg), then restart the node; nothing acknowledged is lost"
                ),
            ));
        }
        if self.min_free == 0 {
            return Ok(());
        }
        match self.free_bytes() {
            Some(free) if free < self.min_free => Err(ChronikError::new(
                ErrorCode::StorageError,
                format!(
                    "the disk holding {} has {} KiB free, below wal.min_free_bytes ({} KiB): writes are refused until \
                     space is freed (delete data, shorten retention, grow the disk); nothing acknowledged is lost",
                    self.dir.display(),
                    free >> 10,
                    self.min_free >> 10
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_admitted_since_a_reading_count_against_it() {
        let dir = std::env::temp_dir();
        let free = DiskGuard::new(dir.clone(), 0).free_bytes().expect("statvfs");
        let guard = DiskGuard::new(dir, free / 2);
        // Within one reading's lifetime: the first write of everything free is let in, the
        // next one is refused without a new statvfs telling it so.
        guard.admit(free).expect("room for the first write");
        let err = guard.admit(1).expect_err("the disk counts as full");
        assert_eq!(err.code, ErrorCode::StorageError);
        assert!(err.message.contains("wal.min_free_bytes"), "{}", err.message);
    }
}
