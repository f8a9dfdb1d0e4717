//! The cluster harness every end-to-end test uses: in-process nodes built with the same
//! builders the binary uses, and real `chronik-server` child processes that can be killed.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chronik_shared::config::ChronikConfig;
use rdkafka::ClientConfig;

/// A free 127.0.0.1 port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
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
        let log = dir.with_extension(format!("log.{}", std::process::id()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
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
