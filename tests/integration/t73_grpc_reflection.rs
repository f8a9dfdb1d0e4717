//! The gRPC port answers the operations guide's grpcurl commands: server reflection (v1 and
//! v1alpha) lists exactly the services standalone runs and resolves their descriptors, the
//! standard health service reports SERVING, and `chronik.raft.RaftService/Heartbeat` answers
//! `{"node_id": 1}`. Checked with tonic clients, as grpcurl would call them.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use chronik_proto::raft::HeartbeatRequest;
use chronik_proto::raft::raft_service_client::RaftServiceClient;
use chronik_server::Standalone;
use harness::*;
use prost::Message;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::{v1, v1alpha};

/// What standalone serves on its one gRPC port (control and data plane share it).
const STANDALONE_SERVICES: [&str; 6] = [
    "chronik.control.ControlService",
    "chronik.data.DataService",
    "chronik.raft.RaftService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn expected_services() -> BTreeSet<String> {
    STANDALONE_SERVICES.iter().map(|s| s.to_string()).collect()
}

/// One request on the v1 reflection stream, as `grpcurl` sends it.
async fn try_reflect_v1(
    channel: Channel,
    request: v1::server_reflection_request::MessageRequest,
) -> Result<v1::server_reflection_response::MessageResponse, tonic::Status> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut stream = client.server_reflection_info(futures::stream::iter(vec![req])).await?.into_inner();
    let resp = stream.message().await?.expect("one response");
    Ok(resp.message_response.expect("a message_response"))
}

async fn reflect_v1(
    channel: Channel,
    request: v1::server_reflection_request::MessageRequest,
) -> v1::server_reflection_response::MessageResponse {
    try_reflect_v1(channel, request).await.expect("reflection v1")
}

async fn reflect_v1alpha(
    channel: Channel,
    request: v1alpha::server_reflection_request::MessageRequest,
) -> v1alpha::server_reflection_response::MessageResponse {
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut stream = client
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection v1alpha call")
        .into_inner();
    let resp = stream.message().await.expect("reflection v1alpha response").expect("one response");
    resp.message_response.expect("a message_response")
}

/// The decoded files of a `file_containing_symbol` or `file_by_filename` answer.
async fn files(
    channel: Channel,
    request: v1::server_reflection_request::MessageRequest,
) -> Vec<prost_types::FileDescriptorProto> {
    let what = format!("{request:?}");
    match reflect_v1(channel, request).await {
        v1::server_reflection_response::MessageResponse::FileDescriptorResponse(r) => {
            assert!(!r.file_descriptor_proto.is_empty(), "{what}: no descriptors");
            r.file_descriptor_proto
                .iter()
                .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).expect("a valid FileDescriptorProto"))
                .collect()
        }
        other => panic!("{what}: expected descriptors, got {other:?}"),
    }
}

async fn files_containing(channel: Channel, symbol: &str) -> Vec<prost_types::FileDescriptorProto> {
    files(channel, v1::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.to_string())).await
}

async fn check(channel: Channel, service: &str) -> Result<HealthCheckResponse, tonic::Status> {
    HealthClient::new(channel).check(HealthCheckRequest { service: service.to_string() }).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_serves_reflection_health_and_the_heartbeat_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Standalone::start(standalone_config(&dir.path().join("data"))).await.expect("start");
    let channel =
        Channel::from_shared(format!("http://{}", node.grpc_addr)).expect("uri").connect().await.expect("connect");

    // `grpcurl -plaintext node:9093 list`, with a new grpcurl (v1) and an old one (v1alpha).
    let listed =
        match reflect_v1(channel.clone(), v1::server_reflection_request::MessageRequest::ListServices(String::new()))
            .await
        {
            v1::server_reflection_response::MessageResponse::ListServicesResponse(l) => {
                l.service.into_iter().map(|s| s.name).collect::<BTreeSet<_>>()
            }
            other => panic!("list (v1): {other:?}"),
        };
    assert_eq!(listed, expected_services(), "reflection v1 list");
    let listed_alpha = match reflect_v1alpha(
        channel.clone(),
        v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await
    {
        v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l) => {
            l.service.into_iter().map(|s| s.name).collect::<BTreeSet<_>>()
        }
        other => panic!("list (v1alpha): {other:?}"),
    };
    assert_eq!(listed_alpha, expected_services(), "reflection v1alpha list");

    // `grpcurl describe chronik.raft.RaftService`: the file, its package and the Heartbeat RPC.
    let found = files_containing(channel.clone(), "chronik.raft.RaftService").await;
    let raft = found.iter().find(|f| f.package() == "chronik.raft").expect("raft.proto among the answer");
    assert_eq!(raft.name(), "raft.proto");
    let service = raft.service.iter().find(|s| s.name() == "RaftService").expect("RaftService in raft.proto");
    let heartbeat = service.method.iter().find(|m| m.name() == "Heartbeat").expect("Heartbeat RPC");
    assert_eq!(heartbeat.input_type(), ".chronik.raft.HeartbeatRequest");
    assert_eq!(heartbeat.output_type(), ".chronik.raft.HeartbeatResponse");
    // A message symbol resolves too (grpcurl needs it to encode `-d '{"node_id": 1}'`), and so
    // do a file's imports, which grpcurl asks for by name (data.proto imports control.proto).
    let found = files_containing(channel.clone(), "chronik.raft.HeartbeatRequest").await;
    assert!(found.iter().any(|f| f.message_type.iter().any(|m| m.name() == "HeartbeatRequest")));
    let found = files_containing(channel.clone(), "chronik.data.DataService").await;
    let data = found.iter().find(|f| f.name() == "data.proto").expect("data.proto");
    assert!(data.service.iter().any(|s| s.name() == "DataService"));
    assert_eq!(data.dependency, vec!["control.proto".to_string()]);
    let imported =
        files(channel.clone(), v1::server_reflection_request::MessageRequest::FileByFilename("control.proto".into()))
            .await;
    assert!(imported.iter().any(|f| f.package() == "chronik.control"), "{imported:?}");
    let found = files_containing(channel.clone(), "chronik.control.ControlService").await;
    assert!(found.iter().any(|f| f.service.iter().any(|s| s.name() == "ControlService")));
    // An unknown symbol is NOT_FOUND (tonic answers with the stream's status).
    let unknown = v1::server_reflection_request::MessageRequest::FileContainingSymbol("chronik.nope.Nope".into());
    match try_reflect_v1(channel.clone(), unknown).await {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
        Ok(v1::server_reflection_response::MessageResponse::ErrorResponse(e)) => {
            assert_eq!(e.error_code, tonic::Code::NotFound as i32, "{e:?}")
        }
        Ok(other) => panic!("an unknown symbol must not resolve: {other:?}"),
    }

    // Health: the server as a whole and each Chronik service are SERVING.
    for service in ["", "chronik.raft.RaftService", "chronik.control.ControlService", "chronik.data.DataService"] {
        let status = check(channel.clone(), service).await.unwrap_or_else(|e| panic!("health {service:?}: {e}"));
        assert_eq!(status.status(), ServingStatus::Serving, "health {service:?}");
    }
    let unknown = check(channel.clone(), "chronik.gateway.Nope").await.expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // `grpcurl -plaintext -d '{"node_id": 1}' node:9093 chronik.raft.RaftService/Heartbeat`.
    let hb = RaftServiceClient::new(channel.clone())
        .heartbeat(HeartbeatRequest { node_id: 1 })
        .await
        .expect("Heartbeat")
        .into_inner();
    assert_eq!(hb.node_id, 1, "{hb:?}");
    assert_eq!(hb.role, "standalone", "{hb:?}");
    let meta = hb.groups.iter().find(|g| g.group == "__meta").unwrap_or_else(|| panic!("__meta among {hb:?}"));
    assert_eq!(meta.state, "leader", "{hb:?}");
    assert_eq!(meta.leader_id, Some(1), "{hb:?}");
    assert!(meta.term >= 1 && meta.committed_index >= 1, "{hb:?}");

    // A health watcher hears NOT_SERVING when the node stops, and does not hold shutdown up.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest { service: String::new() })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("watch").expect("first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    tokio::time::timeout(Duration::from_secs(30), node.shutdown()).await.expect("shutdown with a health watcher open");
    let last = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("a last status");
    assert_eq!(last.expect("watch").expect("NOT_SERVING before the end").status(), ServingStatus::NotServing);
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("the watch ends");
    assert!(!matches!(end, Ok(Some(_))), "nothing after NOT_SERVING: {end:?}");
}
