//! The group state machine without I/O: joins, rebalances, sync, timers, static members.

use std::time::{Duration, Instant};

use chronik_proto::control::*;
use chronik_shared::error::ErrorCode;

use super::state::{Group, GroupState, Reply};

fn join_req(member: &str, protocols: &[&str], instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        member_id: member.into(),
        group_instance_id: instance.map(str::to_string),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| GroupProtocol { name: p.to_string(), metadata: format!("md-{p}").into_bytes().into() })
            .collect(),
        require_known_member_id: false,
        client_id: "c".into(),
        client_host: String::new(),
    }
}

fn now_or_ready<T>(r: Reply<T>) -> Option<T> {
    match r {
        Reply::Now(t) => Some(t),
        Reply::Wait(mut rx) => rx.try_recv().ok(),
    }
}

/// Joins `id` as a new member and returns its answer if it is already there.
fn join_new(g: &mut Group, id: &str, protocols: &[&str], now: Instant) -> Reply<JoinGroupResponse> {
    g.join(join_req("", protocols, None), id.into(), now)
}

fn sync(g: &mut Group, member: &str, generation: i32, assignments: &[(&str, &str)]) -> Reply<SyncGroupResponse> {
    g.sync(SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        assignments: assignments
            .iter()
            .map(|(m, a)| MemberAssignment { member_id: m.to_string(), assignment: a.as_bytes().to_vec().into() })
            .collect(),
        ..Default::default()
    })
}

/// One member `a`, stable at generation 1 with assignment "A".
fn stable_single(now: Instant) -> Group {
    let mut g = Group::new("g".into());
    let r = now_or_ready(join_new(&mut g, "a", &["range"], now)).expect("a single member completes the join");
    assert_eq!((r.generation_id, r.leader.as_str(), r.members.len()), (1, "a", 1));
    let rx = sync(&mut g, "a", 1, &[("a", "A")]);
    assert!(g.dirty, "the leader's assignment must be persisted before it is handed out");
    assert!(g.assignment_persisted(1));
    assert_eq!(now_or_ready(rx).expect("sync answered").assignment.as_ref(), b"A");
    assert_eq!(g.state, GroupState::Stable);
    g
}

#[test]
fn first_join_of_a_new_client_needs_a_member_id() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let mut req = join_req("", &["range"], None);
    req.require_known_member_id = true;
    let r = now_or_ready(g.join(req.clone(), "m-1".into(), now)).expect("answered at once");
    assert_eq!((r.error, r.member_id.as_str()), (ErrorCode::MemberIdRequired.id(), "m-1"));
    assert!(g.members.is_empty());
    req.member_id = "m-1".into();
    let r = now_or_ready(g.join(req, "unused".into(), now)).expect("joined");
    assert_eq!((r.error, r.generation_id, r.member_id.as_str()), (0, 1, "m-1"));
    // An id that was never handed out is unknown.
    let r = now_or_ready(g.join(join_req("nobody", &["range"], None), "x".into(), now)).expect("answered");
    assert_eq!(r.error, ErrorCode::UnknownMemberId.id());
}

#[test]
fn a_new_member_triggers_a_rebalance_that_ends_when_everyone_rejoined() {
    let now = Instant::now();
    let mut g = stable_single(now);
    let b = join_new(&mut g, "b", &["range"], now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat("a", None, 1, now), ErrorCode::RebalanceInProgress);
    let a = g.join(join_req("a", &["range"], None), "unused".into(), now);
    let (a, b) = (now_or_ready(a).expect("a answered"), now_or_ready(b).expect("b answered"));
    assert_eq!((a.generation_id, b.generation_id), (2, 2));
    assert_eq!((a.leader.as_str(), a.members.len(), b.members.len()), ("a", 2, 0));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    // A follower's SyncGroup waits for the leader's assignment, stored first.
    let b_sync = sync(&mut g, "b", 2, &[]);
    let a_sync = sync(&mut g, "a", 2, &[("a", "A2"), ("b", "B2")]);
    assert!(g.assignment_persisted(2));
    assert_eq!(now_or_ready(b_sync).expect("b synced").assignment.as_ref(), b"B2");
    assert_eq!(now_or_ready(a_sync).expect("a synced").assignment.as_ref(), b"A2");
    assert_eq!(g.heartbeat("b", None, 1, now), ErrorCode::IllegalGeneration);
    assert_eq!(g.heartbeat("b", None, 2, now), ErrorCode::None);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped() {
    let now = Instant::now();
    let mut g = stable_single(now);
    let b = join_new(&mut g, "b", &["range"], now);
    assert!(now_or_ready(b).is_none());
    // `a` never rejoins: at the rebalance timeout the join phase ends without it.
    g.tick(now + Duration::from_millis(4_000));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    g.tick(now + Duration::from_millis(5_001));
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert!(!g.members.contains_key("a"));
    assert_eq!((g.generation, g.leader.as_deref()), (2, Some("b")));
}

#[test]
fn a_member_whose_session_expires_is_evicted() {
    let now = Instant::now();
    let mut g = stable_single(now);
    g.tick(now + Duration::from_millis(9_000));
    assert_eq!(g.state, GroupState::Stable);
    g.tick(now + Duration::from_millis(10_001));
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.dirty);
}

#[test]
fn leaving_rebalances_the_others() {
    let now = Instant::now();
    let mut g = stable_single(now);
    let _b = join_new(&mut g, "b", &["range"], now);
    let _a = g.join(join_req("a", &["range"], None), "unused".into(), now);
    assert_eq!(g.leave("b", None, now), ErrorCode::None);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.leave("b", None, now), ErrorCode::UnknownMemberId);
}

#[test]
fn the_protocol_is_one_every_member_supports_by_most_votes() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let a = join_new(&mut g, "a", &["range", "roundrobin"], now);
    assert_eq!(now_or_ready(a).expect("a").protocol_name, "range");
    let b = join_new(&mut g, "b", &["roundrobin"], now);
    let a = g.join(join_req("a", &["range", "roundrobin"], None), "unused".into(), now);
    let (a, b) = (now_or_ready(a).expect("a"), now_or_ready(b).expect("b"));
    assert_eq!((a.protocol_name.as_str(), b.protocol_name.as_str()), ("roundrobin", "roundrobin"));
    assert_eq!(
        a.members.iter().find(|m| m.member_id == "b").map(|m| m.metadata.to_vec()),
        Some(b"md-roundrobin".to_vec())
    );
    // Nothing in common with the members: refused.
    let c = now_or_ready(join_new(&mut g, "c", &["sticky"], now)).expect("c");
    assert_eq!(c.error, ErrorCode::InconsistentGroupProtocol.id());
}

#[test]
fn a_static_member_rejoining_unchanged_replaces_the_old_one_without_a_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let r = now_or_ready(g.join(join_req("", &["range"], Some("i")), "old".into(), now)).expect("joined");
    assert_eq!(r.member_id, "old");
    let _ = sync(&mut g, "old", 1, &[("old", "A")]);
    assert!(g.assignment_persisted(1));
    let r = now_or_ready(g.join(join_req("", &["range"], Some("i")), "new".into(), now)).expect("at once");
    assert_eq!((r.error, r.member_id.as_str(), r.generation_id), (0, "new", 1));
    assert!(r.skip_assignment, "the returning leader must not reassign");
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(now_or_ready(sync(&mut g, "new", 1, &[])).expect("sync").assignment.as_ref(), b"A");
    assert_eq!(g.heartbeat("old", Some(&"i".to_string()), 1, now), ErrorCode::FencedInstanceId);
    // Different metadata: the group rebalances.
    let r = g.join(join_req("", &["range", "roundrobin"], Some("i")), "newer".into(), now);
    assert!(now_or_ready(r).is_some_and(|r| r.generation_id == 2));
}

#[test]
fn a_persisted_group_comes_back_stable_with_fresh_sessions() {
    let now = Instant::now();
    let g = stable_single(now);
    let later = now + Duration::from_secs(60);
    let mut back = Group::from_record(g.to_record(), later);
    assert_eq!((back.state, back.generation, back.leader.as_deref()), (GroupState::Stable, 1, Some("a")));
    assert_eq!(back.heartbeat("a", None, 1, later), ErrorCode::None);
    back.tick(later + Duration::from_millis(9_000));
    assert_eq!(back.state, GroupState::Stable);
}
