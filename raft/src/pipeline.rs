//! Pipelined replication (`cluster.raft.enable_pipeline`): a group's AppendEntries to one
//! follower go on one `StreamAppend` call, in log order, without waiting for each answer, at
//! most `cluster.raft.max_in_flight` unanswered. The follower answers each in order (openraft's
//! `Raft::stream_append`), so the leader's next batch travels while the follower still writes
//! the last one.

use std::sync::Arc;
use std::time::Duration;

use chronik_proto::raft::RaftMessage;
use futures::stream::BoxStream;
use futures::{StreamExt, future};
use openraft::alias::VoteOf;
use openraft::error::{RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use openraft::{BasicNode, OptionalSend};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Semaphore;

use crate::codec::EntryCodec;
use crate::network::{GrpcNetwork, from_json, split_append, status_err};
use crate::until_error::until_error;

/// The longest wait for the next answer while requests are unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn stream_append<'s, C, S>(
    net: &'s mut GrpcNetwork<C>,
    input: S,
    option: RPCOption,
    max_in_flight: usize,
) -> Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>
where
    C: EntryCodec<NodeId = u64, Node = BasicNode>,
    VoteOf<C>: Serialize + DeserializeOwned,
    S: futures::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
{
    // openraft waits out its backoff after a failure inside the request stream, when the
    // first request is pulled; tonic pulls it only once connected, so a peer that refuses
    // connections would be retried in a busy loop. Pull it before connecting.
    let mut input = input;
    let Some(first) = input.next().await else { return Ok(Box::pin(futures::stream::empty())) };
    let input = futures::stream::iter([first]).chain(input);
    let mut client = net.client()?;
    let window = Arc::new(Semaphore::new(max_in_flight));

    let (pool, target, group, budget) = (net.pool.clone(), net.target, net.group.clone(), net.pool.append_budget());
    let permits = window.clone();
    // An entry that does not encode ends the requests; its error follows the last answer.
    let (parts, failed) = until_error(input.map(move |rpc| split_append(rpc, budget)));
    let requests = parts
        .flat_map(futures::stream::iter)
        // The test harness's fault layer cutting the link ends the stream; the next one fails.
        .take_while(move |_| future::ready(!pool.blocked(target)))
        .then(move |part| {
            let (permits, group) = (permits.clone(), group.clone());
            async move {
                // Closed never: the semaphore lives as long as this stream.
                if let Ok(p) = permits.acquire().await {
                    p.forget();
                }
                RaftMessage { group, header: part.header, entries: part.entries }
            }
        });

    let answers = client.stream_append(tonic::Request::new(requests)).await.map_err(|s| net.append_failed(s))?;
    let answers = answers.into_inner();
    let wait = option.hard_ttl().max(ANSWER_TIMEOUT);
    let (group, target) = (net.group.clone(), net.target);
    let results = futures::stream::unfold(Some(answers), move |state| {
        let (window, failed, group) = (window.clone(), failed.clone(), group.clone());
        async move {
            let mut answers = state?;
            loop {
                match tokio::time::timeout(wait, answers.next()).await {
                    Ok(Some(Ok(m))) => {
                        window.add_permits(1);
                        let result = from_json::<C, StreamAppendResult<C>>(&m.header);
                        // A conflict or a higher vote ends the stream on both sides.
                        let more = matches!(result, Ok(Ok(_)));
                        return Some((result, more.then_some(answers)));
                    }
                    Ok(Some(Err(s))) => {
                        tracing::warn!(target: "chronik_raft", group = %group, "AppendEntries failed: node={target}, error={}", s.message());
                        return Some((Err(status_err(s)), None));
                    }
                    // The requests ended (the session's payload went out, or an entry did not
                    // encode) and every one was answered.
                    Ok(None) => return failed.take().map(|e| (Err(e), None)),
                    // Nothing awaits an answer: an idle stream is fine.
                    Err(_) if window.available_permits() >= max_in_flight => {}
                    Err(_) => {
                        let why = format!("node {target} answered no AppendEntries of {group} within {wait:?}");
                        tracing::warn!(target: "chronik_raft", group = %group, "AppendEntries failed: node={target}, error={why}");
                        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, why);
                        return Some((Err(RPCError::Unreachable(Unreachable::new(&e))), None));
                    }
                }
            }
        }
    });
    Ok(Box::pin(results))
}
