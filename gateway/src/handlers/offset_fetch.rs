//! OffsetFetch: one group (v1-v7) or several (v8+); no topics means every committed offset
//! of the group (v2+). Uncommitted partitions answer offset -1.

use std::sync::Arc;

use chronik_proto::control::{CommittedOffset, OffsetFetchRequest as Fetch, TopicPartitions};
use kafka_protocol::messages::offset_fetch_response::*;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics = g
                .topics
                .map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect::<Vec<_>>());
            let (code, offsets) = fetch(ctx, &g.group_id.0, topics).await;
            groups.push(
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(code).with_topics(
                    by_topic(offsets, |name, partitions| {
                        OffsetFetchResponseTopics::default().with_name(name).with_partitions(
                            partitions
                                .into_iter()
                                .map(|o| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(o.partition as i32)
                                        .with_committed_offset(o.offset)
                                        .with_committed_leader_epoch(o.leader_epoch)
                                        .with_metadata(o.metadata.map(str_bytes))
                                        .with_error_code(kafka_code(o.error))
                                })
                                .collect(),
                        )
                    }),
                ),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let (code, offsets) = fetch(ctx, &req.group_id.0, topics).await;
    let topics = by_topic(offsets, |name, partitions| {
        OffsetFetchResponseTopic::default().with_name(name).with_partitions(
            partitions
                .into_iter()
                .map(|o| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(o.partition as i32)
                        .with_committed_offset(o.offset)
                        .with_committed_leader_epoch(if version >= 5 { o.leader_epoch } else { -1 })
                        .with_metadata(o.metadata.map(str_bytes).or(Some(Default::default())))
                        // v1 has only per-partition errors.
                        .with_error_code(if version < 2 && o.error == 0 { code } else { kafka_code(o.error) })
                })
                .collect(),
        )
    });
    OffsetFetchResponse::default().with_topics(topics).with_error_code(if version >= 2 { code } else { 0 })
}

/// Asks the coordinator; `None` topics means all. Returns the group's error code too.
async fn fetch(ctx: &Ctx, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> (i16, Vec<CommittedOffset>) {
    let call = Fetch {
        group_id: group.to_string(),
        all: topics.is_none(),
        topics: topics
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, ps)| TopicPartitions {
                topic,
                partitions: ps.into_iter().filter_map(|p| u32::try_from(p).ok()).collect(),
            })
            .collect(),
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.offset_fetch(call).await }
        })
        .await;
    match result {
        Ok(r) => (kafka_code(r.error), r.offsets),
        Err(s) => {
            let code = coordinator_error(&s.into());
            let failed = call
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| CommittedOffset {
                        topic: t.topic.clone(),
                        partition: *p,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: None,
                        error: chronik_shared::error::ErrorCode::None.id(),
                    })
                })
                .collect();
            (code, failed)
        }
    }
}

/// Groups offsets by topic, keeping the order topics first appear in.
fn by_topic<T>(offsets: Vec<CommittedOffset>, make: impl Fn(TopicName, Vec<CommittedOffset>) -> T) -> Vec<T> {
    let mut order: Vec<(String, Vec<CommittedOffset>)> = Vec::new();
    for o in offsets {
        match order.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, v)) => v.push(o),
            None => order.push((o.topic.clone(), vec![o])),
        }
    }
    order.into_iter().map(|(t, v)| make(TopicName(str_bytes(t)), v)).collect()
}

impl Outcome for OffsetFetchResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.groups.iter().any(|g| g.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn per_topic_answers_encode_at_every_version() {
        let offsets = vec![CommittedOffset {
            topic: "t".into(),
            partition: 1,
            offset: 5,
            leader_epoch: -1,
            metadata: None,
            error: 0,
        }];
        for v in OffsetFetchRequest::VERSIONS.min..=7 {
            let topics = by_topic(offsets.clone(), |name, ps| {
                OffsetFetchResponseTopic::default().with_name(name).with_partitions(
                    ps.into_iter()
                        .map(|o| {
                            OffsetFetchResponsePartition::default()
                                .with_committed_offset(o.offset)
                                .with_metadata(Some(Default::default()))
                        })
                        .collect(),
                )
            });
            let r = OffsetFetchResponse::default().with_topics(topics);
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
