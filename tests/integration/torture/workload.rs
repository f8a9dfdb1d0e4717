//! The clients of a campaign, each recording into the history: producers (idempotent and
//! plain, acks=all), a reader that assigns itself every partition and reads from the start,
//! and a group member that subscribes and commits every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::history::{History, Op, Outcome};

pub const TOPIC: &str = "torture";

/// Produces `name-0`, `name-1`, ... at about `rate` per second until `stop`.
pub async fn producer(
    history: Arc<History>,
    bootstrap: String,
    name: &'static str,
    idempotent: bool,
    rate: u32,
    stop: Arc<AtomicBool>,
) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", if idempotent { "true" } else { "false" })
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()
        .expect("producer");
    let mut sends = Vec::new();
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let value = format!("{name}-{n}");
        let key = n.to_string();
        let op = |partition, offset| Op::Send { value: value.clone(), idempotent, partition, offset };
        history.record(name, Outcome::Invoke, op(-1, -1));
        let record = FutureRecord::to(TOPIC).key(&key).payload(&value);
        match producer.send_result(record) {
            Ok(delivery) => {
                let (history, value) = (history.clone(), value.clone());
                sends.push(tokio::spawn(async move {
                    let op = |partition, offset| Op::Send { value: value.clone(), idempotent, partition, offset };
                    match delivery.await {
                        Ok(Ok(d)) => history.record(name, Outcome::Ok, op(d.partition, d.offset)),
                        Ok(Err((e, _))) => history.record(name, classify(&e), op(-1, -1)),
                        Err(_) => history.record(name, Outcome::Info("delivery dropped".into()), op(-1, -1)),
                    }
                }));
            }
            Err((e, _)) => history.record(name, Outcome::Fail(e.to_string()), op(-1, -1)),
        }
        n += 1;
        let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
    }
    for s in sends {
        let _ = s.await;
    }
}

/// Errors after librdkafka's own retries: a timeout may have been stored, others were not.
fn classify(e: &KafkaError) -> Outcome {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::Fatal) => {
            Outcome::Info(e.to_string())
        }
        _ => Outcome::Fail(e.to_string()),
    }
}

/// Reads every partition from the start, recording each message, until `stop`.
pub fn reader(history: Arc<History>, bootstrap: String, partitions: i32, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "torture-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            let op =
                Op::Poll { consumer: "reader".into(), session: 0, partition: m.partition(), offset: m.offset(), value };
            history.record("reader", Outcome::Ok, op);
        }
    }
}

/// Counts rebalances: after one the member may read again from its committed offsets.
struct Sessions(AtomicU64);

impl ClientContext for Sessions {}

impl ConsumerContext for Sessions {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A group member: subscribes, commits its position every second and records the committed
/// offsets as the cluster reports them back.
pub fn member(history: Arc<History>, bootstrap: String, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer<Sessions> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "torture-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("log_level", "3")
        .create_with_context(Sessions(AtomicU64::new(0)))
        .expect("member");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let session = consumer.context().0.load(Ordering::SeqCst);
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            let op =
                Op::Poll { consumer: "member".into(), session, partition: m.partition(), offset: m.offset(), value };
            history.record("member", Outcome::Ok, op);
        }
        if last_commit.elapsed() >= Duration::from_secs(1) {
            last_commit = Instant::now();
            if consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).is_ok()
                && let Ok(c) = consumer.committed(Duration::from_secs(5))
            {
                for e in c.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let op = Op::Committed { group: "torture-group".into(), partition: e.partition(), offset: o };
                        history.record("member", Outcome::Ok, op);
                    }
                }
            }
        }
    }
}

/// Reads every partition from the start to its high watermark into the history. Retries
/// until `timeout` while the cluster is still settling.
pub fn final_read(history: &History, bootstrap: &str, partitions: i32, timeout: Duration) -> Result<usize, String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "torture-final")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut ends = Vec::new();
    for p in 0..partitions {
        loop {
            match consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5)) {
                Ok((_, high)) => break ends.push(high),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("torture: watermarks of {TOPIC}-{p}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(format!("watermarks of {TOPIC}-{p}: {e}")),
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut next = vec![0i64; partitions as usize];
    let mut read = 0;
    while next.iter().zip(&ends).any(|(n, e)| n < e) {
        if Instant::now() > deadline {
            return Err(format!("final read stopped at {next:?} of {ends:?}"));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                let p = m.partition();
                if m.offset() >= next[p as usize] {
                    next[p as usize] = m.offset() + 1;
                    if m.offset() < ends[p as usize] {
                        history.record("final", Outcome::Ok, Op::Final { partition: p, offset: m.offset(), value });
                        read += 1;
                    }
                }
            }
            Some(Err(e)) => eprintln!("torture: final read: {e}"),
            None => {}
        }
    }
    Ok(read)
}

/// A topic nobody writes to while the faults run: its groups go quiet (no heartbeats, no
/// election timers) and have to come through every fault on the node-level pings alone.
pub const IDLE_TOPIC: &str = "torture-idle";

/// Writes `<round>-<p>` to every partition of [`IDLE_TOPIC`], acks=all, retrying until
/// `timeout`.
pub async fn idle_round(bootstrap: &str, round: &str, partitions: i32, timeout: Duration) -> Result<(), String> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    for p in 0..partitions {
        let value = format!("{round}-{p}");
        producer
            .send(FutureRecord::<(), _>::to(IDLE_TOPIC).partition(p).payload(&value), timeout)
            .await
            .map_err(|(e, _)| format!("writing {value} to {IDLE_TOPIC}-{p}: {e}"))?;
    }
    Ok(())
}

/// Reads [`IDLE_TOPIC`] back until each partition has shown `<round>-<p>` for every round.
pub fn idle_check(bootstrap: &str, rounds: &[&str], partitions: i32, timeout: Duration) -> Result<(), String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "torture-idle")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut missing = std::collections::HashSet::new();
    for p in 0..partitions {
        tpl.add_partition_offset(IDLE_TOPIC, p, Offset::Beginning).map_err(|e| e.to_string())?;
        missing.extend(rounds.iter().map(|r| (p, format!("{r}-{p}"))));
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    while !missing.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{IDLE_TOPIC}: never read back {missing:?}"));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            missing.remove(&(m.partition(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()));
        }
    }
    Ok(())
}
