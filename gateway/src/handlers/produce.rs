//! Produce: each partition's records are split into their v2 record batches (by the
//! batchLength field, never decoded) and each batch goes unchanged to the partition's
//! data-plane leader; partitions of one request are written in parallel. Leader changes are
//! retried here until the request's timeout. `acks=0` requests are answered by nobody: the
//! connection drops the response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chronik_proto::data::{ProduceRequest as DataProduce, TopicPartition};
use chronik_shared::error::{ChronikError, ErrorCode};
use chronik_shared::metrics::BYTES_IN;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tokio::time::Instant;

use super::{as_leader_error, kafka_error};
use crate::context::Ctx;
use crate::leader::call_leader;
use crate::router::Outcome;

/// baseOffset (8) + batchLength (4) + partitionLeaderEpoch (4) + magic (1) + crc (4) +
/// attributes (2) + lastOffsetDelta (4) + baseTimestamp (8) + maxTimestamp (8) +
/// producerId (8) + producerEpoch (2) + baseSequence (4) + recordCount (4).
const BATCH_HEADER: usize = 61;
/// Bytes of a batch counted by batchLength start after baseOffset and batchLength.
const LENGTH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: ProduceRequest) -> ProduceResponse {
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.clamp(100, 300_000) as u64);
    let view = if version >= 13 {
        let ids: Vec<_> = req.topic_data.iter().map(|t| t.topic_id).collect();
        Some(ctx.cache.view_with_ids(&ids).await)
    } else {
        None
    };
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut work = Vec::new();
    for (ti, t) in req.topic_data.into_iter().enumerate() {
        let name = match &view {
            Some(v) => v.names_by_id.get(&t.topic_id).cloned(),
            None => Some(t.name.0.to_string()),
        };
        topics.push(TopicProduceResponse::default().with_name(t.name).with_topic_id(t.topic_id));
        for p in t.partition_data {
            let name = name.clone();
            work.push(async move {
                let resp = match name {
                    Some(name) => produce_partition(ctx, &name, p.index, p.records, acks, deadline).await,
                    None => PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                };
                (ti, resp)
            });
        }
    }
    for (ti, resp) in join_all(work).await {
        topics[ti].partition_responses.push(resp);
    }
    if version < 13 {
        topics.iter_mut().for_each(|t| t.topic_id = Default::default());
    } else {
        topics.iter_mut().for_each(|t| t.name = Default::default());
    }
    ProduceResponse::default().with_responses(topics)
}

async fn produce_partition(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    deadline: Instant,
) -> PartitionProduceResponse {
    let resp = PartitionProduceResponse::default().with_index(partition);
    let fail = |e: ChronikError| {
        let (code, message) = kafka_error(&e);
        resp.clone().with_error_code(code).with_error_message(message)
    };
    if !(-1..=1).contains(&acks) {
        return fail(ChronikError::new(ErrorCode::InvalidRequiredAcks, format!("acks={acks}; use 0, 1 or -1 (all)")));
    }
    let records = records.unwrap_or_default();
    let batches = match split_batches(&records, ctx.max_batch_bytes()) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let mut first: Option<chronik_proto::data::ProduceResponse> = None;
    for batch in batches {
        let result = call_leader(ctx, topic, partition, deadline, |mut client| {
            let remaining = deadline.saturating_duration_since(Instant::now()).as_millis();
            let req = DataProduce {
                tp: Some(TopicPartition { topic: topic.to_string(), partition: partition as u32 }),
                batch: batch.clone(),
                acks: i32::from(acks),
                timeout_ms: u32::try_from(remaining).unwrap_or(u32::MAX).max(1),
            };
            async move { client.produce(req).await }
        })
        .await;
        match result {
            Ok(r) => {
                first.get_or_insert(r);
            }
            Err(e) => {
                // An Internal error reaching a client is a bug (librdkafka gives the batch
                // up on UNKNOWN_SERVER_ERROR): say where it came from.
                if e.code == ErrorCode::Internal {
                    tracing::warn!(target: "chronik_gateway", "produce to {topic}-{partition} failed: {e}");
                } else {
                    tracing::debug!(target: "chronik_gateway", "produce to {topic}-{partition} failed: {e}");
                }
                return fail(ChronikError { code: as_leader_error(e.code), ..e });
            }
        }
    }
    BYTES_IN.with_label_values(&[topic]).inc_by(records.len() as u64);
    let first = first.unwrap_or_default();
    resp.with_base_offset(first.base_offset)
        .with_log_append_time_ms(first.log_append_time_ms)
        .with_log_start_offset(first.log_start_offset)
}

/// The record batches of a partition's records, as slices of the request (no copy).
pub(crate) fn split_batches(records: &Bytes, max_batch: usize) -> Result<Vec<Bytes>, ChronikError> {
    let corrupt = |why: String| Err(ChronikError::new(ErrorCode::CorruptMessage, why));
    if records.is_empty() {
        return corrupt("the produce request carries no record batch".into());
    }
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < BATCH_HEADER {
            return corrupt(format!(
                "{} trailing bytes are too few for a record batch header ({BATCH_HEADER})",
                rest.len()
            ));
        }
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let total = usize::try_from(length).ok().map(|l| l + LENGTH_OFFSET).filter(|t| *t >= BATCH_HEADER);
        let Some(total) = total else {
            return corrupt(format!("a record batch declares a length of {length} bytes"));
        };
        if total > rest.len() {
            return corrupt(format!("a record batch of {total} bytes is cut off after {} bytes", rest.len()));
        }
        if rest[MAGIC_OFFSET] != 2 {
            return corrupt(format!(
                "record batch magic {} is not supported; only v2 batches (Kafka 0.11+ clients) are",
                rest[MAGIC_OFFSET]
            ));
        }
        if total > max_batch {
            return Err(ChronikError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "a record batch of {total} bytes exceeds the {max_batch}-byte limit (cluster.network.max_message_size)"
                ),
            ));
        }
        batches.push(records.slice(pos..pos + total));
        pos += total;
    }
    Ok(batches)
}

impl Outcome for ProduceResponse {
    fn failed(&self) -> bool {
        self.responses.iter().flat_map(|t| &t.partition_responses).any(|p| p.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::str_bytes;
    use bytes::BytesMut;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, Message};
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn batch(n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 10])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions { version: 2, compression: Compression::None };
        RecordBatchEncoder::encode(&mut buf, &records, &opts).expect("encode batch");
        buf.freeze()
    }

    #[test]
    fn splits_concatenated_batches_without_copying() {
        let (a, b) = (batch(1), batch(1));
        let mut both = BytesMut::new();
        both.extend_from_slice(&a);
        both.extend_from_slice(&b);
        let both = both.freeze();
        let split = split_batches(&both, 1 << 20).expect("valid");
        assert_eq!(split, vec![a.clone(), b]);
        assert_eq!(split[0].as_ptr(), both.as_ptr());

        let code = |r: Result<Vec<Bytes>, ChronikError>| r.expect_err("invalid").code;
        assert_eq!(code(split_batches(&Bytes::new(), 1 << 20)), ErrorCode::CorruptMessage);
        assert_eq!(code(split_batches(&both.slice(..both.len() - 1), 1 << 20)), ErrorCode::CorruptMessage);
        assert_eq!(code(split_batches(&a.slice(..30), 1 << 20)), ErrorCode::CorruptMessage);
        let mut v1 = BytesMut::from(&a[..]);
        v1[MAGIC_OFFSET] = 1;
        assert_eq!(code(split_batches(&v1.freeze(), 1 << 20)), ErrorCode::CorruptMessage);
        let mut neg = BytesMut::from(&a[..]);
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(code(split_batches(&neg.freeze(), 1 << 20)), ErrorCode::CorruptMessage);
        assert_eq!(code(split_batches(&a, 20)), ErrorCode::MessageTooLarge);
    }

    #[test]
    fn responses_encode_at_every_version() {
        for v in ProduceRequest::VERSIONS.min..=ProduceRequest::VERSIONS.max {
            let p = PartitionProduceResponse::default()
                .with_index(1)
                .with_error_code(6)
                .with_error_message(Some(str_bytes("moved")))
                .with_base_offset(-1)
                .with_log_start_offset(0);
            let mut t = TopicProduceResponse::default()
                .with_name(TopicName(str_bytes("t")))
                .with_topic_id(uuid::Uuid::from_bytes([3; 16]))
                .with_partition_responses(vec![p]);
            if v < 13 {
                t.topic_id = Default::default();
            } else {
                t.name = Default::default();
            }
            let r = ProduceResponse::default().with_responses(vec![t]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
