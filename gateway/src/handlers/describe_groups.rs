//! DescribeGroups: state, protocol and members (with metadata and assignment) of each group.
//! An unknown group is `Dead`, with GROUP_ID_NOT_FOUND from v6 on (as Kafka).

use std::sync::Arc;

use chronik_proto::control::DescribeGroupsRequest as Describe;
use chronik_shared::error::ErrorCode;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let call = Describe { group_ids: req.groups.iter().map(|g| g.0.to_string()).collect() };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.describe_groups(call).await }
        })
        .await;
    match result {
        Ok(r) => response(version, r),
        Err(s) => {
            let code = coordinator_error(&s.into());
            let groups = req
                .groups
                .into_iter()
                .map(|g| DescribedGroup::default().with_group_id(g).with_error_code(code))
                .collect();
            DescribeGroupsResponse::default().with_groups(groups)
        }
    }
}

fn response(version: i16, r: chronik_proto::control::DescribeGroupsResponse) -> DescribeGroupsResponse {
    let groups = r
        .groups
        .into_iter()
        .map(|g| {
            let error = if g.error == ErrorCode::GroupIdNotFound.id() && version < 6 { 0 } else { kafka_code(g.error) };
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(if version >= 4 { m.group_instance_id.map(str_bytes) } else { None })
                        .with_client_id(str_bytes(m.client_id))
                        .with_client_host(str_bytes(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            DescribedGroup::default()
                .with_error_code(error)
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_protocol_data(str_bytes(g.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

impl Outcome for DescribeGroupsResponse {
    fn failed(&self) -> bool {
        self.groups.iter().any(|g| g.error_code != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use chronik_proto::control::{GroupDescription, GroupMember};
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn encodes_at_every_version() {
        for v in DescribeGroupsRequest::VERSIONS.min..=DescribeGroupsRequest::VERSIONS.max {
            let r = response(
                v,
                chronik_proto::control::DescribeGroupsResponse {
                    groups: vec![
                        GroupDescription {
                            group_id: "g".into(),
                            state: "Stable".into(),
                            members: vec![GroupMember {
                                member_id: "m".into(),
                                group_instance_id: Some("i".into()),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                        GroupDescription {
                            group_id: "x".into(),
                            error: ErrorCode::GroupIdNotFound.id(),
                            state: "Dead".into(),
                            ..Default::default()
                        },
                    ],
                },
            );
            assert_eq!(r.failed(), v >= 6);
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
