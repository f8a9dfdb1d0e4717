//! The group coordinator on the `__meta` leader: the in-memory groups (with their waiting
//! requests and session timers), loaded from the state machine each time this node starts a
//! term as leader, and the membership APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup).
//! Offsets and the admin APIs are in `offsets.rs` and `admin.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chronik_proto::control::*;
use chronik_shared::error::{ChronikError, ErrorCode, LeaderHint};
use chronik_shared::metrics::CONSUMER_LAG;
use openraft::async_runtime::WatchReceiver;

use super::state::{Group, Reply};
use super::writer::Writer;
use crate::liveness::Liveness;
use crate::state_machine::ControlStateMachine;
use crate::types::ControlCommand;
use crate::{META_GROUP, MetaRaft};

/// How often sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often the consumer-lag gauge is recomputed from the reported high watermarks.
const LAG_EVERY: u32 = 50;

#[derive(Default)]
pub(crate) struct Inner {
    /// The term whose groups are loaded; `None` while not leading.
    loaded_term: Option<u64>,
    pub groups: HashMap<String, Group>,
}

#[derive(Clone)]
pub struct GroupCoordinator {
    node_id: u64,
    raft: MetaRaft,
    pub(crate) sm: ControlStateMachine,
    pub(crate) liveness: Liveness,
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) writer: Writer,
}

pub(crate) fn not_coordinator(why: &str) -> ChronikError {
    ChronikError::new(ErrorCode::NotCoordinator, why)
}

impl GroupCoordinator {
    /// Starts the coordinator's writer and timer tasks; abort the handles to stop them.
    pub fn start(
        node_id: u64,
        raft: MetaRaft,
        sm: ControlStateMachine,
        liveness: Liveness,
    ) -> (GroupCoordinator, Vec<tokio::task::JoinHandle<()>>) {
        let (writer, w) = Writer::spawn(raft.clone());
        let c = GroupCoordinator { node_id, raft, sm, liveness, inner: Arc::default(), writer };
        let t = tokio::spawn(c.clone().run_timers());
        (c, vec![w, t])
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Errors unless this node leads `__meta`; on the first call of a term, loads every group
    /// from the state machine (after a read barrier, so commits of earlier terms are applied).
    pub(crate) async fn activate(&self) -> Result<(), ChronikError> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader != Some(self.node_id) {
            let hint = m.current_leader.and_then(|id| {
                m.membership_config.membership().get_node(&id).map(|n| LeaderHint { node_id: id, addr: n.addr.clone() })
            });
            return Err(ChronikError::not_leader(hint, META_GROUP));
        }
        let term = m.current_term;
        if self.lock().loaded_term == Some(term) {
            return Ok(());
        }
        self.raft
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| ChronikError::new(ErrorCode::CoordinatorNotAvailable, format!("loading groups: {e}")))?;
        let records =
            self.sm.groups().map_err(|e| ChronikError::new(ErrorCode::CoordinatorNotAvailable, e.to_string()))?;
        let mut inner = self.lock();
        if inner.loaded_term != Some(term) {
            let now = Instant::now();
            for g in inner.groups.values_mut() {
                g.abandon();
            }
            inner.groups = records.into_iter().map(|r| (r.group_id.clone(), Group::from_record(r, now))).collect();
            inner.loaded_term = Some(term);
            tracing::info!(target: "chronik_cluster", "Group coordinator active for term {term} with {} groups", inner.groups.len());
        }
        Ok(())
    }

    async fn run_timers(self) {
        let mut ticks = 0u32;
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            ticks = ticks.wrapping_add(1);
            let leading = self.raft.metrics().borrow_watched().current_leader == Some(self.node_id);
            if !leading {
                let mut inner = self.lock();
                if inner.loaded_term.take().is_some() {
                    for g in inner.groups.values_mut() {
                        g.abandon();
                    }
                    inner.groups.clear();
                    CONSUMER_LAG.reset();
                    tracing::info!(target: "chronik_cluster", "Group coordinator inactive: this node no longer leads __meta");
                }
                continue;
            }
            // Also after a failover with no client request yet: members that do not come back
            // within their session timeout are evicted.
            if self.activate().await.is_err() {
                continue;
            }
            let now = Instant::now();
            {
                let mut inner = self.lock();
                for g in inner.groups.values_mut() {
                    g.tick(now);
                    self.persist_if_dirty(g);
                }
            }
            if ticks.is_multiple_of(LAG_EVERY) {
                self.refresh_lag();
            }
        }
    }

    /// Writes the group's metadata if a change since the last write matters after a failover.
    pub(crate) fn persist_if_dirty(&self, g: &mut Group) {
        if g.dirty {
            g.dirty = false;
            self.writer.write_later(ControlCommand::StoreGroup(g.to_record()));
        }
    }

    pub(crate) fn refresh_lag(&self) {
        match self.sm.all_offsets() {
            Ok(all) => self.update_lag(&all),
            Err(e) => tracing::warn!(target: "chronik_cluster", "consumer lag not updated: {e}"),
        }
    }

    pub async fn join(&self, req: JoinGroupRequest) -> Result<JoinGroupResponse, ChronikError> {
        validate_group_id(&req.group_id)?;
        self.activate().await?;
        let client = if req.client_id.is_empty() { "member" } else { req.client_id.as_str() };
        let new_id = format!("{client}-{}", uuid::Uuid::new_v4());
        let reply = {
            let mut inner = self.lock();
            let g = inner.groups.entry(req.group_id.clone()).or_insert_with(|| Group::new(req.group_id.clone()));
            let r = g.join(req, new_id, Instant::now());
            self.persist_if_dirty(g);
            r
        };
        match reply {
            Reply::Now(r) => Ok(r),
            Reply::Wait(rx) => rx.await.map_err(|_| not_coordinator("the coordinator moved while joining; rejoin")),
        }
    }

    pub async fn sync(&self, req: SyncGroupRequest) -> Result<SyncGroupResponse, ChronikError> {
        self.activate().await?;
        let group_id = req.group_id.clone();
        let (reply, to_persist) = {
            let mut inner = self.lock();
            let Some(g) = inner.groups.get_mut(&group_id) else {
                return Ok(SyncGroupResponse { error: ErrorCode::UnknownMemberId.id(), ..Default::default() });
            };
            let r = g.sync(req);
            // The leader's assignment: stored through Raft before any member sees it.
            let rec = g.dirty.then(|| {
                g.dirty = false;
                (g.generation, g.to_record())
            });
            (r, rec)
        };
        if let Some((generation, rec)) = to_persist {
            let result = self.writer.write(ControlCommand::StoreGroup(rec)).await;
            let mut inner = self.lock();
            if let Some(g) = inner.groups.get_mut(&group_id) {
                match result {
                    Ok(_) => {
                        g.assignment_persisted(generation);
                    }
                    Err(e) => {
                        tracing::warn!(target: "chronik_cluster", "group {group_id}: assignment of generation {generation} not stored: {e}");
                        g.assignment_failed(generation, Instant::now());
                    }
                }
            }
        }
        match reply {
            Reply::Now(r) => Ok(r),
            Reply::Wait(rx) => rx.await.map_err(|_| not_coordinator("the coordinator moved while syncing; rejoin")),
        }
    }

    pub async fn heartbeat(&self, req: GroupHeartbeatRequest) -> Result<GroupHeartbeatResponse, ChronikError> {
        self.activate().await?;
        let mut inner = self.lock();
        let code = match inner.groups.get_mut(&req.group_id) {
            Some(g) => g.heartbeat(&req.member_id, req.group_instance_id.as_ref(), req.generation_id, Instant::now()),
            None => ErrorCode::UnknownMemberId,
        };
        Ok(GroupHeartbeatResponse { error: code.id() })
    }

    pub async fn leave(&self, req: LeaveGroupRequest) -> Result<LeaveGroupResponse, ChronikError> {
        self.activate().await?;
        let mut inner = self.lock();
        let Some(g) = inner.groups.get_mut(&req.group_id) else {
            let members = req
                .members
                .into_iter()
                .map(|m| LeaveResult {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    error: ErrorCode::UnknownMemberId.id(),
                })
                .collect();
            return Ok(LeaveGroupResponse { error: ErrorCode::None.id(), members });
        };
        let now = Instant::now();
        let members: Vec<LeaveResult> = req
            .members
            .into_iter()
            .map(|m| {
                let code = g.leave(&m.member_id, m.group_instance_id.as_ref(), now);
                LeaveResult { member_id: m.member_id, group_instance_id: m.group_instance_id, error: code.id() }
            })
            .collect();
        self.persist_if_dirty(g);
        Ok(LeaveGroupResponse { error: ErrorCode::None.id(), members })
    }
}

/// Kafka refuses empty group ids; NUL is refused because it separates the parts of an
/// offset key.
pub(crate) fn validate_group_id(id: &str) -> Result<(), ChronikError> {
    if id.is_empty() || id.contains('\0') {
        return Err(ChronikError::new(ErrorCode::InvalidGroupId, format!("group id {id:?} is invalid")));
    }
    Ok(())
}
