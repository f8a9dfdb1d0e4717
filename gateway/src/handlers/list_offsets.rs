//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) or the first offset at or after
//! a timestamp, asked of each partition's data-plane leader (all partitions in parallel,
//! leader changes retried until the request's timeout).

use std::sync::Arc;
use std::time::Duration;

use chronik_proto::data::{ListOffsetsRequest as DataListOffsets, TopicPartition};
use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use tokio::time::Instant;

use super::as_leader_error;
use crate::context::Ctx;
use crate::leader::call_leader;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let timeout = if version >= 10 && req.timeout_ms > 0 {
        Duration::from_millis(req.timeout_ms.min(300_000) as u64)
    } else {
        ctx.request_timeout()
    };
    let deadline = Instant::now() + timeout;
    let names: Vec<&str> = req.topics.iter().map(|t| t.name.0.as_str()).collect();
    ctx.cache.view_with(&names).await;

    let mut topics = Vec::with_capacity(req.topics.len());
    let mut work = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name));
        for p in t.partitions {
            let name = name.clone();
            work.push(async move {
                let resp = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let result = call_leader(ctx, &name, p.partition_index, deadline, |mut client| {
                    let req = DataListOffsets {
                        tp: Some(TopicPartition { topic: name.clone(), partition: p.partition_index as u32 }),
                        timestamp: p.timestamp,
                    };
                    async move { client.list_offsets(req).await }
                })
                .await;
                let resp = match result {
                    Ok(r) => resp.with_offset(r.offset).with_timestamp(r.timestamp),
                    Err(e) => resp.with_error_code(as_leader_error(e.code).kafka()).with_offset(-1).with_timestamp(-1),
                };
                (ti, resp)
            });
        }
    }
    for (ti, resp) in join_all(work).await {
        topics[ti].partitions.push(resp);
    }
    ListOffsetsResponse::default().with_topics(topics)
}

impl Outcome for ListOffsetsResponse {
    fn failed(&self) -> bool {
        self.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, Message, StrBytes};

    #[test]
    fn responses_encode_at_every_version() {
        for v in ListOffsetsRequest::VERSIONS.min..=ListOffsetsRequest::VERSIONS.max {
            let r = ListOffsetsResponse::default().with_topics(vec![
                ListOffsetsTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![
                        ListOffsetsPartitionResponse::default().with_offset(5).with_timestamp(-1),
                        ListOffsetsPartitionResponse::default().with_error_code(3).with_offset(-1),
                    ]),
            ]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
