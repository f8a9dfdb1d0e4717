//! Starting and stopping a data node: registration and heartbeats with the control plane, and
//! reconciling the replicas it runs with the ones it is assigned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chronik_proto::client::ControlClient;
use chronik_proto::control::{
    DecommissionNodeRequest, NodeHeartbeatRequest, NodeInfo, NodeRole, PartitionAssignment, RegisterNodeRequest,
    ReplicaStatus,
};
use chronik_proto::data::data_service_server::{DataService, DataServiceServer};
use chronik_raft::service::RaftGroup;
use chronik_raft::{GrpcHost, PeerPool};
use chronik_shared::config::ChronikConfig;
use chronik_shared::error::{ChronikError, ErrorCode};
use futures::StreamExt;
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::DataError;
use crate::partition::{Partition, PartitionSpec, group_name};
use crate::service::DataServiceImpl;

/// How many consecutive heartbeats must leave a replica out before it is deleted.
const UNASSIGNED_STRIKES: u32 = 3;
/// Replicas opened at the same time by one reconcile.
const STARTS_AT_ONCE: usize = 16;
/// Replicas stopped at the same time when the node stops.
const STOPS_AT_ONCE: usize = 64;

pub struct DataInner {
    pub node_id: u64,
    pub(crate) cfg: ChronikConfig,
    raft_config: Arc<openraft::Config>,
    partitions: RwLock<HashMap<String, Arc<Partition>>>,
    pub(crate) groups: chronik_raft::RaftGroups,
    pub(crate) pool: PeerPool,
    reconcile_lock: Mutex<()>,
    /// True once the control plane has accepted a heartbeat from this node.
    registered: tokio::sync::watch::Sender<bool>,
    /// Consecutive full assignment lists each running replica was missing from.
    unassigned: std::sync::Mutex<HashMap<String, u32>>,
    /// Free space of the data directory's file system (`wal.min_free_bytes`).
    disk: Arc<chronik_shared::wal::DiskGuard>,
}

impl DataInner {
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, ChronikError> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group_name(topic, partition))
            .cloned()
            .ok_or_else(|| {
                ChronikError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("partition {topic}-{partition} is not hosted on data node {}", self.node_id),
                )
            })
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn statuses(&self) -> Vec<ReplicaStatus> {
        self.partitions()
            .iter()
            .map(|p| {
                let is_leader = p.is_leader();
                let members = is_leader.then(|| p.members());
                ReplicaStatus {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    is_leader,
                    high_watermark: p.high_watermark().max(0) as u64,
                    log_start_offset: p.log_start_offset().max(0) as u64,
                    isr: if is_leader { p.isr() } else { Vec::new() },
                    voters: members.as_ref().map(|m| m.voters.iter().copied().collect()).unwrap_or_default(),
                    learners: members.as_ref().map(|m| m.learners.iter().copied().collect()).unwrap_or_default(),
                    term: if is_leader { p.term() } else { 0 },
                }
            })
            .collect()
    }

    /// Starts the replicas in `assignments` that do not run yet; with `full`, also stops and
    /// deletes the ones no longer assigned (their topic was deleted).
    pub async fn reconcile(&self, assignments: Vec<PartitionAssignment>, full: bool) {
        let _guard = self.reconcile_lock.lock().await;
        let wanted: HashSet<String> = assignments.iter().map(|a| group_name(&a.topic, a.partition)).collect();
        let mut to_start = Vec::new();
        for a in assignments {
            let name = group_name(&a.topic, a.partition);
            let running = self.partitions.read().unwrap_or_else(|p| p.into_inner()).get(&name).cloned();
            if let Some(p) = running {
                p.follow_assignment(&a.replicas, &a.replica_addrs);
                continue;
            }
            if !a.replicas.contains(&self.node_id) {
                continue; // Being moved off a node that no longer has it: nothing to start.
            }
            to_start.push((name, a));
        }
        // Started side by side, a partition listed twice would open its log twice.
        to_start.sort_by(|x, y| x.0.cmp(&y.0));
        to_start.dedup_by(|x, y| x.0 == y.0);
        // Opening a replica waits on the disk (reading its log back after a restart, syncing
        // a new one's files): several at once, not one after another.
        futures::stream::iter(to_start)
            .for_each_concurrent(STARTS_AT_ONCE, |(name, a)| async move {
                if let Err(e) = self.start_replica(&a).await {
                    tracing::error!(target: "chronik_cluster", "cannot start replica {name}: {e}");
                }
            })
            .await;
        if full {
            // Deleting a replica deletes data: only after it has been missing from several
            // consecutive assignment lists, never on one answer.
            let stale: Vec<Arc<Partition>> = {
                let mut counts = self.unassigned.lock().unwrap_or_else(|p| p.into_inner());
                counts.retain(|name, _| !wanted.contains(name));
                self.partitions()
                    .into_iter()
                    .filter(|p| !wanted.contains(&p.name))
                    .filter(|p| {
                        let c = counts.entry(p.name.clone()).or_insert(0);
                        *c += 1;
                        *c >= UNASSIGNED_STRIKES
                    })
                    .collect()
            };
            for p in stale {
                tracing::info!(target: "chronik_cluster", "Removing replica {} (no longer assigned to node {})", p.name, self.node_id);
                self.groups.remove(&p.name);
                self.partitions.write().unwrap_or_else(|p| p.into_inner()).remove(&p.name);
                p.shutdown().await;
                chronik_shared::metrics::forget_partition(&p.name);
                let dir = self.cfg.node.data_dir.join("wal").join(&p.name);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(target: "chronik_cluster", "could not delete {}: {e}", dir.display());
                }
            }
        }
    }

    async fn start_replica(&self, a: &PartitionAssignment) -> Result<(), ChronikError> {
        let name = group_name(&a.topic, a.partition);
        let cfg = &self.cfg;
        let spec = PartitionSpec {
            topic: a.topic.clone(),
            partition: a.partition,
            dir: cfg.node.data_dir.join("wal").join(&name),
            wal: chronik_shared::wal::WalOptions::from_config(&cfg.wal),
            raft: self.raft_config.clone(),
            pool: self.pool.clone(),
            chunk_size: cfg.cluster.raft.max_snapshot_chunk_size as usize,
            snapshot_timeout: Duration::from_secs(cfg.cluster.network.install_snapshot_timeout_secs),
            lag_threshold: Duration::from_millis(cfg.cluster.raft.replica_lag_time_max_ms),
            disk: self.disk.clone(),
            liveness: self.groups.liveness().clone(),
        };
        let part = Arc::new(Partition::open(self.node_id, spec).await?);
        self.groups.insert(
            name.clone(),
            Arc::new(RaftGroup {
                name: name.clone(),
                raft: part.raft.clone(),
                staging: cfg.node.data_dir.join("snapshots"),
                quiet: Some(part.quiet.clone()),
            }),
        );
        // The founder (first replica at creation) forms a new partition's group; the others,
        // and replicas added later, are added by its leader.
        if part.is_fresh() && a.founder == self.node_id {
            let members: BTreeMap<u64, BasicNode> = a
                .replicas
                .iter()
                .map(|r| (*r, BasicNode { addr: a.replica_addrs.get(r).cloned().unwrap_or_default() }))
                .collect();
            if let Err(e) = part.raft.initialize(members).await {
                tracing::warn!(target: "chronik_cluster", "partition {name}: not initialising: {e}");
            }
        }
        tracing::info!(target: "chronik_cluster", "Started replica {name} (replicas {:?})", a.replicas);
        self.partitions.write().unwrap_or_else(|p| p.into_inner()).insert(name, part);
        Ok(())
    }
}

pub struct DataNodeBuilder {
    config: ChronikConfig,
    listener: Option<TcpListener>,
    faults: Option<chronik_raft::Faults>,
}

pub struct DataNode {
    inner: Arc<DataInner>,
    /// The node's background loops: heartbeat, retention, quiescence, storage failure.
    loops: Vec<tokio::task::JoinHandle<()>>,
    server: Option<chronik_raft::GrpcServer>,
}

impl DataNode {
    pub fn builder(config: ChronikConfig) -> DataNodeBuilder {
        DataNodeBuilder { config, listener: None, faults: None }
    }

    pub fn inner(&self) -> &Arc<DataInner> {
        &self.inner
    }

    /// The address this node registers for its gRPC services (what gateways look it up by).
    pub fn advertised_addr(&self) -> String {
        self.inner.cfg.listeners.advertised_grpc_addr()
    }

    /// This node's DataService, for a gateway in the same process to call without gRPC.
    pub fn service(&self) -> Arc<dyn DataService> {
        Arc::new(DataServiceImpl { inner: self.inner.clone() })
    }

    /// The Raft groups of this node's gRPC server: its partition replicas (and `__meta` in
    /// standalone).
    pub fn raft_groups(&self) -> chronik_raft::RaftGroups {
        self.inner.groups.clone()
    }

    /// The free-space guard of this node's data directory.
    pub fn disk_guard(&self) -> Arc<chronik_shared::wal::DiskGuard> {
        self.inner.disk.clone()
    }

    /// Whether the control plane has accepted this node's registration, as it changes.
    pub fn registration(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.registered.subscribe()
    }

    /// Waits until the control plane has this node as a live data node (placement only uses
    /// live ones). False on timeout.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.registered.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await.is_ok_and(|r| r.is_ok())
    }

    /// Moves every replica of this node to the other data nodes and returns once none is
    /// left here (`node.decommission_on_shutdown`, `chronik-server admin decommission`). The
    /// heartbeats keep running meanwhile: they are how the replicas leave.
    pub async fn decommission(&self) {
        let control = control_client(&self.inner.cfg);
        let id = self.inner.node_id;
        let mut last_report = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            let req = DecommissionNodeRequest { node_id: id, cancel: false };
            match control.call(|mut c| async move { c.decommission_node(req).await }).await {
                Ok(r) => {
                    if r.remaining_replicas == 0 && r.moves_in_flight == 0 {
                        tracing::info!(target: "chronik_cluster", "Data node {id} decommissioned: no replica left on it");
                        return;
                    }
                    if last_report.elapsed() >= Duration::from_secs(5) {
                        tracing::info!(target: "chronik_cluster", "Decommissioning data node {id} before it stops: {} replica(s) left, {} move(s) in flight", r.remaining_replicas, r.moves_in_flight);
                        last_report = tokio::time::Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "chronik_cluster", "Decommissioning data node {id}: {}; retrying", e.message())
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub async fn shutdown(mut self) {
        self.loops.iter().for_each(|l| l.abort());
        self.inner.groups.liveness().stop();
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        // One after another, thousands of replicas took minutes to stop.
        futures::stream::iter(self.inner.partitions())
            .for_each_concurrent(STOPS_AT_ONCE, |p| async move { p.shutdown().await })
            .await;
    }
}

/// A node dropped without [`DataNode::shutdown`] (a test that panicked) still stops its
/// loops and pings, which would otherwise keep every group alive.
impl Drop for DataNode {
    fn drop(&mut self) {
        self.loops.iter().for_each(|l| l.abort());
        self.inner.groups.liveness().stop();
    }
}

impl DataNodeBuilder {
    pub fn listener(mut self, l: TcpListener) -> Self {
        self.listener = Some(l);
        self
    }

    /// Sends this node's Raft traffic through a test cluster's fault layer.
    pub fn faults(mut self, f: chronik_raft::Faults) -> Self {
        self.faults = Some(f);
        self
    }

    pub async fn start(mut self) -> Result<DataNode, DataError> {
        let addr = self.config.listeners.grpc;
        let listener = chronik_raft::host::listener(addr, self.listener.take())
            .await
            .map_err(|source| DataError::Bind { addr, source })?;
        let mut host =
            GrpcHost::new(self.config.node.id, "data", self.config.cluster.network.max_message_size as usize);
        let mut node = self.start_on(&mut host).await?;
        node.server = Some(host.serve(listener));
        Ok(node)
    }

    /// Adds the data node's services and groups to a gRPC host shared with other roles.
    pub async fn start_on(self, host: &mut GrpcHost) -> Result<DataNode, DataError> {
        let cfg = self.config;
        let raft_config =
            chronik_raft::raft_config(&cfg, openraft::SnapshotPolicy::Never).map_err(DataError::Config)?;
        let wal_root = cfg.node.data_dir.join("wal");
        std::fs::create_dir_all(&wal_root)?;
        check_partition_logs(&wal_root, !cfg.wal.verify_sealed_on_start)?;
        let inner = Arc::new(DataInner {
            node_id: cfg.node.id,
            raft_config: Arc::new(raft_config),
            partitions: RwLock::default(),
            groups: host.groups.clone(),
            pool: match self.faults {
                Some(f) => PeerPool::for_config(&cfg).with_faults(cfg.node.id, f),
                None => PeerPool::for_config(&cfg),
            },
            reconcile_lock: Mutex::new(()),
            registered: tokio::sync::watch::channel(false).0,
            unassigned: Default::default(),
            disk: Arc::new(chronik_shared::wal::DiskGuard::new(cfg.node.data_dir.clone(), cfg.wal.min_free_bytes)),
            cfg,
        });
        let max = inner.cfg.cluster.network.max_message_size as usize;
        host.routes().add_service(
            DataServiceServer::new(DataServiceImpl { inner: inner.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
        let mut loops = vec![
            tokio::spawn(heartbeat_loop(inner.clone())),
            tokio::spawn(retention_loop(inner.clone())),
            tokio::spawn(storage_failure_loop(inner.clone())),
        ];
        let r = &inner.cfg.cluster.raft;
        inner.groups.liveness().start(
            inner.node_id,
            inner.pool.clone(),
            inner.groups.clone(),
            Duration::from_millis(r.heartbeat_interval_ms),
            Duration::from_millis(r.election_timeout_ms),
        );
        loops.push(tokio::spawn(crate::quiesce::quiesce_loop(inner.clone())));
        Ok(DataNode { inner, loops, server: None })
    }
}

/// The control plane as this node finds it: its seed nodes, or itself in standalone.
fn control_client(cfg: &ChronikConfig) -> ControlClient {
    let seeds: Vec<String> = cfg.cluster.seed_nodes.iter().map(|s| s.addr()).collect();
    let seeds = if seeds.is_empty() { vec![cfg.listeners.advertised_grpc_addr()] } else { seeds };
    ControlClient::new(seeds, Duration::from_millis(cfg.cluster.network.request_timeout_ms))
}

/// Registers with the control plane, then reports replicas and applies assignments at every
/// heartbeat. Never gives up: a control plane that is down is waited for.
async fn heartbeat_loop(inner: Arc<DataInner>) {
    let cfg = &inner.cfg;
    let control = control_client(cfg);
    let interval = Duration::from_millis(cfg.cluster.heartbeat.interval_ms);
    let me = NodeInfo {
        node_id: inner.node_id,
        role: NodeRole::Data as i32,
        addr: cfg.listeners.advertised_grpc_addr(),
        rack: cfg.node.rack.clone().unwrap_or_default(),
        alive: true,
        last_heartbeat_ms: 0,
        http_addr: cfg.listeners.advertised_http_addr(),
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let req = RegisterNodeRequest { node: Some(me.clone()) };
        match control
            .call(|mut c| {
                let req = req.clone();
                async move { c.register_node(req).await }
            })
            .await
        {
            Ok(_) => break,
            Err(e) => {
                tracing::error!(target: "chronik_cluster", "Failed to join cluster: {}", e.message());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!(target: "chronik_cluster", "Data node {} registered with the control plane", inner.node_id);
    if cfg.node.decommission_on_shutdown {
        // A node that decommissions itself when it stops takes replicas again when it starts
        // (scaled out once more, or restarted before its decommission finished).
        let req = DecommissionNodeRequest { node_id: inner.node_id, cancel: true };
        if let Err(e) = control.call(|mut c| async move { c.decommission_node(req).await }).await {
            tracing::warn!(target: "chronik_cluster", "Could not end this node's earlier decommission: {}; run `chronik-server admin decommission --cancel --node-id {}`", e.message(), inner.node_id);
        }
    }
    loop {
        let req = NodeHeartbeatRequest {
            node_id: inner.node_id,
            role: NodeRole::Data as i32,
            replicas: inner.statuses(),
            refusing_writes: inner.disk.check().err().map(|e| e.message).unwrap_or_default(),
        };
        match control
            .call(|mut c| {
                let req = req.clone();
                async move { c.node_heartbeat(req).await }
            })
            .await
        {
            Ok(resp) => {
                inner.registered.send_replace(true);
                // What this node knows of the cluster from the answer: the data nodes it shares
                // a partition with, itself included (the answer names no other nodes).
                let mut known: HashSet<u64> =
                    resp.assignments.iter().flat_map(|a| a.replicas.iter().copied()).collect();
                known.insert(inner.node_id);
                chronik_shared::metrics::set_known_nodes(known.len());
                inner.reconcile(resp.assignments, true).await
            }
            Err(e) => {
                tracing::warn!(target: "chronik_cluster", "heartbeat to the control plane failed: {}", e.message())
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// How often a node looks whether its disk still takes writes.
const STORAGE_CHECK: Duration = Duration::from_millis(250);

/// While this node's disk guard refuses writes (a log fail-stopped after a failed sync, until
/// restart; or free space under `wal.min_free_bytes`), the partitions it leads refuse every
/// produce: before this loop they stayed its until an operator restarted the node. They are
/// handed to replicas that can take them, as Kafka moves leaders off a failed log directory.
async fn storage_failure_loop(inner: Arc<DataInner>) {
    loop {
        tokio::time::sleep(STORAGE_CHECK).await;
        let Err(why) = inner.disk.check() else { continue };
        for p in inner.partitions() {
            if let Err(e) = p.hand_over(&why.message).await {
                tracing::warn!(target: "chronik_cluster", partition = %p.name, "could not hand leadership over: {e}");
            }
        }
    }
}

/// Refuses to start on a partition log that is corrupt anywhere but its torn tail: serving
/// around the damage could hand out wrong data, and the operator has to decide. Sealed
/// segments whose index agrees with them are not read unless `wal.verify_sealed_on_start`
/// (the scrub and every read check their records).
fn check_partition_logs(wal_root: &std::path::Path, trust_sealed: bool) -> Result<(), DataError> {
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(wal_root)?
        .flatten()
        .filter(|e| e.file_name() != "__meta")
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    // Reading every log back is what makes a restart over a large WAL slow: one reader per
    // log, a few at once, keeps more of the disk busy than one after another.
    let next = std::sync::Mutex::new(dirs.into_iter());
    let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).min(8);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..readers)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let Some(dir) = next.lock().unwrap_or_else(|p| p.into_inner()).next() else { return Ok(()) };
                        chronik_shared::wal::check_before_open(&dir, trust_sealed)
                            .map_err(|e| DataError::Corrupt(e.to_string()))?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| Err(DataError::Corrupt("a WAL check panicked".into()))))
    })
}

/// Applies retention to every replica on this node, one at a time, every
/// `kafka.retention_check_interval_ms`.
async fn retention_loop(inner: Arc<DataInner>) {
    let kafka = inner.cfg.kafka.clone();
    if kafka.retention_ms < 0 && kafka.retention_bytes < 0 {
        return;
    }
    let every = Duration::from_millis(kafka.retention_check_interval_ms.max(10));
    loop {
        tokio::time::sleep(every).await;
        for p in inner.partitions() {
            let now = chronik_shared::http::now_ms() as i64;
            if let Err(e) = p.enforce_retention(kafka.retention_ms, kafka.retention_bytes, now).await {
                tracing::warn!(target: "chronik_server", partition = %p.name, "retention check failed: {e}");
            }
        }
    }
}
