//! DeleteTopics: by name (v1-5) or by name or topic id (v6), through the control plane.

use std::sync::Arc;

use chronik_proto::control::DeleteTopicRequest;
use chronik_shared::error::ChronikError;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{kafka_error, str_bytes};
use crate::context::Ctx;
use crate::metadata_cache::topic_uuid;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // (name if given, topic id if given)
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let ids: Vec<Uuid> = wanted.iter().filter(|(n, _)| n.is_none()).map(|(_, id)| *id).collect();
    let view = ctx.cache.view_with_ids(&ids).await;
    let results = join_all(wanted.into_iter().map(|(name, id)| {
        let name = name.or_else(|| view.names_by_id.get(&id).cloned());
        async move {
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(if version >= 6 { id } else { Uuid::nil() });
            let Some(name) = name else {
                return result
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(Some(str_bytes(format!("no topic has id {id}"))));
            };
            match delete(ctx, &name).await {
                Ok(deleted_id) => {
                    tracing::info!(target: "chronik_gateway", "deleted topic {name} for a Kafka client");
                    if version >= 6 && id.is_nil() {
                        result.with_topic_id(topic_uuid(&deleted_id).unwrap_or_default())
                    } else {
                        result
                    }
                }
                Err(e) => {
                    let (code, message) = kafka_error(&e);
                    result.with_error_code(code).with_error_message(message)
                }
            }
        }
    }))
    .await;
    ctx.cache.refresh_soon();
    DeleteTopicsResponse::default().with_responses(results)
}

async fn delete(ctx: &Ctx, name: &str) -> Result<bytes::Bytes, ChronikError> {
    let req = DeleteTopicRequest { name: name.to_string() };
    let resp = ctx
        .control
        .call(|mut c| {
            let req = req.clone();
            async move { c.delete_topic(req).await }
        })
        .await?;
    Ok(resp.topic_id)
}

impl Outcome for DeleteTopicsResponse {
    fn failed(&self) -> bool {
        self.responses.iter().any(|r| r.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn responses_encode_at_every_version() {
        for v in DeleteTopicsRequest::VERSIONS.min..=DeleteTopicsRequest::VERSIONS.max {
            let r = DeleteTopicsResponse::default().with_responses(vec![
                DeletableTopicResult::default().with_name(Some(TopicName(str_bytes("t")))),
                DeletableTopicResult::default()
                    .with_name(None)
                    .with_error_code(100)
                    .with_error_message(Some(str_bytes("x"))),
            ]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
