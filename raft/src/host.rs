//! One gRPC server per process for every role it runs: the Raft service for all groups plus
//! each role's own service. In standalone mode the control plane and the data plane share it.
//!
//! Every host also serves the standard `grpc.health.v1.Health` (SERVING for "" and for each
//! Chronik service it runs) and server reflection, v1 and v1alpha, so that
//! `grpcurl -plaintext node:9093 list` and `grpcurl ... chronik.raft.RaftService/Heartbeat`
//! work against any node. Reflection knows the descriptors of all three Chronik services but
//! lists only the services this host actually serves.

use std::convert::Infallible;

use chronik_proto::raft::raft_service_server::RaftServiceServer;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_reflection::pb::{v1, v1alpha};

use crate::service::{RaftGroups, RaftServiceImpl};

/// Calls a peer may reset before this server takes them up, before it closes the connection
/// (h2's rapid-reset guard, see [`GrpcHost::serve`]).
const PENDING_RESETS: usize = 10_000;

pub struct GrpcHost {
    pub groups: RaftGroups,
    services: Services,
    node_id: u64,
    role: &'static str,
    max_message_size: usize,
}

/// The services a host serves, kept with their gRPC names for health and reflection.
#[derive(Default)]
pub struct Services {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
}

impl Services {
    pub fn add_service<S>(&mut self, svc: S) -> &mut Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(svc);
        self
    }
}

impl GrpcHost {
    pub fn new(node_id: u64, role: &'static str, max_message_size: usize) -> Self {
        Self { groups: RaftGroups::default(), services: Services::default(), node_id, role, max_message_size }
    }

    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub fn set_role(&mut self, role: &'static str) {
        self.role = role;
    }

    /// Where a role adds its own services (`routes().add_service(...)`).
    pub fn routes(&mut self) -> &mut Services {
        &mut self.services
    }

    /// Serves every added service, the Raft service, health and reflection on `listener`
    /// until stopped.
    pub fn serve(mut self, listener: TcpListener) -> GrpcServer {
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let raft =
            RaftServiceServer::new(RaftServiceImpl::new(self.node_id, self.role, self.groups.clone(), stopping_rx))
                .max_decoding_message_size(self.max_message_size)
                .max_encoding_message_size(self.max_message_size);
        self.services.add_service(raft);
        let chronik: Vec<&'static str> = self.services.names.clone();

        let (health, health_service) = tonic_health::server::health_reporter();
        self.services.add_service(health_service);
        let mut listed = chronik.clone();
        listed.extend([
            tonic_health::pb::health_server::SERVICE_NAME,
            v1::server_reflection_server::SERVICE_NAME,
            v1alpha::server_reflection_server::SERVICE_NAME,
        ]);
        match (reflection(&listed).build_v1(), reflection(&listed).build_v1alpha()) {
            (Ok(v1), Ok(v1alpha)) => {
                self.services.add_service(v1);
                self.services.add_service(v1alpha);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(target: "chronik_raft", "gRPC reflection is off: the embedded service descriptors do not load: {e}")
            }
        }

        let routes = self.services.routes.routes();
        let incoming = incoming(listener);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let reporter = health.clone();
        let serving = chronik.clone();
        let handle = tokio::spawn(async move {
            // Before serving: the listener is bound already, so early callers wait in its
            // backlog and never see a Chronik service as unknown to the health service.
            for name in &serving {
                reporter.set_service_status(name, ServingStatus::Serving).await;
            }
            tonic::transport::Server::builder()
                // A peer cut off for a few seconds gives up (resets) its calls to this node;
                // once the network heals those resets arrive in one burst, and h2's default
                // of 20 pending resets answers it with GOAWAY "too_many_resets", failing every
                // call in flight on the connection. The callers are our own nodes.
                .http2_max_pending_accept_reset_streams(Some(PENDING_RESETS))
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                })
                .await
        });
        GrpcServer { stop, stopping, handle, health, services: chronik }
    }
}

/// The connections of `listener`, with TCP_NODELAY. `Server::tcp_nodelay` only reaches
/// connections the server accepts itself; without it the small trailers frame of every answer
/// waited for the peer's delayed ACK (~40 ms stalls on one fetch in eight).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Reflection over the descriptors of every Chronik service, health and reflection itself,
/// listing only `names`.
fn reflection(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(chronik_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(v1alpha::FILE_DESCRIPTOR_SET);
    names.iter().fold(builder, |b, name| b.with_service_name(*name))
}

/// A running gRPC server.
pub struct GrpcServer {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Ends the pipelined replication streams peers keep open.
    stopping: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    health: HealthReporter,
    services: Vec<&'static str>,
}

impl GrpcServer {
    /// Reports NOT_SERVING to health watchers and ends their streams, stops accepting, lets
    /// in-flight calls finish, and waits for the server to end.
    pub async fn stop(mut self) {
        // A health Watch never ends by itself: without this, shutdown would wait for it.
        for name in std::iter::once("").chain(self.services.iter().copied()) {
            self.health.set_service_status(name, ServingStatus::NotServing).await;
            self.health.clear_service_status(name).await;
        }
        let _ = self.stopping.send(true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        use futures::StreamExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let conn = accepted.next().await.expect("a connection").expect("accepted");
        assert!(conn.nodelay().expect("nodelay"), "an accepted gRPC connection waits to coalesce small writes");
    }

    /// A host lists only what it serves: here no role added a service, so reflection shows
    /// Raft, health and itself, and health does not know the control or data service.
    #[tokio::test]
    async fn a_host_lists_only_the_services_it_serves() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = GrpcHost::new(7, "data", 4 << 20).serve(listener);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");

        let mut reflection = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let req = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers =
            reflection.server_reflection_info(futures::stream::iter(vec![req])).await.expect("reflection").into_inner();
        let answer = answers.message().await.expect("answer").expect("one answer").message_response;
        let Some(MessageResponse::ListServicesResponse(list)) = answer else { panic!("{answer:?}") };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "chronik.raft.RaftService",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"
            ]
        );

        let mut health = HealthClient::new(channel);
        let raft =
            health.check(HealthCheckRequest { service: "chronik.raft.RaftService".into() }).await.expect("check");
        assert_eq!(raft.into_inner().status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
        let control = health.check(HealthCheckRequest { service: "chronik.control.ControlService".into() }).await;
        assert_eq!(control.expect_err("not served here").code(), tonic::Code::NotFound);
        server.stop().await;
    }

    /// A gateway cut off from a data node gives its calls up; when the network heals, the
    /// resets of all of them arrive at once. The connection must survive them: h2's default
    /// guard closed it ("too_many_resets") and failed every call in flight on it.
    #[tokio::test]
    async fn a_burst_of_reset_calls_keeps_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = GrpcHost::new(7, "data", 4 << 20).serve(listener);
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let connection = tokio::spawn(connection);
        let check = || {
            http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("request")
        };
        // Sent and reset in one go, before the server can take any of them up.
        for _ in 0..200 {
            client = client.ready().await.expect("ready");
            let (response, mut body) = client.send_request(check(), false).expect("send");
            body.send_reset(h2::Reason::CANCEL);
            drop(response);
        }
        client = client.ready().await.expect("the connection is still open");
        let (response, mut body) = client.send_request(check(), false).expect("send");
        // An empty HealthCheckRequest: not compressed, zero bytes long.
        body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).expect("body");
        let response = response.await.expect("the call after the resets is answered");
        assert_eq!(response.status(), 200);
        let mut answer = response.into_body();
        while let Some(chunk) = answer.data().await {
            chunk.expect("answer body");
        }
        let trailers = answer.trailers().await.expect("trailers").expect("grpc status");
        assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
        drop(client);
        server.stop().await;
        connection.abort();
    }
}
