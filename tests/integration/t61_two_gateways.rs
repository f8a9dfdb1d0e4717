//! Two gateways in front of one cluster (real processes): kill -9 one while an idempotent
//! producer and a consumer run; both carry on through the other gateway, and the log holds
//! every message exactly once, in order.

mod cluster;
mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::*;
use harness::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_gateway_leaves_clients_on_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cport = free_port();
    let tune = |cfg: &mut chronik_shared::config::ChronikConfig| {
        cfg.cluster.heartbeat.interval_ms = 200;
        cfg.cluster.heartbeat.node_timeout_ms = 2000;
    };
    let mut ccfg = control_config(dir.path(), 1, cport, vec![]);
    tune(&mut ccfg);
    let _control = ControlProc::start_role(dir.path(), &ccfg, "control");
    wait_views(&[cport], Duration::from_secs(20), |v| agreed(v, &[1]).is_some()).await;
    let mut dcfg = control_config(dir.path(), 2, free_port(), vec![seed(1, cport)]);
    tune(&mut dcfg);
    let _data = ControlProc::start_role(dir.path(), &dcfg, "data");
    let mut gateways = Vec::new();
    let mut addrs = Vec::new();
    for id in [5u64, 6] {
        let mut g = control_config(dir.path(), id, free_port(), vec![seed(1, cport)]);
        tune(&mut g);
        addrs.push(g.listeners.kafka.to_string());
        gateways.push(ControlProc::start_role(dir.path(), &g, "gateway"));
    }
    let bootstrap = addrs.join(",");
    let topic = "two-gateways";
    let producer: FutureProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The first record auto-creates the topic through whichever gateway answers.
    while producer
        .send(FutureRecord::<(), _>::to(topic).partition(0).payload("start"), Duration::from_secs(10))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the cluster never accepted a record");
    }

    let consumed: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (consumed, stop, bootstrap) = (consumed.clone(), stop.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = consumer_config(&bootstrap).create().expect("consumer");
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Beginning).expect("tpl");
            consumer.assign(&tpl).expect("assign");
            while !stop.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    consumed.lock().unwrap().push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
                }
            }
        })
    };

    // Kill the gateway that clients are told leads the partition: the one they are using.
    use rdkafka::producer::Producer;
    let md = producer.client().fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
    let leader = md.topics()[0].partitions()[0].leader() as u64;
    let victim = gateways.iter().position(|g| g.id == leader).expect("the leader is one of the two gateways");
    eprintln!("gateway {leader} leads {topic}-0; killing it");
    const N: usize = 3000;
    let mut futs = Vec::new();
    for i in 0..N {
        let v = format!("m{i:05}");
        futs.push(producer.send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(&v)).expect("queued"));
        if i == N / 3 {
            gateways[victim].kill9();
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for f in futs {
        f.await.expect("delivery future").expect("acknowledged despite the dead gateway");
    }
    let expected: Vec<String> =
        std::iter::once("start".to_string()).chain((0..N).map(|i| format!("m{i:05}"))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed.lock().unwrap().len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the consumer read {} of {}",
            consumed.lock().unwrap().len(),
            expected.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader");
    assert_eq!(*consumed.lock().unwrap(), expected, "every message exactly once, in order, read through the survivor");
}
