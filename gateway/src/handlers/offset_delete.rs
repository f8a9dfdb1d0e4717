//! OffsetDelete: removes committed offsets of partitions the group's live members do not
//! subscribe to (GROUP_SUBSCRIBED_TO_TOPIC for the others, as Kafka).

use std::sync::Arc;

use chronik_proto::control::{OffsetDeleteRequest as Delete, TopicPartitions};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{coordinator_error, kafka_code};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let call = Delete {
        group_id: req.group_id.0.to_string(),
        topics: req
            .topics
            .iter()
            .map(|t| TopicPartitions {
                topic: t.name.0.to_string(),
                partitions: t.partitions.iter().filter_map(|p| u32::try_from(p.partition_index).ok()).collect(),
            })
            .collect(),
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.offset_delete(call).await }
        })
        .await;
    let r = match result {
        Ok(r) => r,
        Err(s) => return OffsetDeleteResponse::default().with_error_code(coordinator_error(&s.into())),
    };
    let mut topics: Vec<OffsetDeleteResponseTopic> =
        req.topics.iter().map(|t| OffsetDeleteResponseTopic::default().with_name(t.name.clone())).collect();
    for p in r.results {
        if let Some(t) = topics.iter_mut().find(|t| t.name.0.as_str() == p.topic) {
            t.partitions.push(
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition as i32)
                    .with_error_code(kafka_code(p.error)),
            );
        }
    }
    OffsetDeleteResponse::default().with_error_code(kafka_code(r.error)).with_topics(topics)
}

impl Outcome for OffsetDeleteResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
    }
}
