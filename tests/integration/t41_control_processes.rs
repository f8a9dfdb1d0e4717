//! The replicated control plane as real `chronik-server control` processes: kill -9 of the
//! leader, rolling and full restarts, the guide's Force Quorum and Emergency Cluster Rebuild,
//! and an unreachable seed.

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chronik_data_plane::DataNode;
use chronik_proto::client::ControlClient;
use chronik_proto::control::{CreateTopicRequest, GetMetadataRequest};
use cluster::*;
use harness::free_port;

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<ControlProc>,
    ports: Vec<u16>,
    data: Option<DataNode>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let seeds = if id == 1 { vec![] } else { vec![seed(1, ports[0])] };
            nodes.push(ControlProc::start(dir.path(), &control_config(dir.path(), id, *port, seeds)));
        }
        wait_views(&ports, Duration::from_secs(30), |v| agreed(v, &[1, 2, 3]).is_some()).await;
        let mut c = Cluster { dir, nodes, ports, data: None };
        c.start_data_node().await;
        c
    }

    /// A data node in this process, so topics can be placed.
    async fn start_data_node(&mut self) {
        let mut cfg = control_config(self.dir.path(), 10, free_port(), self.seeds());
        cfg.cluster.heartbeat.interval_ms = 200;
        let node = DataNode::builder(cfg).start().await.expect("data node");
        assert!(node.wait_registered(Duration::from_secs(20)).await, "data node never registered");
        self.data = Some(node);
    }

    fn seeds(&self) -> Vec<chronik_shared::config::SeedNode> {
        self.ports.iter().enumerate().map(|(i, p)| seed(i as u64 + 1, *p)).collect()
    }

    fn client(&self) -> ControlClient {
        ControlClient::new(self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(), Duration::from_secs(5))
    }

    async fn create_topic(&self, name: &str) {
        let ctl = self.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let req =
                CreateTopicRequest { name: name.into(), partitions: 1, replication_factor: 1, ..Default::default() };
            match ctl
                .call(|mut c| {
                    let r = req.clone();
                    async move { c.create_topic(r).await }
                })
                .await
            {
                Ok(_) => return,
                Err(e) => assert!(Instant::now() < deadline, "creating {name}: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn proc(&mut self, id: u64) -> &mut ControlProc {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node")
    }

    async fn shutdown(mut self) {
        if let Some(d) = self.data.take() {
            d.shutdown().await;
        }
    }
}

/// Topic name → topic id as one node sees it.
async fn topics_on(port: u16) -> BTreeMap<String, Vec<u8>> {
    let ctl = ControlClient::new(vec![format!("127.0.0.1:{port}")], Duration::from_secs(5));
    let md =
        ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.expect("metadata");
    md.topics.into_iter().map(|t| (t.name, t.topic_id.to_vec())).collect()
}

async fn wait_topics(ports: &[u16], want: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = Vec::new();
        for p in ports {
            all.push(topics_on(*p).await);
        }
        let complete = all.iter().all(|t| want.iter().all(|w| t.contains_key(*w)) && *t == all[0]);
        if complete {
            return all.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "nodes disagree on topics: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_leader_elects_quickly_and_the_old_leader_rejoins() {
    let mut c = Cluster::start().await;
    c.create_topic("before").await;
    let views = wait_views(&c.ports, Duration::from_secs(10), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let old = views[0].leader.expect("leader");
    let old_term = views[0].term;

    let killed_at = Instant::now();
    c.proc(old).kill9();
    let rest: Vec<u16> = c.nodes.iter().filter(|n| n.id != old).map(|n| n.port).collect();
    let views = wait_views(&rest, Duration::from_secs(10), |v| {
        v.iter().all(|m| m.leader.is_some() && m.leader != Some(old) && m.leader == v[0].leader && m.term > old_term)
    })
    .await;
    let elected_in = killed_at.elapsed();
    eprintln!("new leader {:?} elected {elected_in:?} after kill -9 of node {old}", views[0].leader);
    // The design asks for under 1 s at a 200 ms election timeout; docs/performance.md records
    // the measured figure. The bound here only catches a stuck election.
    assert!(elected_in < Duration::from_secs(5), "election took {elected_in:?}");
    c.create_topic("after").await;

    c.proc(old).restart();
    wait_views(&c.ports, Duration::from_secs(30), |v| agreed(v, &[1, 2, 3]).is_some_and(|l| l != old)).await;
    let topics = wait_topics(&c.ports, &["before", "after"]).await;
    assert_eq!(topics.len(), 2);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_then_full_stop_and_start_keep_all_state() {
    let mut c = Cluster::start().await;
    c.create_topic("t0").await;
    for id in 1..=3u64 {
        c.proc(id).stop();
        c.proc(id).restart();
        wait_views(&c.ports, Duration::from_secs(30), |v| agreed(v, &[1, 2, 3]).is_some()).await;
        c.create_topic(&format!("t{id}")).await;
    }
    let before = wait_topics(&c.ports, &["t0", "t1", "t2", "t3"]).await;
    for id in 1..=3u64 {
        c.proc(id).stop();
    }
    for id in 1..=3u64 {
        c.proc(id).restart();
    }
    wait_views(&c.ports, Duration::from_secs(30), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let after = wait_topics(&c.ports, &["t0", "t1", "t2", "t3"]).await;
    assert_eq!(before, after, "topics or their ids changed across a full restart");
    c.shutdown().await;
}

fn rewrite_seeds(cfg_path: &Path, seeds: &str) {
    let text = std::fs::read_to_string(cfg_path).expect("config");
    let re: Vec<String> = text
        .lines()
        .map(|l| if l.trim_start().starts_with("seed_nodes") { format!("seed_nodes = {seeds}") } else { l.to_string() })
        .collect();
    std::fs::write(cfg_path, re.join("\n")).expect("config");
}

fn delete_raft_state(data_dir: &Path) {
    let meta = data_dir.join("wal").join("__meta");
    for e in std::fs::read_dir(&meta).expect("__meta dir").flatten() {
        if e.file_name().to_string_lossy().starts_with("raft_") {
            std::fs::remove_file(e.path()).expect("rm raft_*");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_quorum_on_the_last_survivor_restores_writes() {
    let mut c = Cluster::start().await;
    c.create_topic("kept-1").await;
    c.create_topic("kept-2").await;
    wait_topics(&c.ports, &["kept-1", "kept-2"]).await;
    // Two of three voters are destroyed for good.
    for id in [2u64, 3] {
        c.proc(id).kill9();
        let _ = std::fs::remove_dir_all(c.dir.path().join(format!("node{id}")));
    }
    c.proc(1).stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args([
            "admin",
            "force-membership",
            "--node-id",
            "1",
            "--members",
            r#"{"voters":[1],"learners":[]}"#,
            "--config",
        ])
        .arg(&c.proc(1).config)
        .output()
        .expect("force-membership");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "force-membership failed: {stderr}");
    assert!(stderr.contains("WARNING"), "no loud warning: {stderr}");
    c.proc(1).restart();
    let p1 = c.ports[0];
    wait_views(&[p1], Duration::from_secs(30), |v| agreed(v, &[1]) == Some(1)).await;
    c.ports = vec![p1];
    c.create_topic("after-force").await;
    wait_topics(&[p1], &["kept-1", "kept-2", "after-force"]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_rebuild_with_raft_state_deleted_keeps_topics() {
    let mut c = Cluster::start().await;
    for t in ["a", "b", "c"] {
        c.create_topic(t).await;
    }
    let before = wait_topics(&c.ports, &["a", "b", "c"]).await;
    for id in 1..=3u64 {
        c.proc(id).stop();
    }
    for id in 1..=3u64 {
        delete_raft_state(&c.dir.path().join(format!("node{id}")));
    }
    // Node 1 bootstraps from its state machine (its seeds are already []), then the others
    // rejoin through it.
    rewrite_seeds(&c.proc(1).config, "[]");
    c.proc(1).restart();
    wait_views(&c.ports[..1], Duration::from_secs(30), |v| agreed(v, &[1]) == Some(1)).await;
    let seed1 = format!("[\"1@127.0.0.1:{}\"]", c.ports[0]);
    for id in [2u64, 3] {
        rewrite_seeds(&c.proc(id).config, &seed1);
        c.proc(id).restart();
    }
    wait_views(&c.ports, Duration::from_secs(60), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let after = wait_topics(&c.ports, &["a", "b", "c"]).await;
    assert_eq!(before, after, "the rebuild lost or changed topics");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_seed_is_reported_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = free_port();
    let mut p = ControlProc::start(dir.path(), &control_config(dir.path(), 2, free_port(), vec![seed(1, dead)]));
    let want_seed = format!("Seed node 1@127.0.0.1:{dead} unreachable");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = p.log_text();
        let refused = log.matches("Failed to join cluster: ConnectionRefused").count();
        if refused >= 2 && log.matches(&want_seed).count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "expected repeated join failures in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(p.child.as_mut().expect("running").try_wait().expect("status").is_none(), "the node gave up");
}
