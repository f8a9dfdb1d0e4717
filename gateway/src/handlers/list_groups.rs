//! ListGroups: every group the coordinator knows, filtered by state (v4+) and type (v5+;
//! every Chronik group is a "classic" group).

use std::sync::Arc;

use chronik_proto::control::ListGroupsRequest as List;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{coordinator_error, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let classic = req.types_filter.is_empty() || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case("classic"));
    let call = List { states: req.states_filter.iter().map(|s| s.to_string()).collect() };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.list_groups(call).await }
        })
        .await;
    match result {
        Ok(r) => {
            let groups = r
                .groups
                .into_iter()
                .filter(|_| classic)
                .map(|g| {
                    ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(g.group_id)))
                        .with_protocol_type(str_bytes(g.protocol_type))
                        .with_group_state(if version >= 4 { str_bytes(g.state) } else { Default::default() })
                        .with_group_type(if version >= 5 { str_bytes("classic") } else { Default::default() })
                })
                .collect();
            ListGroupsResponse::default().with_groups(groups)
        }
        Err(s) => ListGroupsResponse::default().with_error_code(coordinator_error(&s.into())),
    }
}

impl Outcome for ListGroupsResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}
