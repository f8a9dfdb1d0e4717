//! The admin API's operations on this process's Raft groups: snapshot now, the latest
//! snapshot's metadata, and compaction (dropping log entries the snapshot covers).

use std::time::Duration;

use chronik_shared::admin::types::{GroupSnapshot, GroupTarget, RaftGroupState};
use chronik_shared::admin::{BoxFuture, LocalGroups};
use chronik_shared::error::{ChronikError, ErrorCode};
use chronik_shared::metrics::RAFT_SNAPSHOT_SIZE_BYTES;
use openraft::async_runtime::WatchReceiver;
use openraft::storage::RaftStateMachine;
use openraft::{Raft, RaftTypeConfig};

use crate::service::{GroupHandler, RaftGroups};

/// How long `POST /admin/snapshot` waits for the snapshot to be built.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);

pub fn snapshot_info<C, SM>(name: &str, raft: &Raft<C, SM>) -> GroupSnapshot
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
    SM: RaftStateMachine<C>,
{
    let m = raft.metrics().borrow_watched().clone();
    GroupSnapshot {
        group: name.to_string(),
        snapshot_id: m.snapshot.as_ref().map(|l| l.to_string()),
        last_index: m.snapshot.as_ref().map(|l| l.index()),
        size_bytes: RAFT_SNAPSHOT_SIZE_BYTES.with_label_values(&[name]).get().max(0) as u64,
        log_first_index: Some(m.purged.as_ref().map(|l| l.index() + 1).unwrap_or(0)),
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied: m.last_applied.as_ref().map(|l| l.index()),
    }
}

fn stopped(name: &str, e: impl std::fmt::Display) -> ChronikError {
    ChronikError::new(ErrorCode::Unavailable, format!("Raft group {name} is shutting down: {e}"))
}

/// Builds a snapshot covering everything applied when called, and waits until it exists.
pub async fn snapshot_now<C, SM>(name: &str, raft: &Raft<C, SM>) -> Result<GroupSnapshot, ChronikError>
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
    SM: RaftStateMachine<C>,
{
    let applied = raft.metrics().borrow_watched().last_applied.as_ref().map(|l| l.index());
    let Some(applied) = applied else {
        return Ok(snapshot_info(name, raft));
    };
    raft.trigger().snapshot().await.map_err(|e| stopped(name, e))?;
    raft.wait(Some(SNAPSHOT_WAIT))
        .metrics(|m| m.snapshot.as_ref().is_some_and(|s| s.index() >= applied), "snapshot built")
        .await
        .map_err(|e| {
            ChronikError::new(
                ErrorCode::Timeout,
                format!("the snapshot of {name} up to index {applied} was not built within {SNAPSHOT_WAIT:?}: {e}; see the log for \"Snapshot\" errors"),
            )
        })?;
    Ok(snapshot_info(name, raft))
}

/// Purges the log up to the latest snapshot and waits until the purge is recorded.
pub async fn compact<C, SM>(name: &str, raft: &Raft<C, SM>) -> Result<GroupSnapshot, ChronikError>
where
    C: RaftTypeConfig<NodeId = u64, Term = u64>,
    SM: RaftStateMachine<C>,
{
    let Some(upto) = raft.metrics().borrow_watched().snapshot.as_ref().map(|l| l.index()) else {
        return Err(ChronikError::new(
            ErrorCode::InvalidRequest,
            format!("{name} has no snapshot yet, so nothing can be compacted; POST /admin/snapshot first"),
        ));
    };
    raft.trigger().purge_log(upto).await.map_err(|e| stopped(name, e))?;
    // The purge waits for followers that still need the entries; don't hold the request for it.
    let _ = raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.purged.as_ref().is_some_and(|p| p.index() >= upto), "log purged")
        .await;
    Ok(snapshot_info(name, raft))
}

impl RaftGroups {
    fn select(&self, target: &GroupTarget) -> Result<Vec<std::sync::Arc<dyn GroupHandler>>, ChronikError> {
        match target.name() {
            None => Ok(self.all()),
            Some(name) => match self.get(&name) {
                Ok(g) => Ok(vec![g]),
                Err(_) => Err(ChronikError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!(
                        "Raft group {name} is not hosted on this node; GET /admin/node/info lists the groups it hosts"
                    ),
                )),
            },
        }
    }
}

impl LocalGroups for RaftGroups {
    fn states(&self) -> Vec<RaftGroupState> {
        let mut states: Vec<RaftGroupState> = RaftGroups::states(self)
            .into_iter()
            .map(|g| RaftGroupState {
                group: g.group,
                state: g.state,
                term: g.term,
                leader_id: g.leader_id,
                last_log_index: g.last_log_index,
                committed_index: g.committed_index,
            })
            .collect();
        states.sort_by(|a, b| a.group.cmp(&b.group));
        states
    }

    fn snapshot_info(&self, target: &GroupTarget) -> Result<Vec<GroupSnapshot>, ChronikError> {
        Ok(self.select(target)?.iter().map(|g| g.snapshot_info()).collect())
    }

    fn snapshot(&self, target: GroupTarget) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, ChronikError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for g in self.select(&target)? {
                out.push(g.snapshot_now().await?);
            }
            Ok(out)
        })
    }

    fn compact(&self, target: GroupTarget) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, ChronikError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for g in self.select(&target)? {
                // Over every group, one without a snapshot yet is left as it is.
                match g.compact().await {
                    Ok(s) => out.push(s),
                    Err(e) if target.name().is_none() && e.code == ErrorCode::InvalidRequest => {
                        out.push(g.snapshot_info())
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }
}
