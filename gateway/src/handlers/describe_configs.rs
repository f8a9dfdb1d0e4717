//! DescribeConfigs: a topic's configs are what it was created with (TopicInfo.configs) over
//! the defaults that follow from the cluster config; a broker resource gets a few of this
//! gateway's settings. Other resource types are refused per resource.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronik_proto::control::TopicInfo;
use chronik_shared::config::ChronikConfig;
use chronik_shared::error::ErrorCode;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::context::{Ctx, max_batch_bytes};
use crate::router::Outcome;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` values used here.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` values (v3+).
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;

/// One effective config value and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
}

fn entry(name: &str, value: impl ToString, source: i8, read_only: bool, config_type: i8) -> ConfigEntry {
    ConfigEntry { name: name.to_string(), value: value.to_string(), source, read_only, config_type }
}

/// The defaults every topic starts from.
fn topic_defaults(config: &ChronikConfig) -> Vec<ConfigEntry> {
    let max_message = max_batch_bytes(config);
    vec![
        entry("cleanup.policy", "delete", SOURCE_DEFAULT, false, TYPE_STRING),
        entry("compression.type", "producer", SOURCE_DEFAULT, false, TYPE_STRING),
        entry("max.message.bytes", max_message, SOURCE_DEFAULT, false, TYPE_INT),
        entry("message.timestamp.type", "CreateTime", SOURCE_DEFAULT, false, TYPE_STRING),
        entry("min.insync.replicas", 1, SOURCE_DEFAULT, false, TYPE_INT),
        entry("retention.bytes", config.kafka.retention_bytes, SOURCE_DEFAULT, false, TYPE_LONG),
        entry("retention.ms", config.kafka.retention_ms, SOURCE_DEFAULT, false, TYPE_LONG),
        entry("segment.bytes", config.wal.segment_bytes, SOURCE_DEFAULT, false, TYPE_INT),
    ]
}

/// A topic's effective configs, sorted by name: its own over the defaults.
pub(crate) fn topic_configs(config: &ChronikConfig, topic: &TopicInfo) -> Vec<ConfigEntry> {
    let mut all: BTreeMap<String, ConfigEntry> =
        topic_defaults(config).into_iter().map(|e| (e.name.clone(), e)).collect();
    for (k, v) in &topic.configs {
        let config_type = all.get(k).map_or(TYPE_STRING, |e| e.config_type);
        all.insert(k.clone(), entry(k, v, SOURCE_TOPIC, false, config_type));
    }
    all.into_values().collect()
}

fn broker_configs(ctx: &Ctx) -> Vec<ConfigEntry> {
    let c = &ctx.config;
    let b = |name: &str, value: String, t: i8| entry(name, value, SOURCE_STATIC_BROKER, true, t);
    vec![
        b("auto.create.topics.enable", c.kafka.auto_create_topics.to_string(), TYPE_BOOLEAN),
        b("broker.id", ctx.broker_id.to_string(), TYPE_INT),
        b("default.replication.factor", c.kafka.default_replication_factor.to_string(), TYPE_INT),
        b("log.retention.bytes", c.kafka.retention_bytes.to_string(), TYPE_LONG),
        b("log.retention.ms", c.kafka.retention_ms.to_string(), TYPE_LONG),
        b("log.segment.bytes", c.wal.segment_bytes.to_string(), TYPE_INT),
        b("message.max.bytes", ctx.max_batch_bytes().to_string(), TYPE_INT),
        b("num.partitions", c.kafka.default_partitions.to_string(), TYPE_INT),
        b("socket.request.max.bytes", c.kafka.max_request_size.to_string(), TYPE_INT),
    ]
}

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let names: Vec<&str> =
        req.resources.iter().filter(|r| r.resource_type == RESOURCE_TOPIC).map(|r| r.resource_name.as_str()).collect();
    let view = ctx.cache.view_with(&names).await;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match view.topics.get(r.resource_name.as_str()) {
                    Some(t) => Ok(topic_configs(&ctx.config, t)),
                    None => Err((
                        ErrorCode::UnknownTopicOrPartition.kafka(),
                        format!("topic {} does not exist", r.resource_name.as_str()),
                    )),
                },
                RESOURCE_BROKER if r.resource_name.is_empty() || r.resource_name.as_str().parse::<i32>().is_ok() => {
                    Ok(broker_configs(ctx))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("broker resource {:?} is not a broker id", r.resource_name.as_str()),
                )),
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("resource type {other} is not supported; Chronik describes topics (2) and brokers (4)"),
                )),
            };
            match entries {
                Ok(entries) => result.with_configs(render(version, &r, req.include_synonyms, entries)),
                Err((code, message)) => result.with_error_code(code).with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn render(
    version: i16,
    resource: &DescribeConfigsResource,
    synonyms: bool,
    entries: Vec<ConfigEntry>,
) -> Vec<DescribeConfigsResourceResult> {
    entries
        .into_iter()
        // No keys (null or empty) means every config.
        .filter(|e| match resource.configuration_keys.as_deref() {
            None | Some([]) => true,
            Some(keys) => keys.iter().any(|k| k.as_str() == e.name),
        })
        .map(|e| {
            let mut r = DescribeConfigsResourceResult::default()
                .with_name(str_bytes(e.name.clone()))
                .with_value(Some(str_bytes(e.value.clone())))
                .with_read_only(e.read_only)
                .with_config_source(e.source);
            if synonyms {
                r = r.with_synonyms(vec![
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(e.name.clone()))
                        .with_value(Some(str_bytes(e.value.clone())))
                        .with_source(e.source),
                ]);
            }
            if version >= 3 {
                r = r.with_config_type(e.config_type);
            }
            r
        })
        .collect()
}

impl Outcome for DescribeConfigsResponse {
    fn failed(&self) -> bool {
        self.results.iter().any(|r| r.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message, StrBytes};

    #[test]
    fn topic_configs_override_defaults() {
        let config = ChronikConfig::default();
        let mut t = TopicInfo { name: "t".into(), ..Default::default() };
        t.configs.insert("retention.ms".into(), "1000".into());
        t.configs.insert("x.custom".into(), "y".into());
        let c = topic_configs(&config, &t);
        let get = |n: &str| c.iter().find(|e| e.name == n).cloned().expect(n);
        assert_eq!(get("retention.ms").value, "1000");
        assert_eq!(get("retention.ms").source, SOURCE_TOPIC);
        assert_eq!(get("cleanup.policy").value, "delete");
        assert_eq!(get("cleanup.policy").source, SOURCE_DEFAULT);
        assert_eq!(get("x.custom").value, "y");
    }

    #[test]
    fn responses_encode_at_every_version() {
        let config = ChronikConfig::default();
        let t = TopicInfo { name: "t".into(), ..Default::default() };
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]));
        for v in DescribeConfigsRequest::VERSIONS.min..=DescribeConfigsRequest::VERSIONS.max {
            let configs = render(v, &resource, true, topic_configs(&config, &t));
            assert_eq!(configs.len(), 1);
            let r = DescribeConfigsResponse::default().with_results(vec![
                DescribeConfigsResult::default().with_resource_type(2).with_configs(configs),
                DescribeConfigsResult::default().with_error_code(3).with_error_message(Some(str_bytes("no"))),
            ]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
