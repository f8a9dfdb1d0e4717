//! The gateway's membership in the cluster: RegisterNode (role GATEWAY, address = the
//! advertised Kafka address) retried in the background until the control plane answers, then
//! NodeHeartbeat every `cluster.heartbeat.interval_ms`, registering again after a failed beat.

use std::time::Duration;

use chronik_proto::client::ControlClient;
use chronik_proto::control::{NodeHeartbeatRequest, NodeInfo, NodeRole, RegisterNodeRequest};

/// Who this gateway is, as registered.
pub(crate) struct Membership {
    pub control: ControlClient,
    pub node_id: u64,
    pub kafka_addr: String,
    pub rack: String,
    pub http_addr: String,
    pub interval: Duration,
}

impl Membership {
    /// Registers and heartbeats until the task is aborted.
    pub async fn run(self) {
        let mut registered = false;
        let mut failing_since: Option<std::time::Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = if registered { self.beat().await } else { self.register().await };
            match result {
                Ok(()) => {
                    if !registered {
                        tracing::info!(target: "chronik_cluster", "gateway {} registered with the control plane as {}", self.node_id, self.kafka_addr);
                    } else if failing_since.is_some() {
                        tracing::info!(target: "chronik_cluster", "gateway {} reaches the control plane again", self.node_id);
                    }
                    registered = true;
                    failing_since = None;
                    backoff = Duration::from_millis(100);
                    tokio::time::sleep(self.interval).await;
                }
                Err(e) => {
                    let first = failing_since.is_none();
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    let what = if registered { "heartbeat" } else { "registration" };
                    if first {
                        tracing::warn!(target: "chronik_cluster", "gateway {} {what} failed: {e}; retrying in the background (Kafka clients are served meanwhile)", self.node_id);
                    } else {
                        tracing::debug!(target: "chronik_cluster", "gateway {} {what} still failing after {:?}: {e}", self.node_id, since.elapsed());
                    }
                    // A control plane that lost us (or a new leader) needs the registration again.
                    registered = false;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.interval.max(Duration::from_secs(1)));
                }
            }
        }
    }

    async fn register(&self) -> Result<(), tonic::Status> {
        let node = NodeInfo {
            node_id: self.node_id,
            role: NodeRole::Gateway as i32,
            addr: self.kafka_addr.clone(),
            rack: self.rack.clone(),
            alive: true,
            last_heartbeat_ms: 0,
            http_addr: self.http_addr.clone(),
        };
        self.control
            .call(|mut c| {
                let req = RegisterNodeRequest { node: Some(node.clone()) };
                async move { c.register_node(req).await }
            })
            .await
            .map(|_| ())
    }

    async fn beat(&self) -> Result<(), tonic::Status> {
        self.control
            .call(|mut c| {
                let req = NodeHeartbeatRequest {
                    node_id: self.node_id,
                    role: NodeRole::Gateway as i32,
                    replicas: Vec::new(),
                    refusing_writes: String::new(),
                };
                async move { c.node_heartbeat(req).await }
            })
            .await
            .map(|_| ())
    }
}
