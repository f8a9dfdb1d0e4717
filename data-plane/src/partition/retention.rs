//! Retention: whole segments are deleted once every batch in them is older than `retention.ms`,
//! or while the partition is larger than `retention.bytes`, and the log start offset moves up.
//!
//! Every replica applies it on its own (as Kafka's replicas do). Raft first gets a snapshot of
//! the offset index and purges its log up to the cut, so it never needs the deleted entries
//! again (a follower that does gets the snapshot), then the segments go.

use std::time::Duration;

use chronik_shared::error::{ChronikError, ErrorCode};
use openraft::async_runtime::WatchReceiver;

use super::Partition;

/// What retention removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    pub segments: usize,
    pub bytes: u64,
    pub log_start_offset: i64,
}

impl Partition {
    /// First log index to keep, by time and size, among fully applied closed segments.
    fn retention_cut(&self, retention_ms: i64, retention_bytes: i64, now_ms: i64) -> Option<(u64, usize, u64)> {
        let segs = self.sm.data.spans();
        let applied = self.sm.lock().applied.map(|l| l.index)?;
        let total: u64 = segs.iter().map(|s| s.bytes).sum();
        let idx = self.sm.lock();
        let mut remaining = total;
        let mut cut = None;
        // Never the last (active) segment.
        for (n, seg) in segs.iter().enumerate().take(segs.len().saturating_sub(1)) {
            let (first, last) = (seg.first, seg.last);
            if last > applied {
                break;
            }
            let newest = idx
                .batches
                .iter()
                .filter(|b| b.log_index >= first && b.log_index <= last)
                .map(|b| b.max_timestamp)
                .max()
                .unwrap_or(i64::MIN);
            let too_old = retention_ms >= 0 && newest < now_ms.saturating_sub(retention_ms);
            let too_big = retention_bytes >= 0 && remaining.saturating_sub(seg.bytes) >= retention_bytes as u64;
            if !(too_old || too_big) {
                break;
            }
            remaining -= seg.bytes;
            cut = Some((last + 1, n + 1, total - remaining));
        }
        cut
    }

    /// Applies retention once; `None` when nothing was old or big enough to delete.
    pub async fn enforce_retention(
        &self,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
    ) -> Result<Option<Trimmed>, ChronikError> {
        let Some((cut, segments, bytes)) = self.retention_cut(retention_ms, retention_bytes, now_ms) else {
            return Ok(None);
        };
        let unavailable =
            |e: openraft::error::Fatal<_>| ChronikError::new(ErrorCode::Unavailable, format!("{}: {e}", self.name));
        // Raft must have a snapshot covering the cut before it may forget the entries; it
        // keeps what is above the cut, for followers that lag behind.
        self.sm.retain_from(cut);
        self.raft.trigger().snapshot().await.map_err(unavailable)?;
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                let m = rx.borrow_watched().clone();
                if m.snapshot.is_some_and(|s| s.index + 1 >= cut) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        if !tokio::time::timeout(Duration::from_secs(30), wait).await.unwrap_or(false) {
            return Ok(None);
        }
        self.raft.trigger().purge_log(cut - 1).await.map_err(unavailable)?;
        let mut rx = self.raft.metrics();
        let purged = async {
            loop {
                if rx.borrow_watched().purged.is_some_and(|p| p.index + 1 >= cut) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        if !tokio::time::timeout(Duration::from_secs(30), purged).await.unwrap_or(false) {
            return Ok(None);
        }
        self.sm
            .data
            .purge_before(cut)
            .map_err(|e| ChronikError::new(ErrorCode::StorageError, format!("retention on {}: {e}", self.name)))?;
        let log_start_offset = {
            let mut idx = self.sm.lock();
            idx.trim_below(cut);
            idx.archive = self.sm.data.archive_name(cut);
            idx.log_start_offset
        };
        tracing::info!(target: "chronik_server", partition = %self.name, "Retention deleted {segments} segment(s), {bytes} bytes; log start offset is now {log_start_offset}");
        Ok(Some(Trimmed { segments, bytes, log_start_offset }))
    }
}
