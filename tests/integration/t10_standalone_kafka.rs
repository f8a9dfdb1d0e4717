//! A standalone node driven by librdkafka (the `rdkafka` crate): topics, produce under every
//! codec, consume back byte for byte at the acknowledged offsets, ListOffsets, long poll.

mod harness;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use harness::*;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let res = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    for r in res {
        r.expect("topic created");
    }
}

fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: i32, from: Offset) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, from).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    key: Vec<u8>,
    value: Vec<u8>,
    header: Vec<u8>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_every_codec_and_consume_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    const PER_CODEC: usize = 10_000;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];

    for codec in codecs {
        let topic = format!("codec-{codec}");
        create_topic(&bootstrap, &topic, 3).await;
        let producer: FutureProducer =
            producer_config(&bootstrap).set("compression.type", codec).create().expect("producer");
        // What the producer was told, by (partition, offset).
        let mut acked: HashMap<(i32, i64), Sent> = HashMap::new();
        let mut pending = Vec::with_capacity(PER_CODEC);
        for i in 0..PER_CODEC {
            let sent = Sent {
                key: format!("key-{}", i % 97).into_bytes(),
                value: format!("{codec} value {i} {}", "x".repeat(i % 50)).into_bytes(),
                header: format!("h{i}").into_bytes(),
            };
            let rec = FutureRecord::to(&topic)
                .key(&sent.key)
                .payload(&sent.value)
                .headers(OwnedHeaders::new().insert(Header { key: "idx", value: Some(&sent.header) }));
            let fut = producer.send_result(rec).expect("queued");
            pending.push((fut, sent));
        }
        for (fut, sent) in pending {
            let delivery = fut.await.expect("delivery future").expect("acknowledged");
            assert!(acked.insert((delivery.partition, delivery.offset), sent).is_none(), "offset reused");
        }
        assert_eq!(acked.len(), PER_CODEC);

        let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
        assign_all(&consumer, &topic, 3, Offset::Beginning);
        let mut seen = 0usize;
        let mut next_offset: HashMap<i32, i64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen < PER_CODEC {
            assert!(Instant::now() < deadline, "{codec}: consumed only {seen} of {PER_CODEC}");
            let Some(msg) = consumer.poll(Duration::from_millis(500)) else { continue };
            let msg = msg.expect("fetch ok");
            let expected_offset = next_offset.entry(msg.partition()).or_insert(0);
            assert_eq!(msg.offset(), *expected_offset, "{codec}: offsets contiguous in partition {}", msg.partition());
            *expected_offset += 1;
            let sent = acked.get(&(msg.partition(), msg.offset())).expect("consumed offset was acknowledged");
            assert_eq!(msg.key(), Some(&sent.key[..]));
            assert_eq!(msg.payload(), Some(&sent.value[..]));
            let h = msg.headers().expect("headers");
            assert_eq!(h.get(0).key, "idx");
            assert_eq!(h.get(0).value, Some(&sent.header[..]));
            seen += 1;
        }
        // Keys hash to a fixed partition: every key's messages are in one partition, in order.
        let (lo, hi) = consumer.fetch_watermarks(&topic, 0, Duration::from_secs(5)).expect("watermarks");
        assert_eq!(lo, 0);
        assert_eq!(hi, *next_offset.get(&0).unwrap_or(&0));
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_and_long_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    let topic = "offsets";
    create_topic(&bootstrap, topic, 1).await;
    let producer: FutureProducer = producer_config(&bootstrap).set("linger.ms", "0").create().expect("producer");
    let base_ts = 1_700_000_000_000i64;
    for i in 0..10i64 {
        let value = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic).partition(0).payload(&value).timestamp(base_ts + i * 1000),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    let (lo, hi) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).expect("watermarks");
    assert_eq!((lo, hi), (0, 10));
    // By timestamp: the first record at or after the time.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(base_ts + 4500)).expect("tpl");
    let res = consumer.offsets_for_times(tpl, Duration::from_secs(5)).expect("offsets for times");
    assert_eq!(res.find_partition(topic, 0).expect("partition").offset(), Offset::Offset(5));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(base_ts + 60_000)).expect("tpl");
    let res = consumer.offsets_for_times(tpl, Duration::from_secs(5)).expect("offsets for times");
    assert_eq!(res.find_partition(topic, 0).expect("partition").offset(), Offset::End);

    // Long poll: an empty partition, a record produced 1 s later arrives without busy polling.
    let lp = "long-poll";
    create_topic(&bootstrap, lp, 1).await;
    let consumer: BaseConsumer =
        consumer_config(&bootstrap).set("fetch.wait.max.ms", "5000").create().expect("consumer");
    assign_all(&consumer, lp, 1, Offset::Beginning);
    let fetches = || chronik_shared::metrics::KAFKA_REQUESTS.with_label_values(&["Fetch", "ok"]).get();
    // Let the consumer reach its steady long-poll state first.
    let _ = consumer.poll(Duration::from_millis(500));
    let before = fetches();
    let p2 = producer.clone();
    let sent_at = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = p2.send(FutureRecord::<(), _>::to(lp).partition(0).payload("late"), Duration::from_secs(10)).await;
    });
    let mut got = None;
    while sent_at.elapsed() < Duration::from_secs(10) {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            got = Some(m.expect("fetch ok").payload().map(|p| p.to_vec()));
            break;
        }
    }
    assert_eq!(got, Some(Some(b"late".to_vec())));
    let waited = sent_at.elapsed();
    assert!(waited >= Duration::from_millis(900), "arrived before it was sent?");
    let used = fetches() - before;
    assert!(used <= 10, "{used} fetches in {waited:?}: the consumer is busy polling instead of long polling");
    node.shutdown().await;
}

/// A record batch whose CRC does not match its content is refused with CORRUPT_MESSAGE, nothing
/// is stored, and the connection and the partition go on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batch_is_refused_and_nothing_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    let topic = "crc";
    create_topic(&bootstrap, topic, 1).await;
    let mut raw = RawProducer::connect(node.kafka_addr).await;

    let mut bad = record_batch("tampered", None);
    let last = bad.len() - 1;
    bad[last] ^= 0x01; // inside the CRC-covered part: the value's last byte
    assert_eq!(raw.produce(topic, bad.freeze()).await.0, 2, "CORRUPT_MESSAGE");

    // Nothing stored: the same connection's next, valid batch gets offset 0.
    assert_eq!(raw.produce(topic, record_batch("good", None).freeze()).await, (0, 0));
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    assert_eq!(consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).expect("watermarks"), (0, 1));
    node.shutdown().await;
}

/// With the gateway's request budget (`kafka.queued_max_request_bytes`) at its 1 MiB minimum,
/// three producers sending ~1 MB requests at once (some larger than what is left of the
/// budget) are all served: connections wait their turn, none is stuck, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_request_budget_queues_producers_without_losing_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = standalone_config(dir.path());
    cfg.kafka.queued_max_request_bytes = 1024 * 1024;
    let node = chronik_server::Standalone::start(cfg).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    create_topic(&bootstrap, "budget", 3).await;
    const PER_PRODUCER: usize = 600;
    let sends = (0..3).map(|p| {
        let producer: FutureProducer =
            producer_config(&bootstrap).set("linger.ms", "20").set("batch.size", "1000000").create().expect("producer");
        async move {
            let futs: Vec<_> = (0..PER_PRODUCER)
                .map(|i| {
                    let value = format!("p{p}-{i}-{}", "b".repeat(4096));
                    producer.send_result(FutureRecord::<(), _>::to("budget").payload(&value)).expect("queued")
                })
                .collect();
            let mut offsets = Vec::new();
            for f in futs {
                let d = f.await.expect("delivery future").expect("acknowledged");
                offsets.push((d.partition, d.offset));
            }
            offsets
        }
    });
    let mut all: Vec<(i32, i64)> = futures::future::join_all(sends).await.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3 * PER_PRODUCER, "an offset was given twice");
    let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
    let mut total = 0;
    for p in 0..3 {
        let (lo, hi) = consumer.fetch_watermarks("budget", p, Duration::from_secs(5)).expect("watermarks");
        total += hi - lo;
    }
    assert_eq!(total as usize, 3 * PER_PRODUCER);
    node.shutdown().await;
}
