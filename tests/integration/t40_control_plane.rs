//! The replicated control plane in-process: membership operations, a partitioned leader, a
//! learner catching up through a chunked snapshot with a chunk lost on the way, and
//! replication with and without pipelining.

mod cluster;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_control_plane::types::{ControlCommand, NodeRecord, Role};
use chronik_proto::client::ControlClient;
use chronik_proto::control::{MemberRequest, TransferLeaderRequest};
use cluster::*;
use harness::free_port;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

async fn three_nodes(c: &mut InProcess, tweak: impl Fn(&mut chronik_shared::config::ChronikConfig)) -> Vec<u16> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let id = i as u64 + 1;
        let seeds = if id == 1 { vec![] } else { vec![seed(1, ports[0])] };
        let mut cfg = control_config(c.dir.path(), id, *port, seeds);
        tweak(&mut cfg);
        c.start(cfg).await;
    }
    wait_views(&ports, Duration::from_secs(20), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    ports
}

fn client(ports: &[u16]) -> ControlClient {
    ControlClient::new(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(), Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_promote_remove_and_transfer_show_on_every_node() {
    let mut c = InProcess::new();
    let mut ports = three_nodes(&mut c, |_| {}).await;

    // Node 4 lists only itself as seed: it waits to be added instead of joining on its own.
    let p4 = free_port();
    c.start(control_config(c.dir.path(), 4, p4, vec![seed(4, p4)])).await;
    let ctl = client(&ports);
    let add = MemberRequest { node_id: 4, addr: format!("127.0.0.1:{p4}") };
    ctl.call(|mut k| {
        let r = add.clone();
        async move { k.add_learner(r).await }
    })
    .await
    .expect("add learner");
    ports.push(p4);
    wait_views(&ports, Duration::from_secs(20), |v| {
        v.iter().all(|m| learner_ids(m) == [4] && voter_ids(m) == [1, 2, 3])
    })
    .await;

    ctl.call(|mut k| async move { k.promote_member(MemberRequest { node_id: 4, addr: String::new() }).await })
        .await
        .expect("promote");
    wait_views(&ports, Duration::from_secs(20), |v| {
        agreed(v, &[1, 2, 3, 4]).is_some() && v.iter().all(|m| m.learners.is_empty())
    })
    .await;

    ctl.call(|mut k| async move { k.remove_member(MemberRequest { node_id: 1, addr: String::new() }).await })
        .await
        .expect("remove");
    let rest = vec![ports[1], ports[2], ports[3]];
    let views = wait_views(&rest, Duration::from_secs(20), |v| agreed(v, &[2, 3, 4]).is_some()).await;
    let leader = views[0].leader.expect("leader");

    let target = [2u64, 3, 4].into_iter().find(|n| *n != leader).expect("another voter");
    let ctl = client(&rest);
    ctl.call(|mut k| async move { k.transfer_leader(TransferLeaderRequest { target_node_id: target }).await })
        .await
        .expect("transfer");
    wait_views(&rest, Duration::from_secs(20), |v| agreed(v, &[2, 3, 4]) == Some(target)).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_commits_nothing_and_steps_down_after_healing() {
    let mut c = InProcess::new();
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        let id = i as u64 + 1;
        let seeds = if id == 1 { vec![] } else { vec![seed(1, ports[0])] };
        c.start(control_config(c.dir.path(), id, *port, seeds)).await;
    }
    let all: Vec<u64> = (1..=5).collect();
    let views = wait_views(&ports, Duration::from_secs(30), |v| agreed(v, &all).is_some()).await;
    let old = views[0].leader.expect("leader");

    // Every node reports who leads each term it saw a leader in; two leaders in one term is
    // the split brain Raft must never allow.
    let leaders: Arc<Mutex<BTreeMap<u64, BTreeSet<u64>>>> = Arc::default();
    let mut watchers = Vec::new();
    for (id, node) in &c.nodes {
        let mut rx = node.raft().metrics();
        let (id, leaders) = (*id, leaders.clone());
        watchers.push(tokio::spawn(async move {
            loop {
                let m = rx.borrow_watched().clone();
                if m.state == ServerState::Leader {
                    leaders.lock().unwrap().entry(m.current_term).or_default().insert(id);
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }));
    }

    let others: Vec<u64> = all.iter().copied().filter(|n| *n != old).collect();
    c.faults.isolate(old, &others);
    let majority: Vec<u16> = others.iter().map(|id| c.port(*id)).collect();
    let views = wait_views(&majority, Duration::from_secs(20), |v| {
        let l = v[0].leader;
        l.is_some() && l != Some(old) && v.iter().all(|m| m.leader == l)
    })
    .await;
    let new = views[0].leader.expect("new leader");

    // A write sent to the isolated node never succeeds.
    let write = c.node(old).raft().client_write(ControlCommand::RegisterNode(NodeRecord {
        node_id: 999,
        role: Role::Data,
        addr: "127.0.0.1:1".into(),
        rack: String::new(),
        draining: false,
        http_addr: String::new(),
    }));
    let outcome = tokio::time::timeout(Duration::from_secs(2), write).await;
    assert!(!matches!(outcome, Ok(Ok(_))), "the isolated old leader committed a write: {outcome:?}");

    c.faults.heal();
    wait_views(&ports, Duration::from_secs(30), |v| agreed(v, &all).is_some()).await;
    // Converged: every state machine holds the same nodes, and never the isolated write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reference = c.node(new).state_machine().nodes().expect("nodes");
    for (id, node) in &c.nodes {
        let nodes = node.state_machine().nodes().expect("nodes");
        assert_eq!(nodes, reference, "node {id} diverged");
        assert!(!nodes.iter().any(|n| n.node_id == 999), "node {id} applied the isolated leader's write");
    }
    for w in watchers {
        w.abort();
    }
    for (term, ls) in leaders.lock().unwrap().iter() {
        assert_eq!(ls.len(), 1, "term {term} had leaders {ls:?}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_catches_up_by_chunked_snapshot_despite_a_lost_chunk() {
    let mut c = InProcess::new();
    let ports = three_nodes(&mut c, |cfg| {
        cfg.cluster.raft.snapshot_log_size_threshold = 1000;
        cfg.cluster.raft.max_snapshot_chunk_size = 64 * 1024;
    })
    .await;
    let views = wait_views(&ports, Duration::from_secs(10), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let leader = views[0].leader.expect("leader");

    // 10,000 committed entries, in concurrent waves.
    let raft = c.node(leader).raft().clone();
    for wave in 0..20u64 {
        let writes = (0..500u64).map(|i| {
            let raft = raft.clone();
            let id = 10_000 + wave * 500 + i;
            async move {
                let cmd = ControlCommand::RegisterNode(NodeRecord {
                    node_id: id,
                    role: Role::Data,
                    addr: format!("10.0.0.1:{}", id % 60000),
                    rack: String::new(),
                    draining: false,
                    http_addr: String::new(),
                });
                // 500 writes at once on two shared cores can starve the heartbeats: the leader
                // then refuses writes until a quorum acks again (ForwardToLeader, no leader
                // named, LeaseExpired). A control client retries that; so does this one.
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match raft.client_write(cmd.clone()).await {
                        Ok(_) => break,
                        Err(e)
                            if e.forward_to_leader().is_some_and(|f| f.leader_id.is_none_or(|l| l == leader))
                                && Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("write: {e:?}"),
                    }
                }
            }
        });
        futures::future::join_all(writes).await;
    }
    raft.trigger().snapshot().await.expect("snapshot");
    let deadline = Instant::now() + Duration::from_secs(20);
    while raft.metrics().borrow_watched().purged.is_none() {
        assert!(Instant::now() < deadline, "leader never compacted its log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let p4 = free_port();
    let mut cfg4 = control_config(c.dir.path(), 4, p4, vec![seed(4, p4)]);
    cfg4.cluster.raft.max_snapshot_chunk_size = 64 * 1024;
    c.start(cfg4).await;
    c.faults.drop_snapshot_chunks(1);
    let ctl = client(&ports);
    ctl.call(|mut k| async move { k.add_learner(MemberRequest { node_id: 4, addr: format!("127.0.0.1:{p4}") }).await })
        .await
        .expect("add learner");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Read again each time: the new node registering itself is one more write.
        let want = c.node(leader).state_machine().nodes().expect("nodes").len();
        assert!(want >= 10_000);
        let got = c.node(4).state_machine().nodes().expect("nodes").len();
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "learner has {got} of {want} nodes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.node(4).raft().metrics().borrow_watched().snapshot.is_some(), "the learner caught up without a snapshot");
    c.shutdown().await;
}

/// `cluster.raft.enable_pipeline` on (here with a window of 4) and off (the default): a burst of
/// concurrent writes commits, and every node applies every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_writes_replicates_with_and_without_pipelining() {
    for pipeline in [true, false] {
        let mut c = InProcess::new();
        let ports = three_nodes(&mut c, |cfg| {
            cfg.cluster.raft.enable_pipeline = pipeline;
            cfg.cluster.raft.max_in_flight = 4;
        })
        .await;
        let views = wait_views(&ports, Duration::from_secs(20), |v| agreed(v, &[1, 2, 3]).is_some()).await;
        let raft = c.node(views[0].leader.expect("leader")).raft().clone();
        let writes = (0..200u64).map(|i| {
            let raft = raft.clone();
            async move {
                raft.client_write(ControlCommand::RegisterNode(NodeRecord {
                    node_id: 1000 + i,
                    role: Role::Data,
                    addr: format!("127.0.0.1:{}", 10_000 + i),
                    rack: String::new(),
                    draining: false,
                    http_addr: String::new(),
                }))
                .await
            }
        });
        for w in futures::future::join_all(writes).await {
            w.unwrap_or_else(|e| panic!("pipeline={pipeline}: a write failed: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let states: Vec<_> = [1u64, 2, 3]
                .iter()
                .map(|id| c.node(*id).state_machine().nodes().expect("nodes"))
                .map(|nodes| nodes.into_iter().filter(|n| n.node_id >= 1000).collect::<Vec<_>>())
                .collect();
            if states.iter().all(|s| s.len() == 200 && *s == states[0]) {
                break;
            }
            let counts: Vec<usize> = states.iter().map(Vec::len).collect();
            assert!(Instant::now() < deadline, "pipeline={pipeline}: the nodes applied {counts:?} of 200 writes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.shutdown().await;
    }
}
