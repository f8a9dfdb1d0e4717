//! SyncGroup: the leader hands in the assignment; every member waits for its part, which the
//! coordinator gives out once the assignment is stored through Raft.

use std::sync::Arc;

use chronik_proto::control::{MemberAssignment, SyncGroupRequest as Sync};
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    let call = Sync {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| MemberAssignment { member_id: a.member_id.to_string(), assignment: a.assignment })
            .collect(),
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.sync_group(call).await }
        })
        .await;
    match result {
        Ok(r) => response(version, r),
        Err(s) => SyncGroupResponse::default().with_error_code(coordinator_error(&s.into())),
    }
}

fn response(version: i16, r: chronik_proto::control::SyncGroupResponse) -> SyncGroupResponse {
    let v5 = version >= 5;
    SyncGroupResponse::default()
        .with_error_code(kafka_code(r.error))
        .with_protocol_type(v5.then(|| str_bytes(r.protocol_type)))
        .with_protocol_name(v5.then(|| str_bytes(r.protocol_name)))
        .with_assignment(r.assignment)
}

impl Outcome for SyncGroupResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn encodes_at_every_version() {
        for v in SyncGroupRequest::VERSIONS.min..=SyncGroupRequest::VERSIONS.max {
            let r = response(
                v,
                chronik_proto::control::SyncGroupResponse {
                    protocol_type: "consumer".into(),
                    protocol_name: "range".into(),
                    assignment: Bytes::from_static(b"a"),
                    ..Default::default()
                },
            );
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
