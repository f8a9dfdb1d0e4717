//! FindCoordinator: every gateway is the coordinator of every group (and transactional id),
//! since each forwards group requests to the control-plane leader, which runs the real
//! coordinator. While the control plane has no leader the answer is
//! `COORDINATOR_NOT_AVAILABLE`, which clients retry by themselves.

use std::sync::Arc;

use chronik_proto::control::GetMembersRequest;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::context::Ctx;
use crate::router::Outcome;

/// Key types: consumer groups and transactional ids.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// Where clients should send a key's requests, or why there is nowhere yet.
enum Answer {
    Here,
    NoLeader(String),
    BadKeyType(i8),
}

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let key_type = if version >= 1 { req.key_type } else { GROUP };
    let answer = if key_type != GROUP && key_type != TRANSACTION {
        Answer::BadKeyType(key_type)
    } else {
        control_has_leader(ctx).await
    };
    response(ctx.broker_id, &ctx.advertised.host, ctx.advertised.port, version, req, &answer)
}

async fn control_has_leader(ctx: &Ctx) -> Answer {
    let call = ctx.control.call(|mut c| async move { c.get_members(GetMembersRequest {}).await });
    match tokio::time::timeout(ctx.request_timeout(), call).await {
        Ok(Ok(m)) if m.leader.is_some() => Answer::Here,
        Ok(Ok(_)) => Answer::NoLeader("the control plane has no leader right now; retry shortly".into()),
        Ok(Err(s)) => Answer::NoLeader(format!("the control plane is unreachable: {}", s.message())),
        Err(_) => Answer::NoLeader("the control plane did not answer in time".into()),
    }
}

fn response(
    broker_id: i32,
    host: &str,
    port: i32,
    version: i16,
    req: FindCoordinatorRequest,
    answer: &Answer,
) -> FindCoordinatorResponse {
    let (code, message, node, host, port) = match answer {
        Answer::Here => (0, None, broker_id, str_bytes(host), port),
        Answer::NoLeader(why) => {
            (ResponseError::CoordinatorNotAvailable.code(), Some(str_bytes(why.clone())), -1, StrBytes::default(), -1)
        }
        Answer::BadKeyType(k) => (
            ResponseError::InvalidRequest.code(),
            Some(str_bytes(format!("coordinator key type {k} is not supported (0 = group, 1 = transaction)"))),
            -1,
            StrBytes::default(),
            -1,
        ),
    };
    // v0 has no error message.
    let message = if version >= 1 { message } else { None };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(message)
            .with_node_id(BrokerId(node))
            .with_host(host)
            .with_port(port)
    }
}

impl Outcome for FindCoordinatorResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.coordinators.iter().any(|c| c.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn encodes_at_every_version() {
        for answer in [Answer::Here, Answer::NoLeader("x".into()), Answer::BadKeyType(2)] {
            for v in FindCoordinatorRequest::VERSIONS.min..=FindCoordinatorRequest::VERSIONS.max {
                let req = if v >= 4 {
                    FindCoordinatorRequest::default()
                        .with_coordinator_keys(vec![StrBytes::from_static_str("g"), StrBytes::from_static_str("h")])
                } else {
                    FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
                };
                let r = response(7, "gw", 9092, v, req, &answer);
                assert_eq!(r.failed(), !matches!(answer, Answer::Here));
                if v >= 4 {
                    assert_eq!(r.coordinators.len(), 2);
                } else if matches!(answer, Answer::Here) {
                    assert_eq!((r.node_id.0, r.port), (7, 9092));
                }
                r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
            }
        }
    }
}
