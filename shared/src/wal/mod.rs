//! The segmented write-ahead log (design §5): the one place that owns the WAL's on-disk format,
//! its crash recovery, its durability profiles and the offline tools that read it.
//!
//! This folder owns:
//! - `mod.rs`: the public types ([`WalProfile`], [`WalOptions`], [`WalError`], [`RecoveryReport`],
//!   [`SegmentInfo`]) and the contract of [`Wal`].
//! - `format.rs`: the bytes on disk. A segment `wal_{stream}_{seq:08}.log` starts with a 16-byte
//!   header (`CHRWAL01`, u32 stream, u32 reserved) followed by frames `len u32 | crc32c u32 | id u64 |
//!   payload`, little endian, the CRC covering id and payload. Also the frame reader every scan uses.
//! - `recovery.rs`: scanning a stream's segments, telling a torn tail (truncated on open, reported)
//!   from corruption (an error naming file and byte, never skipped).
//! - `log.rs`: the live log: appends under a lock with one `writev` per segment, reads, segment rolling, Raft
//!   conflict truncation and purging.
//! - `sealed.rs`: the index written next to a segment when it is sealed, so a restart need not
//!   read the segment to know its records.
//! - `segment.rs`: one live segment (its id -> position index) and the file operations on it.
//! - `flusher.rs`: the per-log flusher thread that turns writes into durable writes (group commit)
//!   and completes `on_durable` callbacks in append order; an fsync error fail-stops the log.
//! - `tools.rs`: `wal-verify`, `wal-dump`, `wal-stats` for `chronik-server debug`; read-only.
//! - `tests/`: the log's API and group commit (`mod.rs`), crash recovery and the tools
//!   (`recovery.rs`).
//!
//! Durability contract: a callback reports `Ok` only after an `fdatasync` that began after the
//! record was written returned success, and no `fdatasync` error was ever seen by this log.

mod flusher;
mod format;
mod log;
mod recovery;
mod scrub;
mod sealed;
mod segment;
mod space;
mod tools;

#[cfg(test)]
mod tests;

pub use flusher::failures;
pub use format::{Payload, segment_file_name};
pub use log::Wal;
pub use scrub::Scrubber;
pub use space::DiskGuard;
pub use tools::{
    SegmentStats, VerifiedFile, VerifyReport, WalStats, check_before_open, dump_path, stats_path, verify_path,
};

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How much a durable append costs (design §5), `CHRONIK_WAL_PROFILE` or `wal.profile`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WalProfile {
    /// Every append gets its own `fdatasync`.
    Low,
    /// Appends that arrive while a sync is running share the next one (the default).
    #[default]
    Medium,
    /// Like `Medium`, but the flusher waits `linger` after the first pending append to batch more.
    High,
}

impl WalProfile {
    pub const ALL: [WalProfile; 3] = [WalProfile::Low, WalProfile::Medium, WalProfile::High];

    pub fn as_str(self) -> &'static str {
        match self {
            WalProfile::Low => "low",
            WalProfile::Medium => "medium",
            WalProfile::High => "high",
        }
    }
}

impl fmt::Display for WalProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WalProfile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WalProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown WAL profile {s:?}; use one of \"low\", \"medium\", \"high\""))
    }
}

impl PartialEq<str> for WalProfile {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for WalProfile {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for WalProfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for WalProfile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a [`Wal`] writes and syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    pub profile: WalProfile,
    /// A segment is rolled before a record would take it past this size (a record is never split,
    /// so a single larger record gets a segment of its own).
    pub segment_bytes: u64,
    /// How long the `High` profile holds the first pending append to gather more; ignored otherwise.
    pub linger: Duration,
    /// Read every sealed segment at open, even one whose index agrees with it
    /// (`wal.verify_sealed_on_start`).
    pub verify_sealed_on_start: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            profile: WalProfile::Medium,
            segment_bytes: 64 * 1024 * 1024,
            linger: Duration::from_millis(1),
            verify_sealed_on_start: false,
        }
    }
}

impl WalOptions {
    /// The options the `[wal]` config section asks for.
    pub fn from_config(config: &crate::config::WalConfig) -> Self {
        Self {
            profile: config.profile,
            segment_bytes: config.segment_bytes,
            linger: Duration::from_micros(config.linger_us),
            verify_sealed_on_start: config.verify_sealed_on_start,
        }
    }
}

/// What [`Wal::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn tail cut off the last segment, if there was one.
    pub truncated: Option<TruncatedTail>,
    pub segments: usize,
    pub records: u64,
}

/// The unreadable end of a stream's last segment: what a crash in the middle of a write leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    pub path: PathBuf,
    /// Byte offset in `path` where the first unreadable frame starts; everything from here is dropped.
    pub position: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

impl fmt::Display for TruncatedTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "torn tail in {} at byte {}: {} ({} bytes after the last valid record)",
            self.path.display(),
            self.position,
            self.reason,
            self.bytes_dropped
        )
    }
}

/// One segment file of a live [`Wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub seq: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    /// File size, header included.
    pub bytes: u64,
    pub records: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error: could not {op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{}", corrupt_message(path, *position, reason))]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("WAL append out of order: record id {got} must be greater than {last}")]
    OutOfOrder { last: u64, got: u64 },
    #[error("record {id} has a {len}-byte payload; a WAL record holds at most {max} bytes")]
    RecordTooLarge { id: u64, len: usize, max: u64 },
    #[error(
        "WAL {} is already open (its segment {} is locked by this or another process); \
         stop the other chronik-server using this data directory",
        dir.display(),
        lock.display()
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("WAL is closed")]
    Closed,
    /// The flusher saw an fsync error. Linux may already have dropped the unsynced pages, so the
    /// log cannot tell what is on disk any more: it stops rather than acknowledge lost data.
    #[error(
        "WAL stopped after a failed sync: {0}; nothing written since the last successful sync is \
         acknowledged. Restart the process to recover from what is on disk"
    )]
    Failed(String),
}

fn corrupt_message(path: &Path, position: u64, reason: &str) -> String {
    let dir = path.parent().unwrap_or(path);
    format!(
        "WAL corrupt: {} at byte {position}: {reason}. The records from there on cannot be trusted \
         and are not skipped. Inspect with `chronik-server debug wal-verify --path {}`, then restore \
         this replica from a healthy replica or a backup",
        path.display(),
        dir.display()
    )
}

impl WalError {
    /// The disk (or quota) is full: the caller may retry after space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            WalError::Io { source, .. } => io_is_disk_full(source),
            // The flusher keeps only the message; the OS error number is in it.
            WalError::Failed(msg) => msg.contains("(os error 28)") || msg.contains("(os error 122)"),
            _ => false,
        }
    }

    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        WalError::Io { path: path.to_path_buf(), op, source }
    }

    pub(crate) fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> Self {
        WalError::Corrupt { path: path.to_path_buf(), position, reason: reason.into() }
    }
}

fn io_is_disk_full(e: &io::Error) -> bool {
    // ENOSPC = 28, EDQUOT = 122 on Linux.
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}
