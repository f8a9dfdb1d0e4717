//! Background scrubbing: every `wal.scrub_interval_secs` (and on `POST /admin/wal/verify`),
//! every stream under `data_dir/wal/` is read back and each record's CRC32C checked, so damage
//! to a sealed segment (bit rot, a bad disk) shows in `/health`, node info and
//! `chronik-server doctor` while the other replicas still hold the data, not when a restart or
//! a lagging follower first needs it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{WalError, verify_path};
use crate::admin::types::WalScrubStatus;
use crate::http::now_ms;

pub struct Scrubber {
    root: PathBuf,
    status: Arc<Mutex<WalScrubStatus>>,
    /// One pass at a time (the timer's and an operator's).
    running: Arc<tokio::sync::Mutex<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Scrubber {
    /// Scrubs `root` every `interval` (the first pass after one interval); `None` scrubs only
    /// when asked.
    pub fn spawn(root: PathBuf, interval: Option<Duration>) -> Scrubber {
        let mut s = Scrubber { root, status: Arc::default(), running: Arc::default(), task: None };
        if let Some(every) = interval {
            let (root, status, running) = (s.root.clone(), s.status.clone(), s.running.clone());
            s.task = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    pass(&root, &status, &running).await;
                }
            }));
        }
        s
    }

    pub fn status(&self) -> WalScrubStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs a pass now and answers with its outcome.
    pub async fn run_now(&self) -> WalScrubStatus {
        pass(&self.root, &self.status, &self.running).await
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn pass(root: &Path, status: &Mutex<WalScrubStatus>, running: &tokio::sync::Mutex<()>) -> WalScrubStatus {
    let _one = running.lock().await;
    let dir = root.to_path_buf();
    let result = tokio::task::spawn_blocking(move || scrub(&dir)).await.unwrap_or_else(|e| WalScrubStatus {
        problems: vec![format!("the WAL scrub stopped: {e}")],
        ..WalScrubStatus::default()
    });
    if result.problems.is_empty() {
        tracing::debug!(target: "chronik_server", "WAL scrub: {} stream(s), {} record(s), every CRC32C matched", result.streams, result.records);
    }
    for p in &result.problems {
        tracing::error!(target: "chronik_server", "WAL scrub found damage: {p}; run `chronik-server debug wal-verify --path <dir>` (guide: WAL Inspection)");
    }
    *status.lock().unwrap_or_else(|p| p.into_inner()) = result.clone();
    result
}

/// Verifies every stream directory under `root` (one per Raft group).
fn scrub(root: &Path) -> WalScrubStatus {
    let mut s = WalScrubStatus { last_run_ms: Some(now_ms()), ..WalScrubStatus::default() };
    let Ok(entries) = std::fs::read_dir(root) else { return s };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        match verify_path(&dir) {
            Ok(report) => {
                s.streams += 1;
                s.records += report.records;
                s.bytes += report.bytes;
            }
            // Retention (or a replica being removed) deleted a file while it was read.
            Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                s.streams += 1;
                s.problems.push(e.to_string());
            }
        }
    }
    s.finished_ms = Some(now_ms());
    s
}
