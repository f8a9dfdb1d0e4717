//! Schema walks of the consumer-group requests (see the parent module for why they exist).

use super::{Cursor, Result};

pub(super) fn join_group(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 6;
    c.string(flex)?; // group_id
    c.skip(4)?; // session_timeout_ms
    if v >= 1 {
        c.skip(4)?; // rebalance_timeout_ms
    }
    c.string(flex)?; // member_id
    if v >= 5 {
        c.string(flex)?; // group_instance_id
    }
    c.string(flex)?; // protocol_type
    c.array(flex, |c| {
        c.string(flex)?;
        c.bytes(flex)?;
        c.tags(flex)
    })?;
    if v >= 8 {
        c.string(flex)?; // reason
    }
    c.tags(flex)
}

pub(super) fn sync_group(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 4;
    c.string(flex)?; // group_id
    c.skip(4)?; // generation_id
    c.string(flex)?; // member_id
    if v >= 3 {
        c.string(flex)?; // group_instance_id
    }
    if v >= 5 {
        c.string(flex)?; // protocol_type
        c.string(flex)?; // protocol_name
    }
    c.array(flex, |c| {
        c.string(flex)?;
        c.bytes(flex)?;
        c.tags(flex)
    })?;
    c.tags(flex)
}

pub(super) fn heartbeat(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 4;
    c.string(flex)?;
    c.skip(4)?;
    c.string(flex)?;
    if v >= 3 {
        c.string(flex)?;
    }
    c.tags(flex)
}

pub(super) fn leave_group(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 4;
    c.string(flex)?; // group_id
    if v <= 2 {
        c.string(flex)?; // member_id
    } else {
        c.array(flex, |c| {
            c.string(flex)?; // member_id
            c.string(flex)?; // group_instance_id
            if v >= 5 {
                c.string(flex)?; // reason
            }
            c.tags(flex)
        })?;
    }
    c.tags(flex)
}

pub(super) fn offset_commit(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 8;
    c.string(flex)?; // group_id
    c.skip(4)?; // generation_id_or_member_epoch
    c.string(flex)?; // member_id
    if v >= 7 {
        c.string(flex)?; // group_instance_id
    }
    if v <= 4 {
        c.skip(8)?; // retention_time_ms
    }
    c.array(flex, |c| {
        c.string(flex)?;
        c.array(flex, |c| {
            c.skip(4 + 8)?; // partition_index, committed_offset
            if v >= 6 {
                c.skip(4)?; // committed_leader_epoch
            }
            c.string(flex)?; // committed_metadata
            c.tags(flex)
        })?;
        c.tags(flex)
    })?;
    c.tags(flex)
}

pub(super) fn offset_fetch(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 6;
    if v <= 7 {
        c.string(flex)?; // group_id
        c.array(flex, |c| {
            c.string(flex)?;
            c.array(flex, |c| c.skip(4))?;
            c.tags(flex)
        })?;
    } else {
        c.array(flex, |c| {
            c.string(flex)?; // group_id
            if v >= 9 {
                c.string(flex)?; // member_id
                c.skip(4)?; // member_epoch
            }
            c.array(flex, |c| {
                c.string(flex)?;
                c.array(flex, |c| c.skip(4))?;
                c.tags(flex)
            })?;
            c.tags(flex)
        })?;
    }
    if v >= 7 {
        c.skip(1)?; // require_stable
    }
    c.tags(flex)
}

pub(super) fn list_groups(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 3;
    if v >= 4 {
        c.array(flex, |c| c.string(flex))?; // states_filter
    }
    if v >= 5 {
        c.array(flex, |c| c.string(flex))?; // types_filter
    }
    c.tags(flex)
}

pub(super) fn describe_groups(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 5;
    c.array(flex, |c| c.string(flex))?;
    if v >= 3 {
        c.skip(1)?; // include_authorized_operations
    }
    c.tags(flex)
}

pub(super) fn delete_groups(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 2;
    c.array(flex, |c| c.string(flex))?;
    c.tags(flex)
}

pub(super) fn offset_delete(c: &mut Cursor, _v: i16) -> Result {
    c.string(false)?; // group_id
    c.array(false, |c| {
        c.string(false)?;
        c.array(false, |c| c.skip(4))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{agrees, agrees_from, agrees_in, s};
    use bytes::Bytes;
    use kafka_protocol::messages::*;

    #[test]
    fn group_walks_agree_with_kafka_protocol_at_every_version() {
        let join = JoinGroupRequest::default().with_group_id(GroupId(s("g"))).with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"md")),
            join_group_request::JoinGroupRequestProtocol::default().with_name(s("roundrobin")),
        ]);
        agrees(ApiKey::JoinGroup, &join);
        agrees_from(ApiKey::JoinGroup, &join.clone().with_group_instance_id(Some(s("i"))), 5);
        agrees_from(ApiKey::JoinGroup, &join.with_reason(Some(s("r"))), 8);

        let sync = SyncGroupRequest::default().with_group_id(GroupId(s("g"))).with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s("m"))
                .with_assignment(Bytes::from_static(b"a")),
        ]);
        agrees(ApiKey::SyncGroup, &sync);
        agrees_from(
            ApiKey::SyncGroup,
            &sync.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("r"))),
            5,
        );

        agrees(ApiKey::Heartbeat, &HeartbeatRequest::default().with_member_id(s("m")));
        agrees_from(ApiKey::Heartbeat, &HeartbeatRequest::default().with_group_instance_id(Some(s("i"))), 3);

        agrees_in(ApiKey::LeaveGroup, &LeaveGroupRequest::default().with_member_id(s("m")), 0..=2);
        let leave = LeaveGroupRequest::default().with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s("m")),
            leave_group_request::MemberIdentity::default().with_group_instance_id(Some(s("i"))),
        ]);
        agrees_from(ApiKey::LeaveGroup, &leave, 3);

        let commit = OffsetCommitRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(
                vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(5)
                        .with_committed_metadata(Some(s("md"))),
                ],
            ),
        ]);
        agrees(ApiKey::OffsetCommit, &commit);
        agrees_from(ApiKey::OffsetCommit, &commit.with_group_instance_id(Some(s("i"))), 7);

        let fetch_topics = vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1]),
        ];
        agrees_in(ApiKey::OffsetFetch, &OffsetFetchRequest::default().with_topics(Some(fetch_topics)), 1..=7);
        agrees_in(ApiKey::OffsetFetch, &OffsetFetchRequest::default().with_topics(None), 2..=7);
        let groups = vec![
            offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(s("g"))).with_topics(Some(
                vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![3]),
                ],
            )),
            offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(GroupId(s("h"))).with_topics(None),
        ];
        agrees_from(ApiKey::OffsetFetch, &OffsetFetchRequest::default().with_groups(groups), 8);

        agrees(ApiKey::ListGroups, &ListGroupsRequest::default());
        agrees_from(ApiKey::ListGroups, &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]), 4);
        agrees_from(
            ApiKey::ListGroups,
            &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]).with_types_filter(vec![s("classic")]),
            5,
        );
        agrees(
            ApiKey::DescribeGroups,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("a")), GroupId(s("b"))]),
        );
        agrees(ApiKey::DeleteGroups, &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("a"))]));
        agrees(
            ApiKey::OffsetDelete,
            &OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(2),
                    ]),
            ]),
        );
    }
}
