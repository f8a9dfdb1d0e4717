//! The fault campaign: 3 control nodes, 4 data nodes and 2 gateways as real processes; an
//! idempotent and a plain producer (acks=all), a reader of every partition and a group member
//! that commits, all recording a history; a seeded nemesis running every fault kind (kill -9,
//! SIGSTOP, one-way partitions of a node and of a partition leader, a skewed clock, a full
//! disk, fsync EIO, leadership transfers, decommissioning) while they run; then a final read
//! and the checker's report. Fails on any anomaly. A second topic nobody writes to during the
//! faults (its groups quiet) must take a write afterwards and keep the one from before.
//!
//!   cargo test --release --test t90_torture -- --ignored --nocapture        # 5 minutes
//!   TORTURE_SECS=3600 TORTURE_SEED=42 cargo test --release --test t90_torture -- --ignored --nocapture
//!
//! Every run prints its seed; the same seed draws the same faults in the same order (the
//! timing of a real cluster still varies). The checker's own tests run with `cargo test`.

mod cluster;
mod faults;
mod harness;
mod torture;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::{ControlProc, ProcCluster};
use torture::history::{History, Op, Outcome};
use torture::{checker, nemesis, workload};

const PARTITIONS: i32 = 6;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a fault campaign of TORTURE_SECS (default 300) seconds: .ci/run runs it"]
async fn campaign() {
    let secs = env_u64("TORTURE_SECS").unwrap_or(300);
    let seed = env_u64("TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("torture: seed {seed}, {secs} s of faults (replay: TORTURE_SEED={seed} TORTURE_SECS={secs})");
    let mut rng = nemesis::Rng::new(seed);

    let dir = tempfile::tempdir().expect("tempdir");
    let disk = faults::Tmpfs::mount(&dir.path().join("disk"), "192m");
    let shim = faults::fsync_eio_shim(dir.path());
    let eio_trigger = dir.path().join("fsync-fails");
    let mut cluster = ProcCluster::start_tuned(dir.path(), 3, 0, 3000, |_| {}, |_| {}).await;
    let (disk_node, eio_node) = (4, 5);
    for id in 2..=5u64 {
        let mut cfg = cluster.config(id);
        let mut env: Vec<(&'static str, &'static str)> = Vec::new();
        if id == disk_node {
            cfg.node.data_dir = disk.0.join("data");
            cfg.wal.min_free_bytes = 32 << 20;
            cfg.wal.segment_bytes = 4 << 20;
        }
        if id == eio_node {
            env.push(("LD_PRELOAD", Box::leak(shim.display().to_string().into_boxed_str())));
            env.push(("EIO_SHIM_TRIGGER", Box::leak(eio_trigger.display().to_string().into_boxed_str())));
        }
        cluster.data.push(ControlProc::start_role_env(dir.path(), &cfg, "data", env));
    }
    let mut gateways = Vec::new();
    let mut addrs = Vec::new();
    for id in [21u64, 22] {
        let cfg = cluster.config(id);
        addrs.push(cfg.listeners.kafka.to_string());
        gateways.push(ControlProc::start_role(dir.path(), &cfg, "gateway"));
    }
    let bootstrap = addrs.join(",");
    cluster.create_topic(workload::TOPIC, PARTITIONS as u32, 3).await;
    cluster.create_topic(workload::IDLE_TOPIC, PARTITIONS as u32, 3).await;
    workload::idle_round(&bootstrap, "before", PARTITIONS, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));

    let history = Arc::new(History::new());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let producers = [("idem", true, 60), ("plain", false, 30)].map(|(name, idem, rate)| {
        tokio::spawn(workload::producer(history.clone(), bootstrap.clone(), name, idem, rate, stop_producers.clone()))
    });
    let consumers = [
        {
            let (h, b, s) = (history.clone(), bootstrap.clone(), stop_consumers.clone());
            std::thread::spawn(move || workload::reader(h, b, PARTITIONS, s))
        },
        {
            let (h, b, s) = (history.clone(), bootstrap.clone(), stop_consumers.clone());
            std::thread::spawn(move || workload::member(h, b, s))
        },
    ];
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut target = nemesis::Target {
        cluster,
        gateways,
        disk_node,
        disk_dir: disk.0.clone(),
        eio_node,
        eio_trigger,
        faketime: faults::faketime(),
    };
    let started = Instant::now();
    let counts = nemesis::run(&mut target, &mut rng, &history, started + Duration::from_secs(secs)).await;
    eprintln!("torture: faults done after {:?}: {counts:?}", started.elapsed());

    // Healed: stop writing, wait for every send to resolve, read everything back.
    stop_producers.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.expect("producer task");
    }
    let history_ref = history.clone();
    let b = bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || {
        workload::final_read(&history_ref, &b, PARTITIONS, Duration::from_secs(180))
    })
    .await
    .expect("final read");
    let read = read.unwrap_or_else(|e| panic!("seed {seed}: the final read failed: {e}"));
    // The idle topic's groups spent the faults quiet: each still takes a write, and keeps
    // what it acknowledged before.
    workload::idle_round(&bootstrap, "after", PARTITIONS, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the idle topic after the faults: {e}"));
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        workload::idle_check(&b, &["before", "after"], PARTITIONS, Duration::from_secs(120))
    })
    .await
    .expect("idle check")
    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    eprintln!(
        "torture: the idle topic's {PARTITIONS} quiet partitions took a write after the faults and kept the one before"
    );
    // The reader catches up with everything acknowledged before it stops.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = history.events();
        let read_values: std::collections::HashSet<&str> = events
            .iter()
            .filter_map(|e| match &e.op {
                Op::Poll { consumer, value, .. } if consumer == "reader" => Some(value.as_str()),
                _ => None,
            })
            .collect();
        let behind = events
            .iter()
            .filter(|e| e.outcome == Outcome::Ok)
            .filter(|e| matches!(&e.op, Op::Send { value, .. } if !read_values.contains(value.as_str())))
            .count();
        if behind == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop_consumers.store(true, Ordering::SeqCst);
    for c in consumers {
        c.join().expect("consumer thread");
    }

    let report = checker::check(&history.events());
    let path = std::env::temp_dir().join(format!("torture-{seed}.history"));
    let _ = history.dump(&path);
    eprintln!("torture: seed {seed}: {read} messages in the log at the end; history in {}", path.display());
    eprintln!("torture: {report}");
    if !report.valid() || std::env::var_os("TORTURE_KEEP_LOGS").is_some() {
        // The nodes' logs go with the history, before the temporary directory goes.
        let kept = std::env::temp_dir().join(format!("torture-{seed}-logs"));
        let _ = std::fs::create_dir_all(&kept);
        for e in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let _ = std::fs::copy(e.path(), kept.join(e.file_name()));
            }
        }
        eprintln!("torture: the nodes' logs are in {}", kept.display());
    }
    assert!(report.valid(), "seed {seed}: anomalies found (replay with TORTURE_SEED={seed}):\n{report}");
}
