//! Idle partition groups go quiet (no heartbeats, no election timers) and the node-level pings
//! keep failure detection: in-process nodes, the Raft transport's fault layer, real Kafka
//! clients through a gateway.
//!
//! - Idle, fully replicated RF=3 groups go quiet on all three replicas; their leaders still
//!   lead (metadata names them, with the full ISR).
//! - A write to a quiet group is acknowledged at the next offset and read back.
//! - A quiet leader's node cut off: its groups elect a new leader on the other side, producers
//!   carry on, and the groups led elsewhere keep their leader and term (no election churn).
//! - After healing, exactly one replica of each group leads and every replica holds the same
//!   records.

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chronik_data_plane::DataNode;
use chronik_raft::Faults;
use cluster::*;
use harness::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "quiet";
const PARTITIONS: u32 = 6;

fn tune(cfg: &mut chronik_shared::config::ChronikConfig) {
    cfg.cluster.raft.election_timeout_ms = 300;
    cfg.cluster.raft.heartbeat_interval_ms = 30;
    cfg.cluster.raft.quiesce_after_ms = 600;
    cfg.cluster.heartbeat.interval_ms = 200;
    cfg.cluster.heartbeat.node_timeout_ms = 2000;
}

/// The replica of partition `p` that leads it, per the data nodes themselves.
fn leaders(data: &BTreeMap<u64, DataNode>, p: u32) -> Vec<u64> {
    data.iter().filter(|(_, d)| d.inner().partition(TOPIC, p).is_ok_and(|r| r.is_leader())).map(|(id, _)| *id).collect()
}

fn all_quiet(data: &BTreeMap<u64, DataNode>, p: u32) -> bool {
    data.values().all(|d| d.inner().partition(TOPIC, p).is_ok_and(|r| r.quiet.is_quiet()))
}

/// `name` with `partitions` partitions, RF=3, through the gateway's Kafka API.
async fn create_topic(kafka: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka).create().expect("admin");
    for r in admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(3))], &AdminOptions::new())
        .await
        .expect("create")
    {
        r.expect("created");
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(producer: &FutureProducer, p: u32, value: &str) -> i64 {
    let d = producer
        .send(FutureRecord::<(), _>::to(TOPIC).partition(p as i32).payload(value), Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("producing {value} to partition {p}: {e}"));
    d.offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_go_quiet_and_still_fail_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let cluster = DataCluster::start(dir.path(), &faults, tune).await;
    let (data, kafka) = (&cluster.data, cluster.kafka());
    create_topic(&kafka, TOPIC, PARTITIONS as i32).await;
    let producer: FutureProducer = producer_config(&kafka).create().expect("producer");
    for p in 0..PARTITIONS {
        assert_eq!(send(&producer, p, &format!("first-{p}")).await, 0);
    }

    // Idle and fully replicated: quiet on every replica, still led, ISR complete.
    for p in 0..PARTITIONS {
        wait_for(&format!("partition {p} quiet on all replicas"), Duration::from_secs(30), || all_quiet(data, p)).await;
    }
    let mut led = BTreeMap::new();
    let mut terms = BTreeMap::new();
    for p in 0..PARTITIONS {
        let l = leaders(data, p);
        assert_eq!(l.len(), 1, "partition {p}: quiet groups must keep exactly one leader, got {l:?}");
        let replica = data[&l[0]].inner().partition(TOPIC, p).expect("leader replica");
        assert_eq!(replica.isr().len(), 3, "partition {p}: a quiet group's followers stay in sync");
        led.insert(p, l[0]);
        terms.insert(p, replica.term());
    }
    let quiet_metric = chronik_shared::metrics::render();
    assert!(quiet_metric.contains("chronik_raft_quiescent_groups"), "the quiet groups are exported");

    // A write to a quiet group: acknowledged at the next offset; the group wakes and, idle
    // again, goes back to quiet.
    assert_eq!(send(&producer, 0, "second-0").await, 1);
    wait_for("partition 0 quiet again", Duration::from_secs(30), || all_quiet(data, 0)).await;
    assert_eq!(leaders(data, 0), vec![led[&0]], "a write does not move leadership");

    // Cut off a node that leads some of the quiet groups.
    let victim = led[&1];
    let others: Vec<u64> = data.keys().copied().filter(|n| *n != victim).collect();
    faults.isolate(victim, &others);
    let moved: Vec<u32> = (0..PARTITIONS).filter(|p| led[p] == victim).collect();
    for p in &moved {
        wait_for(&format!("partition {p} led on the majority side"), Duration::from_secs(30), || {
            let l = leaders(data, *p);
            l.iter().any(|n| *n != victim) && !l.contains(&victim)
        })
        .await;
    }
    let producer2: FutureProducer =
        producer_config(&kafka).set("message.timeout.ms", "60000").create().expect("producer");
    for p in &moved {
        let offset = send(&producer2, *p, &format!("after-cut-{p}")).await;
        assert!(offset >= 1, "partition {p}: the new leader continues the log, got offset {offset}");
    }
    // Groups led by the nodes that stayed connected did not hold an election.
    for p in (0..PARTITIONS).filter(|p| led[p] != victim) {
        let l = leaders(data, p);
        assert_eq!(l, vec![led[&p]], "partition {p} kept its leader while node {victim} was cut off");
        let term = data[&led[&p]].inner().partition(TOPIC, p).expect("replica").term();
        assert_eq!(term, terms[&p], "partition {p} held an election although its leader stayed reachable");
    }

    faults.heal();
    for p in 0..PARTITIONS {
        wait_for(&format!("partition {p} has one leader after healing"), Duration::from_secs(30), || {
            leaders(data, p).len() == 1
                && data.values().all(|d| {
                    let hw = |id: &DataNode| id.inner().partition(TOPIC, p).map(|r| r.high_watermark()).unwrap_or(-1);
                    hw(d) == hw(data.values().next().expect("a node"))
                })
        })
        .await;
    }

    // Every record acknowledged is read back from each partition.
    let consumer: BaseConsumer = consumer_config(&kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p as i32, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut expected: BTreeMap<(i32, String), ()> = BTreeMap::new();
    for p in 0..PARTITIONS {
        expected.insert((p as i32, format!("first-{p}")), ());
    }
    expected.insert((0, "second-0".into()), ());
    for p in &moved {
        expected.insert((*p as i32, format!("after-cut-{p}")), ());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.is_empty() {
        assert!(Instant::now() < deadline, "never read back: {:?}", expected.keys().collect::<Vec<_>>());
        if let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.expect("fetch ok");
            expected.remove(&(m.partition(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()));
        }
    }

    cluster.shutdown().await;
}

/// A quiet group's leadership handed over (the balancer does this) to a replica whose
/// messages cannot reach the third one, and then that new leader cut off: the old leader and
/// the third replica, which only voted for the handover, still elect a leader between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_group_handed_over_still_elects_when_the_new_leader_goes() {
    const HANDOVER: &str = "handover";
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let cluster = DataCluster::start(dir.path(), &faults, tune).await;
    let (data, kafka) = (&cluster.data, cluster.kafka());
    create_topic(&kafka, HANDOVER, 1).await;
    let producer: FutureProducer =
        producer_config(&kafka).set("message.timeout.ms", "60000").create().expect("producer");
    let first = producer
        .send(FutureRecord::<(), _>::to(HANDOVER).partition(0).payload("before"), Duration::from_secs(30))
        .await
        .expect("first record");
    assert_eq!(first.offset, 0);
    let replica = |id: u64| data[&id].inner().partition(HANDOVER, 0).expect("replica");
    let leading = || data.keys().copied().filter(|id| replica(*id).is_leader()).collect::<Vec<_>>();
    wait_for("the group quiet on all replicas", Duration::from_secs(30), || {
        data.keys().all(|id| replica(*id).quiet.is_quiet())
    })
    .await;
    let old = leading()[0];
    let others: Vec<u64> = data.keys().copied().filter(|id| *id != old).collect();
    let (new, third) = (others[0], others[1]);

    faults.block(new, third);
    replica(old).transfer_leader(new).await.expect("transfer");
    wait_for(&format!("node {new} leading after the handover"), Duration::from_secs(30), || leading() == vec![new])
        .await;
    faults.isolate(new, &[old, third]);
    wait_for("a leader elected by the two replicas left", Duration::from_secs(30), || {
        let l = leading();
        l.len() == 1 && l[0] != new
    })
    .await;
    let after = producer
        .send(FutureRecord::<(), _>::to(HANDOVER).partition(0).payload("after"), Duration::from_secs(60))
        .await
        .expect("a write after the new leader went");
    assert!(after.offset >= 1, "the log goes on after the records before: {}", after.offset);
    faults.heal();
    cluster.shutdown().await;
}
