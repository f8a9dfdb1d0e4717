//! The process-wide Prometheus registry and every metric family Chronik exports
//! (design §8, with the operations guide's names and labels).
//!
//! Raft families are labelled `partition`: `"__meta"` for the control plane and
//! `"<topic>-<n>"` for data partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// One sample of a gauge family, for crates that hold one without depending on `prometheus`.
pub use prometheus::IntGauge;
use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

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

/// Set only through [`set_control_voters`] and [`set_known_nodes`].
pub static CLUSTER_NODES: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new(
        "chronik_cluster_nodes",
        "Nodes in the cluster as this node sees them: on control nodes the control-plane voters; \
         on data nodes and gateways the nodes named in their last answer from the control plane",
    )
    .expect("static metric");
    REGISTRY.register(Box::new(g.clone())).expect("metric registered once");
    g
});
pub static RAFT_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("chronik_raft_state", "Raft state: 0 follower, 1 leader, 2 candidate, 3 learner", &["partition"])
});
pub static RAFT_QUIESCENT_GROUPS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "chronik_raft_quiescent_groups",
        "Partition groups this data node leads that are quiet (idle: no heartbeats, no election timers)",
        &["node"],
    )
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

/// Every family of design §8 with its Prometheus type, so [`render`] can list the ones that
/// have no sample yet.
fn families() -> [(&'static dyn Collector, &'static str); 15] {
    [
        (&*CLUSTER_NODES, "gauge"),
        (&*RAFT_STATE, "gauge"),
        (&*RAFT_TERM, "gauge"),
        (&*RAFT_LOG_INDEX, "gauge"),
        (&*RAFT_COMMIT_INDEX, "gauge"),
        (&*RAFT_REPLICATION_LAG_ENTRIES, "gauge"),
        (&*RAFT_REPLICATION_LAG_MS, "gauge"),
        (&*RAFT_APPEND_LATENCY_MS, "histogram"),
        (&*RAFT_SNAPSHOT_SIZE_BYTES, "gauge"),
        (&*RAFT_QUIESCENT_GROUPS, "gauge"),
        (&*KAFKA_REQUESTS, "counter"),
        (&*KAFKA_REQUEST_LATENCY_MS, "histogram"),
        (&*BYTES_IN, "counter"),
        (&*BYTES_OUT, "counter"),
        (&*CONSUMER_LAG, "gauge"),
    ]
}

/// Touches every family so it is registered before the first scrape.
pub fn init() {
    let _ = families();
}

/// A process with a control-plane role counts the control-plane voters; the views of its
/// other roles (standalone) must not overwrite that.
static CONTROL_VIEW: AtomicBool = AtomicBool::new(false);

/// `chronik_cluster_nodes` on a control node: the voters of `__meta` in the membership this
/// node last saw.
pub fn set_control_voters(voters: usize) {
    CONTROL_VIEW.store(true, Ordering::Relaxed);
    CLUSTER_NODES.set(voters as i64);
}

/// `chronik_cluster_nodes` on a data node or gateway: the nodes its last answer from the
/// control plane named (ignored in a process that also runs a control node).
pub fn set_known_nodes(nodes: usize) {
    if !CONTROL_VIEW.load(Ordering::Relaxed) {
        CLUSTER_NODES.set(nodes as i64);
    }
}

/// Removes every Raft sample of `partition` (a replica this node no longer hosts), whatever
/// its other labels.
pub fn forget_partition(partition: &str) {
    fn remove_matching<T: prometheus::core::MetricVecBuilder>(vec: &prometheus::core::MetricVec<T>, partition: &str) {
        for mf in vec.collect() {
            for m in mf.get_metric() {
                let labels: HashMap<&str, &str> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
                if labels.get("partition") == Some(&partition) {
                    let _ = vec.remove(&labels);
                }
            }
        }
    }
    for g in [
        &*RAFT_STATE,
        &*RAFT_TERM,
        &*RAFT_LOG_INDEX,
        &*RAFT_COMMIT_INDEX,
        &*RAFT_REPLICATION_LAG_ENTRIES,
        &*RAFT_REPLICATION_LAG_MS,
        &*RAFT_SNAPSHOT_SIZE_BYTES,
    ] {
        remove_matching(g, partition);
    }
    remove_matching(&RAFT_APPEND_LATENCY_MS, partition);
}

/// Removes the per-topic byte counters of `topic` (deleted), so a cluster whose topics come and
/// go does not keep a sample for every topic it ever had.
pub fn forget_topic(topic: &str) {
    let _ = BYTES_IN.remove_label_values(&[topic]);
    let _ = BYTES_OUT.remove_label_values(&[topic]);
}

/// The Prometheus text exposition of every registered metric. A family with no sample yet
/// (a labelled family before its first event) is still listed with its `# HELP` and `# TYPE`
/// lines: the encoder leaves such families out, and dashboards and the guide's checks look
/// for the names.
pub fn render() -> String {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    let encoder = TextEncoder::new();
    for mf in REGISTRY.gather() {
        let mut buf = Vec::new();
        if encoder.encode(std::slice::from_ref(&mf), &mut buf).is_ok() {
            by_name.insert(mf.name().to_string(), String::from_utf8(buf).unwrap_or_default());
        }
    }
    for (collector, kind) in families() {
        for desc in collector.desc() {
            by_name.entry(desc.fq_name.clone()).or_insert_with(|| {
                let help = desc.help.replace('\\', "\\\\").replace('\n', "\\n");
                format!("# HELP {} {help}\n# TYPE {} {kind}\n", desc.fq_name, desc.fq_name)
            });
        }
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_listed_before_its_first_sample() {
        init();
        let text = render();
        for (collector, kind) in families() {
            let name = &collector.desc()[0].fq_name;
            assert!(text.contains(&format!("# HELP {name} ")), "{name} missing:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} has no TYPE {kind}:\n{text}");
        }
        // Families with samples are rendered by the encoder as usual, once.
        RAFT_TERM.with_label_values(&["render-test-0"]).set(7);
        let text = render();
        assert!(text.contains("chronik_raft_term{partition=\"render-test-0\"} 7"), "{text}");
        assert_eq!(text.matches("# TYPE chronik_raft_term ").count(), 1);
        forget_partition("render-test-0");
        assert!(!render().contains("render-test-0"));
    }

    #[test]
    fn a_deleted_topic_leaves_no_byte_counters() {
        BYTES_IN.with_label_values(&["forget-test"]).inc_by(10);
        BYTES_OUT.with_label_values(&["forget-test"]).inc_by(20);
        BYTES_IN.with_label_values(&["forget-test-kept"]).inc_by(1);
        assert!(render().contains("chronik_bytes_out_total{topic=\"forget-test\"} 20"));
        forget_topic("forget-test");
        let text = render();
        assert!(!text.contains("topic=\"forget-test\""), "{text}");
        assert!(text.contains("chronik_bytes_in_total{topic=\"forget-test-kept\"} 1"), "{text}");
    }

    #[test]
    fn control_view_wins_over_known_nodes() {
        set_known_nodes(4);
        set_control_voters(3);
        set_known_nodes(9);
        assert_eq!(CLUSTER_NODES.get(), 3);
    }
}
