//! Checks a campaign's history: what was acknowledged against what the log holds at the end,
//! and what every consumer read along the way.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::history::{Event, Op, Outcome};

/// One kind of anomaly: how often, and the first example.
#[derive(Default, Debug)]
pub struct Anomaly {
    pub count: usize,
    pub first: Option<String>,
}

impl Anomaly {
    fn add(&mut self, example: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(example());
        }
        self.count += 1;
    }
}

#[derive(Default, Debug)]
pub struct Report {
    pub operations: usize,
    pub sends: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub polls: usize,
    pub commits: usize,
    pub faults: usize,
    /// Why sends failed, with how many failed so.
    pub fail_reasons: BTreeMap<String, usize>,
    /// Acknowledged, but not in the log at the end.
    pub lost: Anomaly,
    /// A value of an idempotent producer stored at more than one offset.
    pub duplicated: Anomaly,
    /// Two different values seen at one partition and offset.
    pub two_values_at_one_offset: Anomaly,
    /// An offset read again, or earlier than the last one, by a consumer that kept its position.
    pub non_monotonic_polls: Anomaly,
    /// An offset jumped over by a consumer that kept its position (offsets have no holes).
    pub poll_skips: Anomaly,
    /// Acknowledged, but never read by the consumer that reads everything.
    pub unseen: Anomaly,
    /// A group's committed offset that moved back.
    pub committed_backwards: Anomaly,
    /// A send refused with UNKNOWN_SERVER_ERROR: a server-side failure that reached the
    /// client, which gives the message up instead of retrying it.
    pub server_errors: Anomaly,
    /// A send of the idempotent producer refused as out of order: fatal to the producer,
    /// although it never skips a sequence (every later send fails too).
    pub out_of_order: Anomaly,
}

/// How librdkafka describes Kafka's error -1 (UNKNOWN_SERVER_ERROR).
const UNKNOWN_SERVER_ERROR: &str = "(Unknown broker error)";
/// How librdkafka describes OUT_OF_ORDER_SEQUENCE_NUMBER.
const OUT_OF_ORDER: &str = "OutOfOrderSequenceNumber";

impl Report {
    pub fn anomalies(&self) -> [(&'static str, &Anomaly); 9] {
        [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("two values at one offset", &self.two_values_at_one_offset),
            ("non-monotonic polls", &self.non_monotonic_polls),
            ("poll skips", &self.poll_skips),
            ("unseen", &self.unseen),
            ("committed offsets backwards", &self.committed_backwards),
            ("unknown server errors", &self.server_errors),
            ("out of order", &self.out_of_order),
        ]
    }

    pub fn valid(&self) -> bool {
        self.anomalies().iter().all(|(_, a)| a.count == 0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "operations {}: sends {} ({} acknowledged, {} failed, {} indeterminate), polls {}, commits {}, faults {}",
            self.operations,
            self.sends,
            self.acknowledged,
            self.failed,
            self.indeterminate,
            self.polls,
            self.commits,
            self.faults
        )?;
        for (why, n) in &self.fail_reasons {
            writeln!(f, "  {n} send(s) failed: {why}")?;
        }
        let counts: Vec<String> = self.anomalies().iter().map(|(n, a)| format!("{n} {}", a.count)).collect();
        write!(f, "{}", counts.join(", "))?;
        for (name, a) in self.anomalies() {
            if let Some(e) = &a.first {
                write!(f, "\n  first {name}: {e}")?;
            }
        }
        Ok(())
    }
}

pub fn check(events: &[Event]) -> Report {
    let mut r = Report { operations: events.len(), ..Default::default() };
    // Where the log says each value is, and what each offset holds, from the final read.
    let mut stored: HashMap<(i32, i64), String> = HashMap::new();
    let mut stored_at: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for e in events {
        if let Op::Final { partition, offset, value } = &e.op {
            stored.insert((*partition, *offset), value.clone());
            stored_at.entry(value.as_str()).or_default().push((*partition, *offset));
        }
    }
    // Every value read at each offset, by anyone, to find offsets that changed their mind.
    let mut seen: HashMap<(i32, i64), (String, String)> = HashMap::new();
    let mut read_by_all: HashMap<&str, bool> = HashMap::new();
    let mut last_poll: HashMap<(&str, u64, i32), i64> = HashMap::new();
    let mut committed: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let mut observe = |p: i32, o: i64, value: &str, who: &str, r: &mut Report| match seen.get(&(p, o)) {
        Some((v, first_by)) if v != value => r
            .two_values_at_one_offset
            .add(|| format!("partition {p} offset {o}: {v:?} ({first_by}) and {value:?} ({who})")),
        Some(_) => {}
        None => {
            seen.insert((p, o), (value.to_string(), who.to_string()));
        }
    };
    for e in events {
        match (&e.op, &e.outcome) {
            (Op::Send { .. }, Outcome::Invoke) => r.sends += 1,
            (Op::Send { value, partition, offset, .. }, Outcome::Ok) => {
                r.acknowledged += 1;
                observe(*partition, *offset, value, &format!("ack to {}", e.process), &mut r);
                if !stored_at.contains_key(value.as_str()) {
                    r.lost.add(|| {
                        format!("{value:?} acknowledged at partition {partition} offset {offset} by {}", e.process)
                    });
                }
            }
            (Op::Send { value, .. }, Outcome::Fail(why)) => {
                r.failed += 1;
                if why.contains(UNKNOWN_SERVER_ERROR) {
                    r.server_errors.add(|| format!("{value:?} by {}: {why}", e.process));
                }
                if why.contains(OUT_OF_ORDER) {
                    r.out_of_order.add(|| format!("{value:?} by {} at {} ms: {why}", e.process, e.at_ms));
                }
                *r.fail_reasons.entry(why.clone()).or_default() += 1;
            }
            (Op::Send { .. }, Outcome::Info(why)) => {
                r.indeterminate += 1;
                *r.fail_reasons.entry(format!("{why} (may be stored)")).or_default() += 1;
            }
            (Op::Poll { consumer, session, partition, offset, value }, Outcome::Ok) => {
                r.polls += 1;
                observe(*partition, *offset, value, consumer, &mut r);
                if consumer == "reader" {
                    read_by_all.insert(value.as_str(), true);
                }
                if let Some(prev) = last_poll.insert((consumer.as_str(), *session, *partition), *offset) {
                    if *offset <= prev {
                        r.non_monotonic_polls.add(|| {
                            format!("{consumer} read partition {partition} offset {offset} after offset {prev}")
                        });
                    } else if *offset > prev + 1 {
                        r.poll_skips.add(|| {
                            format!("{consumer} read partition {partition} offset {offset} right after offset {prev}")
                        });
                    }
                }
            }
            (Op::Committed { group, partition, offset }, Outcome::Ok) => {
                r.commits += 1;
                if let Some(prev) = committed.insert((group.as_str(), *partition), *offset)
                    && *offset < prev
                {
                    r.committed_backwards
                        .add(|| format!("group {group} partition {partition}: committed {prev}, later {offset}"));
                }
            }
            (Op::Final { partition, offset, value }, Outcome::Ok) => {
                observe(*partition, *offset, value, "final read", &mut r)
            }
            (Op::Nemesis { .. }, Outcome::Invoke) => r.faults += 1,
            _ => {}
        }
    }
    for e in events {
        if let (Op::Send { value, idempotent, partition, offset }, Outcome::Ok) = (&e.op, &e.outcome) {
            let at = stored_at.get(value.as_str()).map(Vec::as_slice).unwrap_or_default();
            if *idempotent && at.len() > 1 {
                r.duplicated.add(|| format!("{value:?} stored at {at:?}"));
            }
            if !at.is_empty() && !read_by_all.contains_key(value.as_str()) {
                r.unseen.add(|| format!("{value:?} (partition {partition} offset {offset}) never read by the reader"));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: &str, outcome: Outcome, op: Op) -> Event {
        Event { at_ms: 0, process: process.into(), outcome, op }
    }

    fn send_ok(v: &str, p: i32, o: i64) -> Vec<Event> {
        let op = Op::Send { value: v.into(), idempotent: true, partition: p, offset: o };
        vec![ev("p1", Outcome::Invoke, op.clone()), ev("p1", Outcome::Ok, op)]
    }

    fn stored(v: &str, p: i32, o: i64) -> Event {
        ev("final", Outcome::Ok, Op::Final { partition: p, offset: o, value: v.into() })
    }

    fn read(v: &str, p: i32, o: i64, session: u64) -> Event {
        ev(
            "reader",
            Outcome::Ok,
            Op::Poll { consumer: "reader".into(), session, partition: p, offset: o, value: v.into() },
        )
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let mut h = send_ok("a", 0, 0);
        h.extend(send_ok("b", 0, 1));
        h.extend([read("a", 0, 0, 1), read("b", 0, 1, 1), stored("a", 0, 0), stored("b", 0, 1)]);
        let r = check(&h);
        assert!(r.valid(), "{r}");
        assert_eq!((r.sends, r.acknowledged, r.polls), (2, 2, 2));
    }

    #[test]
    fn each_anomaly_is_found_with_an_example() {
        let mut h = send_ok("lost", 0, 0);
        h.extend(send_ok("dup", 0, 1));
        h.extend(send_ok("moved", 1, 0));
        h.extend([stored("dup", 0, 1), stored("dup", 0, 2), stored("other", 1, 0), stored("moved", 1, 1)]);
        h.extend([read("dup", 0, 1, 1), read("dup", 0, 2, 1), read("dup", 0, 1, 1), read("x", 0, 5, 1)]);
        h.push(ev("g", Outcome::Ok, Op::Committed { group: "g".into(), partition: 0, offset: 7 }));
        h.push(ev("g", Outcome::Ok, Op::Committed { group: "g".into(), partition: 0, offset: 3 }));
        let refused = Op::Send { value: "refused".into(), idempotent: false, partition: -1, offset: -1 };
        h.push(ev(
            "p1",
            Outcome::Fail("Message production error: Unknown (Unknown broker error)".into()),
            refused.clone(),
        ));
        let ooo = "Message production error: OutOfOrderSequenceNumber (Broker: Broker received an out of order sequence number)";
        h.push(ev("p1", Outcome::Fail(ooo.into()), refused));
        let r = check(&h);
        assert_eq!(r.lost.count, 1, "{r}");
        assert_eq!(r.duplicated.count, 1, "{r}");
        assert!(r.two_values_at_one_offset.count >= 1, "{r}");
        assert_eq!(r.non_monotonic_polls.count, 1, "{r}");
        assert_eq!(r.poll_skips.count, 1, "{r}");
        assert_eq!(r.unseen.count, 1, "moved was never read: {r}");
        assert_eq!(r.committed_backwards.count, 1, "{r}");
        assert_eq!(r.server_errors.count, 1, "{r}");
        assert_eq!(r.out_of_order.count, 1, "{r}");
        assert!(r.lost.first.as_deref().is_some_and(|e| e.contains("\"lost\"")), "{r}");
    }

    #[test]
    fn a_new_session_may_read_again() {
        let h = vec![read("a", 0, 0, 1), read("b", 0, 1, 1), read("a", 0, 0, 2), read("b", 0, 1, 2)];
        assert!(check(&h).valid());
    }
}
