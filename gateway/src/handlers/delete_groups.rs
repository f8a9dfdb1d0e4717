//! DeleteGroups: removes empty groups and their committed offsets (NON_EMPTY_GROUP while a
//! group has members, GROUP_ID_NOT_FOUND for unknown ones).

use std::sync::Arc;

use chronik_proto::control::DeleteGroupsRequest as Delete;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use super::{coordinator_error, kafka_code, str_bytes};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let call = Delete { group_ids: req.groups_names.iter().map(|g| g.0.to_string()).collect() };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.delete_groups(call).await }
        })
        .await;
    let results = match result {
        Ok(r) => r
            .results
            .into_iter()
            .map(|g| {
                DeletableGroupResult::default()
                    .with_group_id(GroupId(str_bytes(g.group_id)))
                    .with_error_code(kafka_code(g.error))
            })
            .collect(),
        Err(s) => {
            let code = coordinator_error(&s.into());
            req.groups_names
                .into_iter()
                .map(|g| DeletableGroupResult::default().with_group_id(g).with_error_code(code))
                .collect()
        }
    };
    DeleteGroupsResponse::default().with_results(results)
}

impl Outcome for DeleteGroupsResponse {
    fn failed(&self) -> bool {
        self.results.iter().any(|r| r.error_code != 0)
    }
}
