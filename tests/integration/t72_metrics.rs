//! Design §8 metrics on every role's `/metrics` (real processes: three control nodes, three
//! data nodes, one gateway), each moving at its event: a partition's log index as records are
//! produced, `__meta`'s term after the control leader is killed, replication lag while a
//! follower is frozen, the gateway's Kafka request counters and bytes per topic. And the
//! guide's logging: `RUST_LOG=chronik_raft=trace,...` with `--log-format json`.

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronik_proto::client::ControlClient;
use chronik_proto::control::PartitionInfo;
use chronik_shared::auth::Role;
use cluster::*;
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "metered";

/// Every family design §8 asks for, with the Kafka ones this implementation names.
const FAMILIES: &[&str] = &[
    "chronik_cluster_nodes",
    "chronik_raft_state",
    "chronik_raft_term",
    "chronik_raft_log_index",
    "chronik_raft_commit_index",
    "chronik_raft_replication_lag_entries",
    "chronik_raft_replication_lag_ms",
    "chronik_raft_append_latency_ms",
    "chronik_raft_snapshot_size_bytes",
    "chronik_kafka_requests_total",
    "chronik_kafka_request_latency_ms",
    "chronik_bytes_in_total",
    "chronik_bytes_out_total",
    "chronik_consumer_lag",
];

/// One parsed sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split("\",")
                    .filter_map(|kv| kv.split_once("=\""))
                    .map(|(k, v)| (k.trim().to_string(), v.trim_end_matches('"').to_string()))
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push((name, labels, value));
    }
    out
}

/// The sum of the samples of `name` carrying all of `labels`; `None` when there is none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = parse(text)
        .into_iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(addr: SocketAddr, token: &str) -> Option<String> {
    // harness::http panics when it cannot connect: a process still starting is not an error.
    tokio::net::TcpStream::connect(addr).await.ok()?;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(3), http(addr, "GET", "/metrics", Some(token), None)).await.ok()?;
    (status == 200).then_some(body)
}

/// Scrapes `addr` until `ok` holds for a scrape (bounded); returns that scrape.
async fn wait_metrics(addr: SocketAddr, token: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Some(text) = scrape(addr, token).await {
            if ok(&text) {
                return text;
            }
            last = text;
        }
        assert!(Instant::now() < deadline, "{what} ({addr}); last scrape:\n{last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_partition(ctl: &ControlClient, what: &str, ok: impl Fn(&PartitionInfo) -> bool) -> PartitionInfo {
    wait_first_partition(ctl, TOPIC, Duration::from_secs(60), what, ok).await
}

/// Produces `n` records to partition 0 with acks=all and waits for every acknowledgement.
async fn produce(producer: &FutureProducer, n: usize, tag: &str) {
    let sends = (0..n).map(|i| {
        let payload = format!("{tag}-{i:05}-{}", "m".repeat(200));
        async move {
            producer
                .send(FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&payload), Duration::from_secs(60))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        }
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap_or_else(|e| panic!("{tag}: a record was not acknowledged: {e}"));
    }
}

fn partition_label() -> String {
    format!("{TOPIC}-0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_exports_the_design_metrics_and_they_move_at_their_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = ProcCluster::start_full(dir.path(), 3, 3, 1500, |_| {}).await;
    let gcfg = cluster.config(9);
    let kafka = gcfg.listeners.kafka.to_string();
    let gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    let token = cluster.token(Role::Viewer);
    let ctl = cluster.control_client();

    // Every family on every role, listed even where it has no sample.
    let mut roles: Vec<(&str, SocketAddr)> = cluster.controls().map(|c| ("control", c.http)).collect();
    roles.extend(cluster.data.iter().map(|d| ("data", d.http)));
    roles.push(("gateway", gateway.http));
    for (role, addr) in &roles {
        let text = wait_metrics(*addr, &token, &format!("{role} /metrics never answered"), |_| true).await;
        for family in FAMILIES {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{role} node at {addr} does not list {family}:\n{text}"
            );
        }
    }

    cluster.create_topic(TOPIC, 1, 3).await;
    // Led by its preferred replica, so the balancer has no reason to move it during the test.
    let p = wait_partition(&ctl, "a leader on the preferred replica", |p| {
        p.leader.is_some() && p.leader == p.replicas.first().copied()
    })
    .await;
    let leader_id = p.leader.expect("leader");
    let leader = cluster.data.iter().find(|d| d.id == leader_id).expect("leader is a data node").http;
    let part = partition_label();
    let at = |name: &'static str| move |t: &str| value(t, name, &[("partition", &partition_label())]);

    // chronik_cluster_nodes: the control-plane voters on control nodes; the nodes named by the
    // control plane's last answer on data nodes (their partition peers) and on the gateway
    // (alive data nodes and gateways).
    for c in cluster.controls() {
        wait_metrics(c.http, &token, "control nodes count 3 voters", |t| {
            value(t, "chronik_cluster_nodes", &[]) == Some(3.0)
        })
        .await;
    }
    for d in &cluster.data {
        wait_metrics(d.http, &token, "data nodes count their 3 peers", |t| {
            value(t, "chronik_cluster_nodes", &[]) == Some(3.0)
        })
        .await;
    }
    wait_metrics(gateway.http, &token, "the gateway counts 3 data nodes and itself", |t| {
        value(t, "chronik_cluster_nodes", &[]) == Some(4.0)
    })
    .await;

    // The leader's partition metrics, before and after records are produced through the gateway.
    let before = wait_metrics(leader, &token, "the leader reports its partition as led", |t| {
        value(t, "chronik_raft_state", &[("partition", &part)]) == Some(1.0)
            && at("chronik_raft_log_index")(t).is_some()
    })
    .await;
    let index_before = at("chronik_raft_log_index")(&before).expect("log index");
    let gw_before = scrape(gateway.http, &token).await.expect("gateway metrics");
    let bytes_in_before = value(&gw_before, "chronik_bytes_in_total", &[("topic", TOPIC)]).unwrap_or(0.0);
    let produce_ok_before =
        value(&gw_before, "chronik_kafka_requests_total", &[("api", "Produce"), ("outcome", "ok")]).unwrap_or(0.0);

    let producer: FutureProducer = producer_config(&kafka).create().expect("producer");
    produce(&producer, 200, "first").await;

    let after = wait_metrics(leader, &token, "the leader's log index grows", |t| {
        at("chronik_raft_log_index")(t).is_some_and(|i| i > index_before)
            && at("chronik_raft_commit_index")(t).is_some_and(|i| i > index_before)
    })
    .await;
    let appends = value(&after, "chronik_raft_append_latency_ms_count", &[("partition", &part)]).unwrap_or(0.0);
    assert!(appends > 0.0, "no append latency observed for {part} on its leader:\n{after}");
    eprintln!(
        "{part} on node {leader_id}: log index {index_before} -> {:?}, {appends} appends timed",
        at("chronik_raft_log_index")(&after)
    );

    let gw = wait_metrics(gateway.http, &token, "the gateway counts Produce requests and bytes in", |t| {
        value(t, "chronik_kafka_requests_total", &[("api", "Produce"), ("outcome", "ok")])
            .is_some_and(|n| n > produce_ok_before)
            && value(t, "chronik_bytes_in_total", &[("topic", TOPIC)]).is_some_and(|b| b > bytes_in_before)
    })
    .await;
    assert!(
        value(&gw, "chronik_kafka_requests_total", &[("api", "Metadata")]).is_some_and(|n| n > 0.0),
        "no Metadata requests counted:\n{gw}"
    );
    assert!(
        value(&gw, "chronik_kafka_request_latency_ms_count", &[("api", "Produce")]).is_some_and(|n| n > 0.0),
        "no Produce latency observed:\n{gw}"
    );

    // Bytes out: read a few records back through the gateway.
    let consumer: BaseConsumer = consumer_config(&kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < 10 {
        assert!(Instant::now() < deadline, "read only {read} records back");
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            m.expect("fetch served");
            read += 1;
        }
    }
    drop(consumer);
    wait_metrics(gateway.http, &token, "the gateway counts bytes out", |t| {
        value(t, "chronik_bytes_out_total", &[("topic", TOPIC)]).is_some_and(|b| b > 0.0)
    })
    .await;

    // Replication lag: freeze a follower, produce, and the leader reports it behind.
    let follower_id = *p.replicas.iter().find(|r| **r != leader_id).expect("a follower");
    let follower = cluster.data.iter().position(|d| d.id == follower_id).expect("follower is a data node");
    let node = follower_id.to_string();
    cluster.data[follower].pause();
    produce(&producer, 100, "while-paused").await;
    let lagging = wait_metrics(leader, &token, "the leader reports the frozen follower's lag", |t| {
        let labels = [("partition", part.as_str()), ("node", node.as_str())];
        value(t, "chronik_raft_replication_lag_entries", &labels).is_some_and(|v| v > 0.0)
            && value(t, "chronik_raft_replication_lag_ms", &labels).is_some_and(|v| v > 0.0)
    })
    .await;
    let labels = [("partition", part.as_str()), ("node", node.as_str())];
    eprintln!(
        "frozen follower {follower_id}: {:?} entries, {:?} ms behind",
        value(&lagging, "chronik_raft_replication_lag_entries", &labels),
        value(&lagging, "chronik_raft_replication_lag_ms", &labels)
    );
    cluster.data[follower].resume();
    wait_metrics(leader, &token, "the resumed follower catches up", |t| {
        value(t, "chronik_raft_replication_lag_entries", &[("partition", part.as_str()), ("node", node.as_str())])
            == Some(0.0)
    })
    .await;

    // __meta: kill -9 the control leader; the survivors' term rises.
    let control_ports: Vec<u16> = cluster.controls().map(|c| c.port).collect();
    let views = wait_views(&control_ports, Duration::from_secs(30), |v| v.iter().all(|m| m.leader.is_some())).await;
    let meta_leader = views[0].leader.expect("a __meta leader");
    let mut terms = BTreeMap::new();
    for c in cluster.controls() {
        let text = wait_metrics(c.http, &token, "control nodes report __meta's term", |t| {
            value(t, "chronik_raft_term", &[("partition", "__meta")]).is_some()
        })
        .await;
        terms.insert(c.id, value(&text, "chronik_raft_term", &[("partition", "__meta")]).expect("term"));
        if c.id == meta_leader {
            assert!(
                value(&text, "chronik_raft_append_latency_ms_count", &[("partition", "__meta")])
                    .is_some_and(|n| n > 0.0),
                "no __meta append latency observed on its leader:\n{text}"
            );
        }
    }
    if cluster.control.id == meta_leader {
        cluster.control.kill9();
    } else {
        let i = cluster.more_controls.iter().position(|c| c.id == meta_leader).expect("leader is a control node");
        cluster.more_controls[i].kill9();
    }
    for c in cluster.controls().filter(|c| c.id != meta_leader) {
        let old = terms[&c.id];
        let text = wait_metrics(c.http, &token, "a survivor's __meta term rises", |t| {
            value(t, "chronik_raft_term", &[("partition", "__meta")]).is_some_and(|v| v > old)
        })
        .await;
        eprintln!(
            "control node {}: __meta term {old} -> {:?}",
            c.id,
            value(&text, "chronik_raft_term", &[("partition", "__meta")])
        );
    }
}

/// The guide's trace line and JSON logs: a control node started with
/// `RUST_LOG=chronik_raft=trace,chronik_cluster=trace,chronik_server=debug` and
/// `--log-format json` writes one JSON object per line, with the guide's election line under
/// target `chronik_raft`; `CHRONIK_CPU_PROFILE=true` starts the sampler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guide_log_filter_with_json_lines_and_profiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = control_config(dir.path(), 1, free_port(), vec![]);
    with_auth(dir.path(), &mut cfg);
    let config = dir.path().join("node1.toml");
    std::fs::write(&config, cfg.to_toml_string()).expect("config");
    let log = dir.path().join("node1.log");
    let out = std::fs::File::create(&log).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(["--log-format", "json", "control", "--config"])
        .arg(&config)
        .env("RUST_LOG", "chronik_raft=trace,chronik_cluster=trace,chronik_server=debug")
        .env("CHRONIK_CPU_PROFILE", "true")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let found = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Whole lines only: the last one may still be being written.
        let lines: Vec<serde_json::Value> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        let has = |target: &str, message: &str| {
            lines
                .iter()
                .any(|l| l["target"] == target && l["fields"]["message"].as_str().is_some_and(|m| m.contains(message)))
        };
        let leader = has("chronik_raft", "Became leader for term");
        let bootstrap = has("chronik_cluster", "Bootstrapped a new control plane");
        let profiling = has("chronik_server", "CPU profiling started");
        if leader && bootstrap && profiling {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "missing log lines (leader {leader}, bootstrap {bootstrap}, profiling {profiling}):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Only the guide's targets pass the filter.
    for l in &found {
        let target = l["target"].as_str().unwrap_or_default();
        assert!(
            ["chronik_raft", "chronik_cluster", "chronik_server"].iter().any(|t| target.starts_with(t)),
            "a line outside the filter: {l}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
