//! The history of a fault campaign: every client operation as it was invoked and as it
//! ended, in the order the clients saw them (Jepsen's invoke / ok / fail / info).

use std::sync::Mutex;
use std::time::Instant;

/// How an operation ended. `Info` is indeterminate: it may or may not have taken effect
/// (a produce that timed out may be stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Invoke,
    Ok,
    Fail(String),
    Info(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A produce of `value`; `ok` carries where the cluster said it stored it.
    Send { value: String, idempotent: bool, partition: i32, offset: i64 },
    /// One message a consumer read. `session` changes whenever the consumer's position may
    /// legitimately move back (a new assignment, a restart from committed offsets).
    Poll { consumer: String, session: u64, partition: i32, offset: i64, value: String },
    /// A group member's committed offset for a partition, as read back from the cluster.
    Committed { group: String, partition: i32, offset: i64 },
    /// The final catch-up read: what each partition holds, start to high watermark.
    Final { partition: i32, offset: i64, value: String },
    /// A fault starting or healed, for the report.
    Nemesis { what: String },
}

#[derive(Clone, Debug)]
pub struct Event {
    pub at_ms: u128,
    pub process: String,
    pub outcome: Outcome,
    pub op: Op,
}

pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl History {
    pub fn new() -> Self {
        History { start: Instant::now(), events: Mutex::new(Vec::new()) }
    }

    pub fn record(&self, process: &str, outcome: Outcome, op: Op) {
        let e = Event { at_ms: self.start.elapsed().as_millis(), process: process.to_string(), outcome, op };
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One line per event, to keep next to the report.
    pub fn dump(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for e in self.events() {
            writeln!(f, "{} {} {:?} {:?}", e.at_ms, e.process, e.outcome, e.op)?;
        }
        f.flush()
    }
}
