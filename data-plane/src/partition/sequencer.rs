//! Puts an idempotent producer's batches into the log in sequence order.
//!
//! A client keeps up to five produce requests in flight; the gateway forwards them
//! concurrently, and their gRPC calls can reach the leader in another order than they were
//! sent. Kafka never sees that (a broker handles one request per connection at a time); here a
//! batch that arrives ahead of its predecessor waits briefly for it, instead of being refused
//! as OUT_OF_ORDER_SEQUENCE_NUMBER, which librdkafka treats as fatal. The state machine still
//! has the last word: it checks every batch against the log when it is applied.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::batch::BatchInfo;

/// How long a batch waits for the batches before it. Two forwards racing take microseconds,
/// but a predecessor the gateway is still retrying across a leadership change (backoff,
/// metadata refresh, a new leader finishing its election) can take seconds, and refusing its
/// successor meanwhile is fatal to the producer. A predecessor that has not come by then was
/// lost, and the state machine answers the gap as Kafka would, well inside a produce
/// request's timeout (clients default to 30 s; even a 5 s one gets the real answer).
const PATIENCE: Duration = Duration::from_secs(2);

/// What this leader has proposed for one producer.
#[derive(Clone, Copy)]
struct Slot {
    term: u64,
    epoch: i16,
    next: i32,
}

#[derive(Default)]
pub struct Sequencer {
    slots: Mutex<HashMap<i64, Slot>>,
    advanced: Notify,
}

fn next_after(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

impl Sequencer {
    /// Returns once `info` may be proposed in `term`: it is the producer's next batch, a
    /// retry of an earlier one, or its predecessors did not come in time. `committed` gives
    /// the producer's epoch and last sequence as the state machine knows it, for a producer
    /// this leader has not seen in this term.
    pub async fn admit(&self, term: u64, info: &BatchInfo, committed: impl Fn() -> Option<(i16, i32)>) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let last = (info.base_sequence as i64 + info.last_offset_delta as i64).rem_euclid(i32::MAX as i64 + 1) as i32;
        loop {
            let advanced = self.advanced.notified();
            {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let slot = slots.entry(info.producer_id).or_insert(Slot { term, epoch: info.producer_epoch, next: 0 });
                if slot.term != term {
                    *slot = Slot { term, epoch: info.producer_epoch, next: 0 };
                    if let Some((epoch, seq)) = committed() {
                        if epoch == info.producer_epoch {
                            slot.next = next_after(seq);
                        }
                    }
                }
                if info.producer_epoch != slot.epoch {
                    // A new epoch starts at sequence 0; an older one is fenced when applied.
                    if info.producer_epoch > slot.epoch {
                        *slot = Slot { term, epoch: info.producer_epoch, next: 0 };
                    } else {
                        return;
                    }
                }
                let ahead = info.base_sequence.wrapping_sub(slot.next);
                if ahead == 0 {
                    slot.next = next_after(last);
                    drop(slots);
                    self.advanced.notify_waiters();
                    return;
                }
                if ahead < 0 {
                    return; // A retry of a batch already proposed.
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::info!(target: "chronik_server", "Batch from producer {} at sequence {} waited {PATIENCE:?} for sequence {}; proposing it anyway", info.producer_id, info.base_sequence, slot.next);
                    return;
                }
            }
            let _ = tokio::time::timeout_at(deadline, advanced).await;
        }
    }
}
