//! `chronik.data.DataService`: produce, fetch (with long poll) and list offsets for gateways;
//! replica assignments from the control plane.

use std::sync::Arc;
use std::time::Duration;

use chronik_proto::data::data_service_server::DataService;
use chronik_proto::data::*;
use chronik_shared::error::{ChronikError, ErrorCode};
use tonic::{Request, Response, Status};

use crate::node::DataInner;
use crate::partition::Partition;

#[derive(Clone)]
pub struct DataServiceImpl {
    pub(crate) inner: Arc<DataInner>,
}

impl DataServiceImpl {
    fn partition(&self, tp: Option<&TopicPartition>) -> Result<Arc<Partition>, ChronikError> {
        let tp = tp.ok_or_else(|| ChronikError::new(ErrorCode::InvalidRequest, "request without topic partition"))?;
        self.inner.partition(&tp.topic, tp.partition)
    }
}

/// Reads what one partition of a fetch has ready.
/// With `pieces`, the record set goes back as the pieces read (`record_pieces`), uncopied.
fn fetch_one(inner: &DataInner, p: &FetchPartition, budget: usize, pieces: bool) -> FetchedPartition {
    let tp = p.tp.clone();
    let mut out = FetchedPartition { tp: tp.clone(), ..Default::default() };
    let part = match tp.as_ref().map(|tp| inner.partition(&tp.topic, tp.partition)) {
        Some(Ok(part)) => part,
        Some(Err(e)) => {
            out.error_code = e.code.id();
            out.error_message = e.message;
            return out;
        }
        None => {
            out.error_code = ErrorCode::InvalidRequest.id();
            return out;
        }
    };
    if let Err(e) = part.ensure_serving() {
        out.error_code = e.code.id();
        out.error_message = e.message;
        return out;
    }
    let hw = part.high_watermark();
    let start = part.log_start_offset();
    out.high_watermark = hw;
    out.log_start_offset = start;
    if p.offset < start || p.offset > hw {
        out.error_code = ErrorCode::OffsetOutOfRange.id();
        out.error_message = format!("offset {} is outside [{start}, {hw}] of {}", p.offset, part.name);
        return out;
    }
    if p.offset == hw || budget == 0 {
        return out;
    }
    let max = (p.max_bytes as usize).min(budget).max(1);
    match part.read_pieces(p.offset, max) {
        Ok(read) if pieces => out.record_pieces = read,
        Ok(read) => out.records = chronik_proto::record_set::concat(read),
        Err(e) => {
            out.error_code = e.code.id();
            out.error_message = e.message;
        }
    }
    out
}

#[tonic::async_trait]
impl DataService for DataServiceImpl {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        let req = request.into_inner();
        let part = self.partition(req.tp.as_ref())?;
        let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
        // The write runs on its own task: once the sequencer has let a batch in, the batch
        // must reach the log (or be refused there) even if this call times out or its caller
        // goes away (a gateway killed mid-request), else the producer's next batch would be
        // admitted and refused as out of order, fatal for an idempotent producer.
        let write = {
            let part = part.clone();
            tokio::spawn(async move { part.produce(req.batch).await })
        };
        let resp = match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(ChronikError::new(
                ErrorCode::Timeout,
                format!("partition {} did not commit within {timeout:?}", part.name),
            )),
            Ok(Err(e)) => {
                Err(ChronikError::new(ErrorCode::Internal, format!("the write to {} failed: {e}", part.name)))
            }
            Ok(Ok(r)) => r,
        }?;
        Ok(Response::new(ProduceResponse {
            base_offset: resp.base_offset,
            log_append_time_ms: -1,
            log_start_offset: resp.log_start_offset,
        }))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let req = request.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.min(60_000) as u64);
        let max_bytes = if req.max_bytes == 0 { usize::MAX } else { req.max_bytes as usize };
        // Subscribe before reading so an append between the read and the wait still wakes us.
        let mut watches: Vec<_> = req
            .partitions
            .iter()
            .filter_map(|p| p.tp.as_ref())
            .filter_map(|tp| self.inner.partition(&tp.topic, tp.partition).ok())
            .map(|p| p.sm.hw.subscribe())
            .collect();
        loop {
            // Marked seen before reading: an append after this point wakes the wait below.
            for w in watches.iter_mut() {
                w.borrow_and_update();
            }
            let mut budget = max_bytes;
            let mut parts = Vec::with_capacity(req.partitions.len());
            let mut total = 0usize;
            let mut any_error = false;
            for p in &req.partitions {
                let f = fetch_one(&self.inner, p, budget, req.record_pieces);
                budget = budget.saturating_sub(f.records_len());
                total += f.records_len();
                any_error |= f.error_code != 0;
                parts.push(f);
            }
            if total >= req.min_bytes.max(1) as usize
                || any_error
                || tokio::time::Instant::now() >= deadline
                || watches.is_empty()
            {
                let bytes: usize = parts.iter().map(FetchedPartition::records_len).sum();
                tracing::trace!(target: "chronik_server", "fetch answered with {bytes} bytes");
                return Ok(Response::new(FetchResponse { partitions: parts }));
            }
            let changed = futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                continue;
            }
        }
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let req = request.into_inner();
        let part = self.partition(req.tp.as_ref())?;
        let (offset, timestamp) = part.list_offset(req.timestamp)?;
        Ok(Response::new(ListOffsetsResponse { offset, timestamp }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferPartitionLeaderRequest>,
    ) -> Result<Response<TransferPartitionLeaderResponse>, Status> {
        let req = request.into_inner();
        let part = self.partition(req.tp.as_ref())?;
        part.transfer_leader(req.target_node_id).await?;
        Ok(Response::new(TransferPartitionLeaderResponse {}))
    }

    async fn apply_assignments(
        &self,
        request: Request<ApplyAssignmentsRequest>,
    ) -> Result<Response<ApplyAssignmentsResponse>, Status> {
        let req = request.into_inner();
        // On its own task: a caller that gives up must not drop a replica half-started (its
        // Raft group running, holding the log, but not registered here to be found or stopped).
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.reconcile(req.assignments, req.full).await })
            .await
            .map_err(|e| Status::internal(format!("applying assignments failed: {e}")))?;
        Ok(Response::new(ApplyAssignmentsResponse {}))
    }
}
