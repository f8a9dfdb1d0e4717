//! `chronik-server doctor` against real processes (3 control, 3 data, 1 gateway): all green
//! on a healthy cluster, and for each injected problem it names the problem, the node and the
//! guide section, and exits non-zero. `/admin/diagnose` answers the same from any node.

mod cluster;
mod faults;
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use chronik_shared::auth::Role;
use chronik_shared::config::ChronikConfig;
use cluster::*;
use faults::{DropInbound, faketime};
use harness::{http, producer_config};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

/// Raft timers the config lint accepts (heartbeat at most a tenth of the election timeout).
fn lint_clean(cfg: &mut ChronikConfig) {
    cfg.cluster.raft.heartbeat_interval_ms = 30;
}

/// As [`lint_clean`], with segments small enough that a few hundred KiB seal some.
fn data_node(cfg: &mut ChronikConfig) {
    lint_clean(cfg);
    cfg.wal.segment_bytes = 64 * 1024;
}

/// Runs the doctor: (exit success, JSON report).
fn doctor(url: &str, token: &str) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(["doctor", "--url", url, "--token", token, "--json", "--timeout", "2s"])
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {text}"));
    (out.status.success(), report, String::from_utf8_lossy(&out.stderr).to_string())
}

fn findings(report: &Value, severity: &str) -> Vec<Value> {
    report["findings"].as_array().into_iter().flatten().filter(|f| f["severity"] == severity).cloned().collect()
}

/// Runs the doctor until `ok` holds for a report (problems take a moment to show).
fn doctor_until(url: &str, token: &str, what: &str, ok: impl Fn(bool, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (success, report, stderr) = doctor(url, token);
        if ok(success, &report) {
            return report;
        }
        assert!(Instant::now() < deadline, "{what}: never seen; last report {report:#} stderr {stderr}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn names(f: &Value, check: &str, node: u64, section: &str) -> bool {
    f["check"] == check && f["node"] == node && f["guide_section"].as_str().is_some_and(|s| s.starts_with(section))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_on_a_healthy_cluster_and_names_each_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = ProcCluster::start_tuned(dir.path(), 3, 3, 3000, data_node, lint_clean).await;
    let gateway_cfg = cluster.config(50);
    let _gateway = ControlProc::start_role(dir.path(), &gateway_cfg, "gateway");
    cluster.create_topic("doctor", 3, 3).await;
    let token = cluster.token(Role::Viewer);
    let url = format!("http://{}", cluster.control.http);

    // Healthy: every node found, nothing but passes, exit 0.
    let report = doctor_until(&url, &token, "an all-green report", |success, r| {
        success && r["nodes"].as_array().is_some_and(|n| n.len() == 7) && findings(r, "warning").is_empty()
    });
    assert_eq!(report["healthy"], true);
    assert!(findings(&report, "critical").is_empty(), "{report:#}");
    let ids: Vec<u64> =
        report["nodes"].as_array().into_iter().flatten().filter_map(|n| n["node_id"].as_u64()).collect();
    for id in [1, 101, 102, 2, 3, 4, 50] {
        assert!(ids.contains(&id), "node {id} discovered: {ids:?}");
    }
    // The same from the API of a data node.
    let (status, body) = http(cluster.data[0].http, "GET", "/admin/diagnose", Some(&token), None).await;
    assert_eq!(status, 200);
    let api: Value = serde_json::from_str(&body).expect("diagnose JSON");
    assert_eq!(api["healthy"], true, "{api:#}");

    // A risky config value on a new gateway: named, with the key, and critical.
    let mut risky = cluster.config(51);
    risky.cluster.raft.heartbeat_interval_ms = 100;
    let _risky = ControlProc::start_role(dir.path(), &risky, "gateway");
    let report = doctor_until(&url, &token, "the risky config", |success, r| {
        !success && findings(r, "critical").iter().any(|f| names(f, "config", 51, "Issue 6"))
    });
    let f = findings(&report, "critical").into_iter().find(|f| f["check"] == "config").expect("config finding");
    assert!(f["message"].as_str().is_some_and(|m| m.contains("heartbeat_interval_ms")), "{f}");
    drop(_risky);

    // A node whose clock runs 10 s ahead (libfaketime; monotonic time left alone so its
    // timers work): named, critical.
    let skewed = ControlProc::start_role_env(
        dir.path(),
        &cluster.config(52),
        "gateway",
        vec![("LD_PRELOAD", faketime()), ("FAKETIME", "+10s"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")],
    );
    let report = doctor_until(&url, &token, "the skewed clock", |success, r| {
        !success && findings(r, "critical").iter().any(|f| names(f, "clock", 52, "Issue 2"))
    });
    let f = findings(&report, "critical").into_iter().find(|f| f["check"] == "clock").expect("clock finding");
    assert!(f["message"].as_str().is_some_and(|m| m.contains("ms off")), "{f}");
    drop(skewed);

    // A paused data node (a follower of every partition it does not lead): unreachable, and
    // its leaders report it lagging.
    cluster.data[1].pause();
    let paused = cluster.data[1].id;
    let report = doctor_until(&url, &token, "the paused follower", |success, r| {
        let c = findings(r, "critical");
        let all: Vec<Value> = c.iter().chain(findings(r, "warning").iter()).cloned().collect();
        !success
            && c.iter().any(|f| names(f, "reachability", paused, "Issue 1"))
            && all.iter().any(|f| names(f, "replication", paused, "Issue 3"))
    });
    assert_eq!(report["healthy"], false);
    cluster.data[1].resume();
    doctor_until(&url, &token, "recovery after resume", |_, r| {
        !findings(r, "critical")
            .iter()
            .chain(findings(r, "warning").iter())
            .any(|f| f["node"] == paused && f["check"] != "config")
    });

    // A data node cut off from its peers (iptables drops what they send to its gRPC port; its
    // HTTP API still answers): its leaders see it fall behind, the doctor names it.
    let cut = &cluster.data[2];
    let _rule = DropInbound::new(cut.port);
    doctor_until(&url, &token, "the partitioned data node", |success, r| {
        !success
            && findings(r, "critical").iter().any(|f| {
                names(f, "replication", cut.id, "Issue 3")
                    && f["message"].as_str().is_some_and(|m| m.contains("answers its own API"))
            })
    });
    drop(_rule);

    // A control node down.
    let down = cluster.more_controls[1].id;
    cluster.more_controls[1].kill9();
    doctor_until(&url, &token, "the control node down", |success, r| {
        !success && findings(r, "critical").iter().any(|f| names(f, "reachability", down, "Issue 1"))
    });

    // A damaged sealed segment on a running data node: its scrub finds it, the doctor names it.
    let producer: FutureProducer =
        producer_config(&gateway_cfg.listeners.kafka.to_string()).create().expect("producer");
    // Incompressible, so the bytes on disk are what was sent.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let value: Vec<u8> = (0..1024)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let sends = (0..300).map(|_| {
        producer.send(FutureRecord::<(), _>::to("doctor").partition(0).payload(&value), Duration::from_secs(60))
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("acknowledged");
    }
    let victim = &cluster.data[0];
    let seg_dir = dir.path().join(format!("node{}", victim.id)).join("wal").join("doctor-0");
    let mut segments: Vec<_> = std::fs::read_dir(&seg_dir)
        .expect("segments")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "small segments rolled (the first one is sealed): {segments:?}");
    let mut bytes = std::fs::read(&segments[0]).expect("read segment");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&segments[0], bytes).expect("corrupt segment");
    let operator = cluster.token(Role::Operator);
    let (status, body) = http(victim.http, "POST", "/admin/wal/verify", Some(&operator), None).await;
    assert_eq!(status, 200, "{body}");
    let scrub: Value = serde_json::from_str(&body).expect("scrub JSON");
    let name = segments[0].file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    assert!(scrub["problems"][0].as_str().is_some_and(|p| p.contains(&name)), "scrub names the segment: {scrub}");
    let report = doctor_until(&url, &token, "the corrupt segment", |success, r| {
        !success
            && findings(r, "critical").iter().any(|f| names(f, "wal", victim.id, "Diagnostic Commands: WAL Inspection"))
    });
    assert!(report.to_string().contains(&name), "the finding names the segment file");
}
