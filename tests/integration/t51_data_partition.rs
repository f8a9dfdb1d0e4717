//! A partition leader cut off from its followers (in-process nodes, the Raft transport's fault
//! layer): it stops acknowledging, the majority elects a new leader, producers carry on through
//! the gateway, and after healing the old leader's unacknowledged tail is gone while nothing
//! acknowledged is lost.

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronik_proto::client::ControlClient;
use chronik_proto::control::GetMetadataRequest;
use chronik_raft::Faults;
use cluster::*;
use harness::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

fn tune(cfg: &mut chronik_shared::config::ChronikConfig) {
    cfg.cluster.raft.election_timeout_ms = 300;
    cfg.cluster.raft.heartbeat_interval_ms = 30;
    cfg.cluster.heartbeat.interval_ms = 200;
    cfg.cluster.heartbeat.node_timeout_ms = 2000;
}

async fn leader_of(ctl: &ControlClient, topic: &str) -> Option<u64> {
    let md = ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.ok()?;
    md.topics.iter().find(|t| t.name == topic)?.partitions.first()?.leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_partition_leader_stops_acknowledging_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Faults::default();
    let cluster = DataCluster::start(dir.path(), &faults, tune).await;
    let (data, cport, kafka) = (&cluster.data, cluster.control_port, cluster.kafka());

    let topic = "isolated";
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka).create().expect("admin");
    for r in admin
        .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(3))], &AdminOptions::new())
        .await
        .expect("create")
    {
        r.expect("created");
    }
    let ctl = ControlClient::new(vec![format!("127.0.0.1:{cport}")], Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    let old = loop {
        if let Some(l) = leader_of(&ctl, topic).await {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader for {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let producer: FutureProducer =
        producer_config(&kafka).set("message.timeout.ms", "60000").create().expect("producer");
    let acked: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(32));
            let mut i = 0u64;
            let mut tasks = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let permit = permits.clone().acquire_owned().await.expect("permit");
                let (p, acked) = (producer.clone(), acked.clone());
                let value = format!("v{i}");
                tasks.push(tokio::spawn(async move {
                    if let Ok(d) = p
                        .send(FutureRecord::<(), _>::to(topic).partition(0).payload(&value), Duration::from_secs(60))
                        .await
                    {
                        assert!(acked.lock().unwrap().insert(d.offset, value).is_none(), "offset acknowledged twice");
                    }
                    drop(permit);
                }));
                i += 1;
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let others: Vec<u64> = data.keys().copied().filter(|n| *n != old).collect();
    faults.isolate(old, &others);
    // The cut-off leader can commit nothing.
    let part = data[&old].inner().partition(topic, 0).expect("old leader's replica");
    let batch = {
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let rec = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"written to the cut-off leader")),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [&rec],
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .expect("batch");
        buf.freeze()
    };
    let direct = tokio::time::timeout(Duration::from_secs(3), part.produce(batch)).await;
    assert!(!matches!(direct, Ok(Ok(_))), "the isolated leader acknowledged a write: {direct:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        match leader_of(&ctl, topic).await {
            Some(l) if l != old => break l,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no new leader on the majority side");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at_switch = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = acked.lock().unwrap().len();
    assert!(later > at_switch + 50, "producers did not continue through the new leader {new}: {at_switch} -> {later}");

    faults.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("sender");
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged; leader {old} isolated, {new} took over", acked.len());

    // Every replica converges on the same log (the old leader's unacknowledged tail is gone).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hws: Vec<i64> =
            data.values().map(|d| d.inner().partition(topic, 0).expect("replica").high_watermark()).collect();
        if hws.iter().all(|h| *h == hws[0]) && hws[0] as usize >= acked.len() {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge: {hws:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let consumer: BaseConsumer = consumer_config(&kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let last = *acked.keys().last().expect("acked");
    let mut read = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read.contains_key(&last) {
        assert!(Instant::now() < deadline, "read {} records, missing offset {last}", read.len());
        if let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.expect("fetch ok");
            read.insert(m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    for (o, v) in &acked {
        assert_eq!(read.get(o), Some(v), "acknowledged record at offset {o} lost or changed");
    }
    let offs: Vec<i64> = read.keys().copied().collect();
    assert_eq!(offs, (0..offs.len() as i64).collect::<Vec<_>>());

    cluster.shutdown().await;
}
