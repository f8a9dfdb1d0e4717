//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use std::sync::Arc;

use chronik_proto::control::GroupHeartbeatRequest;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{coordinator_error, kafka_code};
use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
    let call = GroupHeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
    };
    let result = ctx
        .control
        .call(|mut c| {
            let call = call.clone();
            async move { c.group_heartbeat(call).await }
        })
        .await;
    let code = match result {
        Ok(r) => kafka_code(r.error),
        Err(s) => coordinator_error(&s.into()),
    };
    HeartbeatResponse::default().with_error_code(code)
}

impl Outcome for HeartbeatResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}
