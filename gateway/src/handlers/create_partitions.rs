//! CreatePartitions: grows a topic to a new partition count through the control plane, which
//! places the new replicas (explicit assignments are refused).

use std::sync::Arc;

use chronik_proto::control::CreatePartitionsRequest as ControlCreatePartitions;
use chronik_shared::error::{ChronikError, ErrorCode};
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{kafka_error, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let validate_only = req.validate_only;
    let results = join_all(req.topics.into_iter().map(|t| async move {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            return result
                .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                .with_error_message(Some(str_bytes("Chronik places replicas itself; send no replica assignment")));
        }
        let count = match u32::try_from(t.count) {
            Ok(c) if c > 0 => c,
            _ => {
                let e = ChronikError::new(
                    ErrorCode::InvalidPartitions,
                    format!("{} partitions; give a count above the current one", t.count),
                );
                let (code, message) = kafka_error(&e);
                return result.with_error_code(code).with_error_message(message);
            }
        };
        let req = ControlCreatePartitions { name: t.name.0.to_string(), count, validate_only };
        let done = ctx
            .control
            .call(|mut c| {
                let req = req.clone();
                async move { c.create_partitions(req).await }
            })
            .await;
        match done {
            Ok(_) => {
                if !validate_only {
                    tracing::info!(target: "chronik_gateway", "topic {} now has {count} partitions", t.name.0.as_str());
                }
                result
            }
            Err(s) => {
                let (code, message) = kafka_error(&ChronikError::from(s));
                result.with_error_code(code).with_error_message(message)
            }
        }
    }))
    .await;
    ctx.cache.refresh_soon();
    CreatePartitionsResponse::default().with_results(results)
}

impl Outcome for CreatePartitionsResponse {
    fn failed(&self) -> bool {
        self.results.iter().any(|r| r.error_code != 0)
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
        for v in CreatePartitionsRequest::VERSIONS.min..=CreatePartitionsRequest::VERSIONS.max {
            let r = CreatePartitionsResponse::default().with_results(vec![
                CreatePartitionsTopicResult::default().with_name(TopicName(str_bytes("t"))),
                CreatePartitionsTopicResult::default().with_error_code(37).with_error_message(Some(str_bytes("x"))),
            ]);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
