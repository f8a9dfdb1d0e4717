//! `chronik-server doctor` and `GET /admin/diagnose`: the operations guide's Quick Diagnostic
//! Checklist, run across every node the first one knows of.
//!
//! - `fetch.rs`: the HTTP client (plain HTTP/1.1 GETs to each node's own API).
//! - `gather.rs`: discovery (the first node's member list, with each node's HTTP address) and
//!   what is read from every node: health, node info, members, leader, partitions, metrics.
//! - `checks.rs`: the findings, each naming the affected node, the guide section and the fix.

mod checks;
pub mod fetch;
mod gather;

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use gather::NodeReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

/// One thing the doctor found.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    pub severity: Severity,
    /// The checklist item: `reachability`, `health`, `membership`, `leader`, `raft_metrics`,
    /// `replication`, `partitions`, `disk`, `clock`, `config`.
    pub check: String,
    /// The node it is about, when it is about one.
    pub node: Option<u64>,
    pub message: String,
    /// Where the operations guide treats it.
    pub guide_section: String,
    pub fix: String,
}

/// Every finding plus what was asked of each node.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Diagnosis {
    /// No critical finding.
    pub healthy: bool,
    pub nodes: Vec<NodeSummary>,
    pub findings: Vec<Finding>,
}

/// One node as the doctor reached it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeSummary {
    pub node_id: Option<u64>,
    pub http_addr: String,
    pub roles: Vec<String>,
    pub reachable: bool,
    pub healthy: bool,
}

/// Runs every check from the node at `first` (`host:port` of its HTTP API).
pub async fn diagnose(first: &str, token: &str, timeout: Duration) -> Diagnosis {
    let reports = gather::gather(first, token, timeout).await;
    let mut findings = checks::run(&reports);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.node.cmp(&b.node)));
    let nodes = reports
        .iter()
        .map(|r| NodeSummary {
            node_id: r.node_id,
            http_addr: r.http_addr.clone(),
            roles: r.roles.clone(),
            reachable: r.error.is_none(),
            healthy: r.healthy,
        })
        .collect();
    Diagnosis { healthy: findings.iter().all(|f| f.severity != Severity::Critical), nodes, findings }
}

impl Diagnosis {
    /// The human-readable report `chronik-server doctor` prints.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("Chronik doctor: {} node(s) checked\n", self.nodes.len()));
        for n in &self.nodes {
            let id = n.node_id.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
            let state = if !n.reachable {
                "UNREACHABLE"
            } else if n.healthy {
                "healthy"
            } else {
                "UNHEALTHY"
            };
            out.push_str(&format!("  node {id:>4} {:<22} {:<20} {state}\n", n.http_addr, n.roles.join(",")));
        }
        if self.findings.iter().all(|f| f.severity == Severity::Ok) {
            out.push_str("All checks passed.\n");
        }
        for f in self.findings.iter().filter(|f| f.severity != Severity::Ok) {
            let tag = if f.severity == Severity::Critical { "CRITICAL" } else { "WARNING " };
            let node = f.node.map(|n| format!(" node {n}:")).unwrap_or_default();
            out.push_str(&format!("{tag} [{}]{node} {}\n", f.check, f.message));
            out.push_str(&format!("         guide: {}\n         fix: {}\n", f.guide_section, f.fix));
        }
        let passed: Vec<&str> =
            self.findings.iter().filter(|f| f.severity == Severity::Ok).map(|f| f.check.as_str()).collect();
        if !passed.is_empty() {
            out.push_str(&format!("ok: {}\n", passed.join(", ")));
        }
        out
    }
}
