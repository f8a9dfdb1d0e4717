//! CreateTopics: each topic is created through the control plane (partition count and
//! replication factor -1 mean the `kafka.default_*` settings; replica assignments are chosen
//! by the control plane, so explicit ones are refused). With a timeout, the answer waits
//! (within four fifths of it) until every new partition has a data-plane leader, so a client
//! can produce right after.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chronik_proto::control::{CreateTopicRequest, TopicInfo};
use chronik_shared::error::{ChronikError, ErrorCode};
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use tokio::time::Instant;

use super::describe_configs::{ConfigEntry, topic_configs};
use super::{create_topic, is_ready, kafka_error, str_bytes};
use crate::context::Ctx;
use crate::metadata_cache::topic_uuid;
use crate::router::Outcome;

/// Longest wait for new partitions to get leaders.
const MAX_READY_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    // Clients time the whole request out after about `timeout_ms` too (librdkafka's admin
    // client by default uses the same value): answer before then, or a large topic that is
    // created but still electing leaders looks like a failure.
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let wait = timeout.saturating_sub(timeout / 5).min(MAX_READY_WAIT);
    let validate_only = req.validate_only;
    let results = join_all(req.topics.into_iter().map(|t| {
        let duplicate = counts.get(t.name.0.as_str()).is_some_and(|n| *n > 1);
        create_one(ctx, version, t, duplicate, validate_only, wait)
    }))
    .await;
    ctx.cache.refresh_soon();
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    ctx: &Ctx,
    version: i16,
    t: CreatableTopic,
    duplicate: bool,
    validate_only: bool,
    wait: Duration,
) -> CreatableTopicResult {
    let name = t.name.0.to_string();
    let result = CreatableTopicResult::default().with_name(t.name.clone());
    let fail = |e: ChronikError| {
        let (code, message) = kafka_error(&e);
        result.clone().with_error_code(code).with_error_message(message)
    };
    if duplicate {
        return result
            .clone()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(format!("topic {name} appears more than once in the request"))));
    }
    if !t.assignments.is_empty() {
        return result.clone().with_error_code(ResponseError::InvalidReplicaAssignment.code()).with_error_message(
            Some(str_bytes(
                "Chronik places replicas itself; leave the replica assignment empty and give a partition count",
            )),
        );
    }
    let partitions = match t.num_partitions {
        -1 => ctx.config.kafka.default_partitions,
        n if n > 0 => n as u32,
        n => {
            return fail(ChronikError::new(
                ErrorCode::InvalidPartitions,
                format!("{n} partitions; a topic needs at least 1"),
            ));
        }
    };
    let replication_factor = match t.replication_factor {
        -1 => u32::from(ctx.config.kafka.default_replication_factor),
        n if n > 0 => n as u32,
        n => {
            return fail(ChronikError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("replication factor {n}; it must be at least 1"),
            ));
        }
    };
    let mut configs = HashMap::new();
    for c in t.configs {
        match c.value {
            Some(v) => {
                configs.insert(c.name.to_string(), v.to_string());
            }
            None => {
                return fail(ChronikError::new(
                    ErrorCode::InvalidConfig,
                    format!("config {} has no value", c.name.as_str()),
                ));
            }
        }
    }
    let req = CreateTopicRequest { name: name.clone(), partitions, replication_factor, configs, validate_only };
    let mut topic = match create_topic(ctx, req).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if !validate_only {
        tracing::info!(target: "chronik_gateway", "created topic {name} ({partitions} partitions, RF {replication_factor}) for a Kafka client");
        topic = wait_until_ready(ctx, topic, wait).await;
    }
    let mut result = result
        .with_num_partitions(topic.partitions.len() as i32)
        .with_replication_factor(topic.replication_factor.min(i16::MAX as u32) as i16)
        .with_topic_id(topic_uuid(&topic.topic_id).unwrap_or_default());
    if version >= 5 {
        let configs = topic_configs(&ctx.config, &topic).into_iter().map(to_creatable).collect();
        result = result.with_configs(Some(configs));
    }
    result
}

/// Polls the metadata until every partition of `topic` has a leader, for at most `wait`.
async fn wait_until_ready(ctx: &Ctx, mut topic: TopicInfo, wait: Duration) -> TopicInfo {
    let deadline = Instant::now() + wait;
    while !is_ready(&topic) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match ctx.cache.refresh().await {
            Ok(view) => {
                if let Some(t) = view.topics.get(&topic.name) {
                    topic = (**t).clone();
                }
            }
            Err(e) => {
                tracing::debug!(target: "chronik_gateway", "waiting for leaders of {}: {e}", topic.name);
                break;
            }
        }
    }
    topic
}

fn to_creatable(e: ConfigEntry) -> CreatableTopicConfigs {
    CreatableTopicConfigs::default()
        .with_name(str_bytes(e.name))
        .with_value(Some(str_bytes(e.value)))
        .with_config_source(e.source)
        .with_read_only(e.read_only)
}

impl Outcome for CreateTopicsResponse {
    fn failed(&self) -> bool {
        self.topics.iter().any(|t| t.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn responses_encode_at_every_version() {
        let config = chronik_shared::config::ChronikConfig::default();
        let topic = TopicInfo { name: "t".into(), replication_factor: 1, ..Default::default() };
        for v in CreateTopicsRequest::VERSIONS.min..=CreateTopicsRequest::VERSIONS.max {
            let mut ok = CreatableTopicResult::default()
                .with_name(TopicName(str_bytes("t")))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_topic_id(uuid::Uuid::from_bytes([9; 16]));
            if v >= 5 {
                ok = ok.with_configs(Some(topic_configs(&config, &topic).into_iter().map(to_creatable).collect()));
            }
            let bad = CreatableTopicResult::default()
                .with_name(TopicName(str_bytes("u")))
                .with_error_code(36)
                .with_error_message(Some(str_bytes("exists")));
            let r = CreateTopicsResponse::default().with_topics(vec![ok, bad]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
