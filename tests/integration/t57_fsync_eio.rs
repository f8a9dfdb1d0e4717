//! fsync returning EIO (a failing disk), injected into a real standalone process with the
//! `shims/fsync_eio.c` LD_PRELOAD shim: the node stops acknowledging at once, never
//! acknowledges a write whose sync failed, and says why in its log and in `/health`. After a
//! restart on a working disk, everything acknowledged before the failure is there.

mod faults;
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};

use faults::fsync_eio_shim;
use harness::*;

const TOPIC: &str = "eio";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_eio_fail_stops_the_node_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shim = fsync_eio_shim(dir.path());
    let trigger = dir.path().join("disk-fails");
    let data = dir.path().join("data");
    let (kafka, http_port, grpc) = (free_port(), free_port(), free_port());
    let env = [("LD_PRELOAD", shim.as_os_str()), ("EIO_SHIM_TRIGGER", trigger.as_os_str())];
    let mut server = ServerProcess::start_with_env(&data, kafka, http_port, grpc, &env);
    let http_addr: std::net::SocketAddr = server.http.parse().expect("http addr");

    let producer: FutureProducer =
        producer_config(&server.kafka).set("message.timeout.ms", "4000").create().expect("producer");
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        let value = format!("before-{i}");
        let d = producer
            .send(FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&value), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| {
                panic!("record {i} not acknowledged on a working disk: {e:?}; log:\n{}", server.log_text())
            });
        acked.insert(d.offset, value);
    }
    let (status, body) = http(http_addr, "GET", "/health", None, None).await;
    assert_eq!(status, 200, "healthy before the disk fails: {body}");

    // The disk starts failing every sync.
    std::fs::write(&trigger, b"").expect("trigger");
    let started = Instant::now();
    for i in 0..5 {
        let value = format!("after-{i}");
        let r =
            producer.send(FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&value), Duration::from_secs(30)).await;
        assert!(r.is_err(), "{value} was acknowledged although every fsync fails: {r:?}");
    }
    eprintln!("5 records refused in {:?} after the disk failed", started.elapsed());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http(http_addr, "GET", "/health", None, None).await;
        if status == 503 && body.contains("WAL fail-stopped") {
            assert!(body.contains("Input/output error") || body.contains("os error 5"), "the cause is named: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "/health does not report the failed disk: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.log_text().contains("WAL fail-stopped"), "the log says why:\n{}", server.log_text());

    // A restart on a working disk has every acknowledged record, at its offset.
    server.kill9();
    std::fs::remove_file(&trigger).expect("trigger");
    drop(server);
    let server = ServerProcess::start(&data, kafka, http_port, grpc);
    let read = server.read_back(TOPIC, &format!("expected the {} acknowledged ones", acked.len()), |read| {
        acked.keys().all(|o| read.contains_key(o))
    });
    for (offset, value) in &acked {
        assert_eq!(read.get(offset), Some(value), "acknowledged record at offset {offset}");
    }
}
