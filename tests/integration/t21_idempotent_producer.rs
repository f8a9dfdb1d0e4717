//! The idempotent producer across a kill -9: librdkafka retries the batches that were in flight
//! when the node died; after the restart each message is in the log exactly once, in the order
//! it was sent.

mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_batches_land_exactly_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (kafka, http, grpc) = (free_port(), free_port(), free_port());
    let mut server = ServerProcess::start(&data, kafka, http, grpc);
    let topic = "idempotent";
    let producer: FutureProducer = producer_config(&server.kafka)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    producer
        .send(FutureRecord::<(), _>::to(topic).partition(0).payload("first"), Duration::from_secs(30))
        .await
        .expect("first record acknowledged");

    const N: usize = 20_000;
    let mut futs = Vec::with_capacity(N);
    for i in 0..N {
        let value = format!("m{i:06}");
        futs.push(producer.send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(&value)).expect("queued"));
    }
    // Kill without warning while batches are in flight, then come back on the same ports.
    tokio::time::sleep(Duration::from_millis(60)).await;
    server.kill9();
    server = ServerProcess::start(&data, kafka, http, grpc);
    let mut acked = 0;
    for f in futs {
        if f.await.expect("delivery future").is_ok() {
            acked += 1;
        }
    }
    assert_eq!(acked, N, "the idempotent producer gave up on some records; log:\n{}", server.log_text());

    let consumer: BaseConsumer = consumer_config(&server.kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let mut offsets = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < N + 1 {
        assert!(Instant::now() < deadline, "read {} of {}", values.len(), N + 1);
        if let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.expect("fetch ok");
            offsets.insert(m.offset(), ());
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    // Nothing more: no duplicate was appended after the N+1 records.
    assert!(consumer.poll(Duration::from_secs(2)).is_none(), "more records than were sent: duplicates");
    assert_eq!(values[0], "first");
    let expected: Vec<String> = (0..N).map(|i| format!("m{i:06}")).collect();
    assert_eq!(&values[1..], &expected[..], "each message exactly once, in send order");
    assert_eq!(offsets.len(), N + 1);
    eprintln!("duplicates the server recognised: {}", server.log_text().matches("Duplicate batch").count());
}

/// The rules themselves, with raw Produce requests: a retried batch is answered with its first
/// offset and stored once; a sequence gap and a fenced epoch are refused as Kafka does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_gaps_and_fenced_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("start");
    let topic = "dedup";
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", node.kafka_addr.to_string()).create().expect("admin");
    let topics = [rdkafka::admin::NewTopic::new(topic, 1, rdkafka::admin::TopicReplication::Fixed(1))];
    for r in admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()).await.expect("create") {
        r.expect("created");
    }
    let mut raw = RawProducer::connect(node.kafka_addr).await;
    // Retry until the partition has a leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let r = raw.produce(topic, record_batch("a", Some((7, 0, 0))).freeze()).await;
        if r.0 == 0 {
            break r;
        }
        assert!(Instant::now() < deadline, "topic never became writable: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(first, (0, 0));
    assert_eq!(
        raw.produce(topic, record_batch("a", Some((7, 0, 0))).freeze()).await,
        (0, 0),
        "a retry gets its first offset"
    );
    assert_eq!(raw.produce(topic, record_batch("b", Some((7, 0, 1))).freeze()).await, (0, 1));
    // A gap: the leader first waits for the missing sequences (they may be on their way), then
    // sends the batch back unwritten to be retried after them (NOT_ENOUGH_REPLICAS, as clients
    // retry it); once they have been missing for good, the log refuses it as out of order.
    let gap = record_batch("x", Some((7, 0, 5))).freeze();
    assert_eq!(raw.produce(topic, gap.clone()).await.0, 19, "NOT_ENOUGH_REPLICAS: retry after sequences 2-4");
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let code = raw.produce(topic, gap.clone()).await.0;
        if code != 19 || Instant::now() > deadline {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(
        raw.produce(topic, record_batch("c", Some((7, 1, 0))).freeze()).await,
        (0, 2),
        "a new epoch starts at 0"
    );
    assert_eq!(raw.produce(topic, record_batch("y", Some((7, 0, 2))).freeze()).await.0, 47, "INVALID_PRODUCER_EPOCH");
    let consumer: BaseConsumer = consumer_config(&node.kafka_addr.to_string()).create().expect("consumer");
    consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
    assert_eq!(
        consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).expect("watermarks"),
        (0, 3),
        "three records stored"
    );
    node.shutdown().await;
}
