//! OffsetCommit: the coordinator checks the member and generation, then the offsets are
//! committed through Raft (coalesced with other groups' commits in flight).

use std::sync::Arc;

use chronik_proto::control::{CommitOffset, OffsetCommitRequest as Commit};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{coordinator_error, kafka_code};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut bad = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        topics.push(OffsetCommitResponseTopic::default().with_name(t.name.clone()));
        for p in &t.partitions {
            match u32::try_from(p.partition_index) {
                Ok(partition) => offsets.push(CommitOffset {
                    topic: t.name.0.to_string(),
                    partition,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                }),
                Err(_) => bad.push((ti, p.partition_index)),
            }
        }
    }
    let call = Commit {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        offsets,
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.offset_commit(call).await }
        })
        .await;
    let partition = |index: i32, code: i16| {
        OffsetCommitResponsePartition::default().with_partition_index(index).with_error_code(code)
    };
    let index_of = |name: &str| req.topics.iter().position(|t| t.name.0.as_str() == name);
    match result {
        Ok(r) => {
            for res in r.results {
                if let Some(ti) = index_of(&res.topic) {
                    topics[ti].partitions.push(partition(res.partition as i32, kafka_code(res.error)));
                }
            }
        }
        Err(s) => {
            let code = coordinator_error(&s.into());
            for o in &call.offsets {
                if let Some(ti) = index_of(&o.topic) {
                    topics[ti].partitions.push(partition(o.partition as i32, code));
                }
            }
        }
    }
    for (ti, index) in bad {
        topics[ti].partitions.push(partition(index, kafka_protocol::ResponseError::UnknownTopicOrPartition.code()));
    }
    OffsetCommitResponse::default().with_topics(topics)
}

impl Outcome for OffsetCommitResponse {
    fn failed(&self) -> bool {
        self.topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code != 0)
    }
}
