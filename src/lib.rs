//! `chronik-server` as a library: each role started from its config, and standalone mode
//! (all three roles in one process), used by the binary and by the integration tests alike.
//! `admin_auth.rs` decides which key guards the admin routes (standalone makes its own).

pub mod admin_auth;
pub mod health_probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chronik_control_plane::ControlNode;
use chronik_data_plane::DataNode;
use chronik_gateway::Gateway;
use chronik_proto::admin::{ControlView, RemoteControl};
use chronik_proto::client::ControlClient;
use chronik_raft::GrpcHost;
use chronik_shared::admin::{self, AdminApi};
use chronik_shared::config::{ChronikConfig, SeedNode};
use chronik_shared::http::{self, NodeStatus};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Standalone gives each role its own node id (`node.id`, +1, +2): ids are unique across
/// roles, and the control plane keeps data nodes and gateways by id.
pub struct Standalone {
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// `data_dir/admin.token`, when standalone made its own admin API key (no key in `[auth]`).
    pub admin_token_file: Option<PathBuf>,
    control: ControlNode,
    data: DataNode,
    gateway: Gateway,
    grpc: chronik_raft::GrpcServer,
    http: RunningHttp,
}

async fn bind(addr: SocketAddr, what: &str, key: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for {what}: {e}; is another process using the port? Change {key}")
    })
}

impl Standalone {
    pub async fn start(mut cfg: ChronikConfig) -> Result<Standalone, String> {
        let (auth, admin_token_file) = admin_auth::standalone_auth(&cfg).map_err(|e| e.to_string())?;
        let grpc_l = bind(cfg.listeners.grpc, "gRPC", "listeners.grpc").await?;
        let kafka_l = bind(cfg.listeners.kafka, "Kafka", "listeners.kafka").await?;
        let http_l = http::bind(cfg.listeners.http).await?;
        let grpc_addr = grpc_l.local_addr().map_err(|e| e.to_string())?;
        let kafka_addr = kafka_l.local_addr().map_err(|e| e.to_string())?;
        let http_addr = http_l.local_addr().map_err(|e| e.to_string())?;
        cfg.listeners.advertised_grpc.get_or_insert_with(|| grpc_addr.to_string());
        cfg.listeners.advertised_kafka.get_or_insert_with(|| kafka_addr.to_string());
        cfg.cluster.seed_nodes.clear();

        let base_id = cfg.node.id;
        let mut host = GrpcHost::new(base_id, "standalone", cfg.cluster.network.max_message_size as usize);
        let control = ControlNode::builder(cfg.clone()).start_on(&mut host).await.map_err(|e| e.to_string())?;

        let seed = SeedNode { id: base_id, host: grpc_addr.ip().to_string(), port: grpc_addr.port() };
        let mut data_cfg = cfg.clone();
        data_cfg.node.id = base_id + 1;
        data_cfg.cluster.seed_nodes = vec![seed.clone()];
        let data = DataNode::builder(data_cfg).start_on(&mut host).await.map_err(|e| e.to_string())?;

        let grpc = host.serve(grpc_l);

        // Clients are served once topics can be placed: the Kafka port is bound already, so
        // early connections wait in its backlog rather than being refused.
        control.wait_for_leader(Duration::from_secs(10)).await;
        if !data.wait_registered(Duration::from_secs(10)).await {
            tracing::warn!(target: "chronik_server", "the data node has not registered with the control plane yet; topic creation waits for it");
        }

        let mut gw_cfg = cfg.clone();
        gw_cfg.node.id = base_id + 2;
        gw_cfg.cluster.seed_nodes = vec![seed];
        let gateway = Gateway::builder(gw_cfg)
            .kafka_listener(kafka_l)
            .local_data_node(data.advertised_addr(), data.service())
            .start()
            .await
            .map_err(|e| e.to_string())?;

        let status =
            NodeStatus::new(base_id, vec!["control", "data", "gateway"]).with_config(&cfg).with_wal_scrub(&cfg);
        control_checks(&status, &control);
        disk_check(&status, data.disk_guard());
        let remote = RemoteControl::new(
            base_id,
            ControlClient::new(vec![grpc_addr.to_string()], request_timeout(&cfg)),
            cfg.cluster.network.max_message_size as usize,
        );
        let api = AdminApi::new(status)
            .view(control.cluster_view(request_timeout(&cfg)))
            .control(Arc::new(remote))
            .local(Arc::new(control.raft_groups()));
        let http = HttpServer::new(http_l).serve(api, &auth);
        tracing::info!(target: "chronik_server", "Chronik standalone ready: Kafka on {kafka_addr}, HTTP on {http_addr}, gRPC on {grpc_addr}, data in {}", cfg.node.data_dir.display());
        if let Some(path) = &admin_token_file {
            tracing::info!(target: "chronik_server", "Admin API token (role admin) is in {}: curl -H \"Authorization: Bearer $(cat {})\" http://{http_addr}/admin/node/info", path.display(), path.display());
        }
        Ok(Standalone { kafka_addr, http_addr, grpc_addr, admin_token_file, control, data, gateway, grpc, http })
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.http.stop().await;
        self.data.shutdown().await;
        self.grpc.stop().await;
        self.control.shutdown().await;
    }
}

/// Runs one role until Ctrl-C / SIGTERM. Its HTTP port is bound first (a taken port fails
/// fast) and answers once the role has started.
pub async fn run_role(role: &str, cfg: ChronikConfig) -> Result<(), String> {
    let auth = admin_auth::role_auth(&cfg).map_err(|e| e.to_string())?;
    let http_l = http::bind(cfg.listeners.http).await?;
    let remote = Arc::new(remote_control(&cfg));
    let view = Arc::new(ControlView(remote_control(&cfg)));
    let http = HttpServer::new(http_l);
    match role {
        "control" => {
            let node = ControlNode::builder(cfg.clone()).start().await.map_err(|e| e.to_string())?;
            let status = NodeStatus::new(cfg.node.id, vec!["control"]).with_config(&cfg).with_wal_scrub(&cfg);
            control_checks(&status, &node);
            let api = AdminApi::new(status)
                .view(node.cluster_view(request_timeout(&cfg)))
                .control(remote)
                .local(Arc::new(node.raft_groups()));
            let running = http.serve(api, &auth);
            wait_for_signal().await;
            running.stop().await;
            node.shutdown().await;
        }
        "data" => {
            let node = DataNode::builder(cfg.clone()).start().await.map_err(|e| e.to_string())?;
            let status = NodeStatus::new(cfg.node.id, vec!["data"]).with_config(&cfg).with_wal_scrub(&cfg);
            let registered = node.registration();
            status.add_check(
                "registered",
                Arc::new(move || {
                    if *registered.borrow() {
                        Ok("registered with the control plane".to_string())
                    } else {
                        Err("not registered with the control plane yet; check cluster.seed_nodes and that the control plane has a leader".to_string())
                    }
                }),
            );
            disk_check(&status, node.disk_guard());
            let api = AdminApi::new(status).view(view).control(remote).local(Arc::new(node.raft_groups()));
            let running = http.serve(api, &auth);
            wait_for_signal().await;
            if cfg.node.decommission_on_shutdown {
                tracing::info!(target: "chronik_cluster", "Stopping: moving this node's replicas away first (node.decommission_on_shutdown); a second signal stops at once");
                tokio::select! {
                    () = node.decommission() => {}
                    () = wait_for_signal() => tracing::warn!(target: "chronik_cluster", "Stopping before the decommission finished: the replicas left here are under-replicated until it is run again"),
                }
            }
            running.stop().await;
            node.shutdown().await;
        }
        _ => {
            let gw = Arc::new(Gateway::builder(cfg.clone()).start().await.map_err(|e| e.to_string())?);
            let status = NodeStatus::new(cfg.node.id, vec!["gateway"]).with_config(&cfg);
            let kafka = gw.kafka_addr();
            status.add_check("kafka_listener", Arc::new(move || Ok(format!("serving Kafka on {kafka}"))));
            let g = gw.clone();
            status.add_check("control_plane", Arc::new(move || metadata_check(g.metadata_age())));
            let running = http.serve(AdminApi::new(status).view(view).control(remote), &auth);
            wait_for_signal().await;
            // The health check holds the gateway: stop serving HTTP first.
            running.stop().await;
            if let Ok(gw) = Arc::try_unwrap(gw) {
                gw.shutdown().await;
            }
        }
    }
    Ok(())
}

/// A role's HTTP port: bound before the role starts (a taken port fails fast), served once
/// the role is up.
struct HttpServer(TcpListener);

struct RunningHttp(oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>);

impl HttpServer {
    fn new(l: TcpListener) -> Self {
        HttpServer(l)
    }

    fn serve(self, api: AdminApi, auth: &chronik_shared::auth::Auth) -> RunningHttp {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = http::serve(self.0, admin::router(api, auth), async move {
            let _ = rx.await;
        });
        RunningHttp(tx, handle)
    }
}

impl RunningHttp {
    async fn stop(self) {
        let _ = self.0.send(());
        let _ = self.1.await;
    }
}

fn request_timeout(cfg: &ChronikConfig) -> Duration {
    Duration::from_millis(cfg.cluster.network.request_timeout_ms)
}

/// The control plane as the admin API reaches it: through the seeds, or this node itself
/// (a bootstrapping control node has none).
fn remote_control(cfg: &ChronikConfig) -> RemoteControl {
    let mut seeds: Vec<String> = cfg.cluster.seed_nodes.iter().map(|s| s.addr()).collect();
    if seeds.is_empty() {
        seeds.push(cfg.listeners.advertised_grpc_addr());
    }
    RemoteControl::new(
        cfg.node.id,
        ControlClient::new(seeds, request_timeout(cfg)),
        cfg.cluster.network.max_message_size as usize,
    )
}

/// A gateway routes by its copy of the cluster metadata, refreshed every few seconds.
fn metadata_check(age: Option<Duration>) -> Result<String, String> {
    match age {
        Some(a) if a <= Duration::from_secs(30) => Ok(format!("cluster metadata refreshed {} ms ago", a.as_millis())),
        Some(a) => Err(format!(
            "cluster metadata is {} s old: the control plane is unreachable (check cluster.seed_nodes and the control nodes' health)",
            a.as_secs()
        )),
        None => {
            Err("no cluster metadata yet: the control plane has not answered (check cluster.seed_nodes)".to_string())
        }
    }
}

/// Produce is refused while the data directory's disk is nearly full (`wal.min_free_bytes`).
fn disk_check(status: &NodeStatus, guard: Arc<chronik_shared::wal::DiskGuard>) {
    status.add_check(
        "disk_space",
        Arc::new(move || match guard.check() {
            Ok(()) => Ok(format!("{} MiB free", guard.free_bytes().unwrap_or(0) >> 20)),
            Err(e) => Err(e.message),
        }),
    );
}

/// A control node is healthy while `__meta` has a leader.
fn control_checks(status: &NodeStatus, node: &ControlNode) {
    let raft = node.raft().clone();
    status.add_check(
        "control_plane_leader",
        Arc::new(move || {
            use openraft::async_runtime::WatchReceiver;
            let m = raft.metrics().borrow_watched().clone();
            match m.current_leader {
                Some(l) => Ok(format!("node {l} leads __meta in term {}", m.current_term)),
                None => {
                    Err(format!("the control plane has no leader (term {}); see the guide's Issue 1", m.current_term))
                }
            }
        }),
    );
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!(target: "chronik_server", "Shutting down");
}
