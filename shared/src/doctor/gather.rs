//! Discovery and collection: the first node's member list names every node (with its HTTP
//! address, registered at start); each is asked for its health, node info, membership view,
//! leader view and metrics, all at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::fetch::get;
use crate::admin::types::{Health, LeaderInfo, Members, NodeInfo, PartitionRow};
use crate::http::now_ms;

/// What one node answered (or why it did not).
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    pub http_addr: String,
    pub node_id: Option<u64>,
    pub roles: Vec<String>,
    /// Why the node could not be asked at all.
    pub error: Option<String>,
    pub healthy: bool,
    pub health_reasons: Vec<String>,
    pub info: Option<NodeInfo>,
    pub members: Option<Members>,
    pub leader: Option<LeaderInfo>,
    /// Asked of the first node only.
    pub partitions: Option<Vec<PartitionRow>>,
    pub metrics: Vec<Sample>,
    /// The node's clock minus the doctor's, at the moment the node answered (ms).
    pub clock_offset_ms: Option<i64>,
    /// Admin routes refused (401/403): the token does not fit this node.
    pub auth_error: Option<String>,
}

/// One Prometheus sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub async fn gather(first: &str, token: &str, timeout: Duration) -> Vec<NodeReport> {
    let first_report = ask(first.to_string(), None, Vec::new(), token.to_string(), timeout, true).await;
    let Some(members) = first_report.members.clone() else {
        return vec![first_report];
    };
    let first_id = first_report.node_id;
    let mut targets: Vec<(Option<u64>, String, String)> = Vec::new();
    let all = members.voters.iter().chain(&members.learners).chain(&members.data_nodes).chain(&members.gateways);
    let mut missing = Vec::new();
    for m in all {
        if Some(m.node_id) == first_id {
            continue;
        }
        match &m.http_addr {
            Some(addr) if !targets.iter().any(|t| &t.1 == addr) && addr != first => {
                targets.push((Some(m.node_id), addr.clone(), m.role.clone()))
            }
            Some(_) => {}
            None => missing.push(NodeReport {
                node_id: Some(m.node_id),
                roles: vec![m.role.clone()],
                error: Some(format!(
                    "node {} ({} at {}) has not registered its HTTP address with the control plane",
                    m.node_id, m.role, m.addr
                )),
                ..NodeReport::default()
            }),
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, (id, addr, role)) in targets.into_iter().enumerate() {
        let token = token.to_string();
        set.spawn(async move { (i, ask(addr, id, vec![role], token, timeout, false).await) });
    }
    let mut others: Vec<(usize, NodeReport)> = Vec::new();
    while let Some(done) = set.join_next().await {
        if let Ok(r) = done {
            others.push(r);
        }
    }
    others.sort_by_key(|(i, _)| *i);
    let mut reports = vec![first_report];
    reports.extend(others.into_iter().map(|(_, r)| r));
    reports.extend(missing);
    reports
}

async fn ask(
    addr: String,
    id: Option<u64>,
    roles: Vec<String>,
    token: String,
    timeout: Duration,
    first: bool,
) -> NodeReport {
    let mut r = NodeReport { http_addr: addr.clone(), node_id: id, roles, ..NodeReport::default() };
    let asked = now_ms();
    match get(&addr, "/health", None, timeout).await {
        Err(e) => {
            r.error = Some(e);
            return r;
        }
        Ok((status, body)) => match serde_json::from_str::<Health>(&body) {
            Ok(h) => {
                r.healthy = status == 200 && h.status == "healthy";
                r.health_reasons = h.reasons;
                r.node_id = Some(h.node_id);
                r.roles = h.roles;
            }
            Err(_) => {
                r.error = Some(format!(
                    "{addr}/health answered {status} without Chronik's health JSON: is this a Chronik node?"
                ));
                return r;
            }
        },
    }
    let (info, t_info) = (json::<NodeInfo>(&addr, "/admin/node/info", &token, timeout, &mut r).await, now_ms());
    if let Some(info) = &info {
        // The node read its clock between `asked` and `t_info`: compare with the midpoint.
        let mid = (asked + t_info) / 2;
        r.clock_offset_ms = Some(info.now_ms as i64 - mid as i64);
    }
    r.info = info;
    r.members = json(&addr, "/admin/cluster/members", &token, timeout, &mut r).await;
    r.leader = json(&addr, "/admin/cluster/leader", &token, timeout, &mut r).await;
    if first {
        r.partitions = json(&addr, "/admin/cluster/partitions", &token, timeout, &mut r).await;
    }
    if let Ok((200, text)) = get(&addr, "/metrics", None, timeout).await {
        r.metrics = parse_metrics(
            &text,
            &[
                "chronik_raft_state",
                "chronik_raft_term",
                "chronik_raft_replication_lag_entries",
                "chronik_raft_replication_lag_ms",
            ],
        );
    }
    r
}

async fn json<T: DeserializeOwned>(
    addr: &str,
    path: &str,
    token: &str,
    timeout: Duration,
    r: &mut NodeReport,
) -> Option<T> {
    match get(addr, path, Some(token), timeout).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        Ok((401 | 403, body)) => {
            r.auth_error.get_or_insert_with(|| format!("{path} refused the token: {}", body.trim()));
            None
        }
        _ => None,
    }
}

/// The samples of the families in `wanted` from a Prometheus text page.
pub fn parse_metrics(text: &str, wanted: &[&str]) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if !wanted.contains(&name) {
            continue;
        }
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        out.push(Sample { name: name.to_string(), labels, value });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_labels() {
        let text = "# HELP x\nchronik_raft_state{partition=\"__meta\"} 1\nchronik_raft_replication_lag_ms{partition=\"t-0\",node=\"3\"} 12000\nother 5\n";
        let s = parse_metrics(text, &["chronik_raft_state", "chronik_raft_replication_lag_ms"]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].labels.get("node").map(String::as_str), Some("3"));
        assert_eq!(s[1].value, 12000.0);
    }
}
