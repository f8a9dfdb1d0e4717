//! The admin REST API every process serves (design §1, §6; the operations guide's Diagnostic
//! Commands and Emergency Procedures).
//!
//! - `types.rs`: request and response bodies; their JSON schemas come from the same definitions.
//! - `routes.rs`: the one table of routes — method, path, required role, bodies, handler. The
//!   axum router and `/admin/openapi.json` (`openapi.rs`) are both built from it, so the
//!   document cannot drift from what is served.
//!
//! What a route can do depends on the process: the three traits below are implemented by the
//! roles (a control node answers cluster reads from its own Raft state, a data node or gateway
//! asks the control plane; control and data nodes have local Raft groups to snapshot and
//! compact; a gateway has none). A missing part answers 409 with the reason.

mod openapi;
mod routes;
pub mod types;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use openapi::openapi_document;
pub use routes::router;
use types::*;

use crate::error::ChronikError;
use crate::http::NodeStatus;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reads of the cluster as this process sees it.
pub trait ClusterView: Send + Sync + 'static {
    fn members(&self) -> BoxFuture<'_, Result<Members, ChronikError>>;
    fn leader(&self) -> BoxFuture<'_, Result<LeaderInfo, ChronikError>>;
    /// `__meta` first, then every data partition.
    fn partitions(&self) -> BoxFuture<'_, Result<Vec<PartitionRow>, ChronikError>>;
    fn topics(&self) -> BoxFuture<'_, Result<Vec<TopicView>, ChronikError>>;
}

/// Changes to the cluster, made through the control-plane leader.
pub trait ClusterControl: Send + Sync + 'static {
    fn create_topic(&self, req: CreateTopic) -> BoxFuture<'_, Result<TopicView, ChronikError>>;
    fn delete_topic(&self, name: String) -> BoxFuture<'_, Result<TopicDeleted, ChronikError>>;
    fn transfer_leader(&self, req: TransferLeader) -> BoxFuture<'_, Result<Transferred, ChronikError>>;
    fn add_learner(&self, req: AddLearner) -> BoxFuture<'_, Result<Members, ChronikError>>;
    fn promote(&self, node_id: u64) -> BoxFuture<'_, Result<Members, ChronikError>>;
    fn remove_member(&self, node_id: u64) -> BoxFuture<'_, Result<Members, ChronikError>>;
}

/// The Raft groups this process hosts (`__meta` on control nodes, partitions on data nodes).
pub trait LocalGroups: Send + Sync + 'static {
    fn states(&self) -> Vec<RaftGroupState>;
    fn snapshot_info(&self, target: &GroupTarget) -> Result<Vec<GroupSnapshot>, ChronikError>;
    /// Builds a snapshot of each selected group now and answers once they exist.
    fn snapshot(&self, target: GroupTarget) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, ChronikError>>;
    /// Drops log entries the latest snapshot covers.
    fn compact(&self, target: GroupTarget) -> BoxFuture<'_, Result<Vec<GroupSnapshot>, ChronikError>>;
}

/// What a process's admin routes are answered from.
#[derive(Clone)]
pub struct AdminApi {
    pub status: NodeStatus,
    pub view: Option<Arc<dyn ClusterView>>,
    pub control: Option<Arc<dyn ClusterControl>>,
    pub local: Option<Arc<dyn LocalGroups>>,
}

impl AdminApi {
    pub fn new(status: NodeStatus) -> AdminApi {
        AdminApi { status, view: None, control: None, local: None }
    }

    pub fn view(mut self, v: Arc<dyn ClusterView>) -> Self {
        self.view = Some(v);
        self
    }

    pub fn control(mut self, c: Arc<dyn ClusterControl>) -> Self {
        self.control = Some(c);
        self
    }

    pub fn local(mut self, l: Arc<dyn LocalGroups>) -> Self {
        self.local = Some(l);
        self
    }
}
