//! kill -9 of a real standalone process while producing with acks=all: after a restart every
//! acknowledged message is there at its offset, and offsets continue with no gap and no reuse.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_producing_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (kafka, http, grpc) = (free_port(), free_port(), free_port());
    let mut server = ServerProcess::start(&data, kafka, http, grpc);
    let bootstrap = server.kafka.clone();
    let topic = "crash";

    let producer: FutureProducer =
        producer_config(&bootstrap).set("message.timeout.ms", "5000").create().expect("producer");
    // The first record auto-creates the topic; then keep producing until the kill lands.
    producer
        .send(FutureRecord::<(), _>::to(topic).partition(0).payload("m-first"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("first record not acknowledged: {e:?}; log:\n{}", server.log_text()));
    let acked = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<i64, String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let sender = {
        let (acked, stop, producer) = (acked.clone(), stop.clone(), producer.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut futs = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
                let value = format!("m{i}");
                let (p, acked) = (producer.clone(), acked.clone());
                futs.push(tokio::spawn(async move {
                    let rec = FutureRecord::<(), _>::to(topic).partition(0).payload(&value);
                    if let Ok(d) = p.send(rec, Duration::from_secs(5)).await {
                        acked.lock().unwrap().insert(d.offset, value);
                    }
                    drop(permit);
                }));
                i += 1;
            }
            for f in futs {
                let _ = f.await;
            }
            i
        })
    };
    // Kill without warning while records are in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let i = sender.await.expect("sender");
    let acked = acked.lock().unwrap().clone();
    eprintln!("sent {i} records, {} acknowledged before the kill", acked.len());
    assert!(acked.len() > 1, "nothing was acknowledged before the kill; log:\n{}", server.log_text());
    drop(server);

    let server = ServerProcess::start(&data, kafka, http, grpc);
    let max_acked = *acked.keys().last().expect("acked");
    let read =
        server.read_back(topic, &format!("expected at least {}", max_acked + 1), |read| read.len() as i64 > max_acked);
    for (offset, value) in &acked {
        assert_eq!(read.get(offset), Some(value), "acknowledged record at offset {offset} lost or changed");
    }
    let consumer: BaseConsumer = consumer_config(&server.kafka).create().expect("consumer");
    let (lo, hi) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)).expect("watermarks");
    assert_eq!(lo, 0);
    assert!(hi as usize >= read.len());
    // Offsets are contiguous from 0 up to the high watermark.
    let keys: Vec<i64> = read.keys().copied().collect();
    assert_eq!(keys, (0..keys.len() as i64).collect::<Vec<_>>());

    // New writes continue right after the recovered log: no gap, no reuse.
    let producer: FutureProducer = producer_config(&server.kafka).create().expect("producer");
    let d = producer
        .send(FutureRecord::<(), _>::to(topic).partition(0).payload("after-restart"), Duration::from_secs(10))
        .await
        .expect("acknowledged after restart");
    assert_eq!(d.offset, hi, "the first offset after restart follows the recovered high watermark");
}
