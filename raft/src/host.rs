//! One gRPC server per process for every role it runs: the Raft service for all groups plus
//! each role's own service. In standalone mode the control plane and the data plane share it.

use chronik_proto::raft::raft_service_server::RaftServiceServer;
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

use crate::service::{RaftGroups, RaftServiceImpl};

pub struct GrpcHost {
    pub groups: RaftGroups,
    routes: RoutesBuilder,
    node_id: u64,
    role: &'static str,
    max_message_size: usize,
}

impl GrpcHost {
    pub fn new(node_id: u64, role: &'static str, max_message_size: usize) -> Self {
        Self { groups: RaftGroups::default(), routes: RoutesBuilder::default(), node_id, role, max_message_size }
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub fn set_role(&mut self, role: &'static str) {
        self.role = role;
    }

    /// Where a role adds its own services (`routes().add_service(...)`).
    pub fn routes(&mut self) -> &mut RoutesBuilder {
        &mut self.routes
    }

    /// Serves every added service and the Raft service on `listener` until stopped.
    pub fn serve(mut self, listener: TcpListener) -> GrpcServer {
        let raft = RaftServiceServer::new(RaftServiceImpl::new(self.node_id, self.role, self.groups.clone()))
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        self.routes.add_service(raft);
        let routes = self.routes.routes();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await
        });
        GrpcServer { stop, handle }
    }
}

/// A running gRPC server.
pub struct GrpcServer {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcServer {
    /// Stops accepting, lets in-flight calls finish, and waits for the server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(e)) = self.handle.await {
            tracing::warn!(target: "chronik_server", "gRPC server ended with an error: {e}");
        }
    }
}

/// `preset` if the caller bound one already (tests use port 0), else a fresh listener on
/// `addr`.
pub async fn listener(addr: std::net::SocketAddr, preset: Option<TcpListener>) -> std::io::Result<TcpListener> {
    match preset {
        Some(l) => Ok(l),
        None => TcpListener::bind(addr).await,
    }
}
