//! Calling a partition's data-plane leader: find it in the metadata cache, call it, and on
//! "not leader" follow the hint (or refresh the cache) and retry with a short backoff until
//! the request's deadline. The answer that finally goes to the client is the last error, so
//! it gets `NOT_LEADER_OR_FOLLOWER` and the like when leadership did not settle in time;
//! unless an attempt may have been written (`OutcomeUnknown`, or cut off by the deadline):
//! then REQUEST_TIMED_OUT, so an idempotent producer keeps the batch's sequence.

use std::future::Future;
use std::time::Duration;

use chronik_shared::error::{ChronikError, ErrorCode};
use tokio::time::Instant;

use crate::context::Ctx;
use crate::data_conn::DataConn;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// A miss in the cache refreshes it if it is older than this.
const STALE: Duration = Duration::from_millis(100);
/// Longest one call to a data node may take before the leader is looked up again: a leader
/// cut off the network does not answer at all, and waiting out the whole request timeout for
/// it stalled every partition of the request (a replicated write takes milliseconds).
const ATTEMPT: Duration = Duration::from_secs(5);

/// Calls `f` on the data node leading `topic`/`partition` until it answers, a non-retryable
/// error comes back, or `deadline` passes.
pub(crate) async fn call_leader<T, F, Fut>(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    deadline: Instant,
    f: F,
) -> Result<T, ChronikError>
where
    F: Fn(DataConn) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut hint: Option<String> = None;
    // The first attempt that may have been carried out.
    let mut unknown: Option<ChronikError> = None;
    loop {
        let via_hint = hint.is_some();
        let attempt = async {
            let addr = match hint.take() {
                Some(a) => a,
                None => resolve(ctx, topic, partition).await.map_err(Failure::Resolve)?,
            };
            let client = ctx.data.get(&addr).map_err(Failure::Call)?;
            f(client).await.map(tonic::Response::into_inner).map_err(|s| Failure::Call(s.into()))
        };
        let err = match tokio::time::timeout_at(deadline.min(Instant::now() + ATTEMPT), attempt).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Failure::Resolve(e))) if e.code == ErrorCode::UnknownTopicOrPartition => return Err(e),
            Ok(Err(Failure::Resolve(e) | Failure::Call(e))) => e,
            Err(_) if Instant::now() >= deadline => return Err(unknown.unwrap_or_else(|| timed_out(topic, partition))),
            // The leader did not answer in time: it may be cut off; look it up again.
            Err(_) => ChronikError::new(
                ErrorCode::OutcomeUnknown,
                format!("the leader of {topic}-{partition} did not answer within {ATTEMPT:?}"),
            ),
        };
        if !retryable(&err) {
            return Err(err);
        }
        if err.code == ErrorCode::OutcomeUnknown && unknown.is_none() {
            unknown = Some(err.clone());
        }
        ctx.cache.refresh_soon();
        let view = ctx.cache.view();
        hint = err
            .leader
            .as_ref()
            .and_then(|l| view.data_nodes.get(&l.node_id).cloned().or_else(|| Some(l.addr.clone())))
            .filter(|a| !a.is_empty());
        if Instant::now() + backoff >= deadline {
            return Err(unknown.unwrap_or(err));
        }
        tracing::debug!(target: "chronik_gateway", "{topic}-{partition}: {err}; retrying");
        // A fresh hint is worth trying at once; otherwise give the election a moment (and
        // never bounce between two nodes that each name the other).
        if hint.is_none() || via_hint {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

enum Failure {
    /// The cache does not know the leader.
    Resolve(ChronikError),
    /// The data node (or the way to it) failed.
    Call(ChronikError),
}

async fn resolve(ctx: &Ctx, topic: &str, partition: i32) -> Result<String, ChronikError> {
    match ctx.cache.view().leader(topic, partition) {
        Ok((_, addr)) => Ok(addr),
        Err(_) => ctx.cache.fresh(STALE).await?.leader(topic, partition).map(|(_, addr)| addr),
    }
}

/// Errors a leader change explains. `UnknownTopicOrPartition` from a data node (the cache
/// knows the topic) means its replica is still being created. Never `SequenceAhead`: only the
/// client can send the missing batch before it (see the error table).
fn retryable(e: &ChronikError) -> bool {
    matches!(
        e.code,
        ErrorCode::NotLeader
            | ErrorCode::NoLeader
            | ErrorCode::Unavailable
            | ErrorCode::OutcomeUnknown
            | ErrorCode::UnknownTopicOrPartition
    )
}

fn timed_out(topic: &str, partition: i32) -> ChronikError {
    ChronikError::new(
        ErrorCode::Timeout,
        format!("no answer from the leader of {topic}-{partition} within the request timeout"),
    )
}
