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
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    /// Guards the file system holding `dir`; `min_free` 0 turns the guard off.
    pub fn new(dir: PathBuf, min_free: u64) -> DiskGuard {
        DiskGuard { dir, min_free, last: Mutex::new(None) }
    }

    /// Bytes available on the file system, at most [`FRESH`] old.
    pub fn free_bytes(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last
            && at.elapsed() < FRESH
        {
            return Some(free);
        }
        let st = rustix::fs::statvfs(&self.dir).ok()?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        *last = Some((Instant::now(), free));
        Some(free)
    }

    /// `Err(StorageError)` while less than `wal.min_free_bytes` is free.
    pub fn check(&self) -> Result<(), ChronikError> {
        // A log on this node fail-stopped (a sync failed): the disk cannot be trusted with
        // writes until an operator has looked at it and restarted the node.
        if let Some(why) = super::failures().first() {
            return Err(ChronikError::new(
                ErrorCode::StorageError,
                format!(
                    "this node stopped taking writes: {why}; check the disk (dmesg), then restart the node;                      nothing acknowledged is lost"
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
