//! Latency histogram, throughput windows and result printing.
//!
//! Output lines follow kafka-producer-perf-test's wording so existing scripts
//! and habits carry over; `--json` turns the final summary into one JSON object.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

const MIB: f64 = 1024.0 * 1024.0;
/// Highest trackable latency: one hour, in microseconds. Larger values saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Where progress lines go: stdout normally, stderr with `--json` so that stdout
/// holds nothing but the JSON summary.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn progress(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

/// Acknowledged-record statistics of a produce run: a whole-run latency
/// histogram (microsecond resolution) plus a reporting window.
pub struct ProduceStats {
    hist: Histogram<u64>,
    acked: u64,
    acked_bytes: u64,
    errors: u64,
    first_error: Option<String>,
    window: Window,
}

struct Window {
    start: Instant,
    count: u64,
    bytes: u64,
    latency_sum_us: u64,
    latency_max_us: u64,
}

impl Window {
    fn new(start: Instant) -> Self {
        Window { start, count: 0, bytes: 0, latency_sum_us: 0, latency_max_us: 0 }
    }
}

impl ProduceStats {
    pub fn new(start: Instant) -> Self {
        // Bounds and precision are constants: construction cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid constant histogram bounds");
        ProduceStats { hist, acked: 0, acked_bytes: 0, errors: 0, first_error: None, window: Window::new(start) }
    }

    /// Records one successfully acknowledged record.
    pub fn record_ack(&mut self, latency: Duration, bytes: u64) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.hist.saturating_record(us);
        self.acked += 1;
        self.acked_bytes += bytes;
        let w = &mut self.window;
        w.count += 1;
        w.bytes += bytes;
        w.latency_sum_us += us;
        w.latency_max_us = w.latency_max_us.max(us);
    }

    /// Records one failed delivery. Returns true for the first error, so that
    /// the caller can print it right away.
    pub fn record_error(&mut self, error: String) -> bool {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
            true
        } else {
            false
        }
    }

    /// Records `n` records that never got a delivery report (e.g. purged after
    /// the final flush timed out).
    pub fn record_lost(&mut self, n: u64, reason: &str) {
        if n == 0 {
            return;
        }
        self.errors += n;
        if self.first_error.is_none() {
            self.first_error = Some(reason.to_string());
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Formats the progress line of the current window and starts a new one.
    /// Mirrors kafka-producer-perf-test: "N records sent, X records/sec (Y MB/sec),
    /// Z ms avg latency, W ms max latency."
    pub fn take_window_line(&mut self, now: Instant) -> String {
        let w = std::mem::replace(&mut self.window, Window::new(now));
        let secs = now.duration_since(w.start).as_secs_f64().max(1e-9);
        let avg_ms = if w.count == 0 { 0.0 } else { w.latency_sum_us as f64 / w.count as f64 / 1000.0 };
        format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.1} ms avg latency, {:.1} ms max latency.",
            w.count,
            w.count as f64 / secs,
            w.bytes as f64 / MIB / secs,
            avg_ms,
            w.latency_max_us as f64 / 1000.0,
        )
    }

    pub fn summary(&self, elapsed: Duration) -> ProduceSummary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let q = |quantile: f64| {
            if self.acked == 0 { 0.0 } else { self.hist.value_at_quantile(quantile) as f64 / 1000.0 }
        };
        ProduceSummary {
            records: self.acked,
            bytes: self.acked_bytes,
            errors: self.errors,
            first_error: self.first_error.clone(),
            elapsed_secs: elapsed.as_secs_f64(),
            records_per_sec: self.acked as f64 / secs,
            mb_per_sec: self.acked_bytes as f64 / MIB / secs,
            avg_ms: if self.acked == 0 { 0.0 } else { self.hist.mean() / 1000.0 },
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if self.acked == 0 { 0.0 } else { self.hist.max() as f64 / 1000.0 },
        }
    }
}

/// Final figures of a produce run.
#[derive(Debug, Clone)]
pub struct ProduceSummary {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Run parameters echoed in the JSON summary so results are self-describing.
pub struct ProduceParams<'a> {
    pub topic: &'a str,
    pub bootstrap: &'a str,
    pub requested_records: u64,
    pub record_size: usize,
    pub target_throughput: f64,
    pub interrupted: bool,
}

impl ProduceSummary {
    /// The kafka-producer-perf-test style final line (percentiles with decimals,
    /// since latencies are kept in microseconds), plus the error count.
    pub fn line(&self) -> String {
        format!(
            "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, \
             {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, \
             {:.2} ms 99.9th, {} errors.",
            self.records,
            self.records_per_sec,
            self.mb_per_sec,
            self.avg_ms,
            self.max_ms,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.p999_ms,
            self.errors,
        )
    }

    pub fn json(&self, p: &ProduceParams<'_>) -> String {
        json!({
            "mode": "produce",
            "topic": p.topic,
            "bootstrap_servers": p.bootstrap,
            "requested_records": p.requested_records,
            "record_size": p.record_size,
            "target_throughput": if p.target_throughput < 0.0 { json!(null) } else { json!(p.target_throughput) },
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_secs": round3(self.elapsed_secs),
            "records_per_sec": round3(self.records_per_sec),
            "mb_per_sec": round3(self.mb_per_sec),
            "avg_latency_ms": round3(self.avg_ms),
            "p50_latency_ms": round3(self.p50_ms),
            "p95_latency_ms": round3(self.p95_ms),
            "p99_latency_ms": round3(self.p99_ms),
            "p999_latency_ms": round3(self.p999_ms),
            "max_latency_ms": round3(self.max_ms),
            "errors": self.errors,
            "first_error": self.first_error,
            "interrupted": p.interrupted,
        })
        .to_string()
    }
}

/// Counters of a consume run.
pub struct ConsumeStats {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub first_record_at: Option<Instant>,
    pub last_record_at: Option<Instant>,
    window_start: Instant,
    window_records: u64,
    window_bytes: u64,
}

impl ConsumeStats {
    pub fn new(start: Instant) -> Self {
        ConsumeStats {
            records: 0,
            bytes: 0,
            errors: 0,
            first_error: None,
            first_record_at: None,
            last_record_at: None,
            window_start: start,
            window_records: 0,
            window_bytes: 0,
        }
    }

    pub fn record(&mut self, bytes: u64, now: Instant) {
        self.records += 1;
        self.bytes += bytes;
        self.window_records += 1;
        self.window_bytes += bytes;
        if self.first_record_at.is_none() {
            self.first_record_at = Some(now);
        }
        self.last_record_at = Some(now);
    }

    /// Returns true for the first error, so that the caller can print it.
    pub fn record_error(&mut self, error: String) -> bool {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
            true
        } else {
            false
        }
    }

    pub fn take_window_line(&mut self, now: Instant) -> String {
        let secs = now.duration_since(self.window_start).as_secs_f64().max(1e-9);
        let line = format!(
            "{} records consumed, {:.1} records/sec ({:.2} MB/sec), {} total.",
            self.window_records,
            self.window_records as f64 / secs,
            self.window_bytes as f64 / MIB / secs,
            self.records,
        );
        self.window_start = now;
        self.window_records = 0;
        self.window_bytes = 0;
        line
    }

    /// Final figures. Rates are computed over the fetch time (first to last
    /// record), like kafka-consumer-perf-test's fetch.* columns, so that group
    /// join / metadata time does not dilute them; the total time is reported too.
    pub fn summary(&self, start: Instant, end: Instant) -> ConsumeSummary {
        let total = end.duration_since(start);
        let (fetch, to_first) = match (self.first_record_at, self.last_record_at) {
            (Some(first), Some(last)) => (last.duration_since(first), first.duration_since(start)),
            _ => (Duration::ZERO, total),
        };
        // A single record (or a burst within one poll) has ~zero fetch time:
        // fall back to the total time rather than reporting absurd rates.
        let rate_secs = if fetch.as_secs_f64() > 0.001 { fetch.as_secs_f64() } else { total.as_secs_f64().max(1e-9) };
        ConsumeSummary {
            records: self.records,
            bytes: self.bytes,
            errors: self.errors,
            first_error: self.first_error.clone(),
            total_secs: total.as_secs_f64(),
            fetch_secs: fetch.as_secs_f64(),
            first_record_secs: to_first.as_secs_f64(),
            records_per_sec: self.records as f64 / rate_secs,
            mb_per_sec: self.bytes as f64 / MIB / rate_secs,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumeSummary {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub total_secs: f64,
    pub fetch_secs: f64,
    pub first_record_secs: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

pub struct ConsumeParams<'a> {
    pub topic: &'a str,
    pub bootstrap: &'a str,
    pub group: Option<&'a str>,
    pub requested_records: u64,
    pub timed_out: bool,
    pub interrupted: bool,
}

impl ConsumeSummary {
    pub fn line(&self) -> String {
        format!(
            "{} records consumed, {:.1} records/sec ({:.2} MB/sec), {:.2} MB total, \
             {:.3} s fetch time, {:.3} s to first record, {:.3} s total, {} errors.",
            self.records,
            self.records_per_sec,
            self.mb_per_sec,
            self.bytes as f64 / MIB,
            self.fetch_secs,
            self.first_record_secs,
            self.total_secs,
            self.errors,
        )
    }

    pub fn json(&self, p: &ConsumeParams<'_>) -> String {
        json!({
            "mode": "consume",
            "topic": p.topic,
            "bootstrap_servers": p.bootstrap,
            "group": p.group,
            "requested_records": p.requested_records,
            "records": self.records,
            "bytes": self.bytes,
            "records_per_sec": round3(self.records_per_sec),
            "mb_per_sec": round3(self.mb_per_sec),
            "fetch_secs": round3(self.fetch_secs),
            "first_record_secs": round3(self.first_record_secs),
            "total_secs": round3(self.total_secs),
            "errors": self.errors,
            "first_error": self.first_error,
            "timed_out": p.timed_out,
            "interrupted": p.interrupted,
        })
        .to_string()
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_summary_percentiles() {
        let start = Instant::now();
        let mut s = ProduceStats::new(start);
        for ms in 1..=100u64 {
            s.record_ack(Duration::from_millis(ms), 100);
        }
        assert!(s.record_error("boom".into()));
        assert!(!s.record_error("boom2".into()));
        let sum = s.summary(Duration::from_secs(1));
        assert_eq!(sum.records, 100);
        assert_eq!(sum.errors, 2);
        assert_eq!(sum.first_error.as_deref(), Some("boom"));
        assert!((sum.p50_ms - 50.0).abs() < 0.1, "{}", sum.p50_ms);
        assert!((sum.p99_ms - 99.0).abs() < 0.1, "{}", sum.p99_ms);
        assert!((sum.max_ms - 100.0).abs() < 0.1, "{}", sum.max_ms);
        assert!((sum.records_per_sec - 100.0).abs() < 1e-6);
        let line = sum.line();
        assert!(line.starts_with("100 records sent, 100.0 records/sec"), "{line}");
        assert!(line.ends_with("2 errors."), "{line}");
        let params = ProduceParams {
            topic: "t",
            bootstrap: "h:1",
            requested_records: 100,
            record_size: 100,
            target_throughput: -1.0,
            interrupted: false,
        };
        let v: serde_json::Value = serde_json::from_str(&sum.json(&params)).unwrap();
        assert_eq!(v["records"], 100);
        assert_eq!(v["errors"], 2);
        assert!(v["target_throughput"].is_null());
    }

    #[test]
    fn window_resets() {
        let start = Instant::now();
        let mut s = ProduceStats::new(start);
        s.record_ack(Duration::from_micros(1500), 10);
        let line = s.take_window_line(start + Duration::from_secs(1));
        assert!(line.starts_with("1 records sent, 1.0 records/sec"), "{line}");
        assert!(line.contains("1.5 ms avg latency"), "{line}");
        let line = s.take_window_line(start + Duration::from_secs(2));
        assert!(line.starts_with("0 records sent"), "{line}");
    }

    #[test]
    fn empty_summaries_are_zero() {
        let start = Instant::now();
        let s = ProduceStats::new(start);
        let sum = s.summary(Duration::from_secs(1));
        assert_eq!(sum.records, 0);
        assert_eq!(sum.max_ms, 0.0);
        let c = ConsumeStats::new(start);
        let cs = c.summary(start, start + Duration::from_secs(2));
        assert_eq!(cs.records, 0);
        assert_eq!(cs.records_per_sec, 0.0);
    }
}
