//! A disk that fills up: with the data directory on a small tmpfs, produce is refused with
//! KAFKA_STORAGE_ERROR (at once, not after a timeout) once less than `wal.min_free_bytes` is
//! free, `/health` says why, nothing acknowledged is lost, and writes succeed again by
//! themselves as soon as space is freed.

mod faults;
mod harness;

use std::time::{Duration, Instant};

use chronik_server::Standalone;
use faults::{Tmpfs, free_bytes};
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "full";
const MIN_FREE: u64 = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = Tmpfs::mount(&dir.path().join("disk"), "48m");
    let mut cfg = standalone_config(&disk.0.join("data"));
    cfg.wal.min_free_bytes = MIN_FREE;
    cfg.wal.segment_bytes = 1 << 20;
    let node = Standalone::start(cfg).await.expect("standalone");
    let admin: rdkafka::admin::AdminClient<_> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", node.kafka_addr.to_string()).create().expect("admin");
    let topics = [rdkafka::admin::NewTopic::new(TOPIC, 1, rdkafka::admin::TopicReplication::Fixed(1))];
    for r in admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }

    // Leave about 4 MiB above the guard's threshold, then write until refused.
    let filler = disk.0.join("filler");
    let room = free_bytes(&disk.0).saturating_sub(MIN_FREE + (4 << 20));
    std::fs::write(&filler, vec![0u8; room as usize]).expect("filler");
    let mut raw = RawProducer::connect(node.kafka_addr).await;
    let value = "v".repeat(60 * 1024);
    let mut acked = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let (code, offset) = raw.produce(TOPIC, record_batch(&value, None).freeze()).await;
        match code {
            0 => {
                assert_eq!(offset, acked, "offsets are contiguous");
                acked += 1;
            }
            3 | 5 | 6 if acked == 0 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => break other,
        }
        assert!(Instant::now() < deadline, "the disk never counted as full ({acked} batches acknowledged)");
    };
    assert_eq!(refused, 56, "KAFKA_STORAGE_ERROR");
    assert!(acked > 10, "writes went through until the disk filled: {acked}");
    let started = Instant::now();
    assert_eq!(raw.produce(TOPIC, record_batch(&value, None).freeze()).await.0, 56);
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not after a timeout");
    let (status, body) = http(node.http_addr, "GET", "/health", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("disk_space") && body.contains("min_free_bytes"), "{body}");

    // Space comes back: writes resume without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, offset) = raw.produce(TOPIC, record_batch(&value, None).freeze()).await;
        if code == 0 {
            assert_eq!(offset, acked, "the next offset follows the last acknowledged one");
            acked += 1;
            break;
        }
        assert!(Instant::now() < deadline, "writes never resumed: {code}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every acknowledged batch is there.
    let consumer: BaseConsumer = consumer_config(&node.kafka_addr.to_string()).create().expect("consumer");
    consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(5)).expect("metadata");
    assert_eq!(consumer.fetch_watermarks(TOPIC, 0, Duration::from_secs(5)).expect("watermarks"), (0, acked));
    node.shutdown().await;
    drop(disk);
}
