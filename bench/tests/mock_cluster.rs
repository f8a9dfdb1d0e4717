//! End-to-end tests of the chronik-bench binary against librdkafka's built-in
//! mock Kafka cluster (real Kafka protocol over TCP on 127.0.0.1), plus the
//! unreachable-server behaviour.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chronik-bench")).args(args).output().expect("run chronik-bench")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad JSON {out:?}: {e}"))
}

fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(3).expect("start mock cluster")
}

#[test]
fn produce_then_consume_against_mock_cluster() {
    let cluster = mock_cluster();
    cluster.create_topic("bench", 3, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let props = format!("bootstrap.servers={bootstrap}");

    let o = bench(&[
        "produce",
        "--topic",
        "bench",
        "--num-records",
        "20000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        &props,
        "acks=all",
        "linger.ms=5",
        "--json",
    ]);
    assert!(o.status.success(), "produce failed: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["mode"], "produce");
    assert_eq!(v["records"], 20000);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["bytes"], 2_000_000);
    assert!(v["records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["p99_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(v["max_latency_ms"].as_f64().unwrap() >= v["p50_latency_ms"].as_f64().unwrap());

    // Assign-all-partitions mode.
    let o = bench(&[
        "consume",
        "--topic",
        "bench",
        "--num-records",
        "20000",
        "--consumer-props",
        &props,
        "--timeout-secs",
        "60",
        "--json",
    ]);
    assert!(o.status.success(), "consume failed: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["records"], 20000);
    assert_eq!(v["bytes"], 2_000_000);

    // Asking for more than there is: times out, non-zero exit.
    let o = bench(&[
        "consume",
        "--topic",
        "bench",
        "--num-records",
        "20001",
        "--bootstrap-server",
        &bootstrap,
        "--timeout-secs",
        "3",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).starts_with("20000 records consumed"), "{}", stdout(&o));
    assert!(stderr(&o).contains("read 20000 of 20001 records (timed out after 3 s)"), "{}", stderr(&o));
}

#[test]
fn consume_with_group() {
    let cluster = mock_cluster();
    cluster.create_topic("grouped", 2, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let o = bench(&[
        "produce",
        "--topic",
        "grouped",
        "--num-records",
        "1000",
        "--record-size",
        "10",
        "--bootstrap-server",
        &bootstrap,
    ]);
    assert!(o.status.success(), "produce failed: {}", stderr(&o));
    assert!(stdout(&o).starts_with("1000 records sent,"), "{}", stdout(&o));
    assert!(stdout(&o).trim_end().ends_with("0 errors."), "{}", stdout(&o));

    let o = bench(&[
        "consume",
        "--topic",
        "grouped",
        "--num-records",
        "1000",
        "--group",
        "bench-group",
        "--bootstrap-server",
        &bootstrap,
        "--timeout-secs",
        "60",
        "--json",
    ]);
    assert!(o.status.success(), "consume failed: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["records"], 1000);
    assert_eq!(v["group"], "bench-group");
}

#[test]
fn throttled_subcommandless_form() {
    let cluster = mock_cluster();
    cluster.create_topic("throttled", 1, 1).expect("create topic");
    let props = format!("bootstrap.servers={}", cluster.bootstrap_servers());
    // kafka-producer-perf-test spelling, no subcommand: 2000 records at 1000/s.
    let started = Instant::now();
    let o = bench(&[
        "--topic",
        "throttled",
        "--num-records",
        "2000",
        "--record-size",
        "50",
        "--throughput",
        "1000",
        "--producer-props",
        &props,
        "--reporting-interval-ms",
        "500",
    ]);
    let took = started.elapsed();
    assert!(o.status.success(), "produce failed: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "expected progress lines: {out}");
    assert!(lines[0].contains("records/sec") && lines[0].contains("ms max latency."), "{out}");
    assert!(lines.last().unwrap().starts_with("2000 records sent,"), "{out}");
    // ~2 s of pacing (first token immediately).
    assert!(took >= Duration::from_millis(1800), "not throttled: {took:?}");
    assert!(took < Duration::from_secs(10), "too slow: {took:?}");
}

#[test]
fn unreachable_server_fails_fast_with_clear_error() {
    // A port that nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let bootstrap = format!("127.0.0.1:{port}");
    for mode in ["produce", "consume"] {
        let started = Instant::now();
        let mut args = vec![mode, "--topic", "t", "--num-records", "10"];
        if mode == "produce" {
            args.extend(["--record-size", "10"]);
        }
        args.extend(["--bootstrap-server", &bootstrap, "--connect-timeout-ms", "2000"]);
        let o = bench(&args);
        let took = started.elapsed();
        assert!(!o.status.success(), "{mode}: should fail");
        let err = stderr(&o);
        assert!(err.contains(&format!("cannot reach bootstrap server {bootstrap}")), "{mode}: {err}");
        assert!(err.contains("Connection refused"), "{mode}: {err}");
        assert!(took < Duration::from_secs(10), "{mode}: took {took:?}");
    }
}

#[test]
fn missing_topic_is_reported() {
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let o = bench(&["consume", "--topic", "nope", "--num-records", "1", "--bootstrap-server", &bootstrap]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("topic nope does not exist"), "{}", stderr(&o));
}

#[test]
fn delivery_errors_fail_the_run() {
    let cluster = mock_cluster();
    cluster.create_topic("doomed", 1, 1).expect("create topic");
    let props = format!("bootstrap.servers={}", cluster.bootstrap_servers());
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_chronik-bench"))
        .args([
            "produce",
            "--topic",
            "doomed",
            "--num-records",
            "4000",
            "--record-size",
            "10",
            "--throughput",
            "1000",
            "--producer-props",
            &props,
            "message.timeout.ms=1500",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn chronik-bench");
    // Let it deliver for a while, then take every broker down for good.
    std::thread::sleep(Duration::from_millis(1500));
    cluster.broker_down(-1).expect("broker down");
    let o = child.wait_with_output().expect("wait");
    let took = started.elapsed();
    assert!(!o.status.success(), "should fail: {}", stdout(&o));
    let v = json(&o);
    let records = v["records"].as_u64().unwrap();
    let errors = v["errors"].as_u64().unwrap();
    assert!(records > 0, "{v}");
    assert!(errors > 0, "{v}");
    assert_eq!(records + errors, 4000, "{v}");
    assert!(v["first_error"].as_str().unwrap().contains("MessageTimedOut"), "{v}");
    assert!(stderr(&o).contains("first delivery error"), "{}", stderr(&o));
    // Bounded by message.timeout.ms, not hanging.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn create_topic_failure_is_explained() {
    // librdkafka's mock cluster does not implement CreateTopics: the request
    // must fail within the timeout with a hint, not hang.
    let cluster = mock_cluster();
    let bootstrap = cluster.bootstrap_servers();
    let started = Instant::now();
    let o = bench(&[
        "produce",
        "--topic",
        "created",
        "--num-records",
        "100",
        "--record-size",
        "10",
        "--bootstrap-server",
        &bootstrap,
        "--create-topic",
        "--partitions",
        "5",
        "--replication-factor",
        "1",
        "--connect-timeout-ms",
        "2000",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot create topic created on"), "{err}");
    assert!(err.contains("may not support the CreateTopics API"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
