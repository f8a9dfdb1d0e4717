//! `consume`: reads a topic from the beginning and measures throughput.
//!
//! Without `--group` every partition is assigned explicitly at the beginning
//! offset (no group coordinator involved); with `--group` the consumer
//! subscribes with `auto.offset.reset=earliest`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{self, QuietContext, TopicState};
use crate::produce::CommonArgs;
use crate::props::Props;
use crate::report::{ConsumeParams, ConsumeStats, Output};

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Topic to consume.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,

    /// Number of records to read.
    #[arg(long, value_name = "N", alias = "messages")]
    pub num_records: u64,

    /// librdkafka consumer properties as key=value pairs, e.g.
    /// bootstrap.servers=127.0.0.1:9092 fetch.max.bytes=52428800.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
    pub consumer_props: Vec<String>,

    /// Properties file with consumer settings (overridden by --consumer-props).
    #[arg(long, value_name = "FILE", alias = "consumer.config")]
    pub consumer_config: Option<PathBuf>,

    /// Shorthand for `--consumer-props bootstrap.servers=HOST:PORT` (wins over it).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap_server: Option<String>,

    /// Consumer group: subscribe (auto.offset.reset=earliest) instead of
    /// assigning all partitions from the beginning.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Give up after this many seconds (counted from the end of the
    /// reachability check) if fewer than --num-records were read.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout_secs: u64,

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

impl ConsumeArgs {
    fn common(&self) -> CommonArgs {
        CommonArgs {
            reporting_interval_ms: self.reporting_interval_ms,
            json: self.json,
            connect_timeout_ms: self.connect_timeout_ms,
            verbose: self.verbose,
        }
    }
}

pub fn run(args: ConsumeArgs) -> Result<ExitCode> {
    let common = args.common();
    let out = Output { json: common.json };
    if common.reporting_interval_ms == 0 {
        bail!("--reporting-interval-ms must be > 0");
    }

    let mut props = match &args.consumer_config {
        Some(path) => Props::load_file(path)?,
        None => Props::default(),
    };
    props.merge(&Props::parse_kv_list(&args.consumer_props)?);
    if let Some(b) = &args.bootstrap_server {
        props.set("bootstrap.servers", b);
    }
    let bootstrap = props.bootstrap("--consumer-props")?;
    props.set_default("client.id", "chronik-bench");
    if let Some(g) = &args.group {
        props.set("group.id", g);
    }
    let group = props.get("group.id").map(str::to_string);
    if group.is_some() {
        props.set_default("auto.offset.reset", "earliest");
    } else {
        // librdkafka's assign() needs a group handle even though no group is
        // joined: give it a throwaway group.id and never commit to it.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        props.set("group.id", &format!("chronik-bench-{}-{nanos}", std::process::id()));
        props.set("enable.auto.commit", "false");
        props.set("enable.auto.offset.store", "false");
    }
    let verbose = common.verbose;
    let connect_timeout = Duration::from_millis(common.connect_timeout_ms);

    let mut cfg = props.to_client_config();
    cfg.set_log_level(client::log_level(verbose));
    let consumer: BaseConsumer<QuietContext> = match cfg.create_with_context(QuietContext::new(verbose)) {
        Ok(c) => c,
        Err(e) => bail!("cannot create consumer for {bootstrap}: {e}"),
    };

    let md = client::fetch_metadata(consumer.client(), &bootstrap, Some(&args.topic), connect_timeout, || {
        // Serve queued error events so that the context sees them (no
        // partition is assigned yet, so no record can be consumed here).
        for _ in 0..100 {
            if consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        consumer.context().errors.last()
    })?;
    let partitions = match client::topic_state(&md, &args.topic) {
        TopicState::Ready { partitions } => partitions,
        TopicState::Missing => bail!("topic {} does not exist on {bootstrap}", args.topic),
        TopicState::Error(code) => bail!("topic {} on {bootstrap}: {code}", args.topic),
    };

    match &group {
        Some(g) => {
            if let Err(e) = consumer.subscribe(&[&args.topic]) {
                bail!("cannot subscribe to {} as group {g}: {e}", args.topic);
            }
        }
        None => {
            let mut tpl = TopicPartitionList::with_capacity(partitions);
            for p in 0..partitions as i32 {
                if let Err(e) = tpl.add_partition_offset(&args.topic, p, Offset::Beginning) {
                    bail!("cannot assign {}[{p}]: {e}", args.topic);
                }
            }
            if let Err(e) = consumer.assign(&tpl) {
                bail!("cannot assign partitions of {}: {e}", args.topic);
            }
        }
    }
    eprintln!(
        "consuming {} records from {} ({} partitions) via {}{}",
        args.num_records,
        args.topic,
        partitions,
        bootstrap,
        match &group {
            Some(g) => format!(", group {g}"),
            None => String::new(),
        }
    );

    let interrupted = client::interrupt_flag();
    let interval = Duration::from_millis(common.reporting_interval_ms);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.timeout_secs);
    let mut next_report = start + interval;
    let mut stats = ConsumeStats::new(start);
    let mut timed_out = false;

    while stats.records < args.num_records {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        if now >= next_report {
            out.progress(&stats.take_window_line(now));
            next_report += interval;
            if next_report <= now {
                next_report = now + interval;
            }
        }
        let wait = next_report
            .min(deadline)
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        match consumer.poll(wait) {
            None => {}
            Some(Ok(msg)) => {
                let bytes = msg.payload().map_or(0, <[u8]>::len) + msg.key().map_or(0, <[u8]>::len);
                stats.record(bytes as u64, Instant::now());
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                let fatal = matches!(e, KafkaError::MessageConsumptionFatal(_));
                let mut msg = e.to_string();
                if let Some(last) = consumer.context().errors.last() {
                    msg.push_str(&format!(" (last client error: {last})"));
                }
                if stats.record_error(msg.clone()) {
                    eprintln!("first consume error: {msg}");
                }
                if fatal {
                    break;
                }
            }
        }
    }
    let end = Instant::now();
    let summary = stats.summary(start, end);
    let was_interrupted = interrupted.load(Ordering::Relaxed);
    if common.json {
        println!(
            "{}",
            summary.json(&ConsumeParams {
                topic: &args.topic,
                bootstrap: &bootstrap,
                group: group.as_deref(),
                requested_records: args.num_records,
                timed_out,
                interrupted: was_interrupted,
            })
        );
    } else {
        println!("{}", summary.line());
    }
    if summary.records < args.num_records {
        let why = if timed_out {
            format!("timed out after {} s", args.timeout_secs)
        } else if was_interrupted {
            "interrupted".to_string()
        } else {
            "stopped on a fatal error".to_string()
        };
        eprintln!(
            "error: read {} of {} records ({why}){}",
            summary.records,
            args.num_records,
            match &summary.first_error {
                Some(e) => format!("; first error: {e}"),
                None => String::new(),
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
