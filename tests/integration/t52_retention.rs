//! Retention by size deletes whole segments and advances the log start offset; what remains
//! is served contiguously, and it all survives a restart.

mod harness;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use harness::*;

fn retention_config(dir: &std::path::Path) -> chronik_shared::config::ChronikConfig {
    let mut cfg = standalone_config(dir);
    cfg.wal.segment_bytes = 64 * 1024;
    cfg.kafka.retention_bytes = 256 * 1024;
    cfg.kafka.retention_check_interval_ms = 100;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_retention_moves_log_start_and_keeps_the_rest_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(retention_config(dir.path())).await.expect("start");
    let bootstrap = node.kafka_addr.to_string();
    let topic = "retained";
    let producer: FutureProducer = producer_config(&bootstrap).set("linger.ms", "0").create().expect("producer");
    let value = "r".repeat(1000);
    let total = 2000i64; // ~2 MB: about 30 segments of 64 KiB, retention keeps ~256 KiB
    for i in 0..total {
        let v = format!("{i:06}{value}");
        producer
            .send(FutureRecord::<(), _>::to(topic).partition(0).payload(&v), Duration::from_secs(10))
            .await
            .expect("acked");
    }
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Retention trims a segment per check; wait until the log start has settled.
    let mut last = (-1, -1);
    let (lo, hi) = loop {
        let now = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).expect("watermarks");
        if now.0 > 0 && now == last {
            break now;
        }
        last = now;
        assert!(Instant::now() < deadline, "retention never settled: {now:?}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    assert_eq!(hi, total);
    assert!(lo < total - 200, "retention deleted far more than retention.bytes asks: log start {lo}");
    let wal = dir.path().join("wal").join(format!("{topic}-0"));
    let on_disk: u64 =
        std::fs::read_dir(&wal).expect("wal dir").flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    assert!(on_disk < 1024 * 1024, "{on_disk} bytes still on disk");

    let read_all = |consumer: &BaseConsumer, from: i64, to: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut next = from;
        let deadline = Instant::now() + Duration::from_secs(30);
        while next < to {
            assert!(Instant::now() < deadline, "read up to {next} of {to}");
            if let Some(m) = consumer.poll(Duration::from_millis(300)) {
                let m = m.expect("fetch ok");
                assert_eq!(m.offset(), next, "offsets contiguous from the log start");
                let p = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                assert_eq!(&p[..6], format!("{next:06}"), "record at offset {next}");
                next += 1;
            }
        }
    };
    read_all(&consumer, lo, total);
    drop(consumer);
    node.shutdown().await;

    // A restart starts from the index snapshot: the log start stays, everything after it reads
    // back, and new writes continue the offsets.
    let node = chronik_server::Standalone::start(retention_config(dir.path())).await.expect("restart");
    let bootstrap = node.kafka_addr.to_string();
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    // A new librdkafka client answers watermark queries "unknown partition" until it has the
    // topic's metadata, which that query does not fetch by itself.
    consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata after restart");
    let deadline = Instant::now() + Duration::from_secs(30);
    let lo2 = loop {
        let w = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5));
        match w {
            Ok((l, h)) if h == total => break l,
            _ => {}
        }
        if Instant::now() >= deadline {
            let ctl =
                chronik_proto::client::ControlClient::new(vec![node.grpc_addr.to_string()], Duration::from_secs(5));
            let md = ctl
                .call(
                    |mut c| async move { c.get_metadata(chronik_proto::control::GetMetadataRequest::default()).await },
                )
                .await;
            let seen = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).map(|m| {
                m.topics()
                    .iter()
                    .map(|t| {
                        (
                            t.name().to_string(),
                            t.error(),
                            t.partitions().iter().map(|p| (p.id(), p.leader(), p.error())).collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            panic!("partition not served after restart: {w:?}; control plane metadata: {md:?}; client sees {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(lo2 >= lo, "log start offset went back from {lo} to {lo2}");
    read_all(&consumer, lo2, total);
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let d = producer
        .send(FutureRecord::<(), _>::to(topic).partition(0).payload("after"), Duration::from_secs(10))
        .await
        .expect("acked after restart");
    assert_eq!(d.offset, total);
    node.shutdown().await;
}
