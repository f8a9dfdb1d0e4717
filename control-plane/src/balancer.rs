//! Leadership balance. A partition's preferred leader is its first replica, and placement
//! spreads first replicas over the data nodes. When another replica leads (after a failover)
//! and the preferred one has been alive without interruption for a grace period, the current
//! leader is asked to hand over: leadership returns to balance, never onto a node that is down
//! or has just restarted.

use std::collections::HashMap;
use std::time::Duration;

use chronik_proto::data::{TopicPartition, TransferPartitionLeaderRequest};

use crate::service::ControlServiceImpl;
use crate::types::Role;

/// At most this many transfers per round, so a recovering cluster is not flooded.
const MAX_MOVES_PER_ROUND: usize = 16;

pub(crate) fn spawn(svc: ControlServiceImpl, every: Duration, grace: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if svc.ensure_leader().is_err() {
                continue;
            }
            svc.reassign_round(grace).await;
            round(&svc, grace).await;
        }
    })
}

async fn round(svc: &ControlServiceImpl, grace: Duration) {
    let (Ok(topics), Ok(nodes)) = (svc.sm.topics(), svc.sm.nodes()) else { return };
    let addrs: HashMap<u64, String> =
        nodes.into_iter().filter(|n| n.role == Role::Data).map(|n| (n.node_id, n.addr)).collect();
    let mut moves = 0;
    for t in &topics {
        for (p, replicas) in t.assignments.iter().enumerate() {
            let (Some(leader), Some(&preferred)) = (svc.liveness.observed(&t.name, p as u32).leader, replicas.first())
            else {
                continue;
            };
            if leader == preferred || !svc.liveness.alive_for(preferred, grace) {
                continue;
            }
            let Some(addr) = addrs.get(&leader) else { continue };
            let Ok(mut client) = chronik_proto::client::data_client(addr, svc.max_message_size) else { continue };
            let req = TransferPartitionLeaderRequest {
                tp: Some(TopicPartition { topic: t.name.clone(), partition: p as u32 }),
                target_node_id: preferred,
            };
            tracing::info!(target: "chronik_cluster", "Rebalancing leadership of {}-{p}: node {leader} -> preferred node {preferred}", t.name);
            match tokio::time::timeout(Duration::from_secs(2), client.transfer_leader(req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(s)) => {
                    tracing::debug!(target: "chronik_cluster", "leader transfer of {}-{p} refused: {}", t.name, s.message())
                }
                Err(_) => tracing::debug!(target: "chronik_cluster", "leader transfer of {}-{p} timed out", t.name),
            }
            moves += 1;
            if moves >= MAX_MOVES_PER_ROUND {
                return;
            }
        }
    }
}
