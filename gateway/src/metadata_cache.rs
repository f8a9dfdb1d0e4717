//! The gateway's copy of the control plane's cluster metadata: topics (by name and by id),
//! their partitions and observed data-plane leaders, the data nodes' gRPC addresses and the
//! live gateways. Refreshed from `ControlService.GetMetadata` every few seconds, on a miss, and
//! after "not leader" answers; concurrent refreshes share one call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chronik_proto::client::ControlClient;
use chronik_proto::control::{ClusterMetadata, GetMetadataRequest, NodeInfo, TopicInfo};
use chronik_shared::error::{ChronikError, ErrorCode};
use uuid::Uuid;

/// How often the cache refreshes on its own.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(3);
/// A miss refreshes only when the copy is older than this, so clients asking for topics that
/// do not exist cannot turn every request into a control-plane call.
const MISS_MAX_AGE: Duration = Duration::from_millis(200);
/// After a failed refresh, callers get that failure for this long instead of a new attempt.
const FAILURE_HOLDOFF: Duration = Duration::from_millis(500);

/// One consistent copy of the cluster metadata.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    pub topics: HashMap<String, Arc<TopicInfo>>,
    pub names_by_id: HashMap<Uuid, String>,
    /// gRPC address of every registered data node, by node id.
    pub data_nodes: HashMap<u64, String>,
    /// Live gateways (their Kafka addresses), sorted by node id.
    pub gateways: Vec<NodeInfo>,
    fetched_at: Option<Instant>,
}

impl ClusterView {
    fn from_metadata(m: ClusterMetadata) -> ClusterView {
        let mut gateways: Vec<NodeInfo> = m.gateways.into_iter().filter(|g| g.alive).collect();
        gateways.sort_by_key(|g| g.node_id);
        let mut view = ClusterView {
            data_nodes: m.data_nodes.into_iter().map(|n| (n.node_id, n.addr)).collect(),
            gateways,
            fetched_at: Some(Instant::now()),
            ..ClusterView::default()
        };
        for t in m.topics {
            if let Some(id) = topic_uuid(&t.topic_id) {
                view.names_by_id.insert(id, t.name.clone());
            }
            view.topics.insert(t.name.clone(), Arc::new(t));
        }
        view
    }

    /// A control plane that has just changed leader knows partition leaders and live gateways
    /// only from the heartbeats it has received since: for a moment it answers "no leader".
    /// Until it knows better, keep what the previous copy said (a stale leader answers "not
    /// leader" with a hint, which the forwarding follows).
    fn carry_over(&mut self, prev: &ClusterView) {
        let mut carried = false;
        for (name, topic) in self.topics.iter_mut() {
            let Some(old) = prev.topics.get(name).filter(|o| o.topic_id == topic.topic_id) else { continue };
            if topic.partitions.iter().all(|p| p.leader.is_some()) {
                continue;
            }
            let t = Arc::make_mut(topic);
            for p in t.partitions.iter_mut().filter(|p| p.leader.is_none()) {
                let was = old.partitions.iter().find(|o| o.partition == p.partition).and_then(|o| o.leader);
                if let Some(l) = was.filter(|l| self.data_nodes.contains_key(l)) {
                    p.leader = Some(l);
                    carried = true;
                }
            }
        }
        if carried {
            for g in &prev.gateways {
                if !self.gateways.iter().any(|n| n.node_id == g.node_id) {
                    self.gateways.push(g.clone());
                }
            }
            self.gateways.sort_by_key(|g| g.node_id);
        }
    }

    pub fn age(&self) -> Option<Duration> {
        self.fetched_at.map(|t| t.elapsed())
    }

    /// The data node leading `topic`/`partition`: its id and gRPC address.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<(u64, String), ChronikError> {
        let t = self.topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.iter().find(|p| p.partition as usize == i))
            .ok_or_else(|| {
            ChronikError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic} has no partition {partition} (it has {})", t.partitions.len()),
            )
        })?;
        let what = format!("partition {topic}-{partition}");
        let id = p.leader.ok_or_else(|| ChronikError::not_leader(None, &what))?;
        let addr = self.data_nodes.get(&id).ok_or_else(|| ChronikError::not_leader(None, &what))?;
        Ok((id, addr.clone()))
    }
}

/// A topic id from the control plane (16 bytes), if it is one.
pub(crate) fn topic_uuid(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok().filter(|u| !u.is_nil())
}

/// Whether every partition of `t` has a data-plane leader.
pub(crate) fn is_ready(t: &TopicInfo) -> bool {
    !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader.is_some())
}

fn unknown_topic(topic: &str) -> ChronikError {
    ChronikError::new(ErrorCode::UnknownTopicOrPartition, format!("topic {topic} does not exist"))
}

pub(crate) struct MetadataCache {
    control: ControlClient,
    view: RwLock<Arc<ClusterView>>,
    /// Serialises refreshes and remembers when the last one ended and how: a caller that
    /// waited on it reuses what the holder fetched (or the error it got).
    refreshing: tokio::sync::Mutex<Option<(Instant, Result<(), ChronikError>)>>,
    background_pending: AtomicBool,
}

impl MetadataCache {
    pub fn new(control: ControlClient) -> Arc<MetadataCache> {
        Arc::new(MetadataCache {
            control,
            view: RwLock::new(Arc::new(ClusterView::default())),
            refreshing: tokio::sync::Mutex::new(None),
            background_pending: AtomicBool::new(false),
        })
    }

    /// The current copy, however old.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A copy fetched at most `max_age` ago (fetching one if needed).
    pub async fn fresh(&self, max_age: Duration) -> Result<Arc<ClusterView>, ChronikError> {
        let young = |v: &ClusterView| v.age().is_some_and(|a| a <= max_age);
        let current = self.view();
        if young(&current) {
            return Ok(current);
        }
        let asked = Instant::now();
        let mut last = self.refreshing.lock().await;
        let current = self.view();
        if young(&current) {
            return Ok(current);
        }
        // Someone tried while we waited, or failed a moment ago: share their outcome rather
        // than wait a whole control-plane timeout again.
        if let Some((finished, outcome)) = last.as_ref()
            && (*finished >= asked || (outcome.is_err() && finished.elapsed() < FAILURE_HOLDOFF))
        {
            return outcome.clone().map(|()| current);
        }
        let fetched = self
            .control
            .call(|mut c| async move { c.get_metadata(GetMetadataRequest { topics: Vec::new() }).await })
            .await
            .map_err(ChronikError::from);
        let result = fetched.map(|m| {
            // What this gateway knows of the cluster: the data nodes and gateways the control
            // plane reports alive (control nodes are not in the answer).
            let alive = m.data_nodes.iter().chain(&m.gateways).filter(|n| n.alive).count();
            chronik_shared::metrics::set_known_nodes(alive);
            let mut view = ClusterView::from_metadata(m);
            let prev = self.view();
            view.carry_over(&prev);
            for gone in prev.topics.keys().filter(|t| !view.topics.contains_key(*t)) {
                chronik_shared::metrics::forget_topic(gone);
            }
            let view = Arc::new(view);
            *self.view.write().unwrap_or_else(|p| p.into_inner()) = view.clone();
            view
        });
        *last = Some((Instant::now(), result.as_ref().map(|_| ()).map_err(Clone::clone)));
        result
    }

    /// A copy fetched after this call started.
    pub async fn refresh(&self) -> Result<Arc<ClusterView>, ChronikError> {
        self.fresh(Duration::ZERO).await
    }

    /// Refreshes in the background (after a "not leader" answer); at most one such refresh
    /// is queued at a time.
    pub fn refresh_soon(self: &Arc<Self>) {
        if self.background_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let r = this.refresh().await;
            this.background_pending.store(false, Ordering::Release);
            if let Err(e) = r {
                tracing::debug!(target: "chronik_gateway", "metadata refresh failed: {e}");
            }
        });
    }

    /// The copy to answer about `topics` with: the current one, or a fresh one if any of them
    /// is missing or has a partition without a leader. Falls back to the current copy when the
    /// control plane cannot be reached.
    pub async fn view_with(&self, topics: &[&str]) -> Arc<ClusterView> {
        let current = self.view();
        if current.age().is_some() && topics.iter().all(|t| current.topics.get(*t).is_some_and(|t| is_ready(t))) {
            return current;
        }
        match self.fresh(MISS_MAX_AGE).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(target: "chronik_gateway", "cannot refresh cluster metadata from the control plane: {e}");
                current
            }
        }
    }

    /// Same as [`Self::view_with`], for topic ids.
    pub async fn view_with_ids(&self, ids: &[Uuid]) -> Arc<ClusterView> {
        let current = self.view();
        let ready =
            |id: &Uuid| current.names_by_id.get(id).and_then(|n| current.topics.get(n)).is_some_and(|t| is_ready(t));
        if current.age().is_some() && ids.iter().all(ready) {
            return current;
        }
        match self.fresh(MISS_MAX_AGE).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(target: "chronik_gateway", "cannot refresh cluster metadata from the control plane: {e}");
                current
            }
        }
    }

    /// Refreshes every [`REFRESH_INTERVAL`] until the task is aborted.
    pub async fn run_refresher(self: Arc<Self>) {
        let mut failing = false;
        loop {
            match self.fresh(REFRESH_INTERVAL / 2).await {
                Ok(_) if failing => {
                    tracing::info!(target: "chronik_gateway", "cluster metadata refreshes from the control plane again");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!(target: "chronik_gateway", "cannot refresh cluster metadata from the control plane: {e}; serving the last copy");
                    failing = true;
                }
                Err(e) => tracing::debug!(target: "chronik_gateway", "metadata refresh still failing: {e}"),
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_proto::control::PartitionInfo;

    fn metadata() -> ClusterMetadata {
        ClusterMetadata {
            topics: vec![TopicInfo {
                name: "t".into(),
                topic_id: bytes::Bytes::from(vec![7u8; 16]),
                replication_factor: 1,
                configs: Default::default(),
                partitions: vec![
                    PartitionInfo { partition: 0, leader: Some(2), ..Default::default() },
                    PartitionInfo { partition: 1, leader: None, ..Default::default() },
                    PartitionInfo { partition: 2, leader: Some(9), ..Default::default() },
                ],
            }],
            data_nodes: vec![NodeInfo { node_id: 2, addr: "d2:9093".into(), ..Default::default() }],
            gateways: vec![
                NodeInfo { node_id: 5, addr: "g5:9092".into(), alive: true, ..Default::default() },
                NodeInfo { node_id: 3, addr: "g3:9092".into(), alive: true, ..Default::default() },
                NodeInfo { node_id: 4, addr: "g4:9092".into(), alive: false, ..Default::default() },
            ],
            control_leader: None,
        }
    }

    #[test]
    fn leaders_and_ids_resolve() {
        let v = ClusterView::from_metadata(metadata());
        assert_eq!(v.leader("t", 0).expect("leader"), (2, "d2:9093".to_string()));
        assert_eq!(v.leader("t", 1).expect_err("no leader").code, ErrorCode::NoLeader);
        assert_eq!(v.leader("t", 2).expect_err("unknown node").code, ErrorCode::NoLeader);
        assert_eq!(v.leader("t", 3).expect_err("no partition").code, ErrorCode::UnknownTopicOrPartition);
        assert_eq!(v.leader("t", -1).expect_err("negative").code, ErrorCode::UnknownTopicOrPartition);
        assert_eq!(v.leader("x", 0).expect_err("no topic").code, ErrorCode::UnknownTopicOrPartition);
        assert_eq!(v.names_by_id.get(&Uuid::from_bytes([7; 16])).map(String::as_str), Some("t"));
        let ids: Vec<u64> = v.gateways.iter().map(|g| g.node_id).collect();
        assert_eq!(ids, vec![3, 5]);
    }

    #[test]
    fn a_fresh_control_leader_without_observations_does_not_erase_partition_leaders() {
        let before = ClusterView::from_metadata(metadata());
        let mut blank = metadata();
        for p in &mut blank.topics[0].partitions {
            p.leader = None;
        }
        blank.gateways.truncate(1);
        let mut after = ClusterView::from_metadata(blank);
        after.carry_over(&before);
        assert_eq!(after.leader("t", 0).expect("kept"), (2, "d2:9093".to_string()));
        assert!(after.leader("t", 2).is_err(), "a leader on an unknown node is not carried");
        let ids: Vec<u64> = after.gateways.iter().map(|g| g.node_id).collect();
        assert_eq!(ids, vec![3, 5], "live gateways kept too");
    }
}
