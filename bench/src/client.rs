//! Pieces shared by the producer, the consumer and the admin client: a client
//! context that remembers librdkafka's last error (so that failures can say
//! *why* a broker is unreachable), the reachability check, topic creation and
//! Ctrl-C handling.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;

use crate::props::Props;

/// Remembers the most recent client-level error reported by librdkafka
/// (connection refused, name resolution failure, all brokers down, ...).
/// Error events are preferred over error-level log lines, which say the same
/// with more noise.
#[derive(Default)]
pub struct ErrorCapture {
    last_event: Mutex<Option<String>>,
    last_log: Mutex<Option<String>>,
    /// "N/N brokers are down" says less than the error that caused it
    /// (e.g. "Connect to ipv4#127.0.0.1:9092 failed: Connection refused"),
    /// so it is only reported when nothing else is known.
    all_brokers_down: Mutex<Option<String>>,
    verbose: bool,
}

impl ErrorCapture {
    pub fn new(verbose: bool) -> Self {
        ErrorCapture { verbose, ..Default::default() }
    }

    pub fn last(&self) -> Option<String> {
        let get = |m: &Mutex<Option<String>>| m.lock().ok().and_then(|g| g.clone());
        get(&self.last_event).or_else(|| get(&self.last_log)).or_else(|| get(&self.all_brokers_down))
    }

    pub fn on_error(&self, error: &KafkaError, reason: &str) {
        if self.verbose {
            eprintln!("librdkafka error: {error}: {reason}");
        }
        let msg = if reason.is_empty() { error.to_string() } else { reason.to_string() };
        let slot = match error {
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown) => &self.all_brokers_down,
            _ => &self.last_event,
        };
        if let Ok(mut g) = slot.lock() {
            *g = Some(msg);
        }
    }

    pub fn on_log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if self.verbose {
            eprintln!("librdkafka {level:?} {fac}: {msg}");
        }
        if (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            // Drop librdkafka's "[thrd:NAME]: " prefix.
            let msg = match msg.strip_prefix("[thrd:").and_then(|r| r.split_once("]: ")) {
                Some((_, rest)) => rest,
                None => msg,
            };
            if let Ok(mut g) = self.last_log.lock() {
                *g = Some(msg.to_string());
            }
        }
    }
}

/// Context for the consumer and the admin client.
pub struct QuietContext {
    pub errors: ErrorCapture,
}

impl QuietContext {
    pub fn new(verbose: bool) -> Self {
        QuietContext { errors: ErrorCapture::new(verbose) }
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.errors.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.on_error(&error, reason);
    }
}

impl ConsumerContext for QuietContext {}

/// librdkafka log level to request: errors only, unless `--verbose`.
pub fn log_level(verbose: bool) -> RDKafkaLogLevel {
    if verbose { RDKafkaLogLevel::Info } else { RDKafkaLogLevel::Error }
}

/// Fetches cluster metadata (for `topic` when given) within `timeout`; this is
/// the reachability check done before any load is generated, so that an
/// unreachable bootstrap server fails fast with a clear message instead of
/// every record timing out one by one.
///
/// `last_error` is called after a failure to add librdkafka's own reason
/// (e.g. "Connect to ipv4#127.0.0.1:9092 failed: Connection refused").
pub fn fetch_metadata<C: ClientContext>(
    client: &Client<C>,
    bootstrap: &str,
    topic: Option<&str>,
    timeout: Duration,
    last_error: impl Fn() -> Option<String>,
) -> Result<Metadata> {
    match client.fetch_metadata(topic, timeout) {
        Ok(md) if !md.brokers().is_empty() => Ok(md),
        Ok(_) => bail!("cannot reach bootstrap server {bootstrap}: metadata lists no brokers"),
        Err(e) => {
            let why = match last_error() {
                Some(reason) => format!("{reason} ({e})"),
                None => e.to_string(),
            };
            bail!(
                "cannot reach bootstrap server {bootstrap}: {why}; gave up after {:.1} s \
                 (--connect-timeout-ms)",
                timeout.as_secs_f64()
            )
        }
    }
}

/// How a topic looks in a metadata response.
pub enum TopicState {
    Ready { partitions: usize },
    Missing,
    Error(RDKafkaErrorCode),
}

pub fn topic_state(md: &Metadata, topic: &str) -> TopicState {
    match md.topics().iter().find(|t| t.name() == topic) {
        None => TopicState::Missing,
        Some(t) => match t.error() {
            Some(code) => {
                let code = RDKafkaErrorCode::from(code);
                if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                    TopicState::Missing
                } else {
                    TopicState::Error(code)
                }
            }
            None if t.partitions().is_empty() => TopicState::Missing,
            None => TopicState::Ready { partitions: t.partitions().len() },
        },
    }
}

/// Creates `topic` with `partitions` partitions via the admin API; an already
/// existing topic is not an error. Call after [`fetch_metadata`] succeeded, so
/// that an unreachable server is reported as such.
pub fn create_topic(
    props: &Props,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    timeout: Duration,
    verbose: bool,
) -> Result<()> {
    let mut cfg = props.to_client_config();
    cfg.set_log_level(log_level(verbose));
    let ctx = QuietContext::new(verbose);
    let admin: AdminClient<QuietContext> = match cfg.create_with_context(ctx) {
        Ok(a) => a,
        Err(e) => bail!("cannot create admin client for {bootstrap}: {e}"),
    };
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication_factor));
    let opts = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
    let results = match futures::executor::block_on(admin.create_topics([&new_topic], &opts)) {
        Ok(r) => r,
        Err(e) => {
            let mut why = match admin.inner().context().errors.last() {
                Some(reason) => format!("{e} (last client error: {reason})"),
                None => e.to_string(),
            };
            if matches!(e, KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)) {
                why.push_str(
                    "; the server may not support the CreateTopics API: \
                     create the topic beforehand and drop --create-topic",
                );
            }
            bail!("cannot create topic {topic} on {bootstrap}: {why}")
        }
    };
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {topic} already exists; using it as is");
            }
            Err((name, code)) => {
                let hint = if replication_factor < 0 {
                    " (replication factor -1 asks for the broker default; try --replication-factor N)"
                } else {
                    ""
                };
                bail!("cannot create topic {name} on {bootstrap}: {code}{hint}");
            }
        }
    }
    Ok(())
}

/// Installs a Ctrl-C handler that sets the returned flag, so that a run can
/// stop early and still print its summary. A second Ctrl-C exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let spawned = std::thread::Builder::new().name("ctrl-c".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping, press Ctrl-C again to exit at once");
                f.store(true, Ordering::SeqCst);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
    if let Err(e) = spawned {
        eprintln!("warning: cannot install Ctrl-C handler: {e}");
    }
    flag
}
