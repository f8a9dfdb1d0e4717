//! Control-plane clusters for end-to-end tests: in-process nodes (real gRPC on 127.0.0.1, a
//! fault layer in the Raft transport) and real `chronik-server control` processes (kill -9).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronik_control_plane::ControlNode;
use chronik_proto::control::control_service_client::ControlServiceClient;
use chronik_proto::control::{GetMembersRequest, MembersResponse};
use chronik_raft::Faults;
use chronik_shared::config::{ChronikConfig, SeedNode};

use crate::harness::free_port;

pub fn seed(id: u64, port: u16) -> SeedNode {
    SeedNode { id, host: "127.0.0.1".into(), port }
}

pub fn control_config(dir: &Path, id: u64, grpc_port: u16, seeds: Vec<SeedNode>) -> ChronikConfig {
    let mut cfg = ChronikConfig::default();
    cfg.node.id = id;
    cfg.node.data_dir = dir.join(format!("node{id}"));
    cfg.listeners.grpc = format!("127.0.0.1:{grpc_port}").parse().expect("addr");
    cfg.listeners.http = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    cfg.listeners.kafka = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    cfg.listeners.advertised_grpc = Some(format!("127.0.0.1:{grpc_port}"));
    cfg.cluster.seed_nodes = seeds;
    cfg.cluster.raft.election_timeout_ms = 200;
    cfg.cluster.raft.heartbeat_interval_ms = 20;
    cfg.cluster.network.request_timeout_ms = 3000;
    cfg
}

/// Asks one node for its view of the membership.
pub async fn members_of(port: u16) -> Option<MembersResponse> {
    let ch = chronik_proto::client::channel(&format!("127.0.0.1:{port}")).ok()?;
    let mut c = ControlServiceClient::new(ch);
    let call = c.get_members(GetMembersRequest {});
    match tokio::time::timeout(Duration::from_millis(500), call).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}

/// Waits until `check` holds for the views of all `ports`.
pub async fn wait_views(
    ports: &[u16],
    timeout: Duration,
    check: impl Fn(&[MembersResponse]) -> bool,
) -> Vec<MembersResponse> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        for p in ports {
            if let Some(v) = members_of(*p).await {
                views.push(v);
            }
        }
        if views.len() == ports.len() && check(&views) {
            return views;
        }
        assert!(Instant::now() < deadline, "cluster did not converge within {timeout:?}: {views:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn voter_ids(v: &MembersResponse) -> Vec<u64> {
    let mut ids: Vec<u64> = v.voters.iter().map(|n| n.node_id).collect();
    ids.sort();
    ids
}

pub fn learner_ids(v: &MembersResponse) -> Vec<u64> {
    let mut ids: Vec<u64> = v.learners.iter().map(|n| n.node_id).collect();
    ids.sort();
    ids
}

/// All views agree on a leader and on the voters.
pub fn agreed(views: &[MembersResponse], voters: &[u64]) -> Option<u64> {
    let leader = views.first()?.leader?;
    views.iter().all(|v| v.leader == Some(leader) && voter_ids(v) == voters).then_some(leader)
}

/// In-process control nodes sharing one fault layer.
pub struct InProcess {
    pub dir: tempfile::TempDir,
    pub faults: Faults,
    pub ports: Vec<(u64, u16)>,
    pub nodes: Vec<(u64, ControlNode)>,
}

impl InProcess {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            faults: Faults::default(),
            ports: Vec::new(),
            nodes: Vec::new(),
        }
    }

    pub fn port(&self, id: u64) -> u16 {
        self.ports.iter().find(|(i, _)| *i == id).map(|(_, p)| *p).expect("known node")
    }

    pub async fn start(&mut self, cfg: ChronikConfig) {
        let id = cfg.node.id;
        let port = cfg.listeners.grpc.port();
        if !self.ports.iter().any(|(i, _)| *i == id) {
            self.ports.push((id, port));
        }
        let node = ControlNode::builder(cfg).faults(self.faults.clone()).start().await.expect("control node starts");
        self.nodes.push((id, node));
    }

    pub fn node(&self, id: u64) -> &ControlNode {
        &self.nodes.iter().find(|(i, _)| *i == id).expect("running node").1
    }

    pub async fn stop(&mut self, id: u64) {
        let i = self.nodes.iter().position(|(n, _)| *n == id).expect("running node");
        let (_, node) = self.nodes.remove(i);
        node.shutdown().await;
    }

    pub async fn shutdown(mut self) {
        for (_, n) in self.nodes.drain(..) {
            n.shutdown().await;
        }
    }
}

/// A real `chronik-server <role>` process.
pub struct ControlProc {
    pub id: u64,
    pub role: &'static str,
    pub port: u16,
    /// `listeners.http`: health, metrics and the admin API.
    pub http: std::net::SocketAddr,
    pub child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Extra environment of the process (e.g. `CHRONIK_CPU_PROFILE`).
    pub env: Vec<(&'static str, &'static str)>,
}

impl ControlProc {
    pub fn start(dir: &Path, cfg: &ChronikConfig) -> ControlProc {
        Self::start_role(dir, cfg, "control")
    }

    pub fn start_role(dir: &Path, cfg: &ChronikConfig, role: &'static str) -> ControlProc {
        Self::start_role_env(dir, cfg, role, Vec::new())
    }

    pub fn start_role_env(
        dir: &Path,
        cfg: &ChronikConfig,
        role: &'static str,
        env: Vec<(&'static str, &'static str)>,
    ) -> ControlProc {
        let id = cfg.node.id;
        let config = dir.join(format!("node{id}.toml"));
        std::fs::write(&config, cfg.to_toml_string()).expect("write config");
        let mut p = ControlProc {
            id,
            role,
            port: cfg.listeners.grpc.port(),
            http: cfg.listeners.http,
            child: None,
            config,
            log: dir.join(format!("node{id}.log")),
            env,
        };
        p.restart();
        p
    }

    pub fn restart(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
            .args([self.role, "--config"])
            .arg(&self.config)
            // CHRONIK_TEST_LOG turns up what the nodes log when a run needs explaining.
            .env("RUST_LOG", std::env::var("CHRONIK_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .envs(self.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn control node");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stays but stops answering (a long GC pause, a frozen VM).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg("-STOP").arg(c.id().to_string()).status();
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
        }
    }

    /// SIGTERM and wait: a clean stop. False when the process had to be killed after 10 s.
    pub fn stop(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            return false;
        }
        true
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControlProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Timeouts short enough for failover tests: 300 ms elections (50 ms Raft heartbeats: debug
/// builds of openraft are slow enough that more frequent ones crowd out the work on two cores),
/// 200 ms node heartbeats, and `node_timeout_ms` before the control plane counts a node as down.
pub fn fast_failover(cfg: &mut ChronikConfig, node_timeout_ms: u64) {
    cfg.cluster.raft.election_timeout_ms = 300;
    cfg.cluster.raft.heartbeat_interval_ms = 50;
    cfg.cluster.heartbeat.interval_ms = 200;
    cfg.cluster.heartbeat.node_timeout_ms = node_timeout_ms;
}

/// Real processes: one control node (id 1, bootstrapping) and data nodes (ids 2..), all with
/// [`fast_failover`] timeouts; gateways and more come from [`ProcCluster::start_node`].
/// [`ProcCluster::start_full`] adds more control nodes. Every node's admin API takes tokens from
/// [`ProcCluster::token`].
pub struct ProcCluster {
    pub dir: PathBuf,
    pub control_port: u16,
    pub control: ControlProc,
    /// Control nodes after the first (ids 101, 102, ...), from [`ProcCluster::start_full`].
    pub more_controls: Vec<ControlProc>,
    pub data: Vec<ControlProc>,
    node_timeout_ms: u64,
    /// Applied to the config of every node started after the control node.
    tweak: fn(&mut ChronikConfig),
}

impl ProcCluster {
    pub async fn start(dir: &Path, data_nodes: u64, node_timeout_ms: u64) -> ProcCluster {
        Self::start_with(dir, data_nodes, node_timeout_ms, |_| {}).await
    }

    /// As [`ProcCluster::start`], with `tweak` applied to every node's config but the control
    /// node's.
    pub async fn start_with(
        dir: &Path,
        data_nodes: u64,
        node_timeout_ms: u64,
        tweak: fn(&mut ChronikConfig),
    ) -> ProcCluster {
        Self::start_full(dir, 1, data_nodes, node_timeout_ms, tweak).await
    }

    /// `controls` control nodes (1, then 101, 102, ... joining it), then `data_nodes` data nodes
    /// (2, 3, ...).
    pub async fn start_full(
        dir: &Path,
        controls: u64,
        data_nodes: u64,
        node_timeout_ms: u64,
        tweak: fn(&mut ChronikConfig),
    ) -> ProcCluster {
        Self::start_tuned(dir, controls, data_nodes, node_timeout_ms, tweak, |_| {}).await
    }

    /// As [`ProcCluster::start_full`], with `control_tweak` applied to the control nodes'
    /// configs too.
    pub async fn start_tuned(
        dir: &Path,
        controls: u64,
        data_nodes: u64,
        node_timeout_ms: u64,
        tweak: fn(&mut ChronikConfig),
        control_tweak: fn(&mut ChronikConfig),
    ) -> ProcCluster {
        let control_port = free_port();
        let mut cfg = control_config(dir, 1, control_port, vec![]);
        fast_failover(&mut cfg, node_timeout_ms);
        with_auth(dir, &mut cfg);
        control_tweak(&mut cfg);
        let control = ControlProc::start_role(dir, &cfg, "control");
        wait_views(&[control_port], Duration::from_secs(20), |v| agreed(v, &[1]).is_some()).await;
        let mut c = ProcCluster {
            dir: dir.to_path_buf(),
            control_port,
            control,
            more_controls: Vec::new(),
            data: Vec::new(),
            node_timeout_ms,
            tweak,
        };
        for id in 101..100 + controls {
            let mut cfg = control_config(dir, id, free_port(), vec![seed(1, control_port)]);
            fast_failover(&mut cfg, node_timeout_ms);
            with_auth(dir, &mut cfg);
            control_tweak(&mut cfg);
            c.more_controls.push(ControlProc::start_role(dir, &cfg, "control"));
        }
        if controls > 1 {
            let mut ports = vec![control_port];
            ports.extend(c.more_controls.iter().map(|p| p.port));
            let mut voters = vec![1];
            voters.extend(101..100 + controls);
            wait_views(&ports, Duration::from_secs(30), |v| agreed(v, &voters).is_some()).await;
        }
        for id in 2..2 + data_nodes {
            let node = c.start_node(id, "data");
            c.data.push(node);
        }
        c
    }

    /// The config of node `id` in this cluster (seeded with the control node).
    pub fn config(&self, id: u64) -> ChronikConfig {
        let mut seeds = vec![seed(1, self.control_port)];
        seeds.extend(self.more_controls.iter().map(|p| seed(p.id, p.port)));
        let mut cfg = control_config(&self.dir, id, free_port(), seeds);
        fast_failover(&mut cfg, self.node_timeout_ms);
        with_auth(&self.dir, &mut cfg);
        (self.tweak)(&mut cfg);
        cfg
    }

    /// A bearer token of `role` for every node of this cluster.
    pub fn token(&self, role: chronik_shared::auth::Role) -> String {
        let mut cfg = ChronikConfig::default();
        with_auth(&self.dir, &mut cfg);
        let signer = chronik_shared::auth::Signer::from_config(&cfg.auth).expect("signer");
        chronik_shared::auth::mint(&signer, role, Duration::from_secs(3600)).expect("token")
    }

    /// Every control node, the first included.
    pub fn controls(&self) -> impl Iterator<Item = &ControlProc> {
        std::iter::once(&self.control).chain(self.more_controls.iter())
    }

    pub fn start_node(&self, id: u64, role: &'static str) -> ControlProc {
        ControlProc::start_role(&self.dir, &self.config(id), role)
    }

    /// The last `lines` lines of every node's log, for a failure that needs explaining.
    pub fn log_tails(&self, lines: usize) -> String {
        self.controls()
            .chain(self.data.iter())
            .map(|n| {
                let text = n.log_text();
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("--- node {} ({}), {}:\n{tail}", n.id, n.role, n.log.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Creates `topic` through the control plane, retrying while the data nodes are still
    /// registering (placement needs `replication_factor` live ones).
    pub async fn create_topic(&self, topic: &str, partitions: u32, replication_factor: u32) {
        let ctl = self.control_client();
        let req = chronik_proto::control::CreateTopicRequest {
            name: topic.into(),
            partitions,
            replication_factor,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let created = ctl.call(|mut c| {
                let req = req.clone();
                async move { c.create_topic(req).await }
            });
            match created.await {
                Ok(_) => return,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "topic {topic} never created (data nodes not registered?): {}\n{}",
                    e.message(),
                    self.log_tails(20)
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn control_client(&self) -> chronik_proto::client::ControlClient {
        chronik_proto::client::ControlClient::new(
            self.controls().map(|p| format!("127.0.0.1:{}", p.port)).collect(),
            Duration::from_secs(5),
        )
    }
}

/// Points `cfg`'s admin API at the cluster's HS256 secret (`dir/admin.secret`, made once).
pub fn with_auth(dir: &Path, cfg: &mut ChronikConfig) {
    let secret = dir.join("admin.secret");
    if !secret.exists() {
        std::fs::write(&secret, "a test secret of more than thirty-two bytes").expect("write secret");
    }
    cfg.auth.jwt_hs256_secret_file = Some(secret);
}

/// Partition 0 of `topic` as the control plane reports it.
pub async fn first_partition(
    ctl: &chronik_proto::client::ControlClient,
    topic: &str,
) -> Option<chronik_proto::control::PartitionInfo> {
    let md = ctl
        .call(|mut c| async move { c.get_metadata(chronik_proto::control::GetMetadataRequest::default()).await })
        .await
        .ok()?;
    md.topics.into_iter().find(|t| t.name == topic)?.partitions.into_iter().next()
}

/// Waits up to `timeout` for partition 0 of `topic` to satisfy `ok`; panics naming `what`.
pub async fn wait_first_partition(
    ctl: &chronik_proto::client::ControlClient,
    topic: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&chronik_proto::control::PartitionInfo) -> bool,
) -> chronik_proto::control::PartitionInfo {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(p) = first_partition(ctl, topic).await.filter(|p| ok(p)) {
            return p;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", first_partition(ctl, topic).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A whole cluster in process: control node 1, data nodes 2..=4 whose Raft traffic goes
/// through `faults`, and gateway 5; every config passes through `tune` first.
pub struct DataCluster {
    pub control: ControlNode,
    pub data: std::collections::BTreeMap<u64, chronik_data_plane::DataNode>,
    pub gateway: chronik_gateway::Gateway,
    pub control_port: u16,
}

impl DataCluster {
    pub async fn start(dir: &Path, faults: &Faults, tune: fn(&mut ChronikConfig)) -> DataCluster {
        let control_port = free_port();
        let mut ccfg = control_config(dir, 1, control_port, vec![]);
        tune(&mut ccfg);
        let control = ControlNode::builder(ccfg).start().await.expect("control");
        let mut data = std::collections::BTreeMap::new();
        for id in 2..=4u64 {
            let mut cfg = control_config(dir, id, free_port(), vec![seed(1, control_port)]);
            tune(&mut cfg);
            let node =
                chronik_data_plane::DataNode::builder(cfg).faults(faults.clone()).start().await.expect("data node");
            assert!(node.wait_registered(Duration::from_secs(20)).await);
            data.insert(id, node);
        }
        let mut gcfg = control_config(dir, 5, free_port(), vec![seed(1, control_port)]);
        tune(&mut gcfg);
        let gateway = chronik_gateway::Gateway::builder(gcfg).start().await.expect("gateway");
        DataCluster { control, data, gateway, control_port }
    }

    pub fn kafka(&self) -> String {
        self.gateway.kafka_addr().to_string()
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for (_, d) in self.data {
            d.shutdown().await;
        }
        self.control.shutdown().await;
    }
}
