//! The coordinator's one path into Raft. Writes are proposed one batch at a time, in the order
//! they were submitted; offset commits that arrive while a proposal is in flight are merged
//! into one `CommitOffsets` entry, so many consumers committing at once cost one Raft entry
//! (and one fsync) rather than one each.

use chronik_raft::errors::write_error;
use chronik_shared::error::{ChronikError, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use crate::MetaRaft;
use crate::types::{ControlCommand, ControlResponse};

type Done = oneshot::Sender<Result<ControlResponse, ChronikError>>;

struct Job {
    cmd: ControlCommand,
    done: Option<Done>,
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Writer {
    pub fn spawn(raft: MetaRaft) -> (Writer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Writer { tx }, tokio::spawn(run(raft, rx)))
    }

    /// Proposes `cmd` and waits until it is committed and applied on this node.
    pub async fn write(&self, cmd: ControlCommand) -> Result<ControlResponse, ChronikError> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Job { cmd, done: Some(done) }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Proposes `cmd` without waiting (group metadata after membership changes: a later
    /// write of the same group supersedes it, and a failed one is redone by the next change).
    pub fn write_later(&self, cmd: ControlCommand) {
        let _ = self.tx.send(Job { cmd, done: None });
    }
}

fn stopped() -> ChronikError {
    ChronikError::new(
        ErrorCode::NotCoordinator,
        "the group coordinator of this node stopped; find the coordinator again",
    )
}

async fn run(raft: MetaRaft, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        for (cmd, dones) in coalesce(jobs) {
            let result = match raft.client_write(cmd).await {
                Ok(resp) => match resp.data {
                    ControlResponse::Rejected { code, message } => {
                        Err(ChronikError::new(ErrorCode::from_id(code).unwrap_or(ErrorCode::Internal), message))
                    }
                    other => Ok(other),
                },
                Err(e) => Err(write_error(e, crate::META_GROUP)),
            };
            if let Err(e) = &result {
                tracing::debug!(target: "chronik_cluster", "group coordinator write failed: {e}");
            }
            for d in dones.into_iter().flatten() {
                let _ = d.send(result.clone());
            }
        }
    }
}

/// Consecutive offset commits become one command; everything else keeps its place.
fn coalesce(jobs: Vec<Job>) -> Vec<(ControlCommand, Vec<Option<Done>>)> {
    let mut out: Vec<(ControlCommand, Vec<Option<Done>>)> = Vec::new();
    for job in jobs {
        match (job.cmd, out.last_mut()) {
            (ControlCommand::CommitOffsets(more), Some((ControlCommand::CommitOffsets(batch), dones))) => {
                batch.extend(more);
                dones.push(job.done);
            }
            (cmd, _) => out.push((cmd, vec![job.done])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::OffsetRecord;

    fn commit(p: u32) -> Job {
        let o = OffsetRecord {
            group_id: "g".into(),
            topic: "t".into(),
            partition: p,
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: 0,
        };
        Job { cmd: ControlCommand::CommitOffsets(vec![o]), done: None }
    }

    #[test]
    fn consecutive_commits_share_one_entry() {
        let jobs = vec![
            commit(0),
            commit(1),
            Job { cmd: ControlCommand::DeleteGroup { group_id: "x".into() }, done: None },
            commit(2),
        ];
        let out = coalesce(jobs);
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0].0, ControlCommand::CommitOffsets(v) if v.len() == 2));
        assert_eq!(out[0].1.len(), 2);
        assert!(matches!(&out[2].0, ControlCommand::CommitOffsets(v) if v.len() == 1));
    }
}
