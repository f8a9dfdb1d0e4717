//! The rest of a group's state machine: SyncGroup (the leader's assignment handed out once
//! stored), Heartbeat, LeaveGroup, and the timers (session expiry, rebalance deadline).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chronik_proto::control::{SyncGroupRequest, SyncGroupResponse};
use chronik_shared::error::ErrorCode;
use tokio::sync::oneshot;

use super::state::{Group, GroupState, Member, Reply, err};

impl Group {
    pub fn sync(&mut self, req: SyncGroupRequest) -> Reply<SyncGroupResponse> {
        if let Err(code) = self.check_member(&req.member_id, req.group_instance_id.as_ref(), req.generation_id) {
            return Reply::Now(err(code));
        }
        if req.protocol_type.as_ref().is_some_and(|t| *t != self.protocol_type)
            || req.protocol_name.as_ref().is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return Reply::Now(err(ErrorCode::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Reply::Now(err(ErrorCode::UnknownMemberId)),
            GroupState::PreparingRebalance => Reply::Now(err(ErrorCode::RebalanceInProgress)),
            GroupState::Stable => Reply::Now(self.sync_response(&req.member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.sync_waiter = Some(tx);
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: HashMap<String, Vec<u8>> =
                        req.assignments.into_iter().map(|a| (a.member_id, a.assignment.to_vec())).collect();
                    for (id, m) in self.members.iter_mut() {
                        m.rec.assignment = given.remove(id).unwrap_or_default();
                    }
                    self.dirty = true;
                }
                Reply::Wait(rx)
            }
        }
    }

    /// The leader's assignment of `generation` is durable: the group is stable and every
    /// member waiting in SyncGroup gets its part. False if the group moved on meanwhile.
    pub fn assignment_persisted(&mut self, generation: i32) -> bool {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return false;
        }
        self.state = GroupState::Stable;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.sync_response(&id);
            if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                let _ = w.send(resp);
            }
        }
        true
    }

    /// The assignment could not be stored (leadership lost): members re-discover and rejoin.
    pub fn assignment_failed(&mut self, generation: i32, now: Instant) {
        if self.state == GroupState::CompletingRebalance && self.generation == generation {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(err(ErrorCode::NotCoordinator));
                }
            }
            self.prepare_rebalance(now);
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncGroupResponse {
        SyncGroupResponse {
            error: ErrorCode::None.id(),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone().unwrap_or_default(),
            assignment: self.members.get(member_id).map(|m| m.rec.assignment.clone().into()).unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&String>,
        generation: i32,
        now: Instant,
    ) -> ErrorCode {
        if let Err(code) = self.check_member(member_id, instance, generation) {
            return code;
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
        }
    }

    pub fn leave(&mut self, member_id: &str, instance: Option<&String>, now: Instant) -> ErrorCode {
        let id = match (member_id.is_empty(), instance) {
            (true, Some(i)) => match self.statics.get(i) {
                Some(id) => id.clone(),
                None => return ErrorCode::UnknownMemberId,
            },
            _ => {
                if self.fenced(member_id, instance) {
                    return ErrorCode::FencedInstanceId;
                }
                member_id.to_string()
            }
        };
        if !self.members.contains_key(&id) {
            return ErrorCode::UnknownMemberId;
        }
        self.member_gone(&id, now);
        ErrorCode::None
    }

    /// Evicts members whose session expired and ends a join phase past its deadline.
    pub fn tick(&mut self, now: Instant) {
        let session_of = |m: &Member| Duration::from_millis(m.rec.session_timeout_ms.max(0) as u64);
        let max_session = self.members.values().map(session_of).max().unwrap_or(Duration::from_secs(30));
        self.pending.retain(|_, at| now.duration_since(*at) <= max_session.max(Duration::from_secs(30)));
        let expired: Vec<String> =
            self.members.iter().filter(|(_, m)| m.expired(now)).map(|(id, _)| id.clone()).collect();
        for id in expired {
            tracing::info!(target: "chronik_cluster", "group {}: member {id} missed its session timeout; removing it", self.id);
            self.member_gone(&id, now);
        }
        if self.state == GroupState::PreparingRebalance && self.rebalance_deadline.is_some_and(|d| now >= d) {
            self.complete_join(now);
        }
    }

    /// Fails every waiting request (this node stopped leading; clients find the new one).
    pub fn abandon(&mut self) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(err(ErrorCode::NotCoordinator));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(err(ErrorCode::NotCoordinator));
            }
        }
    }
}
