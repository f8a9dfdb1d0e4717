//! Scaling the data plane under load (real processes): a fourth data node joins a cluster of
//! three and receives its share of replicas (learner → voter → old replica removed) with
//! leadership balanced; then it is decommissioned and its replicas move back. An acks=all
//! idempotent producer runs throughout (leadership moves every few seconds, and each move can
//! leave a forwarded batch to be retried behind its successor): every acknowledged message is
//! read back at its offset, and every partition's offsets are contiguous.

mod cluster;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronik_proto::client::ControlClient;
use chronik_proto::control::{ClusterMetadata, DecommissionNodeRequest, GetMetadataRequest};
use cluster::*;
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "scaled";
const PARTITIONS: u32 = 12;

async fn metadata(ctl: &ControlClient) -> Option<ClusterMetadata> {
    ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await.ok()
}

/// Replicas and leaders per node, when every partition has a leader and its ISR is exactly
/// its assigned replicas (no move in flight).
fn settled(md: &ClusterMetadata) -> Option<(BTreeMap<u64, usize>, BTreeMap<u64, usize>)> {
    let t = md.topics.iter().find(|t| t.name == TOPIC)?;
    let (mut replicas, mut leaders) = (BTreeMap::new(), BTreeMap::new());
    for p in &t.partitions {
        let isr: BTreeSet<u64> = p.isr.iter().copied().collect();
        if p.leader.is_none() || isr != p.replicas.iter().copied().collect() {
            return None;
        }
        for r in &p.replicas {
            *replicas.entry(*r).or_insert(0) += 1;
        }
        *leaders.entry(p.leader?).or_insert(0) += 1;
    }
    Some((replicas, leaders))
}

async fn wait_settled(
    ctl: &ControlClient,
    what: &str,
    ok: impl Fn(&BTreeMap<u64, usize>, &BTreeMap<u64, usize>) -> bool,
) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let md = metadata(ctl).await;
        if let Some((r, l)) = md.as_ref().and_then(settled)
            && ok(&r, &l)
        {
            return (r, l);
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", md.as_ref().map(settled));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn spread(m: &BTreeMap<u64, usize>) -> usize {
    m.values().max().copied().unwrap_or(0) - m.values().min().copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_to_four_data_nodes_and_decommission_back_to_three_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 36 replicas and their moves on two cores: the default Raft timing, not failover's.
    let mut cluster = ProcCluster::start_with(dir.path(), 3, 1500, |cfg| {
        cfg.cluster.raft.election_timeout_ms = 1000;
        cfg.cluster.raft.heartbeat_interval_ms = 100;
    })
    .await;
    let gcfg = cluster.config(9);
    let kafka = gcfg.listeners.kafka.to_string();
    let gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    // A gateway that never listens would only show as every message timing out minutes later.
    let listening = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&kafka).await.is_err() {
        assert!(Instant::now() < listening, "the gateway does not listen on {kafka}:\n{}", gateway.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ctl = cluster.control_client();
    cluster.create_topic(TOPIC, PARTITIONS, 3).await;
    wait_settled(&ctl, "initial placement", |r, _| r.len() == 3).await;

    let producer: FutureProducer = producer_config(&kafka)
        .set("message.timeout.ms", "120000")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let acked: Arc<Mutex<BTreeMap<(i32, i64), u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(64));
            let mut tasks = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let permit = permits.clone().acquire_owned().await.expect("permit");
                let part = (i % PARTITIONS as u64) as i32;
                let value = format!("{i}");
                // Enqueued in order here, so the order in each partition can be checked.
                let delivery = loop {
                    match producer.send_result(FutureRecord::<(), _>::to(TOPIC).partition(part).payload(&value)) {
                        Ok(d) => break d,
                        Err(_) => {
                            if let Some((code, reason)) = producer.client().fatal_error() {
                                panic!("the producer failed fatally: {code:?}: {reason}");
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                    }
                };
                let acked = acked.clone();
                tasks.push(tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(d)) => {
                            assert!(
                                acked.lock().unwrap().insert((d.partition, d.offset), i).is_none(),
                                "offset acknowledged twice"
                            )
                        }
                        Ok(Err((e, _))) => eprintln!("message {i} not acknowledged: {e}"),
                        Err(_) => eprintln!("message {i}: delivery dropped"),
                    }
                    drop(permit);
                }));
                i += 1;
                // A steady load, not a flood: moves must not wait for a saturated disk.
                if i.is_multiple_of(64) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    cluster.data.push(cluster.start_node(5, "data"));
    let (replicas, leaders) = wait_settled(&ctl, "replicas moved onto node 5", |r, l| {
        r.len() == 4 && spread(r) <= 1 && l.len() == 4 && spread(l) <= 2
    })
    .await;
    eprintln!("scaled out in {:?}: replicas {replicas:?}, leaders {leaders:?}", started.elapsed());
    let during = acked.lock().unwrap().len();

    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = ctl
            .call(
                |mut c| async move { c.decommission_node(DecommissionNodeRequest { node_id: 5, cancel: false }).await },
            )
            .await
            .expect("decommission");
        if r.remaining_replicas == 0 && r.moves_in_flight == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "decommission of node 5 did not finish: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (replicas, leaders) =
        wait_settled(&ctl, "back on three nodes", |r, l| r.len() == 3 && !r.contains_key(&5) && l.len() == 3).await;
    eprintln!("decommissioned in {:?}: replicas {replicas:?}, leaders {leaders:?}", started.elapsed());
    let idx = cluster.data.iter().position(|d| d.id == 5).expect("node 5");
    cluster.data[idx].stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(150), sender)
        .await
        .unwrap_or_else(|_| {
            panic!("deliveries still pending 150 s after the producer stopped; gateway log:\n{}", gateway.log_text())
        })
        .expect("sender");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > during, "producers stalled during the decommission");
    eprintln!("{} messages acknowledged", acked.len());

    let consumer: BaseConsumer = consumer_config(&kafka).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let last: BTreeMap<i32, i64> = acked.keys().fold(BTreeMap::new(), |mut m, (p, o)| {
        let e = m.entry(*p).or_insert(*o);
        *e = (*e).max(*o);
        m
    });
    let mut read: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while last.iter().any(|(p, o)| !read.contains_key(&(*p, *o))) {
        assert!(Instant::now() < deadline, "read {} of {} messages", read.len(), acked.len());
        if let Some(m) = consumer.poll(Duration::from_millis(300)) {
            let m = m.expect("fetch served");
            let i: u64 = String::from_utf8_lossy(m.payload().unwrap_or_default()).parse().expect("message number");
            if let Some(prev) = read.insert((m.partition(), m.offset()), i) {
                assert_eq!(prev, i, "two values at offset {} of partition {}", m.offset(), m.partition());
            }
        }
    }
    for (k, v) in &acked {
        assert_eq!(read.get(k), Some(v), "acknowledged message at {k:?} lost or changed");
    }
    for p in 0..PARTITIONS as i32 {
        let offsets: Vec<i64> = read.keys().filter(|(pp, _)| *pp == p).map(|(_, o)| *o).collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>(), "partition {p} has a gap");
    }
}
