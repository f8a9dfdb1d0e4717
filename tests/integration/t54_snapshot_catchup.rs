//! A follower that was down while retention deleted entries it never received catches up by a
//! snapshot that carries the retained segments (design §4), then leads and serves every
//! retained offset (real processes: one control node, three data nodes, one gateway).

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chronik_proto::client::ControlClient;
use chronik_proto::control::PartitionInfo;
use cluster::*;
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "catchup";
const VALUE_BYTES: usize = 10 * 1024;
/// 200 MB in 10 KiB records.
const RECORDS: usize = 20_000;
const RETENTION_BYTES: i64 = 24 * 1024 * 1024;

fn small_segments(cfg: &mut chronik_shared::config::ChronikConfig) {
    cfg.wal.segment_bytes = 2 * 1024 * 1024;
    cfg.kafka.retention_bytes = RETENTION_BYTES;
    cfg.kafka.retention_check_interval_ms = 200;
}

async fn wait_partition(ctl: &ControlClient, what: &str, ok: impl Fn(&PartitionInfo) -> bool) -> PartitionInfo {
    wait_first_partition(ctl, TOPIC, Duration::from_secs(90), what, ok).await
}

fn value(i: usize) -> String {
    let mut v = format!("{i:08}-");
    v.push_str(&"s".repeat(VALUE_BYTES - v.len()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_retention_catches_up_by_snapshot_and_serves_every_retained_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = ProcCluster::start_with(dir.path(), 3, 1500, small_segments).await;
    let gcfg = cluster.config(5);
    let kafka = gcfg.listeners.kafka.to_string();
    let _gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    let ctl = cluster.control_client();
    cluster.create_topic(TOPIC, 1, 3).await;
    // The preferred leader (first replica) is the one taken down: the balancer hands leadership
    // back to it once it has caught up and settled, so it then serves the reads below.
    let p =
        wait_partition(&ctl, "initial leader", |p| p.leader.is_some() && p.leader == p.replicas.first().copied()).await;
    let victim = p.replicas[0];
    let idx = cluster.data.iter().position(|d| d.id == victim).expect("victim is a data node");
    cluster.data[idx].kill9();
    wait_partition(&ctl, "failover", |p| p.leader.is_some_and(|l| l != victim)).await;

    let producer: FutureProducer = producer_config(&kafka)
        .set("linger.ms", "20")
        .set("batch.size", "524288")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer");
    let mut acked: BTreeMap<i64, usize> = BTreeMap::new();
    let mut pending = futures::stream::FuturesOrdered::new();
    for i in 0..RECORDS {
        let p = producer.clone();
        pending.push_back(async move {
            let v = value(i);
            let sent =
                p.send(FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&v), Duration::from_secs(120)).await;
            (i, sent.map(|d| d.offset))
        });
        if pending.len() >= 256 || i + 1 == RECORDS {
            while pending.len() > if i + 1 == RECORDS { 0 } else { 128 } {
                let (i, r) = futures::StreamExt::next(&mut pending).await.expect("pending send");
                let offset = r.unwrap_or_else(|(e, _)| panic!("record {i} not acknowledged: {e}"));
                assert!(acked.insert(offset, i).is_none(), "offset {offset} acknowledged twice");
            }
        }
    }
    let hw = RECORDS as i64;
    let trimmed = wait_partition(&ctl, "retention on the live replicas", |p| {
        p.high_watermark == hw as u64 && p.log_start_offset > 0
    })
    .await;
    eprintln!("leader's log now starts at {} of {hw}", trimmed.log_start_offset);

    cluster.data[idx].restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    let installed = loop {
        let log = cluster.data[idx].log_text();
        if let Some(line) = log.lines().find(|l| l.contains("Installed a partition snapshot")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "the returning follower never installed a snapshot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The snapshot carried the retained segments, not just the offset index.
    assert!(!installed.contains("(0 segment file(s))"), "snapshot without segments: {installed}");
    eprintln!("{installed}");
    let led = wait_partition(&ctl, "leadership back on the caught-up replica", |p| {
        p.leader == Some(victim) && p.high_watermark == hw as u64
    })
    .await;

    let consumer: BaseConsumer =
        consumer_config(&kafka).set("fetch.message.max.bytes", "1048576").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut next: Option<i64> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next != Some(hw) {
        assert!(Instant::now() < deadline, "read up to {next:?} of {hw}");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
        let m = m.expect("fetch served");
        if let Some(n) = next {
            assert_eq!(m.offset(), n, "offsets not contiguous");
        }
        let i = acked.get(&m.offset()).copied().expect("an offset that was acknowledged");
        assert_eq!(m.payload(), Some(value(i).as_bytes()), "record at offset {} changed", m.offset());
        next = Some(m.offset() + 1);
    }
    let first_read = *acked.keys().next().expect("records");
    let after = first_partition(&ctl, TOPIC).await.expect("partition");
    assert_eq!(after.leader, Some(victim), "leadership moved away during the read: {after:?}");
    let served = hw - led.log_start_offset as i64;
    assert!(
        served as usize * VALUE_BYTES >= RETENTION_BYTES as usize / 2,
        "the caught-up replica serves only {served} records (log start {})",
        led.log_start_offset
    );
    eprintln!("replica {victim} served offsets {}..{hw} (first acknowledged {first_read})", led.log_start_offset);
}
