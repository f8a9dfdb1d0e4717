//! The cluster harness every end-to-end test uses: in-process nodes built with the same
//! builders the binary uses, and real `chronik-server` child processes that can be killed.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chronik_shared::config::ChronikConfig;
use rdkafka::ClientConfig;

/// A 127.0.0.1 port nobody listens on, for a node started afterwards. Taken below the kernel's
/// ephemeral range (32768-60999): a port from that range stays free only until some test's
/// outgoing connection is given it, and a node started on it then exits with "Address already
/// in use" (the likely end of a data node missing from a fresh-clone CI run). Each test binary
/// starts at its own place in 20000-31999, so its nodes do not take the last binary's ports.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + start.wrapping_add(n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{FIRST}-{}", FIRST + COUNT - 1)
}

/// Standalone config on 127.0.0.1 ephemeral ports in `dir`.
pub fn standalone_config(dir: &Path) -> ChronikConfig {
    let mut cfg = ChronikConfig::standalone_defaults();
    cfg.node.data_dir = dir.to_path_buf();
    cfg.listeners.kafka = "127.0.0.1:0".parse().expect("addr");
    cfg.listeners.http = "127.0.0.1:0".parse().expect("addr");
    cfg.listeners.grpc = "127.0.0.1:0".parse().expect("addr");
    cfg.cluster.raft.election_timeout_ms = 300;
    cfg.cluster.raft.heartbeat_interval_ms = 30;
    cfg.cluster.heartbeat.interval_ms = 200;
    cfg
}

pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false");
    c
}

pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "chronik-test-assign-only")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "500");
    c
}

/// A real `chronik-server standalone` process.
pub struct ServerProcess {
    pub child: Child,
    pub kafka: String,
    pub http: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    pub fn start(dir: &Path, kafka_port: u16, http_port: u16, grpc_port: u16) -> ServerProcess {
        Self::start_with_env(dir, kafka_port, http_port, grpc_port, &[])
    }

    /// Like [`ServerProcess::start`], with extra environment variables (an `LD_PRELOAD` shim).
    pub fn start_with_env(
        dir: &Path,
        kafka_port: u16,
        http_port: u16,
        grpc_port: u16,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> ServerProcess {
        let log = dir.with_extension(format!("log.{}", std::process::id()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
            .envs(env.iter().copied())
            .arg("standalone")
            .arg("--data-dir")
            .arg(dir)
            .args(["--set", &format!("listeners.kafka=127.0.0.1:{kafka_port}")])
            .args(["--set", &format!("listeners.http=127.0.0.1:{http_port}")])
            .args(["--set", &format!("listeners.grpc=127.0.0.1:{grpc_port}")])
            .args(["--set", "cluster.raft.election_timeout_ms=300", "--set", "cluster.raft.heartbeat_interval_ms=30"])
            .args(["--set", "cluster.heartbeat.interval_ms=200"])
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn chronik-server");
        let p = ServerProcess {
            child,
            kafka: format!("127.0.0.1:{kafka_port}"),
            http: format!("127.0.0.1:{http_port}"),
            dir: dir.to_path_buf(),
            log,
        };
        p.wait_ready(Duration::from_secs(30));
        p
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.kafka).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("chronik-server did not open {} within {timeout:?}; log:\n{}", self.kafka, self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads partition 0 of `topic` from the start until `done` holds for what was read
    /// (offset → value), for up to 60 s; panics with `what` and the server's log otherwise.
    pub fn read_back(
        &self,
        topic: &str,
        what: &str,
        done: impl Fn(&std::collections::BTreeMap<i64, String>) -> bool,
    ) -> std::collections::BTreeMap<i64, String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        let consumer: BaseConsumer = consumer_config(&self.kafka).create().expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut read = std::collections::BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&read) {
            assert!(Instant::now() < deadline, "read {} records, {what}; log:\n{}", read.len(), self.log_text());
            if let Some(m) = consumer.poll(Duration::from_millis(300)) {
                let m = m.expect("fetch ok");
                read.insert(m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
            }
        }
        read
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-record v2 batch, optionally from an idempotent producer `(id, epoch, base sequence)`.
pub fn record_batch(value: &str, producer: Option<(i64, i16, i32)>) -> bytes::BytesMut {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, [&rec], &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("batch");
    buf
}

/// A Kafka connection that sends raw Produce requests (v9, acks=all) to partition 0 of `topic`
/// and returns (error code, base offset).
pub struct RawProducer {
    sock: tokio::net::TcpStream,
    cid: i32,
}

impl RawProducer {
    pub async fn connect(addr: std::net::SocketAddr) -> RawProducer {
        RawProducer { sock: tokio::net::TcpStream::connect(addr).await.expect("connect"), cid: 0 }
    }

    pub async fn produce(&mut self, topic: &str, records: bytes::Bytes) -> (i16, i64) {
        self.produce_within(topic, records, 5000).await
    }

    /// [`RawProducer::produce`] with the request's own timeout.
    pub async fn produce_within(&mut self, topic: &str, records: bytes::Bytes, timeout_ms: i32) -> (i16, i64) {
        use bytes::BufMut;
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let version = 9;
        self.cid += 1;
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(timeout_ms).with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records)),
                ]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.cid)
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("request");
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.sock.write_all(&buf).await.expect("write");
        let size = self.sock.read_i32().await.expect("response size");
        let mut body = vec![0u8; size as usize];
        self.sock.read_exact(&mut body).await.expect("response");
        let mut body = bytes::Bytes::from(body);
        let h = ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(version)).expect("header");
        assert_eq!(h.correlation_id, self.cid);
        let resp = ProduceResponse::decode(&mut body, version).expect("produce response");
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body). `body` is sent as JSON.
/// Status 0 means the connection was refused (the process is not listening yet, or is gone).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return (0, format!("connect {addr}: {e}")),
    };
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.expect("read response");
    let resp = String::from_utf8_lossy(&raw).to_string();
    let status = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {resp:?}"));
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Flips one bit pattern in the middle of the file at `path` (bit rot in a segment).
pub fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read segment");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(path, &bytes).expect("write segment");
}

/// `chronik-server debug wal-verify --path dir`: whether it passed, and what it printed.
pub fn wal_verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(["debug", "wal-verify", "--path", dir.to_str().expect("utf8")])
        .output()
        .expect("wal-verify");
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

/// Starts a standalone node on `data` that must refuse to start (within 30 s); returns its
/// stderr. `extra` are more arguments, `env` more environment.
pub fn standalone_must_fail(data: &Path, ports: (u16, u16, u16), extra: &[&str], env: &[(&str, &str)]) -> String {
    let (kafka, http, grpc) = ports;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .arg("standalone")
        .arg("--data-dir")
        .arg(data)
        .args(["--set", &format!("listeners.kafka=127.0.0.1:{kafka}")])
        .args(["--set", &format!("listeners.http=127.0.0.1:{http}")])
        .args(["--set", &format!("listeners.grpc=127.0.0.1:{grpc}")])
        .args(extra)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chronik-server kept running on {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    use std::io::Read;
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    assert!(!status.success(), "chronik-server exited 0 on {}:\n{err}", data.display());
    err
}
