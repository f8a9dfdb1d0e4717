//! LeaveGroup: one member (v0-v2) or a batch of members by id or static instance id (v3+).

use std::sync::Arc;

use chronik_proto::control::{LeaveGroupRequest as Leave, LeavingMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let members = if version >= 3 {
        req.members
            .into_iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember { member_id: req.member_id.to_string(), group_instance_id: None }]
    };
    let call = Leave { group_id: req.group_id.0.to_string(), members };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.leave_group(call).await }
        })
        .await;
    match result {
        Ok(r) => response(version, r),
        Err(s) => LeaveGroupResponse::default().with_error_code(coordinator_error(&s.into())),
    }
}

fn response(version: i16, r: chronik_proto::control::LeaveGroupResponse) -> LeaveGroupResponse {
    if version < 3 {
        // One member: its outcome is the response's.
        let code = r.members.first().map(|m| m.error).unwrap_or(r.error);
        return LeaveGroupResponse::default().with_error_code(kafka_code(code));
    }
    let members = r
        .members
        .into_iter()
        .map(|m| {
            MemberResponse::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                .with_error_code(kafka_code(m.error))
        })
        .collect();
    LeaveGroupResponse::default().with_error_code(kafka_code(r.error)).with_members(members)
}

impl Outcome for LeaveGroupResponse {
    fn failed(&self) -> bool {
        self.error_code != 0 || self.members.iter().any(|m| m.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use chronik_proto::control::LeaveResult;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn encodes_at_every_version() {
        for v in LeaveGroupRequest::VERSIONS.min..=LeaveGroupRequest::VERSIONS.max {
            let r = response(
                v,
                chronik_proto::control::LeaveGroupResponse {
                    error: 0,
                    members: vec![LeaveResult {
                        member_id: "m".into(),
                        group_instance_id: Some("i".into()),
                        error: 25,
                    }],
                },
            );
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
