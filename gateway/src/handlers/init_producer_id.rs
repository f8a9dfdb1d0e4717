//! InitProducerId: a fresh producer id (epoch 0) for an idempotent producer, allocated by the
//! control plane through Raft so no id is ever handed out twice. Transactional producers are
//! refused: transactions are not implemented.

use std::sync::Arc;

use chronik_proto::control::InitProducerIdRequest as ControlInitProducerId;
use chronik_shared::error::{ChronikError, ErrorCode};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::context::Ctx;
use crate::router::Outcome;

pub(crate) async fn handle(ctx: &Arc<Ctx>, _version: i16, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        let e = ChronikError::new(
            ErrorCode::TransactionsUnsupported,
            "transactions are not supported yet; use an idempotent producer without transactional.id",
        );
        return resp.with_error_code(e.code.kafka());
    }
    let call = ctx.control.call(|mut c| async move { c.init_producer_id(ControlInitProducerId {}).await });
    match tokio::time::timeout(ctx.request_timeout(), call).await {
        Ok(Ok(r)) => resp.with_producer_id(ProducerId(r.producer_id)).with_producer_epoch(r.producer_epoch as i16),
        Ok(Err(s)) => {
            let e = ChronikError::from(s);
            tracing::debug!(target: "chronik_gateway", "InitProducerId: {e}");
            // Any control-plane trouble is a coordinator problem to the client: it retries.
            resp.with_error_code(ErrorCode::CoordinatorNotAvailable.kafka())
        }
        Err(_) => resp.with_error_code(ErrorCode::CoordinatorNotAvailable.kafka()),
    }
}

impl Outcome for InitProducerIdResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Encodable, Message};

    #[test]
    fn responses_encode_at_every_version() {
        for v in InitProducerIdRequest::VERSIONS.min..=InitProducerIdRequest::VERSIONS.max {
            let r = InitProducerIdResponse::default().with_producer_id(ProducerId(7)).with_producer_epoch(0);
            r.encode(&mut BytesMut::new(), v).unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}
