//! The gateway against a fake control plane and a fake data node (real gRPC over loopback):
//! metadata with auto-create, produce (batches split and forwarded unchanged, a leader change
//! retried), fetch by name and by topic id, list offsets, acks=0, admin APIs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use chronik_gateway::Gateway;
use chronik_proto::control::control_service_server::{ControlService, ControlServiceServer};
use chronik_proto::control::{
    self as cp, ClusterMetadata, CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    GetMembersRequest, GetMetadataRequest, MembersResponse, NodeHeartbeatRequest, NodeHeartbeatResponse, NodeInfo,
    NodeRole, PartitionInfo, RegisterNodeRequest, RegisterNodeResponse, TopicInfo,
};
use chronik_proto::data::data_service_server::{DataService, DataServiceServer};
use chronik_proto::data::{
    ApplyAssignmentsRequest, ApplyAssignmentsResponse, FetchRequest as DFetch, FetchResponse as DFetchResponse,
    FetchedPartition, ListOffsetsRequest as DListOffsets, ListOffsetsResponse as DListOffsetsResponse,
    ProduceRequest as DProduce, ProduceResponse as DProduceResponse,
};
use chronik_shared::config::ChronikConfig;
use chronik_shared::error::{ChronikError, ErrorCode, LeaderHint};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};

const DATA_NODE: u64 = 100;

#[derive(Default)]
struct ControlState {
    topics: BTreeMap<String, TopicInfo>,
    gateways: Vec<NodeInfo>,
    data_addr: String,
}

#[derive(Clone, Default)]
struct FakeControl(Arc<Mutex<ControlState>>);

#[tonic::async_trait]
impl ControlService for FakeControl {
    async fn register_node(&self, r: Request<RegisterNodeRequest>) -> Result<Response<RegisterNodeResponse>, Status> {
        let mut node = r.into_inner().node.ok_or_else(|| Status::invalid_argument("no node"))?;
        node.alive = true;
        let mut s = self.0.lock().unwrap();
        s.gateways.retain(|g| g.node_id != node.node_id);
        s.gateways.push(node);
        Ok(Response::new(RegisterNodeResponse { cluster_epoch: 1 }))
    }
    async fn node_heartbeat(
        &self,
        _r: Request<NodeHeartbeatRequest>,
    ) -> Result<Response<NodeHeartbeatResponse>, Status> {
        Ok(Response::new(NodeHeartbeatResponse::default()))
    }
    async fn create_topic(&self, r: Request<CreateTopicRequest>) -> Result<Response<CreateTopicResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        if s.topics.contains_key(&r.name) {
            return Err(ChronikError::new(ErrorCode::TopicAlreadyExists, format!("topic {} exists", r.name)).into());
        }
        let n = s.topics.len() as u8 + 1;
        let t = TopicInfo {
            name: r.name.clone(),
            topic_id: Bytes::from(vec![n; 16]),
            replication_factor: r.replication_factor,
            configs: r.configs,
            partitions: (0..r.partitions).map(|p| PartitionInfo { partition: p, ..Default::default() }).collect(),
        };
        if !r.validate_only {
            s.topics.insert(r.name.clone(), t.clone());
            // The data plane elects leaders a moment later.
            let state = self.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(t) = state.lock().unwrap().topics.get_mut(&r.name) {
                    t.partitions.iter_mut().for_each(|p| p.leader = Some(DATA_NODE));
                }
            });
        }
        Ok(Response::new(CreateTopicResponse { topic: Some(t) }))
    }
    async fn delete_topic(&self, r: Request<DeleteTopicRequest>) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = r.into_inner().name;
        match self.0.lock().unwrap().topics.remove(&name) {
            Some(t) => Ok(Response::new(DeleteTopicResponse { topic_id: t.topic_id })),
            None => Err(ChronikError::new(ErrorCode::UnknownTopicOrPartition, format!("no topic {name}")).into()),
        }
    }
    async fn create_partitions(
        &self,
        r: Request<cp::CreatePartitionsRequest>,
    ) -> Result<Response<cp::CreatePartitionsResponse>, Status> {
        let r = r.into_inner();
        let mut s = self.0.lock().unwrap();
        let t = s
            .topics
            .get_mut(&r.name)
            .ok_or_else(|| Status::from(ChronikError::new(ErrorCode::UnknownTopicOrPartition, "no topic")))?;
        if r.count as usize <= t.partitions.len() {
            return Err(ChronikError::new(ErrorCode::InvalidPartitions, "can only grow").into());
        }
        for p in t.partitions.len() as u32..r.count {
            t.partitions.push(PartitionInfo { partition: p, leader: Some(DATA_NODE), ..Default::default() });
        }
        Ok(Response::new(cp::CreatePartitionsResponse { topic: Some(t.clone()) }))
    }
    async fn get_metadata(&self, _r: Request<GetMetadataRequest>) -> Result<Response<ClusterMetadata>, Status> {
        let s = self.0.lock().unwrap();
        Ok(Response::new(ClusterMetadata {
            topics: s.topics.values().cloned().collect(),
            data_nodes: vec![NodeInfo {
                node_id: DATA_NODE,
                addr: s.data_addr.clone(),
                alive: true,
                ..Default::default()
            }],
            gateways: s.gateways.clone(),
            control_leader: Some(1),
        }))
    }
    async fn get_members(&self, _r: Request<GetMembersRequest>) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse::default()))
    }
    // Control-plane membership is not the gateway's business.
    async fn join_cluster(&self, _r: Request<cp::MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
    async fn add_learner(&self, _r: Request<cp::MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
    async fn promote_member(&self, _r: Request<cp::MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
    async fn remove_member(&self, _r: Request<cp::MemberRequest>) -> Result<Response<MembersResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
    async fn transfer_leader(
        &self,
        _r: Request<cp::TransferLeaderRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }
    async fn init_producer_id(
        &self,
        _r: Request<cp::InitProducerIdRequest>,
    ) -> Result<Response<cp::InitProducerIdResponse>, Status> {
        Ok(Response::new(cp::InitProducerIdResponse { producer_id: 1, producer_epoch: 0 }))
    }

    async fn decommission_node(
        &self,
        _r: Request<cp::DecommissionNodeRequest>,
    ) -> Result<Response<cp::DecommissionNodeResponse>, Status> {
        Err(Status::unimplemented("decommissioning is not used by these tests"))
    }

    async fn join_group(&self, _r: Request<cp::JoinGroupRequest>) -> Result<Response<cp::JoinGroupResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn sync_group(&self, _r: Request<cp::SyncGroupRequest>) -> Result<Response<cp::SyncGroupResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn group_heartbeat(
        &self,
        _r: Request<cp::GroupHeartbeatRequest>,
    ) -> Result<Response<cp::GroupHeartbeatResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn leave_group(
        &self,
        _r: Request<cp::LeaveGroupRequest>,
    ) -> Result<Response<cp::LeaveGroupResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn offset_commit(
        &self,
        _r: Request<cp::OffsetCommitRequest>,
    ) -> Result<Response<cp::OffsetCommitResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn offset_fetch(
        &self,
        _r: Request<cp::OffsetFetchRequest>,
    ) -> Result<Response<cp::OffsetFetchResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn list_groups(
        &self,
        _r: Request<cp::ListGroupsRequest>,
    ) -> Result<Response<cp::ListGroupsResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn describe_groups(
        &self,
        _r: Request<cp::DescribeGroupsRequest>,
    ) -> Result<Response<cp::DescribeGroupsResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn delete_groups(
        &self,
        _r: Request<cp::DeleteGroupsRequest>,
    ) -> Result<Response<cp::DeleteGroupsResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }

    async fn offset_delete(
        &self,
        _r: Request<cp::OffsetDeleteRequest>,
    ) -> Result<Response<cp::OffsetDeleteResponse>, Status> {
        Err(Status::unimplemented("consumer groups are not used by these tests"))
    }
}

#[derive(Default)]
struct DataState {
    /// (topic, partition) → stored batches (baseOffset rewritten).
    logs: HashMap<(String, u32), Vec<Bytes>>,
    next: HashMap<(String, u32), i64>,
    /// Partitions whose next produce is answered "not leader" (with a hint back to us).
    not_leader_once: Vec<(String, u32)>,
    /// Partitions whose next produce is refused as an idempotent batch ahead of its predecessor.
    ahead_once: Vec<(String, u32)>,
    produce_calls: usize,
    addr: String,
}

#[derive(Clone, Default)]
struct FakeData(Arc<Mutex<DataState>>);

fn record_count(batch: &[u8]) -> i64 {
    i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]) as i64
}

#[tonic::async_trait]
impl DataService for FakeData {
    async fn produce(&self, r: Request<DProduce>) -> Result<Response<DProduceResponse>, Status> {
        let r = r.into_inner();
        let tp = r.tp.ok_or_else(|| Status::invalid_argument("no tp"))?;
        let key = (tp.topic, tp.partition);
        let mut s = self.0.lock().unwrap();
        s.produce_calls += 1;
        if let Some(i) = s.not_leader_once.iter().position(|k| *k == key) {
            s.not_leader_once.remove(i);
            let hint = LeaderHint { node_id: DATA_NODE, addr: s.addr.clone() };
            return Err(ChronikError::not_leader(Some(hint), "partition").into());
        }
        if let Some(i) = s.ahead_once.iter().position(|k| *k == key) {
            s.ahead_once.remove(i);
            return Err(ChronikError::new(ErrorCode::SequenceAhead, "sequence 7 arrived before sequence 6").into());
        }
        let base = *s.next.get(&key).unwrap_or(&0);
        let mut batch = BytesMut::from(&r.batch[..]);
        batch[..8].copy_from_slice(&base.to_be_bytes());
        s.next.insert(key.clone(), base + record_count(&r.batch));
        s.logs.entry(key).or_default().push(batch.freeze());
        Ok(Response::new(DProduceResponse { base_offset: base, log_append_time_ms: -1, log_start_offset: 0 }))
    }
    async fn fetch(&self, r: Request<DFetch>) -> Result<Response<DFetchResponse>, Status> {
        let r = r.into_inner();
        let s = self.0.lock().unwrap();
        let partitions = r
            .partitions
            .into_iter()
            .map(|p| {
                let tp = p.tp.unwrap_or_default();
                let key = (tp.topic.clone(), tp.partition);
                let hw = *s.next.get(&key).unwrap_or(&0);
                let mut out = FetchedPartition { tp: Some(tp), high_watermark: hw, ..Default::default() };
                if p.offset > hw {
                    out.error_code = ErrorCode::OffsetOutOfRange.id();
                    return out;
                }
                let mut records = BytesMut::new();
                for b in s.logs.get(&key).into_iter().flatten() {
                    let base = i64::from_be_bytes(b[..8].try_into().unwrap());
                    if base + record_count(b) > p.offset {
                        records.extend_from_slice(b);
                    }
                }
                out.records = records.freeze();
                out
            })
            .collect();
        Ok(Response::new(DFetchResponse { partitions }))
    }
    async fn list_offsets(&self, r: Request<DListOffsets>) -> Result<Response<DListOffsetsResponse>, Status> {
        let r = r.into_inner();
        let tp = r.tp.unwrap_or_default();
        let s = self.0.lock().unwrap();
        let hw = *s.next.get(&(tp.topic, tp.partition)).unwrap_or(&0);
        let offset = if r.timestamp == -2 { 0 } else { hw };
        Ok(Response::new(DListOffsetsResponse { offset, timestamp: -1 }))
    }
    async fn transfer_leader(
        &self,
        _r: Request<chronik_proto::data::TransferPartitionLeaderRequest>,
    ) -> Result<Response<chronik_proto::data::TransferPartitionLeaderResponse>, Status> {
        Err(Status::unimplemented("not used by the gateway"))
    }

    async fn apply_assignments(
        &self,
        _r: Request<ApplyAssignmentsRequest>,
    ) -> Result<Response<ApplyAssignmentsResponse>, Status> {
        Ok(Response::new(ApplyAssignmentsResponse {}))
    }
}

struct Cluster {
    gateway: Gateway,
    control: FakeControl,
    data: FakeData,
}

async fn grpc_listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

async fn cluster() -> Cluster {
    let _ = tracing_subscriber::fmt().with_env_filter("chronik_gateway=debug").with_test_writer().try_init();
    let (cl, caddr) = grpc_listener().await;
    let (dl, daddr) = grpc_listener().await;
    let control = FakeControl::default();
    let data = FakeData::default();
    control.0.lock().unwrap().data_addr = daddr.to_string();
    data.0.lock().unwrap().addr = daddr.to_string();
    let (c, d) = (control.clone(), data.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ControlServiceServer::new(c))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(cl))
            .await
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(DataServiceServer::new(d))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(dl))
            .await
    });
    let mut cfg = ChronikConfig::default();
    cfg.node.id = 7;
    cfg.cluster.seed_nodes = vec![format!("1@{caddr}").parse().expect("seed")];
    cfg.cluster.network.request_timeout_ms = 2000;
    cfg.cluster.heartbeat.interval_ms = 100;
    cfg.kafka.default_partitions = 2;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gateway = Gateway::builder(cfg).kafka_listener(listener).start().await.expect("gateway");
    Cluster { gateway, control, data }
}

struct Client {
    s: TcpStream,
    cid: i32,
}

impl Client {
    async fn connect(c: &Cluster) -> Client {
        Client { s: TcpStream::connect(c.gateway.kafka_addr()).await.expect("connect"), cid: 0 }
    }

    async fn send<Q: Encodable>(&mut self, key: ApiKey, version: i16, req: &Q) -> i32 {
        self.cid += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.cid)
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("request");
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.s.write_all(&buf).await.expect("write");
        self.cid
    }

    async fn recv<R: Decodable>(&mut self, key: ApiKey, version: i16, cid: i32) -> R {
        let size =
            tokio::time::timeout(Duration::from_secs(20), self.s.read_i32()).await.expect("in time").expect("size");
        let mut buf = vec![0u8; size as usize];
        self.s.read_exact(&mut buf).await.expect("body");
        let mut buf = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut buf, key.response_header_version(version)).expect("header");
        assert_eq!(h.correlation_id, cid, "responses in request order");
        R::decode(&mut buf, version).expect("response")
    }

    async fn call<Q: Encodable, R: Decodable>(&mut self, key: ApiKey, version: i16, req: &Q) -> R {
        let cid = self.send(key, version, req).await;
        self.recv(key, version, cid).await
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::Gzip })
        .expect("batch");
    buf.freeze()
}

fn metadata_req(topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(true)
}

fn produce_req(topic: &str, acks: i16, parts: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(
            parts
                .into_iter()
                .map(|(i, r)| produce_request::PartitionProduceData::default().with_index(i).with_records(Some(r)))
                .collect(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_and_admin_through_the_gateway() {
    let c = cluster().await;
    let mut k = Client::connect(&c).await;

    // Auto-create: LEADER_NOT_AVAILABLE first, then the topic with leaders on the gateways.
    let m: MetadataResponse = k.call(ApiKey::Metadata, 12, &metadata_req(&["orders"])).await;
    assert_eq!(m.topics[0].error_code, 5, "not ready the first time");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m: MetadataResponse = k.call(ApiKey::Metadata, 12, &metadata_req(&["orders"])).await;
        let ready = m.topics[0].error_code == 0 && m.topics[0].partitions.iter().all(|p| p.error_code == 0);
        if ready && m.brokers.len() == 1 {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "topic never became ready: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t = &m.topics[0];
    assert_eq!(t.partitions.len(), 2);
    assert!(t.partitions.iter().all(|p| p.leader_id.0 == 7 && p.error_code == 0));
    assert_eq!(m.brokers[0].node_id.0, 7);
    assert_eq!(m.brokers[0].port, i32::from(c.gateway.kafka_addr().port()));
    let topic_id = t.topic_id;

    // Produce: two batches to partition 0 (forwarded one by one), one to partition 1 whose
    // first attempt meets a leader change.
    c.data.0.lock().unwrap().not_leader_once.push(("orders".into(), 1));
    let (b1, b2, b3) = (batch(&["a", "b"]), batch(&["c"]), batch(&["x", "y", "z"]));
    let mut p0 = BytesMut::new();
    p0.extend_from_slice(&b1);
    p0.extend_from_slice(&b2);
    let r: ProduceResponse =
        k.call(ApiKey::Produce, 9, &produce_req("orders", -1, vec![(0, p0.freeze()), (1, b3.clone())])).await;
    let parts = &r.responses[0].partition_responses;
    assert_eq!(
        parts.iter().map(|p| (p.index, p.error_code, p.base_offset)).collect::<Vec<_>>(),
        vec![(0, 0, 0), (1, 0, 0)]
    );
    assert_eq!(c.data.0.lock().unwrap().produce_calls, 4, "3 batches + 1 retry");
    // The batches arrive unchanged (bar the baseOffset the data node sets).
    assert_eq!(c.data.0.lock().unwrap().logs[&("orders".to_string(), 0)][1][8..], b2[8..]);

    // A batch ahead of its predecessor goes straight back to the client, unwritten and not
    // retried here: librdkafka sends the predecessor again only after this answer.
    c.data.0.lock().unwrap().ahead_once.push(("orders".into(), 1));
    let r: ProduceResponse = k.call(ApiKey::Produce, 9, &produce_req("orders", -1, vec![(1, batch(&["s"]))])).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 19, "NOT_ENOUGH_REPLICAS: retried by clients as not persisted");
    assert!(p.error_message.as_ref().is_some_and(|m| m.contains("before sequence 6")), "{:?}", p.error_message);
    assert_eq!(c.data.0.lock().unwrap().produce_calls, 5, "one call, no retry");
    assert_eq!(c.data.0.lock().unwrap().logs[&("orders".to_string(), 1)].len(), 1, "nothing written");

    // Produce again: offsets continue.
    let r: ProduceResponse = k.call(ApiKey::Produce, 3, &produce_req("orders", 1, vec![(0, batch(&["d"]))])).await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 3);

    // acks=0 gets no response: the next answer is for the next request.
    let _ = k.send(ApiKey::Produce, 9, &produce_req("orders", 0, vec![(1, batch(&["w"]))])).await;
    let v: ApiVersionsResponse = k.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()).await;
    assert_eq!(v.error_code, 0);

    // Unknown topic and partition, bad acks.
    let r: ProduceResponse = k.call(ApiKey::Produce, 9, &produce_req("nope", -1, vec![(0, batch(&["q"]))])).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let r: ProduceResponse = k.call(ApiKey::Produce, 9, &produce_req("orders", -1, vec![(9, batch(&["q"]))])).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let r: ProduceResponse = k.call(ApiKey::Produce, 9, &produce_req("orders", 2, vec![(0, batch(&["q"]))])).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 21);

    // Fetch by name (v12) from offset 1 of partition 0 and 0 of partition 1.
    let fetch = |v: i16, offsets: [i64; 2]| {
        let mut t = fetch_request::FetchTopic::default().with_partitions(
            offsets
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    fetch_request::FetchPartition::default()
                        .with_partition(i as i32)
                        .with_fetch_offset(*o)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect(),
        );
        if v >= 13 {
            t.topic_id = topic_id;
        } else {
            t.topic = TopicName(s("orders"));
        }
        FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t])
    };
    let r: FetchResponse = k.call(ApiKey::Fetch, 12, &fetch(12, [1, 0])).await;
    let ps = &r.responses[0].partitions;
    assert_eq!(ps[0].error_code, 0);
    assert_eq!(ps[0].high_watermark, 4);
    let stored = c.data.0.lock().unwrap().logs[&("orders".to_string(), 0)].clone();
    let all: Vec<u8> = stored.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(ps[0].records.as_deref(), Some(&all[..]), "records exactly as stored");
    assert!(ps[1].records.as_ref().is_some_and(|r| !r.is_empty()));

    // Fetch by topic id (v13+), and an unknown id.
    let r: FetchResponse = k.call(ApiKey::Fetch, 16, &fetch(16, [0, 0])).await;
    assert_eq!(r.responses[0].topic_id, topic_id);
    assert_eq!(r.responses[0].partitions[0].records.as_deref(), Some(&all[..]));
    let mut unknown = fetch(16, [0, 0]);
    unknown.topics[0].topic_id = uuid::Uuid::from_bytes([0xee; 16]);
    let r: FetchResponse = k.call(ApiKey::Fetch, 16, &unknown).await;
    assert!(r.responses[0].partitions.iter().all(|p| p.error_code == 100));
    // Out of range comes from the data node.
    let r: FetchResponse = k.call(ApiKey::Fetch, 12, &fetch(12, [99, 0])).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 1);

    // ListOffsets earliest/latest.
    let lo = |ts: i64| {
        ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(TopicName(s("orders"))).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts),
            ]),
        ])
    };
    let r: ListOffsetsResponse = k.call(ApiKey::ListOffsets, 7, &lo(-2)).await;
    assert_eq!(r.topics[0].partitions[0].offset, 0);
    let r: ListOffsetsResponse = k.call(ApiKey::ListOffsets, 1, &lo(-1)).await;
    assert_eq!(r.topics[0].partitions[0].offset, 4);

    // CreateTopics: defaults, duplicates, existing.
    let ct = |name: &str, parts: i32| {
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(parts)
            .with_replication_factor(-1)
    };
    let req = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
        ct("fresh", -1),
        ct("orders", 3),
        ct("dup", 1),
        ct("dup", 1),
        ct("bad name", 1),
    ]);
    let r: CreateTopicsResponse = k.call(ApiKey::CreateTopics, 5, &req).await;
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 36, 42, 42, 17]);
    assert_eq!(r.topics[0].num_partitions, 2);
    assert!(r.topics[0].configs.as_ref().is_some_and(|c| c.iter().any(|e| e.name.as_str() == "retention.ms")));
    let fresh = c.control.0.lock().unwrap().topics["fresh"].clone();
    assert!(fresh.partitions.iter().all(|p| p.leader.is_some()), "CreateTopics waited for leaders");

    // CreatePartitions, DescribeConfigs, DeleteTopics.
    let req = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default().with_name(TopicName(s("fresh"))).with_count(4),
    ]);
    let r: CreatePartitionsResponse = k.call(ApiKey::CreatePartitions, 2, &req).await;
    assert_eq!(r.results[0].error_code, 0);
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("fresh")),
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("7")),
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("none")),
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(3).with_resource_name(s("g")),
    ]);
    let r: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, 4, &req).await;
    assert_eq!(r.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![0, 0, 3, 42]);
    assert!(r.results[0].configs.iter().any(|c| c.name.as_str() == "cleanup.policy"));
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_topic_id(topic_id)]);
    let r: DeleteTopicsResponse = k.call(ApiKey::DeleteTopics, 6, &req).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(r.responses[0].name.as_ref().map(|n| n.0.as_str()), Some("orders"));
    assert!(!c.control.0.lock().unwrap().topics.contains_key("orders"));

    // FindCoordinator: not yet.
    let r: FindCoordinatorResponse =
        k.call(ApiKey::FindCoordinator, 3, &FindCoordinatorRequest::default().with_key(s("g"))).await;
    assert_eq!(r.error_code, 15);

    // The gateway registered itself with its advertised Kafka address.
    let gws = c.control.0.lock().unwrap().gateways.clone();
    assert_eq!(gws.len(), 1);
    assert_eq!(gws[0].node_id, 7);
    assert_eq!(gws[0].role, NodeRole::Gateway as i32);
    assert_eq!(gws[0].addr, c.gateway.advertised_kafka_addr());

    c.gateway.shutdown().await;
}
