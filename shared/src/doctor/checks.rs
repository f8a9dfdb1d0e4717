//! The findings over what every node answered. Thresholds are the operations guide's:
//! replication lag (1,000 entries / 1 s healthy, 10,000 / 10 s alert), clocks within 1-2 s.

use std::collections::{BTreeMap, BTreeSet};

use super::gather::NodeReport;
use super::{Finding, Severity};

const CHECKLIST: &str = "Quick Diagnostic Checklist";
const JOIN: &str = "Issue 1: Node Cannot Join Cluster";
const SPLIT_BRAIN: &str = "Issue 2: Split-Brain (Multiple Leaders)";
const LAG: &str = "Issue 3: Log Replication Lag";
const SNAPSHOT: &str = "Issue 4: Snapshot Transfer Fails";
const ELECTION: &str = "Issue 6: Leader Election Takes Too Long";
const METRICS: &str = "Metric Interpretation";
const WAL: &str = "Diagnostic Commands: WAL Inspection";

/// Lag (entries, ms) the guide calls healthy, and where it says to alert.
const LAG_OK: (f64, f64) = (1_000.0, 1_000.0);
const LAG_ALERT: (f64, f64) = (10_000.0, 10_000.0);
/// Clock offset between nodes (ms) the guide accepts ("within 1-2 seconds").
const SKEW_WARN_MS: i64 = 1_000;
const SKEW_CRIT_MS: i64 = 2_000;
/// Free space below which a node's disk is a problem (fraction of the file system).
const DISK_WARN: f64 = 0.20;
const DISK_CRIT: f64 = 0.10;

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, severity: Severity, check: &str, node: Option<u64>, message: String, section: &str, fix: &str) {
        self.0.push(Finding {
            severity,
            check: check.to_string(),
            node,
            message,
            guide_section: section.to_string(),
            fix: fix.to_string(),
        });
    }

    /// One `ok` line for `check` unless it found something.
    fn passed(&mut self, check: &str, section: &str, message: &str) {
        if !self.0.iter().any(|f| f.check == check) {
            self.add(Severity::Ok, check, None, message.to_string(), section, "");
        }
    }
}

pub fn run(reports: &[NodeReport]) -> Vec<Finding> {
    let mut f = Findings(Vec::new());
    reachability(reports, &mut f);
    let up: Vec<&NodeReport> = reports.iter().filter(|r| r.error.is_none()).collect();
    membership_and_leader(&up, &mut f);
    let answering: BTreeSet<u64> = up.iter().filter(|r| r.healthy).filter_map(|r| r.node_id).collect();
    raft_metrics(&up, &answering, &mut f);
    partitions(&up, &mut f);
    disk(&up, &mut f);
    clocks(&up, &mut f);
    config(&up, &mut f);
    wal(&up, &mut f);
    f.0
}

fn wal(up: &[&NodeReport], f: &mut Findings) {
    for r in up {
        for p in r.info.iter().filter_map(|i| i.wal.as_ref()).flat_map(|w| w.problems.iter()) {
            f.add(
                Severity::Critical,
                "wal",
                r.node_id,
                format!("WAL checksum failure: {p}"),
                WAL,
                "run `chronik-server debug wal-verify --path <the group's wal dir>` on that node; its other replicas \
                 still hold the data: move this node's replicas away (`chronik-server admin decommission`) and \
                 replace the disk, or restore the directory from a backup",
            );
        }
    }
    f.passed("wal", WAL, "every record's checksum verified on the last scrub");
}

fn reachability(reports: &[NodeReport], f: &mut Findings) {
    for r in reports {
        if let Some(e) = &r.error {
            let role = r.roles.first().map(String::as_str).unwrap_or("node");
            f.add(
                Severity::Critical,
                "reachability",
                r.node_id,
                format!("{role} node unreachable: {e}"),
                JOIN,
                "check the process on that host (`systemctl status chronik`, `journalctl -u chronik -n 100`), \
                 its listeners.http port and the network path to it (`nc -zv HOST PORT`)",
            );
        } else if !r.healthy {
            f.add(
                Severity::Critical,
                "health",
                r.node_id,
                format!("/health is unhealthy: {}", r.health_reasons.join("; ")),
                CHECKLIST,
                "the reasons name the failing check; see the matching issue of the guide",
            );
        }
        if let Some(e) = &r.auth_error {
            // The checks that need the admin API were skipped: not a clean bill of health.
            f.add(
                Severity::Critical,
                "auth",
                r.node_id,
                e.clone(),
                CHECKLIST,
                "pass a token this node accepts (`chronik-server admin token --role viewer --config F`); \
                 every node needs the same [auth] key",
            );
        }
    }
    f.passed("reachability", CHECKLIST, "every node answers and is healthy");
}

fn membership_and_leader(up: &[&NodeReport], f: &mut Findings) {
    let controls: Vec<&&NodeReport> = up.iter().filter(|r| r.roles.iter().any(|x| x == "control")).collect();
    // Membership: every control node's own Raft view should list the same voters.
    let mut views: BTreeMap<Vec<u64>, Vec<u64>> = BTreeMap::new();
    for r in &controls {
        if let (Some(id), Some(m)) = (r.node_id, &r.members) {
            let mut voters: Vec<u64> = m.voters.iter().map(|v| v.node_id).collect();
            voters.sort_unstable();
            views.entry(voters).or_default().push(id);
        }
    }
    if views.len() > 1 {
        let text: Vec<String> = views.iter().map(|(v, nodes)| format!("nodes {nodes:?} see voters {v:?}")).collect();
        f.add(
            Severity::Critical,
            "membership",
            None,
            format!("control nodes disagree on the membership: {}", text.join("; ")),
            SPLIT_BRAIN,
            "find the node whose view differs, check its connectivity to the others; if it cannot rejoin, \
             stop it, clear its Raft state and restart it with seed_nodes set (guide: Split-Brain, Solution C)",
        );
    }
    f.passed("membership", CHECKLIST, "every control node lists the same voters");

    let mut claims = Vec::new();
    let mut named: BTreeMap<Option<u64>, Vec<(u64, u64)>> = BTreeMap::new();
    let max_term = up.iter().filter_map(|r| r.leader.as_ref().map(|l| l.term)).max().unwrap_or(0);
    for r in up {
        let (Some(id), Some(l)) = (r.node_id, &r.leader) else { continue };
        if l.is_leader {
            claims.push((id, l.term));
        }
        if r.roles.iter().any(|x| x == "control") {
            named.entry(l.leader_id).or_default().push((id, l.term));
        }
        if l.term < max_term && l.view == "raft" {
            f.add(
                Severity::Warning,
                "leader",
                Some(id),
                format!(
                    "node {id} is in term {} while the cluster is in term {max_term} (it names leader {:?})",
                    l.term, l.leader_id
                ),
                SPLIT_BRAIN,
                "a node stuck in an old term is cut off from the others: check its network path to the leader",
            );
        }
    }
    if claims.len() > 1 {
        f.add(
            Severity::Critical,
            "leader",
            None,
            format!("more than one node claims to lead the control plane: {claims:?} (node, term)"),
            SPLIT_BRAIN,
            "the one in the older term is stale; fix its network and it steps down (or stop it: guide Solution C)",
        );
    }
    if named.contains_key(&None) {
        let who: Vec<u64> = named[&None].iter().map(|(id, _)| *id).collect();
        f.add(
            Severity::Critical,
            "leader",
            None,
            format!("control nodes {who:?} know no leader"),
            ELECTION,
            "a majority of control nodes must reach each other; check that at least 2 of 3 are up and connected",
        );
    }
    let leaders: BTreeSet<u64> = named.keys().flatten().copied().collect();
    if leaders.len() > 1 {
        f.add(
            Severity::Critical,
            "leader",
            None,
            format!("control nodes name different leaders: {named:?}"),
            SPLIT_BRAIN,
            "compare `curl /admin/cluster/leader` on each node; a node naming an old leader is partitioned",
        );
    }
    f.passed("leader", CHECKLIST, "one control-plane leader, named by every control node");
}

fn raft_metrics(up: &[&NodeReport], answering: &BTreeSet<u64>, f: &mut Findings) {
    for r in up {
        for s in &r.metrics {
            let partition = s.labels.get("partition").cloned().unwrap_or_default();
            match s.name.as_str() {
                "chronik_raft_state" if s.value == 2.0 => f.add(
                    Severity::Warning,
                    "raft_metrics",
                    r.node_id,
                    format!("{partition} is holding an election on this node (chronik_raft_state = 2)"),
                    METRICS,
                    "one election is normal; if it persists see the guide's Issue 6",
                ),
                "chronik_raft_replication_lag_entries" | "chronik_raft_replication_lag_ms" => {
                    let ms = s.name.ends_with("_ms");
                    let (ok, alert) = if ms { (LAG_OK.1, LAG_ALERT.1) } else { (LAG_OK.0, LAG_ALERT.0) };
                    if s.value <= ok {
                        continue;
                    }
                    let follower = s.labels.get("node").cloned().unwrap_or_default();
                    let unit = if ms { "ms" } else { "entries" };
                    // A follower that is up and healthy but does not keep up: the path between
                    // it and its leader is the suspect.
                    let hint = if follower.parse().is_ok_and(|id: u64| answering.contains(&id)) {
                        "; the follower answers its own API and reports healthy, so suspect the network between the two \
                         (a partition, a firewall dropping Raft traffic on port 9093)"
                    } else {
                        ""
                    };
                    f.add(
                        if s.value > alert { Severity::Critical } else { Severity::Warning },
                        "replication",
                        follower.parse().ok(),
                        format!(
                            "follower node {follower} of {partition} is {} {unit} behind its leader (node {}){hint}",
                            s.value,
                            r.node_id.map(|i| i.to_string()).unwrap_or_default()
                        ),
                        LAG,
                        "check the follower's CPU, disk and network (is it paused or overloaded?); \
                         a follower behind the leader's log start is caught up by a snapshot: POST /admin/snapshot \
                         then POST /admin/compact on the leader",
                    );
                }
                _ => {}
            }
        }
    }
    f.passed("raft_metrics", METRICS, "no group stuck in an election");
    f.passed("replication", LAG, "every follower within 1,000 entries and 1 s of its leader");
}

fn partitions(up: &[&NodeReport], f: &mut Findings) {
    let Some(rows) = up.first().and_then(|r| r.partitions.as_ref()) else { return };
    for p in rows {
        let name = format!("{}-{}", p.topic, p.partition);
        if p.leader.is_none() {
            f.add(
                Severity::Critical,
                "partitions",
                None,
                format!("partition {name} has no leader (replicas {:?})", p.replicas),
                ELECTION,
                "a majority of its replicas must be up: check the data nodes it lists",
            );
        } else if p.isr.len() < p.replicas.len() {
            let out: Vec<u64> = p.replicas.iter().filter(|r| !p.isr.contains(r)).copied().collect();
            f.add(
                Severity::Warning,
                "partitions",
                out.first().copied(),
                format!("partition {name}: replicas {out:?} are out of sync (ISR {:?} of {:?})", p.isr, p.replicas),
                LAG,
                "the replica is down or lagging: check that node",
            );
        }
    }
    f.passed("partitions", CHECKLIST, "every partition has a leader and a full ISR");
}

fn disk(up: &[&NodeReport], f: &mut Findings) {
    for r in up {
        let Some(d) = r.info.as_ref().and_then(|i| i.disk.as_ref()) else { continue };
        if d.total_bytes == 0 {
            continue;
        }
        let free = d.free_bytes as f64 / d.total_bytes as f64;
        if free < DISK_WARN {
            f.add(
                if free < DISK_CRIT { Severity::Critical } else { Severity::Warning },
                "disk",
                r.node_id,
                format!(
                    "{} has {:.1}% free ({} MiB of {} MiB)",
                    d.path,
                    free * 100.0,
                    d.free_bytes >> 20,
                    d.total_bytes >> 20
                ),
                SNAPSHOT,
                "free space (snapshots need room for a second copy), shorten retention, or POST /admin/compact",
            );
        }
    }
    f.passed("disk", CHECKLIST, "every node has at least 20% of its disk free");
}

fn clocks(up: &[&NodeReport], f: &mut Findings) {
    let offsets: Vec<(u64, i64)> = up.iter().filter_map(|r| Some((r.node_id?, r.clock_offset_ms?))).collect();
    if offsets.len() < 2 {
        return;
    }
    let mut sorted: Vec<i64> = offsets.iter().map(|(_, o)| *o).collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    for (id, off) in offsets {
        let skew = off - median;
        if skew.abs() > SKEW_WARN_MS {
            f.add(
                if skew.abs() > SKEW_CRIT_MS { Severity::Critical } else { Severity::Warning },
                "clock",
                Some(id),
                format!("node {id}'s clock is {skew} ms off the other nodes'"),
                SPLIT_BRAIN,
                "sync clocks with NTP on that host (`chronyc tracking` / `timedatectl`)",
            );
        }
    }
    f.passed("clock", SPLIT_BRAIN, "clocks agree within 1 s");
}

fn config(up: &[&NodeReport], f: &mut Findings) {
    for r in up {
        for w in r.info.iter().flat_map(|i| i.config_warnings.iter()) {
            // The start let it through, but it is a misconfiguration to fix before trusting
            // the cluster's timing: critical, so scripts running the doctor stop on it.
            f.add(
                Severity::Critical,
                "config",
                r.node_id,
                w.clone(),
                ELECTION,
                "edit the node's config file (the message names the key), then `systemctl restart chronik`",
            );
        }
    }
    f.passed("config", CHECKLIST, "no risky config values");
}
