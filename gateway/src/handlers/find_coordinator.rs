//! FindCoordinator: consumer groups and transactions are a later milestone, so every key gets
//! `COORDINATOR_NOT_AVAILABLE` (retriable). Clients that `assign` partitions and commit
//! nothing keep consuming; librdkafka just retries the lookup in the background.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::context::Ctx;
use crate::router::Outcome;

const WHY: &str =
    "Chronik does not run group or transaction coordinators yet; assign partitions instead of subscribing";

pub(crate) async fn handle(_ctx: &Arc<Ctx>, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    response(version, req)
}

fn response(version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let code = ResponseError::CoordinatorNotAvailable.code();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_static_str(WHY)))
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_static_str(WHY)))
            .with_node_id(BrokerId(-1))
            .with_port(-1)
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
        for v in FindCoordinatorRequest::VERSIONS.min..=FindCoordinatorRequest::VERSIONS.max {
            let req = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str("g")])
            } else {
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
            };
            let r = response(v, req);
            assert!(r.failed());
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
