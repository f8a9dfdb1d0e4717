//! Fetch: the requested partitions are grouped by their data-plane leader and each data node
//! gets one DataService Fetch carrying the client's max_wait/min_bytes/max_bytes (the data node
//! does the long poll). Nodes are asked in parallel; once the answers so far hold min_bytes
//! (or an error), the others are not waited for. Records go back exactly as the data node
//! stored them (baseOffset already rewritten), as the pieces it read, spliced into the frame
//! uncopied (`response_frame.rs`). Fetch sessions are not offered (session id 0,
//! which tells clients to send full requests).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_proto::data::{
    FetchPartition as DataPartition, FetchRequest as DataFetch, FetchedPartition, TopicPartition,
};
use chronik_shared::error::{ChronikError, ErrorCode};
use chronik_shared::metrics::BYTES_OUT;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::as_leader_error;
use crate::context::Ctx;
use crate::metadata_cache::ClusterView;
use crate::response_frame;
use crate::router::Outcome;

/// Longest long poll honoured.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One requested partition and what became of it.
struct Slot {
    topic: usize,
    name: String,
    partition: i32,
    offset: i64,
    max_bytes: u32,
    answer: Option<PartitionData>,
    /// The answer's record set, as the data node's pieces.
    records: Vec<Bytes>,
}

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: FetchRequest) -> FetchResponse {
    if version >= 7 && req.session_id != 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let read_committed = req.isolation_level == 1;
    let view = if version >= 13 {
        let ids: Vec<_> = req.topics.iter().map(|t| t.topic_id).collect();
        ctx.cache.view_with_ids(&ids).await
    } else {
        let names: Vec<&str> = req.topics.iter().map(|t| t.topic.0.as_str()).collect();
        ctx.cache.view_with(&names).await
    };

    let mut topics = Vec::with_capacity(req.topics.len());
    let mut slots = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = if version >= 13 { view.names_by_id.get(&t.topic_id).cloned() } else { Some(t.topic.0.to_string()) };
        topics.push(FetchableTopicResponse::default().with_topic(t.topic).with_topic_id(t.topic_id));
        for p in t.partitions {
            let mut slot = Slot {
                topic: ti,
                name: name.clone().unwrap_or_default(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as u32,
                answer: None,
                records: Vec::new(),
            };
            if name.is_none() {
                slot.answer = Some(failed(p.partition, ResponseError::UnknownTopicId.code()));
            }
            slots.push(slot);
        }
    }

    // Group by leader; partitions without one are answered now.
    let mut by_node: HashMap<String, Vec<usize>> = HashMap::new();
    let mut refresh = false;
    for (i, s) in slots.iter_mut().enumerate() {
        if s.answer.is_some() {
            continue;
        }
        match view.leader(&s.name, s.partition) {
            Ok((_, addr)) => by_node.entry(addr).or_default().push(i),
            Err(e) => {
                refresh |= e.code != ErrorCode::UnknownTopicOrPartition || !view.topics.contains_key(&s.name);
                s.answer = Some(failed(s.partition, fetch_code(e.code).kafka()));
            }
        }
    }

    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 { u32::MAX } else { req.max_bytes as u32 };
    // A data node's answer is one gRPC message: ask for at most half of one, leaving room for
    // the first batch of a partition, which is returned whole even past the limit.
    let node_max = u32::try_from(ctx.max_batch_bytes() / 2).unwrap_or(u32::MAX).min(max_bytes);
    let mut calls: FuturesUnordered<_> = by_node
        .into_iter()
        .map(|(addr, idxs)| {
            let data = DataFetch {
                partitions: idxs
                    .iter()
                    .map(|&i| DataPartition {
                        tp: Some(TopicPartition { topic: slots[i].name.clone(), partition: slots[i].partition as u32 }),
                        offset: slots[i].offset,
                        max_bytes: slots[i].max_bytes.min(node_max),
                    })
                    .collect(),
                max_wait_ms: max_wait.as_millis() as u32,
                min_bytes: min_bytes.min(node_max as usize) as u32,
                max_bytes: node_max,
                record_pieces: true,
            };
            let timeout = max_wait + ctx.request_timeout();
            async move {
                let result = match ctx.data.get(&addr) {
                    Ok(mut conn) => conn.fetch(data, timeout).await.map(|r| r.into_inner()).map_err(ChronikError::from),
                    Err(e) => Err(e),
                };
                (idxs, result)
            }
        })
        .collect();

    let mut got_bytes = 0usize;
    let mut got_error = false;
    while let Some((idxs, result)) = calls.next().await {
        match result {
            Ok(resp) => {
                for (&i, mut fetched) in idxs.iter().zip(resp.partitions) {
                    let code = fetch_code(chronik_code(fetched.error_code));
                    refresh |=
                        matches!(code, ErrorCode::NotLeader | ErrorCode::NoLeader | ErrorCode::UnknownTopicOrPartition);
                    got_error |= code != ErrorCode::None;
                    got_bytes += fetched.records_len();
                    slots[i].records = fetched.take_record_pieces();
                    slots[i].answer = Some(answer(slots[i].partition, code, &fetched, read_committed));
                }
            }
            Err(e) => {
                tracing::debug!(target: "chronik_gateway", "fetch from a data node failed: {e}");
                refresh = true;
                got_error = true;
                for &i in &idxs {
                    slots[i].answer = Some(failed(slots[i].partition, fetch_code(e.code).kafka()));
                }
            }
        }
        // Enough to answer: the remaining nodes' partitions go back empty, without error.
        if got_error || got_bytes >= min_bytes.max(1) {
            break;
        }
    }
    drop(calls);
    if refresh {
        ctx.cache.refresh_soon();
    }

    // Honour the response-wide max_bytes: after the first non-empty partition, a partition
    // whose records would overflow it goes back empty (the client asks again).
    let mut total = 0usize;
    let limit = max_bytes as usize;
    for mut s in slots {
        let mut a = match s.answer.take() {
            Some(a) => a,
            None => not_waited_for(&view, &s),
        };
        let pieces = std::mem::take(&mut s.records);
        let len: usize = pieces.iter().map(Bytes::len).sum();
        if len > 0 && total > 0 && total + len > limit {
            a.records = Some(Bytes::new());
        } else if len > 0 {
            total += len;
            BYTES_OUT.with_label_values(&[s.name.as_str()]).inc_by(len as u64);
            a.records = Some(response_frame::record_set(pieces));
        }
        topics[s.topic].partitions.push(a);
    }
    if version >= 13 {
        topics.iter_mut().for_each(|t| t.topic = Default::default());
    } else {
        topics.iter_mut().for_each(|t| t.topic_id = Default::default());
    }
    FetchResponse::default().with_responses(topics)
}

fn chronik_code(id: i32) -> ErrorCode {
    ErrorCode::from_id(id).unwrap_or(ErrorCode::Internal)
}

/// A fetch that could not reach the leader (or timed out on the way) is "not the leader":
/// consumers then refresh metadata and fetch again.
fn fetch_code(code: ErrorCode) -> ErrorCode {
    match as_leader_error(code) {
        ErrorCode::Timeout | ErrorCode::OutcomeUnknown => ErrorCode::NotLeader,
        other => other,
    }
}

/// A partition's answer but for its records, which go in last (`response_frame::record_set`).
fn answer(partition: i32, code: ErrorCode, f: &FetchedPartition, read_committed: bool) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code.kafka())
        .with_high_watermark(f.high_watermark)
        .with_last_stable_offset(f.high_watermark)
        .with_log_start_offset(f.log_start_offset)
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_records(Some(Bytes::new()))
}

fn failed(partition: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// A partition whose data node was not waited for: no records, the watermarks last seen.
fn not_waited_for(view: &ClusterView, s: &Slot) -> PartitionData {
    let p =
        view.topics.get(&s.name).and_then(|t| t.partitions.iter().find(|p| p.partition as i64 == s.partition as i64));
    let (hw, start) = p.map_or((-1, -1), |p| (p.high_watermark as i64, p.log_start_offset as i64));
    failed(s.partition, 0).with_high_watermark(hw).with_last_stable_offset(hw).with_log_start_offset(start)
}

impl Outcome for FetchResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.responses.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::str_bytes;
    use bytes::BytesMut;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn responses_encode_at_every_version() {
        for v in FetchRequest::VERSIONS.min..=FetchRequest::VERSIONS.max {
            let f = FetchedPartition {
                error_code: ErrorCode::OffsetOutOfRange.id(),
                high_watermark: 10,
                log_start_offset: 2,
                records: Bytes::from_static(b"abc"),
                ..Default::default()
            };
            let mut t = FetchableTopicResponse::default()
                .with_topic(TopicName(str_bytes("t")))
                .with_topic_id(uuid::Uuid::from_bytes([2; 16]))
                .with_partitions(vec![answer(0, ErrorCode::OffsetOutOfRange, &f, true), failed(1, 3)]);
            if v >= 13 {
                t.topic = Default::default();
            } else {
                t.topic_id = Default::default();
            }
            let r = FetchResponse::default().with_responses(vec![t]);
            assert!(r.failed());
            assert_eq!(r.responses[0].partitions[0].error_code, 1);
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
