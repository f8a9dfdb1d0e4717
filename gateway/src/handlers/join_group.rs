//! JoinGroup: relayed to the group coordinator on the control-plane leader (a long poll: the
//! answer comes when the rebalance's join phase ends). v4+ first joins get MEMBER_ID_REQUIRED.

use std::sync::Arc;

use chronik_proto::control::{GroupProtocol, JoinGroupRequest as Join};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: JoinGroupRequest) -> JoinGroupResponse {
    let client = crate::server::client();
    let call = Join {
        group_id: req.group_id.0.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| GroupProtocol { name: p.name.to_string(), metadata: p.metadata })
            .collect(),
        require_known_member_id: version >= 4,
        client_id: client.id,
        client_host: client.host,
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.join_group(call).await }
        })
        .await;
    match result {
        Ok(r) => response(version, r),
        Err(s) => JoinGroupResponse::default()
            .with_error_code(coordinator_error(&s.into()))
            .with_generation_id(-1)
            .with_protocol_name(Some(Default::default())),
    }
}

fn response(version: i16, r: chronik_proto::control::JoinGroupResponse) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(if version >= 5 { m.group_instance_id.map(str_bytes) } else { None })
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(kafka_code(r.error))
        .with_generation_id(r.generation_id)
        .with_protocol_type(if version >= 7 { Some(str_bytes(r.protocol_type)) } else { None })
        .with_protocol_name(Some(str_bytes(r.protocol_name)))
        .with_leader(str_bytes(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(str_bytes(r.member_id))
        .with_members(members)
}

impl Outcome for JoinGroupResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use chronik_proto::control::GroupMember;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn encodes_at_every_version() {
        for v in JoinGroupRequest::VERSIONS.min..=JoinGroupRequest::VERSIONS.max {
            let r = response(
                v,
                chronik_proto::control::JoinGroupResponse {
                    generation_id: 3,
                    protocol_type: "consumer".into(),
                    protocol_name: "range".into(),
                    leader: "m1".into(),
                    member_id: "m1".into(),
                    members: vec![GroupMember {
                        member_id: "m1".into(),
                        group_instance_id: Some("i1".into()),
                        metadata: Bytes::from_static(b"md"),
                        ..Default::default()
                    }],
                    skip_assignment: true,
                    ..Default::default()
                },
            );
            assert!(!r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
