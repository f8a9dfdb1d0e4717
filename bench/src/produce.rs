//! `produce`: kafka-producer-perf-test compatible load generator.
//!
//! Uses a [`ThreadedProducer`]: its thread serves delivery reports as they
//! arrive, with no future/channel per record, and the send loop sleeps while
//! it waits for --throughput tokens. (Waiting in `BaseProducer::poll` instead
//! spun: rust-rdkafka turns what is left of a poll's timeout into whole
//! milliseconds, so the last fraction of every wait was a busy loop, and with
//! 1 ms waits all of it; a rate-limited run took a whole core from the server
//! it measured on a 2-core machine.) Each record carries its send timestamp as
//! delivery opaque (no allocation per record).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};

use crate::client::{self, ErrorCapture, TopicState};
use crate::props::Props;
use crate::report::{Output, ProduceParams, ProduceStats};

/// Default for librdkafka's `message.timeout.ms` when neither it nor
/// `delivery.timeout.ms` is given: bounds how long an undeliverable record can
/// stay queued (librdkafka's own default is 300 s).
const DEFAULT_MESSAGE_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// Number of records to produce.
    #[arg(long, value_name = "N")]
    pub num_records: u64,

    /// Size of each record's value in bytes (random uppercase letters, like
    /// kafka-producer-perf-test; no key).
    #[arg(long, value_name = "BYTES")]
    pub record_size: usize,

    /// Throttle to this many records/sec; -1 means unlimited.
    #[arg(long, value_name = "RECORDS_PER_SEC", default_value_t = -1.0, allow_negative_numbers = true)]
    pub throughput: f64,

    /// librdkafka producer properties as key=value pairs, e.g.
    /// bootstrap.servers=127.0.0.1:9092 acks=all linger.ms=5 compression.type=zstd.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
    pub producer_props: Vec<String>,

    /// Properties file with producer settings (overridden by --producer-props).
    #[arg(long, value_name = "FILE", alias = "producer.config")]
    pub producer_config: Option<PathBuf>,

    /// Shorthand for `--producer-props bootstrap.servers=HOST:PORT` (wins over it).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_server: Option<String>,

    /// Create the topic first (an existing topic is kept as is).
    #[arg(long)]
    pub create_topic: bool,

    /// Partition count for --create-topic.
    #[arg(long, value_name = "P", default_value_t = 1)]
    pub partitions: i32,

    /// Replication factor for --create-topic; -1 asks for the broker default.
    #[arg(long, value_name = "RF", default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i32,

    /// Interval between progress lines, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub reporting_interval_ms: u64,

    /// Print the final summary as one JSON object on stdout (progress lines go
    /// to stderr).
    #[arg(long)]
    pub json: bool,

    /// Give up if the bootstrap server does not answer a metadata request
    /// within this time.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,

    /// Print librdkafka's logs and client errors to stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

impl ProduceArgs {
    fn common(&self) -> CommonArgs {
        CommonArgs {
            reporting_interval_ms: self.reporting_interval_ms,
            json: self.json,
            connect_timeout_ms: self.connect_timeout_ms,
            verbose: self.verbose,
        }
    }
}

/// Options shared by `produce` and `consume`. (They are repeated in both
/// argument structs rather than `#[command(flatten)]`ed, because clap cannot
/// detect a nested flatten inside the optional flatten that implements the
/// subcommand-less, kafka-producer-perf-test style invocation.)
#[derive(Debug, Clone)]
pub struct CommonArgs {
    pub reporting_interval_ms: u64,
    pub json: bool,
    pub connect_timeout_ms: u64,
    pub verbose: bool,
}

/// Producer context: records delivery latency and remembers client errors.
struct BenchProducerContext {
    start: Instant,
    record_size: u64,
    stats: Mutex<ProduceStats>,
    errors: ErrorCapture,
}

impl ClientContext for BenchProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.errors.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.on_error(&error, reason);
    }
}

impl ProducerContext for BenchProducerContext {
    /// Send time in nanoseconds since `start`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        let latency = Duration::from_nanos(now_ns.saturating_sub(sent_at_ns as u64));
        let Ok(mut stats) = self.stats.lock() else {
            return;
        };
        match result {
            Ok(_) => stats.record_ack(latency, self.record_size),
            Err((e, _)) => {
                let mut msg = e.to_string();
                if let Some(last) = self.errors.last() {
                    msg.push_str(&format!(" (last client error: {last})"));
                }
                if stats.record_error(msg.clone()) {
                    eprintln!("first delivery error: {msg}");
                }
            }
        }
    }
}

/// Shortest wait for a token: below this a sleep costs more than it saves.
const MIN_SLEEP: Duration = Duration::from_micros(200);

/// Token bucket for --throughput: tokens accrue continuously at `rate`, capped
/// at `burst`, so the sender waits in coarse slices (sleeping, while the
/// producer's thread serves delivery reports) instead of sleeping per record.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            // 50 ms worth of records: absorbs wake-up jitter, limits catch-up bursts.
            burst: (rate * 0.05).max(1.0),
            tokens: 1.0,
            last: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token is available.
    fn wait(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

/// A payload of random uppercase letters (as kafka-producer-perf-test makes),
/// so that compression ratios are comparable across tools and not unfairly high.
fn make_payload(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            b'A' + ((r >> 32) % 26) as u8
        })
        .collect()
}

pub fn run(args: ProduceArgs) -> Result<ExitCode> {
    let common = args.common();
    let out = Output { json: common.json };
    if args.throughput == 0.0 || args.throughput.is_nan() {
        bail!("--throughput must be > 0 records/sec, or -1 for unlimited");
    }
    if args.create_topic && args.partitions < 1 {
        bail!("--partitions must be >= 1");
    }
    if common.reporting_interval_ms == 0 {
        bail!("--reporting-interval-ms must be > 0");
    }

    let mut props = match &args.producer_config {
        Some(path) => Props::load_file(path)?,
        None => Props::default(),
    };
    props.merge(&Props::parse_kv_list(&args.producer_props)?);
    if let Some(b) = &args.bootstrap_server {
        props.set("bootstrap.servers", b);
    }
    let bootstrap = props.bootstrap("--producer-props")?;
    if props.get("message.timeout.ms").is_none() && props.get("delivery.timeout.ms").is_none() {
        props.set("message.timeout.ms", &DEFAULT_MESSAGE_TIMEOUT_MS.to_string());
    }
    props.set_default("client.id", "chronik-bench");
    let message_timeout = Duration::from_millis(
        props
            .get_u64("message.timeout.ms")?
            .or(props.get_u64("delivery.timeout.ms")?)
            .unwrap_or(DEFAULT_MESSAGE_TIMEOUT_MS),
    );
    let connect_timeout = Duration::from_millis(common.connect_timeout_ms);
    let verbose = common.verbose;

    // The context's clock starts now; the run's own clock starts at the first send.
    let ctx_start = Instant::now();
    let ctx = BenchProducerContext {
        start: ctx_start,
        record_size: args.record_size as u64,
        stats: Mutex::new(ProduceStats::new(ctx_start)),
        errors: ErrorCapture::new(verbose),
    };
    let mut cfg = props.to_client_config();
    cfg.set_log_level(client::log_level(verbose));
    let producer: ThreadedProducer<BenchProducerContext> = match cfg.create_with_context(ctx) {
        Ok(p) => p,
        Err(e) => bail!("cannot create producer for {bootstrap}: {e}"),
    };
    let last_error = || {
        // Serve queued error events so that the context sees them.
        for _ in 0..100 {
            producer.poll(Duration::ZERO);
        }
        producer.context().errors.last()
    };

    // Reachability check first. With --create-topic, ask for cluster metadata
    // only: a metadata request naming the topic could make the broker
    // auto-create it with its default partition count.
    let topic_filter = (!args.create_topic).then_some(args.topic.as_str());
    let mut md = client::fetch_metadata(producer.client(), &bootstrap, topic_filter, connect_timeout, last_error)?;
    if args.create_topic {
        client::create_topic(
            &props,
            &bootstrap,
            &args.topic,
            args.partitions,
            args.replication_factor,
            connect_timeout,
            verbose,
        )?;
        // Wait (bounded) until the new topic's partitions show up in metadata.
        let deadline = Instant::now() + connect_timeout;
        loop {
            md = client::fetch_metadata(producer.client(), &bootstrap, Some(&args.topic), connect_timeout, last_error)?;
            let ready = matches!(client::topic_state(&md, &args.topic), TopicState::Ready { .. });
            if ready || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let partitions = match client::topic_state(&md, &args.topic) {
        TopicState::Ready { partitions } => partitions.to_string(),
        TopicState::Missing if args.create_topic => bail!(
            "topic {} was created but does not show up in {bootstrap}'s metadata \
             after {:.1} s",
            args.topic,
            connect_timeout.as_secs_f64()
        ),
        TopicState::Missing => bail!(
            "topic {} does not exist on {bootstrap} and was not auto-created: \
             pass --create-topic --partitions P",
            args.topic
        ),
        // e.g. LeaderNotAvailable while the broker auto-creates the topic:
        // the producer retries by itself.
        TopicState::Error(code) => {
            eprintln!("warning: topic {}: {code}; producing anyway", args.topic);
            "?".to_string()
        }
    };
    eprintln!(
        "producing {} records of {} bytes to {} ({} partitions) via {}, throughput {}",
        args.num_records,
        args.record_size,
        args.topic,
        partitions,
        bootstrap,
        if args.throughput < 0.0 { "unlimited".to_string() } else { format!("{} records/sec", args.throughput) }
    );

    let interrupted = client::interrupt_flag();
    let payload = make_payload(args.record_size);
    let interval = Duration::from_millis(common.reporting_interval_ms);

    let start = Instant::now();
    if let Ok(mut stats) = producer.context().stats.lock() {
        // Start the first reporting window at the first send.
        let _ = stats.take_window_line(start);
    }
    let mut next_report = start + interval;
    let mut bucket = (args.throughput > 0.0).then(|| TokenBucket::new(args.throughput, start));
    let mut sent: u64 = 0;
    let report = |now: Instant, next_report: &mut Instant| {
        if now >= *next_report {
            if let Ok(mut stats) = producer.context().stats.lock() {
                out.progress(&stats.take_window_line(now));
            }
            *next_report += interval;
            if *next_report <= now {
                *next_report = now + interval;
            }
        }
    };

    while sent < args.num_records {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        report(now, &mut next_report);
        if let Some(b) = bucket.as_mut()
            && !b.try_take(now)
        {
            // Delivery reports are served by the producer's thread meanwhile.
            let until_report = next_report.saturating_duration_since(now);
            let wait = b.wait().max(MIN_SLEEP).min(until_report.max(MIN_SLEEP)).min(Duration::from_millis(100));
            std::thread::sleep(wait);
            continue;
        }
        let sent_at = now.duration_since(ctx_start).as_nanos() as usize;
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&args.topic, sent_at).payload(&payload[..]);
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // Local queue full: wait for delivery reports to free space,
                // then retry (the token taken above is given back).
                if let Some(b) = bucket.as_mut() {
                    b.tokens += 1.0;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => {
                // Anything else (record too large, unknown topic, fatal
                // client error) would fail for every record: stop sending.
                let msg = format!("cannot enqueue record: {e}");
                if let Ok(mut stats) = producer.context().stats.lock()
                    && stats.record_error(msg.clone())
                {
                    eprintln!("first delivery error: {msg}");
                }
                break;
            }
        }
    }

    // Wait for every outstanding delivery report. librdkafka fails queued
    // records after message.timeout.ms, so this is bounded; the margin covers
    // the last in-flight request.
    let flush_deadline = Instant::now() + message_timeout + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        report(now, &mut next_report);
        if producer.in_flight_count() == 0 || now >= flush_deadline {
            break;
        }
        let wait = next_report
            .saturating_duration_since(now)
            .min(flush_deadline.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        std::thread::sleep(wait);
    }
    let end = Instant::now();
    let still_in_flight = producer.in_flight_count();
    if still_in_flight > 0 {
        producer.purge(PurgeConfig::default().queue().inflight());
        // Purged records get delivery reports with an error: collect them.
        let _ = producer.flush(Duration::from_secs(5));
    }

    let summary = match producer.context().stats.lock() {
        Ok(mut stats) => {
            let unaccounted = sent.saturating_sub(stats.acked() + stats.errors());
            stats.record_lost(unaccounted, "records still unacknowledged after message.timeout.ms");
            stats.summary(end.duration_since(start))
        }
        Err(_) => bail!("internal error: statistics lock poisoned"),
    };
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    if common.json {
        println!(
            "{}",
            summary.json(&ProduceParams {
                topic: &args.topic,
                bootstrap: &bootstrap,
                requested_records: args.num_records,
                record_size: args.record_size,
                target_throughput: args.throughput,
                interrupted: was_interrupted,
            })
        );
    } else {
        println!("{}", summary.line());
    }
    if summary.errors > 0 {
        eprintln!(
            "error: {} of {} records failed; first error: {}",
            summary.errors,
            sent,
            summary.first_error.as_deref().unwrap_or("unknown")
        );
        return Ok(ExitCode::FAILURE);
    }
    if was_interrupted {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_letters_and_not_constant() {
        let p = make_payload(1000);
        assert_eq!(p.len(), 1000);
        assert!(p.iter().all(|b| b.is_ascii_uppercase()));
        let distinct: std::collections::HashSet<u8> = p.iter().copied().collect();
        assert!(distinct.len() > 20, "{}", distinct.len());
        assert!(make_payload(0).is_empty());
    }

    #[test]
    fn token_bucket_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.wait() <= Duration::from_millis(1));
        // 10 ms later: 10 more tokens.
        let t1 = t0 + Duration::from_millis(10);
        let mut n = 0;
        while b.try_take(t1) {
            n += 1;
        }
        assert_eq!(n, 10);
        // A long pause refills at most the burst (50 ms worth).
        let t2 = t1 + Duration::from_secs(10);
        let mut n = 0;
        while b.try_take(t2) {
            n += 1;
        }
        assert_eq!(n, 50);
    }
}
