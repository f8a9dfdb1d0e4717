//! OffsetCommit, OffsetFetch and OffsetDelete, and the consumer-lag gauge.

use std::collections::HashSet;
use std::time::Instant;

use chronik_proto::control::*;
use chronik_shared::error::{ChronikError, ErrorCode};
use chronik_shared::metrics::CONSUMER_LAG;

use super::coordinator::{GroupCoordinator, validate_group_id};
use super::state::GroupState;
use crate::types::{ControlCommand, OffsetRecord};

/// Kafka's `offset.metadata.max.bytes` default.
const MAX_METADATA_BYTES: usize = 4096;

impl GroupCoordinator {
    pub async fn offset_commit(&self, req: OffsetCommitRequest) -> Result<OffsetCommitResponse, ChronikError> {
        validate_group_id(&req.group_id)?;
        self.activate().await?;
        let group_error = {
            let mut inner = self.lock();
            let g = inner.groups.get_mut(&req.group_id);
            let simple = req.generation_id < 0 && req.member_id.is_empty();
            match g {
                // Commits from outside any generation (assign()ed consumers, admin tools)
                // are fine while the group has no members.
                Some(g) if simple => (!g.members.is_empty()).then_some(ErrorCode::IllegalGeneration),
                None if simple => None,
                None => Some(ErrorCode::UnknownMemberId),
                Some(g) => match g.check_member(&req.member_id, req.group_instance_id.as_ref(), req.generation_id) {
                    Err(code) => Some(code),
                    // The generation is being handed out; its members commit after SyncGroup.
                    Ok(()) if g.state == GroupState::CompletingRebalance => Some(ErrorCode::RebalanceInProgress),
                    Ok(()) => {
                        g.touch(&req.member_id, Instant::now());
                        None
                    }
                },
            }
        };
        let result = |o: &CommitOffset, code: ErrorCode| PartitionResult {
            topic: o.topic.clone(),
            partition: o.partition,
            error: code.id(),
        };
        if let Some(code) = group_error {
            return Ok(OffsetCommitResponse {
                error: ErrorCode::None.id(),
                results: req.offsets.iter().map(|o| result(o, code)).collect(),
            });
        }
        let now_ms = chronik_shared::http::now_ms();
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for o in &req.offsets {
            let partitions = self.sm.topic(&o.topic).ok().flatten().map(|t| t.assignments.len() as u32);
            let code = if partitions.is_none_or(|n| o.partition >= n) {
                ErrorCode::UnknownTopicOrPartition
            } else if o.metadata.as_ref().is_some_and(|m| m.len() > MAX_METADATA_BYTES) {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                records.push(OffsetRecord {
                    group_id: req.group_id.clone(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: now_ms,
                });
                accepted.push(results.len());
                ErrorCode::None
            };
            results.push(result(o, code));
        }
        if !records.is_empty() {
            match self.writer.write(ControlCommand::CommitOffsets(records.clone())).await {
                Ok(_) => self.update_lag(&records),
                Err(e) => {
                    let code = coordinator_error(e.code);
                    for i in accepted {
                        results[i].error = code.id();
                    }
                }
            }
        }
        Ok(OffsetCommitResponse { error: ErrorCode::None.id(), results })
    }

    pub async fn offset_fetch(&self, req: OffsetFetchRequest) -> Result<OffsetFetchResponse, ChronikError> {
        self.activate().await?;
        let stored =
            self.sm.offsets(&req.group_id).map_err(|e| ChronikError::new(ErrorCode::Internal, e.to_string()))?;
        let offsets = if req.all {
            stored.into_iter().map(committed).collect()
        } else {
            let mut out = Vec::new();
            for t in &req.topics {
                for p in &t.partitions {
                    let found = stored.iter().find(|o| o.topic == t.topic && o.partition == *p);
                    out.push(match found {
                        Some(o) => committed(o.clone()),
                        None => CommittedOffset {
                            topic: t.topic.clone(),
                            partition: *p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: None,
                            error: ErrorCode::None.id(),
                        },
                    });
                }
            }
            out
        };
        Ok(OffsetFetchResponse { error: ErrorCode::None.id(), offsets })
    }

    pub async fn offset_delete(&self, req: OffsetDeleteRequest) -> Result<OffsetDeleteResponse, ChronikError> {
        self.activate().await?;
        let known =
            self.lock().groups.contains_key(&req.group_id) || self.sm.group(&req.group_id).ok().flatten().is_some();
        if !known {
            return Ok(OffsetDeleteResponse { error: ErrorCode::GroupIdNotFound.id(), results: Vec::new() });
        }
        // Offsets of topics the live members subscribe to stay (Kafka's rule).
        let subscribed: Option<HashSet<String>> = {
            let inner = self.lock();
            inner.groups.get(&req.group_id).filter(|g| !g.members.is_empty()).map(|g| {
                let mut topics = HashSet::new();
                for m in g.members.values() {
                    for (_, md) in &m.rec.protocols {
                        match (g.protocol_type.as_str(), subscription_topics(md)) {
                            ("consumer", Some(ts)) => topics.extend(ts),
                            // Unknown protocols: every topic counts as subscribed.
                            _ => {
                                topics.insert(String::new());
                            }
                        }
                    }
                }
                topics
            })
        };
        let mut results = Vec::new();
        let mut delete = Vec::new();
        for t in &req.topics {
            let blocked = subscribed.as_ref().is_some_and(|s| s.contains(&t.topic) || s.contains(""));
            for p in &t.partitions {
                let code = if blocked {
                    ErrorCode::GroupSubscribedToTopic
                } else {
                    delete.push((t.topic.clone(), *p));
                    ErrorCode::None
                };
                results.push(PartitionResult { topic: t.topic.clone(), partition: *p, error: code.id() });
            }
        }
        if !delete.is_empty() {
            let cmd = ControlCommand::DeleteOffsets { group_id: req.group_id.clone(), partitions: delete.clone() };
            if let Err(e) = self.writer.write(cmd).await {
                return Ok(OffsetDeleteResponse { error: coordinator_error(e.code).id(), results: Vec::new() });
            }
            for (topic, p) in delete {
                let _ = CONSUMER_LAG.remove_label_values(&[&req.group_id, &topic, &p.to_string()]);
            }
        }
        Ok(OffsetDeleteResponse { error: ErrorCode::None.id(), results })
    }

    /// `chronik_consumer_lag` = high watermark (as data nodes last reported it) − committed offset.
    pub(crate) fn update_lag(&self, records: &[OffsetRecord]) {
        for o in records {
            let hw = self.liveness.observed(&o.topic, o.partition).high_watermark;
            let lag = (hw as i64).saturating_sub(o.offset).max(0);
            CONSUMER_LAG.with_label_values(&[&o.group_id, &o.topic, &o.partition.to_string()]).set(lag);
        }
    }
}

fn committed(o: OffsetRecord) -> CommittedOffset {
    CommittedOffset {
        topic: o.topic,
        partition: o.partition,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata,
        error: ErrorCode::None.id(),
    }
}

/// A failed write as Kafka clients understand it: find the coordinator again and retry.
pub(crate) fn coordinator_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::NotCoordinator => ErrorCode::NotCoordinator,
        ErrorCode::NoLeader | ErrorCode::Unavailable => ErrorCode::CoordinatorNotAvailable,
        other => other,
    }
}

/// The topics of a consumer-protocol subscription (`version: int16, topics: [string]`, then
/// fields this does not need).
pub(crate) fn subscription_topics(md: &[u8]) -> Option<Vec<String>> {
    let mut pos = 2usize;
    let read = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = md.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    };
    let count = i32::from_be_bytes(read(&mut pos, 4)?.try_into().ok()?);
    if count < 0 || count as usize > md.len() {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i16::from_be_bytes(read(&mut pos, 2)?.try_into().ok()?);
        let name = read(&mut pos, usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_consumer_subscriptions() {
        let mut md = vec![0, 1, 0, 0, 0, 2];
        for t in ["ab", "c"] {
            md.extend_from_slice(&(t.len() as i16).to_be_bytes());
            md.extend_from_slice(t.as_bytes());
        }
        md.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(subscription_topics(&md), Some(vec!["ab".to_string(), "c".to_string()]));
        assert_eq!(subscription_topics(&[0, 1, 0x7f, 0, 0, 0]), None);
        assert_eq!(subscription_topics(&[]), None);
    }
}
