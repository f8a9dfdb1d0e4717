//! The replicated data plane as real processes: one control node, three data nodes, one
//! gateway. Partitions with replication factor 3; kill -9 of a data node that leads some of
//! them while an idempotent acks=all producer runs: every message ends up in the log exactly
//! once and in send order per partition, and the restarted node rejoins every ISR. With
//! pipelined replication, every acknowledged write is on every replica and the nodes stop
//! cleanly.

mod cluster;
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_proto::control::GetMetadataRequest;
use cluster::*;
use harness::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_data_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = ProcCluster::start(dir.path(), 3, 2000).await;
    let gcfg = cluster.config(5);
    let kafka = gcfg.listeners.kafka.to_string();
    let _gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    let ctl = cluster.control_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md =
            ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.expect("md");
        if md.data_nodes.iter().filter(|n| n.alive).count() == 3 && !md.gateways.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not come up: {md:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let topic = "replicated";
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &kafka).create().expect("admin");
    for r in admin
        .create_topics(&[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(3))], &AdminOptions::new())
        .await
        .expect("create")
    {
        r.expect("topic created");
    }
    // Wait until every partition has a leader.
    let leaders = |md: &chronik_proto::control::ClusterMetadata| -> BTreeMap<u32, u64> {
        md.topics
            .iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.leader.map(|l| (p.partition, l)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let by_partition = loop {
        let md =
            ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.expect("md");
        let l = leaders(&md);
        if l.len() == PARTITIONS as usize {
            break l;
        }
        assert!(Instant::now() < deadline, "partitions without leader: {md:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let producer: FutureProducer = producer_config(&kafka)
        .set("message.timeout.ms", "60000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let acked: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(64));
            let mut i = 0u64;
            let mut tasks = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let permit = permits.clone().acquire_owned().await.expect("permit");
                let acked = acked.clone();
                let value = format!("v{i}");
                let part = (i % PARTITIONS as u64) as i32;
                // Enqueued here, in order, so the log order per partition can be checked.
                let delivery = loop {
                    match producer.send_result(FutureRecord::<(), _>::to(topic).partition(part).payload(&value)) {
                        Ok(d) => break d,
                        Err(_) => {
                            if let Some((code, reason)) = producer.client().fatal_error() {
                                panic!("the idempotent producer failed fatally: {code:?}: {reason}");
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                    }
                };
                tasks.push(tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(d)) => assert!(
                            acked.lock().unwrap().insert((d.partition, d.offset), value).is_none(),
                            "offset acknowledged twice"
                        ),
                        Ok(Err((e, _))) => eprintln!("{value} not acknowledged: {e}"),
                        Err(_) => eprintln!("{value}: delivery dropped"),
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
    let highest = |acked: &BTreeMap<(i32, i64), String>| -> BTreeMap<i32, i64> {
        acked.keys().fold(BTreeMap::new(), |mut m, (p, o)| {
            let e = m.entry(*p).or_insert(*o);
            *e = (*e).max(*o);
            m
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before_kill, at_kill) = {
        let a = acked.lock().unwrap();
        (a.len(), highest(&a))
    };
    // Kill the data node that leads partition 0.
    let victim = by_partition[&0];
    let idx = cluster.data.iter().position(|d| d.id == victim).expect("victim");
    cluster.data[idx].kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after_kill = acked.lock().unwrap().len();
    assert!(after_kill > before_kill, "producers did not continue after the kill: {before_kill} -> {after_kill}");
    cluster.data[idx].restart();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(90), sender)
        .await
        .expect("deliveries still pending 90 s after the producer stopped")
        .expect("sender");
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged ({before_kill} before the kill)", acked.len());
    // Every partition, those the killed node led included, took writes again.
    let at_end = highest(&acked);
    for p in 0..PARTITIONS {
        assert!(
            at_end.get(&p) > at_kill.get(&p),
            "partition {p} took no write after the kill (led by {:?} before)",
            by_partition.get(&(p as u32))
        );
    }

    let consumer: BaseConsumer = consumer_config(&kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut read: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let max = at_end;
    let deadline = Instant::now() + Duration::from_secs(120);
    while max.iter().any(|(p, o)| !read.contains_key(&(*p, *o))) {
        assert!(Instant::now() < deadline, "read {} records; still missing the tail of some partitions", read.len());
        if let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.expect("fetch ok");
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            if let Some(prev) = read.insert((m.partition(), m.offset()), v.clone()) {
                assert_eq!(prev, v, "two values at offset {} of partition {}", m.offset(), m.partition());
            }
        }
    }
    for (k, v) in &acked {
        assert_eq!(read.get(k), Some(v), "acknowledged record at {k:?} lost or changed");
    }
    for p in 0..PARTITIONS {
        let offs: Vec<i64> = read.keys().filter(|(pp, _)| *pp == p).map(|(_, o)| *o).collect();
        assert_eq!(offs, (0..offs.len() as i64).collect::<Vec<_>>(), "offsets of partition {p} not contiguous");
        // The idempotent producer's retries across the failover left no duplicate and no
        // reordering: message numbers rise strictly along the partition.
        let seq: Vec<u64> = read
            .iter()
            .filter(|((pp, _), _)| *pp == p)
            .map(|(_, v)| v.trim_start_matches('v').parse().expect("message number"))
            .collect();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "partition {p} holds a duplicate or out-of-order message");
    }

    // The restarted node caught up and is back in the ISR of every partition.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md =
            ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.expect("md");
        let isrs: Vec<Vec<u64>> = md
            .topics
            .iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partitions.iter().map(|p| p.isr.clone()))
            .collect();
        if isrs.len() == PARTITIONS as usize && isrs.iter().all(|isr| isr.contains(&victim) && isr.len() == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "node {victim} did not rejoin every ISR: {isrs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `cluster.raft.enable_pipeline`: writes acknowledged through the gateway are on all three
/// replicas, a replica that is gone is retried with backoff, and every data node stops on
/// SIGTERM although its peers keep their replication streams to it open (a graceful stop used
/// to wait for them forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replication_acknowledges_writes_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = ProcCluster::start_with(dir.path(), 3, 2000, |cfg| {
        cfg.cluster.raft.enable_pipeline = true;
        cfg.cluster.raft.max_in_flight = 8;
    })
    .await;
    let gcfg = cluster.config(5);
    let kafka = gcfg.listeners.kafka.to_string();
    let mut gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    let topic = "pipelined";
    cluster.create_topic(topic, 3, 3).await;
    let producer: FutureProducer = producer_config(&kafka)
        .set("message.timeout.ms", "60000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let sends = (0..600).map(|i| {
        let producer = producer.clone();
        async move {
            let value = format!("m{i}");
            producer
                .send(FutureRecord::<(), _>::to(topic).partition(i % 3).payload(&value), Duration::from_secs(60))
                .await
                .map(|d| (d.partition, d.offset))
                .map_err(|(e, _)| e)
        }
    });
    let mut acked = [0i64; 3];
    for r in futures::future::join_all(sends).await {
        let (p, _) = r.expect("acknowledged");
        acked[p as usize] += 1;
    }
    assert_eq!(acked, [200, 200, 200]);
    // Every replica holds every write: each data node reports each partition's log end.
    let ctl = cluster.control_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md =
            ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.expect("md");
        let full = md
            .topics
            .iter()
            .filter(|t| t.name == topic)
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.isr.len() == 3)
            .count();
        if full == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not all catch up: {md:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A replica that is gone refuses connections: its peers retry with openraft's backoff,
    // not in a busy loop (which logged ~33,000 failed appends a second per node and took a
    // whole core).
    let victim = cluster.data[2].id;
    cluster.data[2].kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed_appends = |c: &ProcCluster| -> Vec<usize> {
        let pattern = format!("AppendEntries failed: node={victim},");
        c.data[..2].iter().map(|n| n.log_text().matches(pattern.as_str()).count()).collect()
    };
    let before = failed_appends(&cluster);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = failed_appends(&cluster);
    for (b, a) in before.iter().zip(&after) {
        assert!(a - b < 1000, "{} failed appends to the stopped node {victim} logged in 3 s", a - b);
    }
    drop(producer);
    assert!(gateway.stop(), "the gateway did not stop on SIGTERM");
    for node in &mut cluster.data {
        let stopped = node.stop();
        let log = node.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        assert!(
            stopped,
            "data node {} did not stop on SIGTERM within 10 s; its log ends:\n{}",
            node.id,
            tail.join("\n")
        );
    }
}
