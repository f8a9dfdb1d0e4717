//! The one table of Kafka APIs this gateway answers: API key → versions → handler. ApiVersions
//! advertises exactly this table, the connection decodes only what is in it, and every
//! request passes through [`dispatch`], which records the request metrics.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chronik_shared::metrics::{KAFKA_REQUEST_LATENCY_MS, KAFKA_REQUESTS};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::context::Ctx;
use crate::guard;
use crate::handlers;

/// One API and the versions of it that are handled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub key: ApiKey,
    pub versions: VersionRange,
}

/// Whether a response reports a failure, for the `outcome` label of the request metrics.
pub(crate) trait Outcome {
    fn failed(&self) -> bool;
}

macro_rules! routes {
    ($($key:ident => $module:ident($request:ty);)*) => {
        /// Every API the gateway answers, with every version kafka-protocol has for it (each
        /// handler handles them all).
        pub(crate) const ROUTES: &[Route] = &[
            $(Route { key: ApiKey::$key, versions: <$request as Message>::VERSIONS },)*
        ];

        /// The metric label of an API.
        pub(crate) fn api_name(key: ApiKey) -> &'static str {
            match key {
                $(ApiKey::$key => stringify!($key),)*
                _ => "Other",
            }
        }

        async fn route(ctx: &Arc<Ctx>, version: i16, request: RequestKind) -> Option<(ResponseKind, bool)> {
            match request {
                $(RequestKind::$key(r) => {
                    let response = handlers::$module::handle(ctx, version, r).await;
                    let failed = response.failed();
                    Some((ResponseKind::$key(response), failed))
                })*
                _ => None,
            }
        }
    };
}

routes! {
    Produce => produce(ProduceRequest);
    Fetch => fetch(FetchRequest);
    ListOffsets => list_offsets(ListOffsetsRequest);
    Metadata => metadata(MetadataRequest);
    FindCoordinator => find_coordinator(FindCoordinatorRequest);
    InitProducerId => init_producer_id(InitProducerIdRequest);
    ApiVersions => api_versions(ApiVersionsRequest);
    CreateTopics => create_topics(CreateTopicsRequest);
    DeleteTopics => delete_topics(DeleteTopicsRequest);
    DescribeConfigs => describe_configs(DescribeConfigsRequest);
    CreatePartitions => create_partitions(CreatePartitionsRequest);
    JoinGroup => join_group(JoinGroupRequest);
    SyncGroup => sync_group(SyncGroupRequest);
    Heartbeat => heartbeat(HeartbeatRequest);
    LeaveGroup => leave_group(LeaveGroupRequest);
    OffsetCommit => offset_commit(OffsetCommitRequest);
    OffsetFetch => offset_fetch(OffsetFetchRequest);
    ListGroups => list_groups(ListGroupsRequest);
    DescribeGroups => describe_groups(DescribeGroupsRequest);
    DeleteGroups => delete_groups(DeleteGroupsRequest);
    OffsetDelete => offset_delete(OffsetDeleteRequest);
}

/// The versions of `key` this gateway handles, if it handles the API at all.
pub(crate) fn versions(key: ApiKey) -> Option<VersionRange> {
    ROUTES.iter().find(|r| r.key == key).map(|r| r.versions)
}

/// Decodes a request body (after its header), refusing impossible array lengths first.
pub(crate) fn decode(key: ApiKey, version: i16, mut body: Bytes) -> Result<RequestKind, String> {
    guard::check(key, &body, version).map_err(|e| e.to_string())?;
    RequestKind::decode(key, &mut body, version).map_err(|e| format!("{e:#}").trim_end().to_string())
}

/// Runs the handler of `request` and records `chronik_kafka_requests_total` and
/// `chronik_kafka_request_latency_ms`. `None` only for an API outside the table.
pub(crate) async fn dispatch(ctx: &Arc<Ctx>, key: ApiKey, version: i16, request: RequestKind) -> Option<ResponseKind> {
    let started = Instant::now();
    let name = api_name(key);
    let (response, failed) = route(ctx, version, request).await?;
    KAFKA_REQUEST_LATENCY_MS.with_label_values(&[name]).observe(started.elapsed().as_secs_f64() * 1000.0);
    KAFKA_REQUESTS.with_label_values(&[name, if failed { "error" } else { "ok" }]).inc();
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_guard_walk_and_kafka_protocol_versions() {
        for r in ROUTES {
            assert!(!r.versions.is_empty(), "{:?}", r.key);
            // kafka-protocol's message types may stop short of the API key's table (OffsetCommit
            // and OffsetFetch v10 are topic-id based and not generated): advertise what decodes.
            let valid = r.key.valid_versions();
            assert!(r.versions.min >= valid.min && r.versions.max <= valid.max, "{:?}", r.key);
            // An empty body fails the walk with "ends at byte", never "no schema walk".
            let err = guard::check(r.key, &[], r.versions.max).expect_err("empty body");
            assert!(!err.to_string().contains("no schema walk"), "{:?}", r.key);
        }
    }
}
