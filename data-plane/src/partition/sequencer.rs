//! Puts an idempotent producer's batches into the log in sequence order.
//!
//! A client keeps up to five produce requests in flight; the gateway forwards them
//! concurrently, and their gRPC calls can reach the leader in another order than they were
//! sent. Kafka never sees that (a broker handles one request per connection at a time); here a
//! batch that arrives ahead of its predecessor waits for it, and if it does not come, goes
//! back to the client unwritten (`SequenceAhead`, NOT_ENOUGH_REPLICAS) to be sent again after
//! it, instead of being refused as OUT_OF_ORDER_SEQUENCE_NUMBER, which librdkafka treats as
//! fatal for its oldest request and answers with a new epoch (re-sending possibly stored
//! batches under new sequences) for the others. The state machine still has the last word:
//! it checks every batch against the log when it is applied.
//!
//! Letting a batch in is not enough: it must also reach Raft before its successor does. An
//! admitted batch holds a [`Turn`] until it has been handed to Raft (whose queue keeps that
//! order in the log); only then may the next sequence go. Two writes racing from admission to
//! proposal put a producer's sequences 1437 and 1438 into the log as 1438, 1437 once, which
//! refused 1438 (fatal for the producer) although both had arrived in order.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use chronik_shared::error::{ChronikError, ErrorCode};

use crate::batch::BatchInfo;

/// How long a batch waits for the batches before it before it is sent back to the client.
/// Two forwards racing take microseconds. A predecessor that failed goes back to the client,
/// which sends it again only once every later request to the partition has been answered:
/// waiting longer for it only delays that.
const PATIENCE: Duration = Duration::from_secs(2);
/// How often a waiting batch looks at the state machine again.
const RECHECK: Duration = Duration::from_millis(50);
/// How long a missing sequence may keep its successors waiting (they come back through the
/// client's retries) before it is taken as lost: then a successor is proposed, and the state
/// machine refuses the gap as Kafka would, which is fatal to the producer. Longer than a predecessor
/// can spend in the gateway's retries across faults in a row: 10 s was not (in an hour of
/// faults, a batch held up by two data nodes cut off one after the other came too late).
const GIVE_UP: Duration = Duration::from_secs(30);
/// Past this many producers, those that sent nothing for [`IDLE`] are forgotten. Forgetting is
/// always safe: a slot is rebuilt from the state machine, and one rebuilt behind batches still
/// on their way to it waits for them to be applied.
const SLOTS_KEPT: usize = 1024;
const IDLE: Duration = Duration::from_secs(60);

/// What this leader has proposed for one producer.
#[derive(Clone, Copy)]
struct Slot {
    term: u64,
    epoch: i16,
    next: i32,
    /// The sequence successors have been waiting for, and since when.
    missing: Option<(i32, tokio::time::Instant)>,
    /// When the producer last sent a batch here.
    used: tokio::time::Instant,
}

#[derive(Default)]
pub struct Sequencer {
    slots: Mutex<HashMap<i64, Slot>>,
    advanced: Notify,
}

fn next_after(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

impl Slot {
    /// What this leader expects next from a producer it has not seen in `term`: the batch
    /// after the last one the state machine applied (a new leader has applied everything
    /// before its term before it serves), or 0 for a producer or epoch it does not know.
    fn fresh(term: u64, epoch: i16, committed: Option<(i16, i32)>) -> Slot {
        let next = match committed {
            Some((e, seq)) if e == epoch => next_after(seq),
            _ => 0,
        };
        Slot { term, epoch, next, missing: None, used: tokio::time::Instant::now() }
    }
}

/// A batch's permission to be proposed. The producer's next sequence moves past the batch
/// once [`Turn::proposed`] says it has been handed to Raft. Dropped before that (the write
/// failed, or the request was cancelled while Raft's queue was full), it moves nothing: the
/// successor waits for the batch's retry instead of leaving a gap the log refuses, which is
/// fatal to the producer (a fault campaign under overload found one).
#[must_use = "the producer's next batch waits until the turn is marked proposed or dropped"]
pub struct Turn<'a> {
    sequencer: &'a Sequencer,
    producer_id: i64,
    term: u64,
    /// The slot's next sequence when the batch was admitted and what it becomes after it;
    /// None for a retry or a fenced epoch, which move nothing.
    advance: Option<(i32, i32)>,
    /// Proposed over a sequence missing for good, for the log to refuse.
    over_gap: bool,
    proposed: bool,
}

impl Turn<'_> {
    /// The batch is in Raft's queue, ahead of anything proposed after this.
    pub fn proposed(mut self) {
        self.proposed = true;
    }

    /// The batch came right after everything this leader had proposed for its producer.
    pub fn in_order(&self) -> bool {
        self.advance.is_some() && !self.over_gap
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some((from, to)) = self.advance.filter(|_| self.proposed) else {
            // Successors waiting on this batch look again (at a retry of it, or the log).
            self.sequencer.advanced.notify_waiters();
            return;
        };
        {
            let mut slots = self.sequencer.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(&self.producer_id) {
                // Unless a new term or epoch started meanwhile.
                if slot.term == self.term && slot.next == from {
                    slot.next = to;
                }
            }
        }
        self.sequencer.advanced.notify_waiters();
    }
}

impl Sequencer {
    /// Raft refused the batch at `base` (from producer `producer_id`, epoch `epoch`) that this
    /// leader proposed in `term`: it is not in the log, so the producer's next sequence goes
    /// back to it and its successors wait for its retry instead of being proposed over a gap.
    pub fn rewind(&self, term: u64, producer_id: i64, epoch: i16, base: i32) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(&producer_id)
                && slot.term == term
                && slot.epoch == epoch
                && base.wrapping_sub(slot.next) < 0
            {
                slot.next = base;
                slot.missing = None;
            }
        }
        self.advanced.notify_waiters();
    }

    /// The log refused `info`, admitted in `term` as its producer's next batch, as a gap: a
    /// batch before it was refused by Raft after `info` had been queued. The producer's next
    /// sequence goes back to the one after `committed` (the log's last for the producer).
    pub fn resync(&self, term: u64, info: &BatchInfo, committed: Option<(i16, i32)>) {
        let next = committed.filter(|(epoch, _)| *epoch == info.producer_epoch).map_or(0, |(_, last)| next_after(last));
        self.rewind(term, info.producer_id, info.producer_epoch, next);
    }

    /// Returns once `info` may be proposed in `term`: it is the producer's next batch or a
    /// retry of an earlier one. `committed` gives the producer's epoch and last sequence as
    /// the state machine knows it (None for a producer it has never seen). The batch after
    /// this one waits until the returned turn is marked proposed.
    ///
    /// A batch whose predecessor has not come within [`PATIENCE`] gets a retriable error
    /// (`SequenceAhead`): the predecessor is still on its way or failed back to the client,
    /// and proposing the gap would only have it refused as out of order, which is fatal to a
    /// producer once the predecessor has been acknowledged.
    /// Clients retry in sequence order, and a client that gave its predecessor up starts a
    /// new epoch. Once a sequence has been missing for [`GIVE_UP`] the batch is proposed
    /// anyway, and the log answers the gap as Kafka does: OUT_OF_ORDER_SEQUENCE_NUMBER.
    pub async fn admit(
        &self,
        term: u64,
        info: &BatchInfo,
        committed: impl Fn() -> Option<(i16, i32)>,
    ) -> Result<Turn<'_>, ChronikError> {
        let turn = |advance, over_gap| {
            Ok(Turn { sequencer: self, producer_id: info.producer_id, term, advance, over_gap, proposed: false })
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let last = (info.base_sequence as i64 + info.last_offset_delta as i64).rem_euclid(i32::MAX as i64 + 1) as i32;
        loop {
            let advanced = self.advanced.notified();
            {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let now = tokio::time::Instant::now();
                if slots.len() >= SLOTS_KEPT && !slots.contains_key(&info.producer_id) {
                    slots.retain(|_, s| now.duration_since(s.used) < IDLE);
                }
                let slot = slots
                    .entry(info.producer_id)
                    .or_insert_with(|| Slot::fresh(term, info.producer_epoch, committed()));
                if slot.term != term {
                    *slot = Slot::fresh(term, info.producer_epoch, committed());
                }
                slot.used = now;
                if info.producer_epoch != slot.epoch {
                    // A new epoch starts at sequence 0; an older one is fenced when applied.
                    if info.producer_epoch > slot.epoch {
                        *slot = Slot { term, epoch: info.producer_epoch, next: 0, missing: None, used: now };
                    } else {
                        return turn(None, false);
                    }
                }
                // Only a batch that would wait looks at the state machine again (the common
                // case takes no second lock): batches of earlier terms, applied since this
                // slot was made, count too.
                let known = if info.base_sequence.wrapping_sub(slot.next) > 0 { committed() } else { None };
                if let Some((epoch, seq)) = known
                    && epoch == slot.epoch
                    && next_after(seq).wrapping_sub(slot.next) > 0
                {
                    slot.next = next_after(seq);
                }
                let ahead = info.base_sequence.wrapping_sub(slot.next);
                if ahead < 0 {
                    return turn(None, false); // A retry of a batch already proposed.
                }
                if ahead == 0 {
                    return turn(Some((slot.next, next_after(last))), false);
                }
                if now >= deadline {
                    let since = match slot.missing {
                        Some((seq, since)) if seq == slot.next => since,
                        _ => {
                            slot.missing = Some((slot.next, deadline - PATIENCE));
                            deadline - PATIENCE
                        }
                    };
                    // A producer the log has not seen yet waits too: its first batches race
                    // like any others, and proposing sequence 1 before 0 has come would let
                    // the log take 1 (it knows nothing to refuse it with) and refuse 0.
                    if now.duration_since(since) >= GIVE_UP {
                        tracing::info!(target: "chronik_server", "Sequence {} of producer {} has not come for {:?}: proposing sequence {}, for the log to refuse the gap", slot.next, info.producer_id, now.duration_since(since), info.base_sequence);
                        return turn(Some((slot.next, next_after(last))), true);
                    }
                    return Err(ChronikError::new(
                        ErrorCode::SequenceAhead,
                        format!(
                            "batch from producer {} at sequence {} arrived before sequence {}, which has not come within {PATIENCE:?}; send it again after that one",
                            info.producer_id, info.base_sequence, slot.next
                        ),
                    ));
                }
            }
            // The state machine applying earlier terms' batches does not notify: look again soon.
            let wake = deadline.min(tokio::time::Instant::now() + RECHECK);
            let _ = tokio::time::timeout_at(wake, advanced).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn batch(pid: i64, base: i32, count: i32) -> BatchInfo {
        BatchInfo {
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: base,
            record_count: count,
        }
    }

    #[tokio::test]
    async fn a_new_leader_continues_from_the_applied_sequence() {
        let seq = Sequencer::default();
        let started = tokio::time::Instant::now();
        // The state machine applied up to sequence 103 under the previous leader.
        seq.admit(2, &batch(7, 104, 1), || Some((0, 103))).await.unwrap().proposed();
        assert!(started.elapsed() < Duration::from_millis(200), "no wait for sequences already in the log");
        seq.admit(2, &batch(7, 105, 2), || Some((0, 103))).await.unwrap().proposed();
        seq.admit(3, &batch(7, 107, 1), || Some((0, 106))).await.unwrap().proposed();
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_batch_that_arrives_first_waits_for_its_predecessor() {
        let seq = Arc::new(Sequencer::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let second = {
            let (seq, order) = (seq.clone(), order.clone());
            tokio::spawn(async move {
                seq.admit(1, &batch(9, 3, 1), || Some((0, 1))).await.unwrap().proposed();
                order.lock().unwrap().push(3);
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(order.lock().unwrap().is_empty(), "sequence 3 waits for 2");
        let turn = seq.admit(1, &batch(9, 2, 1), || Some((0, 1))).await.unwrap();
        order.lock().unwrap().push(2);
        turn.proposed();
        second.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![2, 3]);
    }

    #[tokio::test]
    async fn the_next_batch_waits_until_its_predecessor_is_handed_to_raft() {
        let seq = Arc::new(Sequencer::default());
        let turn = seq.admit(1, &batch(4, 1437, 1), || Some((0, 1436))).await.unwrap();
        let next = {
            let seq = seq.clone();
            tokio::spawn(async move { seq.admit(1, &batch(4, 1438, 1), || Some((0, 1436))).await.unwrap().proposed() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "1438 may not go while 1437 is still on its way to Raft");
        turn.proposed();
        tokio::time::timeout(Duration::from_millis(200), next).await.expect("1438 goes once 1437 is proposed").unwrap();
    }

    #[tokio::test]
    async fn a_turn_dropped_before_its_batch_reached_raft_moves_nothing() {
        let seq = Sequencer::default();
        // Admitted, then the request was cancelled before the batch was proposed.
        drop(seq.admit(1, &batch(6, 53, 1), || Some((0, 52))).await.unwrap());
        // Its retry is admitted as the next batch, not refused as a duplicate or a gap.
        let retry = seq.admit(1, &batch(6, 53, 1), || Some((0, 52))).await.unwrap();
        assert_eq!(retry.advance, Some((53, 54)));
        retry.proposed();
        seq.admit(1, &batch(6, 54, 1), || Some((0, 52))).await.unwrap().proposed();
    }

    #[tokio::test]
    async fn a_batch_raft_refused_is_waited_for_again() {
        let seq = Sequencer::default();
        seq.admit(1, &batch(2, 688, 1), || Some((0, 687))).await.unwrap().proposed();
        // Refused by Raft (an expired leader lease): not in the log.
        seq.rewind(1, 2, 0, 688);
        let b689 = batch(2, 689, 1);
        let next = seq.admit(1, &b689, || Some((0, 687)));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), next).await.is_err(),
            "689 waits for 688's retry instead of going over the gap"
        );
        seq.admit(1, &batch(2, 688, 1), || Some((0, 687))).await.unwrap().proposed();
        seq.admit(1, &batch(2, 689, 1), || Some((0, 687))).await.unwrap().proposed();
    }

    #[tokio::test]
    async fn a_batch_the_log_refused_over_a_raft_refusal_goes_again_after_it() {
        let seq = Sequencer::default();
        let committed = || Some((0, 40));
        let b41 = seq.admit(1, &batch(3, 41, 1), committed).await.unwrap();
        assert!(b41.in_order());
        b41.proposed();
        let b42 = seq.admit(1, &batch(3, 42, 1), committed).await.unwrap();
        assert!(b42.in_order(), "42 came right after 41: a gap in the log is not the producer's");
        b42.proposed();
        // Raft refused 41 (an expired lease) but took 42, which the log refused as a gap; 43
        // is already on its way.
        seq.rewind(1, 3, 0, 41);
        seq.resync(1, &batch(3, 42, 1), Some((0, 40)));
        seq.admit(1, &batch(3, 41, 1), committed).await.unwrap().proposed();
        let again = seq.admit(1, &batch(3, 42, 1), committed).await.unwrap();
        assert_eq!(again.advance, Some((42, 43)), "42's retry is the next batch, not a duplicate");
        again.proposed();
    }

    #[tokio::test(start_paused = true)]
    async fn producers_silent_for_a_minute_are_forgotten_once_there_are_many() {
        let seq = Sequencer::default();
        for pid in 0..SLOTS_KEPT as i64 {
            seq.admit(1, &batch(pid, 0, 1), || None).await.unwrap().proposed();
        }
        tokio::time::sleep(IDLE).await;
        seq.admit(1, &batch(0, 1, 1), || Some((0, 0))).await.unwrap().proposed();
        seq.admit(1, &batch(SLOTS_KEPT as i64, 0, 1), || None).await.unwrap().proposed();
        let slots = seq.slots.lock().unwrap();
        assert_eq!(slots.len(), 2, "only the producers that sent within the last minute are kept");
        assert_eq!(slots.get(&0).map(|s| s.next), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_proposed_over_a_gap_is_not_in_order() {
        let seq = Sequencer::default();
        let turn = loop {
            match seq.admit(1, &batch(5, 10, 1), || Some((0, 8))).await {
                Ok(turn) => break turn,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        assert!(!turn.in_order(), "the log's refusal of it stands");
    }

    #[tokio::test]
    async fn a_batch_whose_predecessor_does_not_come_is_sent_back_to_be_retried() {
        let seq = Sequencer::default();
        let started = tokio::time::Instant::now();
        let refused = seq.admit(1, &batch(5, 10, 1), || Some((0, 8))).await.err().expect("sequence 9 never came");
        assert!(started.elapsed() >= PATIENCE, "waited for sequence 9");
        assert_eq!(refused.code, ErrorCode::SequenceAhead, "retriable, not OUT_OF_ORDER: {}", refused.message);
        // The predecessor comes after all, then the retry goes at once.
        seq.admit(1, &batch(5, 9, 1), || Some((0, 8))).await.unwrap().proposed();
        let again = tokio::time::Instant::now();
        seq.admit(1, &batch(5, 10, 1), || Some((0, 8))).await.unwrap().proposed();
        assert!(again.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_missing_for_good_lets_its_successor_through_to_be_refused() {
        let seq = Sequencer::default();
        let started = tokio::time::Instant::now();
        // The successor keeps coming back (the client retries it) while 9 never comes.
        loop {
            match seq.admit(1, &batch(5, 10, 1), || Some((0, 8))).await {
                Err(e) => assert_eq!(e.code, ErrorCode::SequenceAhead),
                Ok(turn) => {
                    turn.proposed();
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() >= GIVE_UP, "only after {GIVE_UP:?}: {:?}", started.elapsed());
        assert!(started.elapsed() < GIVE_UP + PATIENCE + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn batches_applied_from_earlier_terms_count_as_arrived() {
        let seq = Sequencer::default();
        let applied = std::sync::atomic::AtomicI32::new(100);
        let committed = || Some((0, applied.load(std::sync::atomic::Ordering::SeqCst)));
        seq.admit(4, &batch(3, 101, 1), committed).await.unwrap().proposed();
        // A previous leader's batches 102..=110 are applied meanwhile (this leader never saw them).
        applied.store(110, std::sync::atomic::Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        seq.admit(4, &batch(3, 111, 1), committed).await.unwrap().proposed();
        assert!(started.elapsed() < Duration::from_millis(200), "no wait for what the log already holds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_producers_batches_wait_for_its_first() {
        let seq = Arc::new(Sequencer::default());
        // A fresh producer id's sequence 1 arrives first: proposed now, the log would take it
        // (it has nothing to compare it with) and refuse sequence 0, fatally for the producer.
        let refused = seq.admit(1, &batch(8, 1, 1), || None).await.err().expect("sequence 0 has not come");
        assert_eq!(refused.code, ErrorCode::SequenceAhead, "{}", refused.message);
        seq.admit(1, &batch(8, 0, 1), || None).await.unwrap().proposed();
        seq.admit(1, &batch(8, 1, 1), || None).await.unwrap().proposed();
        // One that never sends sequence 0 is not held back for good.
        let started = tokio::time::Instant::now();
        loop {
            match seq.admit(1, &batch(9, 5, 1), || None).await {
                Err(e) => assert_eq!(e.code, ErrorCode::SequenceAhead),
                Ok(turn) => break turn.proposed(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() >= GIVE_UP, "{:?}", started.elapsed());
    }
}
