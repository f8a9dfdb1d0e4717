//! Bad configuration and corrupt WAL data stop the real binary at start with a message that
//! names what is wrong.

mod harness;

use std::process::Command;

use harness::*;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server")).args(args).output().expect("run chronik-server");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn with_config(body: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chronik.toml");
    std::fs::write(&path, body).expect("write config");
    run(&["control", "--config", path.to_str().expect("utf8")])
}

#[test]
fn missing_config_file_is_named() {
    let (ok, err) = run(&["control", "--config", "/nonexistent/chronik.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/chronik.toml"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let (ok, err) = with_config("[cluster.raft]\nelecion_timeout_ms = 200\n");
    assert!(!ok);
    assert!(err.contains("cluster.raft.elecion_timeout_ms"), "{err}");
}

#[test]
fn malformed_seed_quotes_entry_and_form() {
    let (ok, err) = with_config("[cluster]\nseed_nodes = [\"node1:9093\"]\n");
    assert!(!ok);
    assert!(err.contains("node1:9093") && err.contains("1@node1:9093"), "{err}");
}

#[test]
fn message_size_below_chunk_size_names_both_keys() {
    let (ok, err) = with_config(
        "[cluster.raft]\nmax_snapshot_chunk_size = 8388608\n[cluster.network]\nmax_message_size = 4194304\n",
    );
    assert!(!ok);
    assert!(err.contains("max_message_size") && err.contains("max_snapshot_chunk_size"), "{err}");
}

#[test]
fn corrupt_segment_middle_fails_verify_and_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (kafka, http, grpc) = (free_port(), free_port(), free_port());
    {
        // Write some records through a real server, then stop it.
        let server = ServerProcess::start(&data, kafka, http, grpc);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            use rdkafka::producer::{FutureProducer, FutureRecord};
            let producer: FutureProducer =
                producer_config(&server.kafka).set("linger.ms", "0").create().expect("producer");
            for i in 0..20 {
                let v = format!("record {i} {}", "z".repeat(100));
                producer
                    .send(
                        FutureRecord::<(), _>::to("corrupt").partition(0).payload(&v),
                        std::time::Duration::from_secs(10),
                    )
                    .await
                    .expect("acknowledged");
            }
        });
    }
    let seg_dir = data.join("wal").join("corrupt-0");
    let seg = std::fs::read_dir(&seg_dir)
        .expect("partition dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment");
    flip_middle_byte(&seg);
    let (passed, text) = wal_verify(&seg_dir);
    assert!(!passed, "wal-verify passed a corrupt segment: {text}");
    let name = seg.file_name().expect("name").to_string_lossy().to_string();
    assert!(text.contains(&name), "{text}");

    // The node refuses to start on it, naming the file.
    let err = standalone_must_fail(&data, (kafka, http, grpc), &[], &[]);
    assert!(err.contains(&name), "start error does not name the corrupt segment:\n{err}");
}
