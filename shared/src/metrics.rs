//! The process-wide Prometheus registry and every metric family Chronik exports
//! (design §8, with the operations guide's names and labels).
//!
//! Raft families are labelled `partition`: `"__meta"` for the control plane and
//! `"<topic>-<n>"` for data partitions.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    REGISTRY.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("static metric definition");
    REGISTRY.register(Box::new(h.clone())).expect("metric registered once");
    h
}

/// Millisecond buckets fine enough around the guide's thresholds (20 ms healthy, 100 ms alert)
/// for `histogram_quantile(0.99, ...)` to mean something.
fn latency_buckets_ms() -> Vec<f64> {
    vec![
        0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0, 1000.0,
        5000.0,
    ]
}

pub static CLUSTER_NODES: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("chronik_cluster_nodes", "Nodes in the cluster as seen by this node").expect("static metric");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
});
pub static RAFT_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("chronik_raft_state", "Raft state: 0 follower, 1 leader, 2 candidate, 3 learner", &["partition"])
});
pub static RAFT_TERM: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("chronik_raft_term", "Current Raft term", &["partition"]));
pub static RAFT_LOG_INDEX: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("chronik_raft_log_index", "Last Raft log index", &["partition"]));
pub static RAFT_COMMIT_INDEX: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("chronik_raft_commit_index", "Committed Raft log index", &["partition"]));
pub static RAFT_REPLICATION_LAG_ENTRIES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chronik_raft_replication_lag_entries",
        "Entries a follower is behind the leader (leader only)",
        &["partition", "node"],
    )
});
pub static RAFT_REPLICATION_LAG_MS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chronik_raft_replication_lag_ms",
        "Milliseconds since a follower last acknowledged the leader (leader only)",
        &["partition", "node"],
    )
});
pub static RAFT_APPEND_LATENCY_MS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chronik_raft_append_latency_ms",
        "Log append latency until durable, in ms",
        &["partition"],
        latency_buckets_ms(),
    )
});
pub static RAFT_SNAPSHOT_SIZE_BYTES: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("chronik_raft_snapshot_size_bytes", "Size of the last snapshot", &["partition"]));
pub static KAFKA_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("chronik_kafka_requests_total", "Kafka requests by API and outcome", &["api", "outcome"])
});
pub static KAFKA_REQUEST_LATENCY_MS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "chronik_kafka_request_latency_ms",
        "Kafka request latency by API, in ms",
        &["api"],
        latency_buckets_ms(),
    )
});
pub static BYTES_IN: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("chronik_bytes_in_total", "Record bytes produced, by topic", &["topic"]));
pub static BYTES_OUT: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("chronik_bytes_out_total", "Record bytes fetched, by topic", &["topic"]));
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("chronik_consumer_lag", "Consumer group lag in records", &["group", "topic", "partition"])
});

/// Touches every family so `/metrics` lists them even before their first sample.
pub fn init() {
    LazyLock::force(&CLUSTER_NODES);
    for v in [&RAFT_STATE, &RAFT_TERM, &RAFT_LOG_INDEX, &RAFT_COMMIT_INDEX, &RAFT_SNAPSHOT_SIZE_BYTES, &CONSUMER_LAG] {
        LazyLock::force(v);
    }
    LazyLock::force(&RAFT_REPLICATION_LAG_ENTRIES);
    LazyLock::force(&RAFT_REPLICATION_LAG_MS);
    LazyLock::force(&RAFT_APPEND_LATENCY_MS);
    LazyLock::force(&KAFKA_REQUESTS);
    LazyLock::force(&KAFKA_REQUEST_LATENCY_MS);
    LazyLock::force(&BYTES_IN);
    LazyLock::force(&BYTES_OUT);
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = REGISTRY.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
