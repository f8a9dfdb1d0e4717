//! Starting and stopping a control node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chronik_proto::control::control_service_server::ControlServiceServer;
use chronik_raft::service::RaftGroup;
use chronik_raft::{GrpcHost, GrpcNetworkFactory, PeerPool, PurgeMode, RaftObserver, WalLogStore};
use chronik_shared::config::ChronikConfig;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;

use crate::liveness::Liveness;
use crate::service::ControlServiceImpl;
use crate::state_machine::ControlStateMachine;
use crate::{ControlError, META_GROUP, MetaRaft, MetaTypeConfig};

pub struct ControlNodeBuilder {
    config: ChronikConfig,
    listener: Option<TcpListener>,
    faults: Option<chronik_raft::Faults>,
}

/// A running control node. Dropping it leaves the tasks running; call [`ControlNode::shutdown`].
pub struct ControlNode {
    pub node_id: u64,
    raft: MetaRaft,
    sm: ControlStateMachine,
    server: Option<chronik_raft::GrpcServer>,
    observer: RaftObserver,
    joiner: Option<tokio::task::JoinHandle<()>>,
    wal: chronik_shared::wal::Wal,
    /// The group coordinator's writer and timer tasks.
    group_tasks: Vec<tokio::task::JoinHandle<()>>,
    svc: ControlServiceImpl,
    groups: chronik_raft::RaftGroups,
}

impl ControlNode {
    pub fn builder(config: ChronikConfig) -> ControlNodeBuilder {
        ControlNodeBuilder { config, listener: None, faults: None }
    }

    pub fn raft(&self) -> &MetaRaft {
        &self.raft
    }

    pub fn state_machine(&self) -> &ControlStateMachine {
        &self.sm
    }

    /// The admin API's cluster reads: membership from this node's own `__meta` state, the
    /// rest from the leader (within `timeout`) when this node does not lead.
    pub fn cluster_view(&self, timeout: Duration) -> Arc<dyn chronik_shared::admin::ClusterView> {
        Arc::new(chronik_proto::admin::ControlView(crate::admin::LocalControl { svc: self.svc.clone(), timeout }))
    }

    /// The Raft groups of this node's gRPC server (`__meta`, and partitions in standalone).
    pub fn raft_groups(&self) -> chronik_raft::RaftGroups {
        self.groups.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.node_id)
    }

    /// Waits until some node leads `__meta`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = rx.borrow_watched().current_leader {
                    return l;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    pub async fn shutdown(mut self) {
        // Aborted tasks release what they hold (the redb state among it) only once they are
        // polled again: wait for that, so a restart in the same process can reopen the files.
        if let Some(j) = self.joiner.take() {
            j.abort();
            let _ = j.await;
        }
        for t in self.group_tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(target: "chronik_cluster", "__meta Raft did not stop cleanly: {e}");
        }
        self.observer.stop().await;
        // Releases the WAL's lock now rather than when openraft's last handle drops.
        self.wal.close();
    }
}

impl ControlNodeBuilder {
    /// Serve on this already-bound listener instead of binding `listeners.grpc` (tests use
    /// port 0).
    pub fn listener(mut self, l: TcpListener) -> Self {
        self.listener = Some(l);
        self
    }

    /// Sends this node's Raft traffic through a test cluster's fault layer.
    pub fn faults(mut self, f: chronik_raft::Faults) -> Self {
        self.faults = Some(f);
        self
    }

    /// Starts the node with its own gRPC server.
    pub async fn start(mut self) -> Result<ControlNode, ControlError> {
        let addr = self.config.listeners.grpc;
        let listener = chronik_raft::host::listener(addr, self.listener.take())
            .await
            .map_err(|source| ControlError::Bind { addr, source })?;
        let mut host =
            GrpcHost::new(self.config.node.id, "control", self.config.cluster.network.max_message_size as usize);
        let mut node = self.start_on(&mut host).await?;
        node.server = Some(host.serve(listener));
        Ok(node)
    }

    /// Starts the node's Raft group and adds its services to a gRPC host shared with other
    /// roles (standalone mode); the caller serves the host.
    pub async fn start_on(self, host: &mut GrpcHost) -> Result<ControlNode, ControlError> {
        let cfg = self.config;
        let id = cfg.node.id;
        let meta_dir = cfg.node.data_dir.join("wal").join(META_GROUP);
        std::fs::create_dir_all(&meta_dir)?;
        let wal_opts = chronik_shared::wal::WalOptions::from_config(&cfg.wal);
        let log = WalLogStore::<MetaTypeConfig>::open(&meta_dir, 0, wal_opts, PurgeMode::Delete)?
            .with_append_latency(chronik_shared::metrics::RAFT_APPEND_LATENCY_MS.with_label_values(&[META_GROUP]));
        let sm_dir = cfg.node.data_dir.join("control");
        let fresh = !log.has_raft_state();
        let seeds: Vec<String> = cfg.cluster.seed_nodes.iter().map(|s| s.to_string()).collect();
        if fresh && !seeds.is_empty() && sm_dir.join("state.redb").exists() {
            // Rejoining after `raft_*` was deleted: the leader's snapshot will replace this
            // node's state, and keeping the old copy running would let it disagree meanwhile.
            let aside = cfg.node.data_dir.join(format!("control.before-rejoin-{}", chronik_shared::http::now_ms()));
            tracing::warn!(target: "chronik_cluster", "__meta Raft state is missing and seeds are configured: moving the old control-plane state to {} and rejoining through {:?}", aside.display(), seeds);
            std::fs::rename(&sm_dir, &aside)?;
            log.reset()?;
        }
        let mut sm = ControlStateMachine::open(&sm_dir)?;
        if fresh && seeds.is_empty() {
            crate::recovery::rebuild_single(&log, &mut sm, id, cfg.listeners.advertised_grpc_addr()).await?;
        }
        let config = chronik_raft::raft_config(
            &cfg,
            SnapshotPolicy::LogsSinceLast(cfg.cluster.raft.snapshot_log_size_threshold),
        )
        .map(Arc::new)
        .map_err(ControlError::Raft)?;
        let mut pool = PeerPool::for_config(&cfg);
        if let Some(f) = self.faults {
            pool = pool.with_faults(id, f);
        }
        let network = GrpcNetworkFactory::<MetaTypeConfig>::new(
            META_GROUP,
            pool,
            cfg.cluster.raft.max_snapshot_chunk_size as usize,
            Duration::from_secs(cfg.cluster.network.install_snapshot_timeout_secs),
        );
        // After a rebuild the log already names this node the only voter; no initialize then.
        let has_state_now = log.has_raft_state();
        let wal = log.wal().clone();
        let raft = openraft::Raft::new(id, config, network, log, sm.clone())
            .await
            .map_err(|e| ControlError::Raft(e.to_string()))?;
        let observer = RaftObserver::spawn(
            META_GROUP.to_string(),
            &raft,
            Duration::from_millis(cfg.cluster.raft.replica_lag_time_max_ms),
            None,
        );
        host.groups.insert(
            META_GROUP.to_string(),
            Arc::new(RaftGroup {
                name: META_GROUP.to_string(),
                raft: raft.clone(),
                staging: cfg.node.data_dir.join("snapshots"),
                quiet: None,
            }),
        );
        let liveness = Liveness::new(Duration::from_millis(cfg.cluster.heartbeat.node_timeout_ms));
        let (groups, group_tasks) =
            crate::groups::GroupCoordinator::start(id, raft.clone(), sm.clone(), liveness.clone());
        let svc = ControlServiceImpl {
            groups,
            node_id: id,
            raft: raft.clone(),
            sm: sm.clone(),
            liveness,
            max_message_size: cfg.cluster.network.max_message_size as usize,
            election_timeout_ms: cfg.cluster.raft.election_timeout_ms,
            lag: observer.lag_view(),
            lag_max_ms: cfg.cluster.raft.replica_lag_time_max_ms,
        };
        let mut group_tasks = group_tasks;
        group_tasks.push(tokio::spawn(register_addresses(id, &cfg)));
        group_tasks.push(crate::balancer::spawn(
            svc.clone(),
            Duration::from_millis(cfg.cluster.heartbeat.interval_ms.saturating_mul(5).max(100)),
            // "Just restarted" means within two node timeouts of coming back.
            Duration::from_millis(cfg.cluster.heartbeat.node_timeout_ms.saturating_mul(2)),
        ));
        group_tasks.push(tokio::spawn(count_voters(raft.clone())));
        let admin_svc = svc.clone();
        host.routes().add_service(
            ControlServiceServer::new(svc)
                .max_decoding_message_size(cfg.cluster.network.max_message_size as usize)
                .max_encoding_message_size(cfg.cluster.network.max_message_size as usize),
        );

        if fresh && cfg.cluster.seed_nodes.is_empty() && !has_state_now {
            let mut members = BTreeMap::new();
            members.insert(id, BasicNode { addr: cfg.listeners.advertised_grpc_addr() });
            match raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(target: "chronik_cluster", "Bootstrapped a new control plane with node {id} as its only voter")
                }
                Err(e) => tracing::warn!(target: "chronik_cluster", "not bootstrapping: {e}"),
            }
        }
        // Also after a restart: a learner that restarted before its promotion still needs it.
        let joiner = (!cfg.cluster.seed_nodes.is_empty()).then(|| {
            tokio::spawn(join_loop(
                raft.clone(),
                id,
                cfg.listeners.advertised_grpc_addr(),
                cfg.cluster.seed_nodes.clone(),
                Duration::from_millis(cfg.cluster.network.request_timeout_ms),
            ))
        });
        Ok(ControlNode {
            node_id: id,
            wal,
            raft,
            sm,
            server: None,
            observer,
            joiner,
            group_tasks,
            svc: admin_svc,
            groups: host.groups.clone(),
        })
    }
}

/// `chronik_cluster_nodes` on a control node: the voters of `__meta` in the membership this
/// node has (learners and data nodes not counted), updated at every membership change it sees.
async fn count_voters(raft: MetaRaft) {
    let mut rx = raft.metrics();
    loop {
        let voters = rx.borrow_watched().membership_config.membership().voter_ids().count();
        chronik_shared::metrics::set_control_voters(voters);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The guide's name for why a seed could not be reached.
fn failure_kind(s: &tonic::Status) -> String {
    let m = s.message().to_lowercase();
    let src = format!("{:?}", s).to_lowercase();
    if m.contains("connection refused") || src.contains("connection refused") {
        "ConnectionRefused".into()
    } else if s.code() == tonic::Code::DeadlineExceeded || m.contains("timed out") || src.contains("timed out") {
        "ConnectionTimeout".into()
    } else if m.contains("dns") || src.contains("failed to lookup") || src.contains("name or service") {
        "NameResolution".into()
    } else {
        format!("{:?}: {}", s.code(), s.message())
    }
}

/// A new node asks each seed in turn to add it (learner, caught up, voter), with backoff,
/// until one does. Never gives up: a seed that is down may come back.
async fn join_loop(
    raft: MetaRaft,
    id: u64,
    addr: String,
    seeds: Vec<chronik_shared::config::SeedNode>,
    timeout: Duration,
) {
    use chronik_proto::client::ControlClient;
    use chronik_proto::control::MemberRequest;
    let mut backoff = Duration::from_millis(200);
    loop {
        if raft.metrics().borrow_watched().membership_config.membership().voter_ids().any(|v| v == id) {
            tracing::info!(target: "chronik_cluster", "Node {id} is a voter of the control plane");
            return;
        }
        for seed in &seeds {
            if seed.id == id {
                continue;
            }
            // Short attempts: an unreachable seed is reported quickly. Joining is idempotent, so
            // an attempt that times out while the node catches up is simply made again.
            let client = ControlClient::new(vec![seed.addr()], timeout.min(Duration::from_secs(3)));
            let req = MemberRequest { node_id: id, addr: addr.clone() };
            match client
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.join_cluster(req).await }
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(target: "chronik_cluster", "Joined the control plane through seed node {seed}");
                    return;
                }
                Err(s) => {
                    let kind = failure_kind(&s);
                    let unreachable = kind.starts_with("Connection") || kind == "NameResolution";
                    if unreachable {
                        tracing::error!(target: "chronik_cluster", "Failed to join cluster: {kind}");
                        tracing::error!(target: "chronik_cluster", "Seed node {seed} unreachable");
                    } else {
                        // The seed answered; e.g. another node's join is still in progress.
                        tracing::warn!(target: "chronik_cluster", "Failed to join cluster: {kind}; retrying");
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Records this node's gRPC and HTTP addresses in the control plane (Raft membership holds
/// only the gRPC one), so `chronik-server doctor` can find every node's HTTP API. Retries
/// until the control plane has a leader that accepts it.
fn register_addresses(id: u64, cfg: &ChronikConfig) -> impl std::future::Future<Output = ()> + use<> {
    let mut seeds: Vec<String> = cfg.cluster.seed_nodes.iter().map(|s| s.addr()).collect();
    seeds.push(cfg.listeners.advertised_grpc_addr());
    let client =
        chronik_proto::client::ControlClient::new(seeds, Duration::from_millis(cfg.cluster.network.request_timeout_ms));
    let node = chronik_proto::control::NodeInfo {
        node_id: id,
        role: chronik_proto::control::NodeRole::Control as i32,
        addr: cfg.listeners.advertised_grpc_addr(),
        rack: cfg.node.rack.clone().unwrap_or_default(),
        alive: true,
        last_heartbeat_ms: 0,
        http_addr: cfg.listeners.advertised_http_addr(),
    };
    async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let req = chronik_proto::control::RegisterNodeRequest { node: Some(node.clone()) };
            let done = client
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.register_node(req).await }
                })
                .await;
            match done {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(target: "chronik_cluster", "recording node {id}'s addresses: {}; retrying", e.message())
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
