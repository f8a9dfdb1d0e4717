//! The Kafka listener over real sockets, with no control plane reachable: bad input closes
//! the connection (and only that connection), ApiVersions answers, pipelined requests are
//! answered in order.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chronik_gateway::Gateway;
use chronik_shared::config::ChronikConfig;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: u64 = 1 << 20;

/// The ranges the gateway must advertise: every version kafka-protocol 0.18 has of each API.
const EXPECTED: &[(i16, i16, i16)] = &[
    (0, 3, 13), // Produce
    (1, 4, 18), // Fetch
    (2, 1, 10), // ListOffsets
    (3, 0, 13), // Metadata
    (8, 2, 9),  // OffsetCommit
    (9, 1, 9),  // OffsetFetch
    (10, 0, 6), // FindCoordinator
    (11, 0, 9), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 6), // DescribeGroups
    (16, 0, 5), // ListGroups
    (18, 0, 4), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (22, 0, 5), // InitProducerId
    (32, 1, 4), // DescribeConfigs
    (37, 0, 3), // CreatePartitions
    (42, 0, 2), // DeleteGroups
    (47, 0, 0), // OffsetDelete
];

async fn start() -> Gateway {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("chronik_gateway=debug,chronik_cluster=info")
        .with_test_writer()
        .try_init();
    let mut cfg = ChronikConfig::default();
    cfg.node.id = 7;
    // A control plane nobody runs: a port that was free a moment ago.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
    cfg.cluster.seed_nodes = vec![format!("1@127.0.0.1:{}", dead.port()).parse().expect("seed")];
    cfg.cluster.network.request_timeout_ms = 300;
    cfg.cluster.heartbeat.interval_ms = 100;
    cfg.kafka.max_request_size = MAX_REQUEST;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Gateway::builder(cfg).kafka_listener(listener).start().await.expect("gateway starts without a control plane")
}

fn frame(api_key: i16, version: i16, correlation_id: i32, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let key = ApiKey::try_from(api_key).ok();
    let header_version = key.map_or(1, |k| k.request_header_version(version));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("t10")))
        .encode(&mut buf, header_version)
        .expect("header");
    body(&mut buf);
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf.freeze()
}

fn api_versions(version: i16, correlation_id: i32) -> Bytes {
    frame(ApiKey::ApiVersions as i16, version, correlation_id, |b| {
        if version <= 4 {
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t10"))
                .with_client_software_version(StrBytes::from_static_str("1"))
                .encode(b, version)
                .expect("body");
        }
    })
}

async fn read_response(s: &mut TcpStream) -> Bytes {
    let size =
        tokio::time::timeout(Duration::from_secs(10), s.read_i32()).await.expect("answered in time").expect("size");
    let mut buf = vec![0u8; size as usize];
    s.read_exact(&mut buf).await.expect("body");
    Bytes::from(buf)
}

/// Reads an ApiVersions response (header v0 always), decoding the body as `version`.
async fn read_api_versions(s: &mut TcpStream, version: i16) -> (i32, ApiVersionsResponse) {
    let mut buf = read_response(s).await;
    let header = ResponseHeader::decode(&mut buf, 0).expect("response header");
    let body = ApiVersionsResponse::decode(&mut buf, version).expect("ApiVersions response");
    assert!(!buf.has_remaining(), "trailing bytes in the v{version} response");
    (header.correlation_id, body)
}

fn ranges(r: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    let mut v: Vec<_> = r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    v.sort();
    v
}

async fn connect(gw: &Gateway) -> TcpStream {
    TcpStream::connect(gw.kafka_addr()).await.expect("connect")
}

/// The gateway closed the connection: EOF (or a reset) rather than data or silence.
async fn assert_closed(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: expected the connection closed, got {n} bytes"),
        Err(_) => panic!("{what}: the connection is still open after 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_only_that_connection() {
    let gw = start().await;

    // ApiVersions v0 works and lists exactly the supported ranges.
    let mut s = connect(&gw).await;
    s.write_all(&api_versions(0, 11)).await.expect("write");
    let (cid, r) = read_api_versions(&mut s, 0).await;
    assert_eq!(cid, 11);
    assert_eq!(r.error_code, 0);
    assert_eq!(ranges(&r), EXPECTED);

    // Unsupported ApiVersions version: v0 answer, UNSUPPORTED_VERSION, and the ranges.
    s.write_all(&api_versions(99, 12)).await.expect("write");
    let (cid, r) = read_api_versions(&mut s, 0).await;
    assert_eq!((cid, r.error_code), (12, 35));
    assert_eq!(ranges(&r), EXPECTED);
    // ... and the connection stays usable.
    s.write_all(&api_versions(3, 13)).await.expect("write");
    let (cid, r) = read_api_versions(&mut s, 3).await;
    assert_eq!((cid, r.error_code), (13, 0));
    assert!(r.supported_features.is_empty() && r.finalized_features.is_empty() && r.finalized_features_epoch == -1);

    // A frame over kafka.max_request_size.
    let mut s = connect(&gw).await;
    s.write_all(&((MAX_REQUEST as i32) + 1).to_be_bytes()).await.expect("write");
    assert_closed(s, "oversized frame").await;

    // Negative and zero sizes.
    for size in [-1i32, 0] {
        let mut s = connect(&gw).await;
        s.write_all(&size.to_be_bytes()).await.expect("write");
        assert_closed(s, "non-positive frame size").await;
    }

    // HTTP on the Kafka port.
    let mut s = connect(&gw).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert_closed(s, "HTTP request").await;

    // A truncated frame: 100 bytes announced, 10 sent, then EOF.
    let mut s = connect(&gw).await;
    s.write_all(&100i32.to_be_bytes()).await.expect("write");
    s.write_all(&[0u8; 10]).await.expect("write");
    s.shutdown().await.expect("half close");
    assert_closed(s, "truncated frame").await;

    // A frame too short for a request header.
    let mut s = connect(&gw).await;
    s.write_all(&[0, 0, 0, 3, 0, 18, 0]).await.expect("write");
    assert_closed(s, "short header").await;

    // An unknown API key, and a Kafka API the gateway does not serve (UpdateFeatures).
    for key in [999i16, 57] {
        let mut s = connect(&gw).await;
        s.write_all(&frame(key, 0, 1, |b| b.put_slice(&[0u8; 16]))).await.expect("write");
        assert_closed(s, "unknown API key").await;
    }

    // An unsupported version of another API closes (Produce v2).
    let mut s = connect(&gw).await;
    s.write_all(&frame(0, 2, 1, |b| b.put_slice(&[0u8; 16]))).await.expect("write");
    assert_closed(s, "unsupported Produce version").await;

    // An undecodable body: Metadata v1 declaring 2^31-1 topics in 4 bytes (would make
    // kafka-protocol try to allocate ~150 GB and abort the process).
    let mut s = connect(&gw).await;
    s.write_all(&frame(3, 1, 1, |b| b.put_i32(i32::MAX))).await.expect("write");
    assert_closed(s, "impossible array length").await;
    // A body cut short inside the header's client id.
    let mut s = connect(&gw).await;
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 1, 0, 0, 0, 1, 0, 50]).await.expect("write");
    assert_closed(s, "undecodable header").await;

    // A client that half-closes after its request still gets the answer.
    let mut s = connect(&gw).await;
    s.write_all(&api_versions(2, 41)).await.expect("write");
    s.shutdown().await.expect("half close");
    let (cid, r) = read_api_versions(&mut s, 2).await;
    assert_eq!((cid, r.error_code), (41, 0));
    assert_closed(s, "after the last answer").await;

    // After all that, a fresh connection is served.
    let mut s = connect(&gw).await;
    s.write_all(&api_versions(3, 42)).await.expect("write");
    let (cid, r) = read_api_versions(&mut s, 3).await;
    assert_eq!((cid, r.error_code), (42, 0));
    assert_eq!(ranges(&r), EXPECTED);

    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let gw = start().await;
    let mut s = connect(&gw).await;
    // A Metadata request (which waits for the unreachable control plane) between ApiVersions
    // requests (answered at once): the answers still come back in request order.
    let mut batch = BytesMut::new();
    batch.extend_from_slice(&api_versions(3, 1));
    batch.extend_from_slice(&frame(3, 12, 2, |b| {
        MetadataRequest::default().with_topics(None).encode(b, 12).expect("metadata")
    }));
    for cid in 3..20 {
        batch.extend_from_slice(&api_versions(cid as i16 % 4, cid));
    }
    s.write_all(&batch).await.expect("write");

    let (cid, _) = read_api_versions(&mut s, 3).await;
    assert_eq!(cid, 1);
    let mut m = read_response(&mut s).await;
    let header = ResponseHeader::decode(&mut m, ApiKey::Metadata.response_header_version(12)).expect("header");
    assert_eq!(header.correlation_id, 2);
    let meta = MetadataResponse::decode(&mut m, 12).expect("metadata");
    // With no control plane, this gateway still lists itself as the one broker and controller.
    assert_eq!(meta.brokers.len(), 1);
    assert_eq!(meta.brokers[0].node_id.0, 7);
    assert_eq!(meta.brokers[0].port, i32::from(gw.kafka_addr().port()));
    assert_eq!(meta.controller_id.0, 7);
    assert!(meta.topics.is_empty());
    for cid in 3..20 {
        let (got, r) = read_api_versions(&mut s, cid as i16 % 4).await;
        assert_eq!((got, r.error_code), (cid, 0));
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections() {
    let gw = start().await;
    let addr = gw.kafka_addr();
    let s = connect(&gw).await;
    gw.shutdown().await;
    assert_closed(s, "open connection at shutdown").await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
}
