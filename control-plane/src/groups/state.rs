//! One consumer group as a typed state machine (Kafka's classic group protocol):
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all rejoined / rebalance timeout──▶ CompletingRebalance
//!   ▲                   ▲    │ (no members left)                                 │ leader's SyncGroup
//!   └───────────────────┼────┘                                                   ▼ (persisted)
//!                       └──── join with new metadata, leave, session expiry ── Stable
//! Dead: deleted; requests for it see an unknown group.
//! ```
//!
//! The coordinator is protocol-agnostic: it picks a protocol every member supports and relays
//! the members' metadata to the leader and the leader's assignments to the members, so every
//! client-side assignor (range, roundrobin, cooperative-sticky) works. Nothing here does I/O;
//! waiting requests are oneshot senders the coordinator's handlers await.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chronik_proto::control::{GroupMember, JoinGroupRequest, JoinGroupResponse, SyncGroupResponse};
use chronik_shared::error::ErrorCode;
use tokio::sync::oneshot;

use crate::types::{GroupRecord, MemberRecord};

/// Session timeout bounds. Kafka's default minimum is 6 s; 1 s is allowed so fast-failover
/// setups (and tests) can use short sessions.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's ListGroups and DescribeGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub struct Member {
    pub rec: MemberRecord,
    pub last_seen: Instant,
    pub(super) join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl Member {
    fn new(rec: MemberRecord, now: Instant) -> Member {
        Member { rec, last_seen: now, join_waiter: None, sync_waiter: None }
    }

    pub(super) fn expired(&self, now: Instant) -> bool {
        // A member waiting in JoinGroup is bounded by the rebalance timeout instead.
        self.join_waiter.is_none()
            && now.duration_since(self.last_seen) > Duration::from_millis(self.rec.session_timeout_ms.max(0) as u64)
    }
}

/// What a request gets: an answer now, or one to wait for.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id of static members.
    pub(super) statics: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, accepted until they expire.
    pub(super) pending: HashMap<String, Instant>,
    pub(super) rebalance_deadline: Option<Instant>,
    /// Set by every change a new leader would need after a failover; the coordinator persists
    /// the group and clears it.
    pub dirty: bool,
}

pub(super) fn err<T: Default + WithError>(code: ErrorCode) -> T {
    T::default().with_error(code)
}

pub trait WithError {
    fn with_error(self, code: ErrorCode) -> Self;
}

impl WithError for JoinGroupResponse {
    fn with_error(mut self, code: ErrorCode) -> Self {
        self.error = code.id();
        self
    }
}

impl WithError for SyncGroupResponse {
    fn with_error(mut self, code: ErrorCode) -> Self {
        self.error = code.id();
        self
    }
}

impl Group {
    pub fn new(id: String) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            protocol_type: String::new(),
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            dirty: false,
        }
    }

    /// A group as a new leader finds it: members get a fresh session timeout to reappear.
    pub fn from_record(rec: GroupRecord, now: Instant) -> Group {
        let mut g = Group::new(rec.group_id);
        g.protocol_type = rec.protocol_type;
        g.protocol = rec.protocol;
        g.generation = rec.generation;
        g.leader = rec.leader;
        for m in rec.members {
            if let Some(i) = &m.group_instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(m.member_id.clone(), Member::new(m, now));
        }
        g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        g
    }

    pub fn to_record(&self) -> GroupRecord {
        GroupRecord {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            generation: self.generation,
            leader: self.leader.clone(),
            members: self.members.values().map(|m| m.rec.clone()).collect(),
        }
    }

    /// Whether `member_id` is the current holder of `instance_id` (FENCED_INSTANCE_ID if not).
    pub(super) fn fenced(&self, member_id: &str, instance_id: Option<&String>) -> bool {
        instance_id.is_some_and(|i| self.statics.get(i).is_some_and(|m| m != member_id))
    }

    /// Checks a request that names a member and generation (heartbeat, sync, commit).
    pub fn check_member(
        &mut self,
        member_id: &str,
        instance: Option<&String>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance) {
            return Err(ErrorCode::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
    }

    /// Protocols every member (and `extra`, a joining member) supports.
    fn supports(&self, extra: &[(String, Vec<u8>)]) -> bool {
        self.members.values().all(|m| m.rec.protocols.iter().any(|(n, _)| extra.iter().any(|(e, _)| e == n)))
    }

    pub fn join(&mut self, req: JoinGroupRequest, new_member_id: String, now: Instant) -> Reply<JoinGroupResponse> {
        if self.state == GroupState::Dead {
            return Reply::Now(err(ErrorCode::CoordinatorNotAvailable));
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return Reply::Now(err(ErrorCode::InvalidSessionTimeout));
        }
        let protocols: Vec<(String, Vec<u8>)> =
            req.protocols.iter().map(|p| (p.name.clone(), p.metadata.to_vec())).collect();
        if protocols.is_empty()
            || req.protocol_type.is_empty()
            || (!self.members.is_empty() && (req.protocol_type != self.protocol_type || !self.supports(&protocols)))
        {
            return Reply::Now(err(ErrorCode::InconsistentGroupProtocol));
        }
        if self.members.is_empty() {
            self.protocol_type = req.protocol_type.clone();
        }
        let instance = req.group_instance_id.clone();
        let rec = |member_id: String| MemberRecord {
            member_id,
            group_instance_id: instance.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if req.rebalance_timeout_ms > 0 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocols: protocols.clone(),
            assignment: Vec::new(),
        };

        if req.member_id.is_empty() {
            if let Some(old_id) = instance.as_ref().and_then(|i| self.statics.get(i)).cloned() {
                return self.replace_static(old_id, rec(new_member_id), now);
            }
            if req.require_known_member_id && instance.is_none() {
                self.pending.insert(new_member_id.clone(), now);
                let mut r: JoinGroupResponse = err(ErrorCode::MemberIdRequired);
                r.member_id = new_member_id;
                return Reply::Now(r);
            }
            return self.add_member(rec(new_member_id), now);
        }
        if self.fenced(&req.member_id, instance.as_ref()) {
            return Reply::Now(err(ErrorCode::FencedInstanceId));
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            if self.pending.remove(&req.member_id).is_some() {
                return self.add_member(rec(req.member_id.clone()), now);
            }
            return Reply::Now(err(ErrorCode::UnknownMemberId));
        };
        let unchanged = member.rec.protocols == protocols;
        member.rec =
            MemberRecord { assignment: std::mem::take(&mut member.rec.assignment), ..rec(req.member_id.clone()) };
        member.last_seen = now;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            // A follower rejoining with what it had, or a member that missed its JoinGroup
            // answer: the current generation is still right for it.
            GroupState::Stable if unchanged && !is_leader => Reply::Now(self.join_response(&req.member_id)),
            GroupState::CompletingRebalance if unchanged => Reply::Now(self.join_response(&req.member_id)),
            _ => {
                let rx = self.wait_join(&req.member_id);
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now);
                }
                self.maybe_complete_join(now);
                rx
            }
        }
    }

    fn add_member(&mut self, rec: MemberRecord, now: Instant) -> Reply<JoinGroupResponse> {
        let id = rec.member_id.clone();
        if let Some(i) = &rec.group_instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        self.members.insert(id.clone(), Member::new(rec, now));
        let rx = self.wait_join(&id);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        rx
    }

    /// A static member came back with a new member id: it takes the old member's place. If the
    /// group is stable and its metadata is unchanged, no rebalance (Kafka KIP-345).
    fn replace_static(&mut self, old_id: String, mut rec: MemberRecord, now: Instant) -> Reply<JoinGroupResponse> {
        let Some(mut old) = self.members.remove(&old_id) else {
            return self.add_member(rec, now);
        };
        if let Some(w) = old.join_waiter.take() {
            let _ = w.send(err(ErrorCode::FencedInstanceId));
        }
        if let Some(w) = old.sync_waiter.take() {
            let _ = w.send(err(ErrorCode::FencedInstanceId));
        }
        let unchanged = old.rec.protocols == rec.protocols;
        rec.assignment = old.rec.assignment;
        let id = rec.member_id.clone();
        if let Some(i) = &rec.group_instance_id {
            self.statics.insert(i.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(id.clone());
        }
        self.members.insert(id.clone(), Member::new(rec, now));
        self.dirty = true;
        if self.state == GroupState::Stable && unchanged {
            let mut r = self.join_response(&id);
            // The leader must not reassign: the group did not change (JoinGroup v9 field).
            r.skip_assignment = self.leader.as_deref() == Some(id.as_str());
            return Reply::Now(r);
        }
        let rx = self.wait_join(&id);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        rx
    }

    fn wait_join(&mut self, member_id: &str) -> Reply<JoinGroupResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id)
            && let Some(old) = m.join_waiter.replace(tx)
        {
            let _ = old.send(err(ErrorCode::RebalanceInProgress));
        }
        Reply::Wait(rx)
    }

    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinGroupResponse {
            error: ErrorCode::None.id(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| GroupMember {
                        member_id: m.rec.member_id.clone(),
                        group_instance_id: m.rec.group_instance_id.clone(),
                        metadata: m
                            .rec
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, md)| md.clone().into())
                            .unwrap_or_default(),
                        ..GroupMember::default()
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// Starts a rebalance: members have until the longest rebalance timeout to rejoin.
    pub fn prepare_rebalance(&mut self, now: Instant) {
        let timeout = self.members.values().map(|m| m.rec.rebalance_timeout_ms.max(0)).max().unwrap_or(0);
        self.rebalance_deadline = Some(now + Duration::from_millis(timeout as u64));
        self.state = GroupState::PreparingRebalance;
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(err(ErrorCode::RebalanceInProgress));
            }
        }
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.members.values().all(|m| m.join_waiter.is_some()) {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are dropped, a protocol is chosen,
    /// the generation advances and every waiting member gets its answer.
    pub(super) fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> =
            self.members.iter().filter(|(_, m)| m.join_waiter.is_none()).map(|(id, _)| id.clone()).collect();
        for id in gone {
            self.remove(&id);
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.dirty = true;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let resp = self.join_response(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_seen = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(resp);
                }
            }
        }
    }

    /// Each member votes for its most preferred protocol among those all members support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&String> = first
            .rec
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.rec.protocols.iter().any(|(p, _)| p == *n)))
            .collect();
        let mut votes: Vec<(usize, &String)> = common.iter().map(|n| (0, *n)).collect();
        for m in self.members.values() {
            if let Some((vote, _)) = m.rec.protocols.iter().find(|(p, _)| common.contains(&p))
                && let Some(v) = votes.iter_mut().find(|(_, n)| *n == vote)
            {
                v.0 += 1;
            }
        }
        // Most votes; ties go to the first member's earlier preference.
        let best = votes.iter().map(|(c, _)| *c).max()?;
        votes.into_iter().find(|(c, _)| *c == best).map(|(_, n)| n.clone())
    }

    pub(super) fn remove(&mut self, member_id: &str) -> Option<Member> {
        let mut m = self.members.remove(member_id)?;
        if let Some(i) = &m.rec.group_instance_id
            && self.statics.get(i).is_some_and(|id| id == member_id)
        {
            self.statics.remove(i);
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(err(ErrorCode::UnknownMemberId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(err(ErrorCode::UnknownMemberId));
        }
        self.dirty = true;
        Some(m)
    }

    /// A member left or was evicted: the others rebalance.
    pub(super) fn member_gone(&mut self, member_id: &str, now: Instant) {
        if self.remove(member_id).is_none() {
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.maybe_complete_join(now);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
