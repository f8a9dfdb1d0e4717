//! A control node answers the admin API's membership reads from its own `__meta` state, so the
//! guide's "ask every node and compare" split-brain check compares real views. Partition
//! leaders and ISRs are known only to the leader (data nodes heartbeat to it): a follower asks
//! it for those.

use std::time::Duration;

use chronik_proto::admin::{ControlSource, RemoteControl};
use chronik_proto::client::ControlClient;
use chronik_proto::control::{ClusterMetadata, MembersResponse};
use chronik_shared::admin::BoxFuture;
use chronik_shared::error::ChronikError;

use crate::service::ControlServiceImpl;

pub struct LocalControl {
    pub svc: ControlServiceImpl,
    /// How long a follower waits for the leader's answer.
    pub timeout: Duration,
}

impl ControlSource for LocalControl {
    fn node_id(&self) -> u64 {
        self.svc.node_id
    }

    fn view_name(&self) -> &'static str {
        "raft"
    }

    fn members(&self) -> BoxFuture<'_, Result<MembersResponse, ChronikError>> {
        Box::pin(std::future::ready(Ok(self.svc.members())))
    }

    fn metadata(&self) -> BoxFuture<'_, Result<ClusterMetadata, ChronikError>> {
        Box::pin(async move {
            let members = self.svc.members();
            match members.leader {
                Some(l) if l == self.svc.node_id => self.svc.metadata(&[]),
                Some(l) => {
                    // The leader's address from this node's own membership: a node added by
                    // hand (add-learner) may have no working seed.
                    let addr =
                        members.voters.iter().chain(&members.learners).find(|n| n.node_id == l).map(|n| n.addr.clone());
                    let client = ControlClient::new(addr.into_iter().collect(), self.timeout);
                    RemoteControl::new(self.svc.node_id, client, self.svc.max_message_size).metadata().await
                }
                None => Err(ChronikError::not_leader(None, "__meta")),
            }
        })
    }
}
