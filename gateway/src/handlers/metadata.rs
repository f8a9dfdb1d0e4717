//! Metadata: the brokers are the live gateways (this one always among them), and each
//! partition is "led" by one of them, chosen deterministically so every gateway tells clients
//! the same; whichever gateway a client picks forwards to the real data-plane leader. Unknown
//! topics are created when `kafka.auto_create_topics` and the request allow it.

use std::collections::HashSet;
use std::sync::Arc;

use chronik_proto::control::{CreateTopicRequest, TopicInfo};
use chronik_shared::error::ErrorCode;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{create_topic, is_ready, str_bytes};
use crate::context::{Ctx, HostPort};
use crate::metadata_cache::{ClusterView, topic_uuid};
use crate::router::Outcome;

/// What clients see as the cluster id.
const CLUSTER_ID: &str = "chronik";

/// A broker as advertised to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Broker {
    pub id: i32,
    pub addr: HostPort,
    pub rack: Option<String>,
}

/// This gateway plus every live gateway the control plane knows, sorted by id.
pub(crate) fn brokers(ctx: &Ctx, view: &ClusterView) -> Vec<Broker> {
    let mut out = vec![Broker { id: ctx.broker_id, addr: ctx.advertised.clone(), rack: ctx.config.node.rack.clone() }];
    for g in &view.gateways {
        let (Ok(id), Some(addr)) = (i32::try_from(g.node_id), HostPort::parse(&g.addr)) else { continue };
        if id != ctx.broker_id {
            out.push(Broker { id, addr, rack: Some(g.rack.clone()).filter(|r| !r.is_empty()) });
        }
    }
    out.sort_by_key(|b| b.id);
    out
}

/// The gateway advertised as leader of `topic`/`partition`: spread over the gateways by a
/// stable hash, identical on every gateway that sees the same gateway list.
pub(crate) fn leader_for(brokers: &[Broker], topic: &str, partition: i32) -> i32 {
    if brokers.is_empty() {
        return -1;
    }
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let h = topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let i = h.wrapping_add(partition as u64) % brokers.len() as u64;
    brokers[i as usize].id
}

/// What was asked about one topic.
enum Wanted {
    Name(String),
    Id(Uuid),
}

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: MetadataRequest) -> MetadataResponse {
    let wanted: Option<Vec<Wanted>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| match t.name {
                    Some(n) if version < 10 || t.topic_id.is_nil() => Wanted::Name(n.0.to_string()),
                    _ => Wanted::Id(t.topic_id),
                })
                .collect(),
        ),
    };
    let view = match &wanted {
        None => ctx.cache.view_with(&[]).await,
        Some(w) => {
            let names: Vec<&str> =
                w.iter().filter_map(|w| if let Wanted::Name(n) = w { Some(n.as_str()) } else { None }).collect();
            let ids: Vec<Uuid> =
                w.iter().filter_map(|w| if let Wanted::Id(id) = w { Some(*id) } else { None }).collect();
            if ids.is_empty() { ctx.cache.view_with(&names).await } else { ctx.cache.view_with_ids(&ids).await }
        }
    };
    let brokers = brokers(ctx, &view);
    let auto_create = ctx.config.kafka.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);

    let topics = match wanted {
        None => {
            let mut all: Vec<&Arc<TopicInfo>> = view.topics.values().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all.into_iter().map(|t| describe(version, &brokers, t)).collect()
        }
        Some(wanted) => {
            let mut seen = HashSet::new();
            let answers = wanted.into_iter().filter(|w| match w {
                Wanted::Name(n) => seen.insert(n.clone()),
                Wanted::Id(id) => seen.insert(id.to_string()),
            });
            join_all(answers.map(|w| answer(ctx, version, &view, &brokers, w, auto_create))).await
        }
    };

    MetadataResponse::default()
        .with_brokers(
            brokers
                .iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(b.addr.host.clone()))
                        .with_port(b.addr.port)
                        .with_rack(b.rack.clone().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
        .with_controller_id(BrokerId(ctx.broker_id))
        .with_topics(topics)
}

/// The answer about one requested topic, creating it if allowed.
async fn answer(
    ctx: &Ctx,
    version: i16,
    view: &ClusterView,
    brokers: &[Broker],
    wanted: Wanted,
    auto_create: bool,
) -> MetadataResponseTopic {
    let name = match wanted {
        Wanted::Id(id) => {
            return match view.names_by_id.get(&id).and_then(|n| view.topics.get(n)) {
                Some(t) => describe(version, brokers, t),
                None => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_name(None)
                    .with_topic_id(id),
            };
        }
        Wanted::Name(n) => n,
    };
    if let Some(t) = view.topics.get(&name) {
        return describe(version, brokers, t);
    }
    let topic_error = |code: i16| {
        MetadataResponseTopic::default().with_error_code(code).with_name(Some(TopicName(str_bytes(name.clone()))))
    };
    if !auto_create {
        return topic_error(ErrorCode::UnknownTopicOrPartition.kafka());
    }
    let req = CreateTopicRequest {
        name: name.clone(),
        partitions: ctx.config.kafka.default_partitions.max(1),
        replication_factor: u32::from(ctx.config.kafka.default_replication_factor.max(1)),
        configs: Default::default(),
        validate_only: false,
    };
    let created = create_topic(ctx, req).await;
    ctx.cache.refresh_soon();
    match created {
        Ok(t) if is_ready(&t) => describe(version, brokers, &t),
        Ok(_) => {
            tracing::info!(target: "chronik_gateway", "auto-created topic {name} (kafka.auto_create_topics)");
            topic_error(ErrorCode::NoLeader.kafka())
        }
        // Created meanwhile by someone else: leaders follow shortly.
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => topic_error(ErrorCode::NoLeader.kafka()),
        // The control plane is unreachable or electing: the client asks again shortly.
        Err(e)
            if matches!(
                e.code,
                ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::NotLeader | ErrorCode::NoLeader
            ) =>
        {
            tracing::warn!(target: "chronik_gateway", "cannot auto-create topic {name} yet: {e}");
            topic_error(ErrorCode::NoLeader.kafka())
        }
        Err(e) => {
            tracing::warn!(target: "chronik_gateway", "cannot auto-create topic {name}: {e}");
            topic_error(e.code.kafka())
        }
    }
}

fn describe(version: i16, brokers: &[Broker], t: &TopicInfo) -> MetadataResponseTopic {
    let ids: Vec<BrokerId> = brokers.iter().map(|b| BrokerId(b.id)).collect();
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition);
    let partitions = parts
        .into_iter()
        .filter_map(|p| {
            let index = i32::try_from(p.partition).ok()?;
            let (error, leader) = match p.leader {
                Some(_) => (0, leader_for(brokers, &t.name, index)),
                None => (ErrorCode::NoLeader.kafka(), -1),
            };
            Some(
                MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(-1)
                    .with_replica_nodes(ids.clone())
                    .with_isr_nodes(ids.clone()),
            )
        })
        .collect();
    let topic_id = if version >= 10 { topic_uuid(&t.topic_id).unwrap_or_default() } else { Uuid::nil() };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(topic_id)
        .with_partitions(partitions)
}

impl Outcome for MetadataResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.topics.iter().any(|t| t.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use chronik_proto::control::PartitionInfo;
    use kafka_protocol::protocol::{Encodable, Message};

    fn broker(id: i32) -> Broker {
        Broker { id, addr: HostPort { host: format!("g{id}"), port: 9092 }, rack: None }
    }

    #[test]
    fn leaders_spread_and_are_stable() {
        let b: Vec<Broker> = (1..=3).map(broker).collect();
        let leaders: HashSet<i32> = (0..12).map(|p| leader_for(&b, "orders", p)).collect();
        assert_eq!(leaders.len(), 3, "12 partitions over 3 gateways use all of them");
        assert_eq!(leader_for(&b, "orders", 5), leader_for(&b, "orders", 5));
        assert_eq!(leader_for(&[], "orders", 0), -1);
        assert_eq!(leader_for(&b[..1], "x", 7), 1);
    }

    #[test]
    fn describes_encode_at_every_version() {
        let t = TopicInfo {
            name: "t".into(),
            topic_id: bytes::Bytes::from(vec![1u8; 16]),
            replication_factor: 1,
            configs: Default::default(),
            partitions: vec![
                PartitionInfo { partition: 1, leader: None, ..Default::default() },
                PartitionInfo { partition: 0, leader: Some(4), ..Default::default() },
            ],
        };
        let b: Vec<Broker> = (1..=2).map(broker).collect();
        for v in MetadataRequest::VERSIONS.min..=MetadataRequest::VERSIONS.max {
            let topic = describe(v, &b, &t);
            assert_eq!(topic.partitions[0].partition_index, 0);
            assert_eq!(topic.partitions[1].error_code, 5);
            let resp = MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default().with_node_id(BrokerId(1)).with_rack(Some(str_bytes("r"))),
                ])
                .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
                .with_topics(vec![topic, MetadataResponseTopic::default().with_error_code(100).with_name(None)]);
            resp.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
