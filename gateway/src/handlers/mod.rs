//! One file per Kafka API, each with a `handle(ctx, version, request) -> response` that the
//! router's table points to. Helpers several handlers share are here.

pub(crate) mod api_versions;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_groups;
pub(crate) mod delete_topics;
pub(crate) mod describe_configs;
pub(crate) mod describe_groups;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod produce;
pub(crate) mod sync_group;

use chronik_proto::control::{CreateTopicRequest, TopicInfo};
use chronik_shared::error::{ChronikError, ErrorCode};
use kafka_protocol::protocol::StrBytes;

use crate::context::Ctx;
pub(crate) use crate::metadata_cache::is_ready;

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The Kafka error code and message of a Chronik error (through the one shared table).
pub(crate) fn kafka_error(e: &ChronikError) -> (i16, Option<StrBytes>) {
    (e.code.kafka(), Some(str_bytes(e.message.clone())))
}

/// The Kafka code of an error id in a group-coordinator answer.
pub(crate) fn kafka_code(id: i32) -> i16 {
    ErrorCode::from_id(id).unwrap_or(ErrorCode::Internal).kafka()
}

/// The Kafka code of a group-coordinator call that failed as a whole. Leadership trouble
/// becomes NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE: clients then look the coordinator
/// up again and retry by themselves.
pub(crate) fn coordinator_error(e: &ChronikError) -> i16 {
    match e.code {
        // Internal covers a call cut off mid-way (e.g. the control-plane leader died during a
        // JoinGroup long poll): the coordinator has to be found again.
        ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::Internal => ErrorCode::NotCoordinator.kafka(),
        ErrorCode::NoLeader | ErrorCode::Unavailable => ErrorCode::CoordinatorNotAvailable.kafka(),
        other => other.kafka(),
    }
}

/// How a failure to reach a partition's leader is best told to clients: "not the leader,
/// refresh metadata and retry" is the one answer every client retries silently (Java's
/// consumer, for one, fails a fetch on BROKER_NOT_AVAILABLE or LEADER_NOT_AVAILABLE).
pub(crate) fn as_leader_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::Unavailable | ErrorCode::NoLeader => ErrorCode::NotLeader,
        other => other,
    }
}

/// Kafka's topic name rules: 1 to 249 characters out of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), ChronikError> {
    let bad =
        |why: &str| Err(ChronikError::new(ErrorCode::InvalidTopic, format!("topic name {name:?} is invalid: {why}")));
    if name.is_empty() {
        return bad("it is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if name.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Asks the control plane to create a topic; the cache learns of it on its next refresh.
pub(crate) async fn create_topic(ctx: &Ctx, req: CreateTopicRequest) -> Result<TopicInfo, ChronikError> {
    validate_topic_name(&req.name)?;
    let name = req.name.clone();
    let resp = ctx
        .control
        .call(|mut c| {
            let req = req.clone();
            async move { c.create_topic(req).await }
        })
        .await?;
    resp.topic.ok_or_else(|| {
        ChronikError::new(ErrorCode::Internal, format!("the control plane created {name} but returned no topic"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            assert_eq!(validate_topic_name(bad).expect_err(bad).code, ErrorCode::InvalidTopic);
        }
    }
}
