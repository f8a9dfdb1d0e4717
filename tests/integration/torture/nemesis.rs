//! The nemesis of a campaign: faults injected into the real processes of a cluster, each held
//! for a few seconds and healed, in an order drawn from the campaign's seed. The first round
//! runs every kind once, so even a short campaign exercises them all.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chronik_proto::control::{DecommissionNodeRequest, GetMetadataRequest, PartitionInfo};
use serde_json::json;

use super::history::{History, Op, Outcome};
use super::workload::TOPIC;
use crate::cluster::{ControlProc, ProcCluster};
use crate::faults::{DropInbound, free_bytes};
use crate::harness::http;

/// splitmix64: a small seeded generator, so a run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Kill,
    Pause,
    Isolate,
    IsolateLeader,
    ClockSkew,
    DiskFull,
    FsyncEio,
    TransferLeader,
    Membership,
}

pub const KINDS: [Kind; 9] = [
    Kind::Kill,
    Kind::Pause,
    Kind::Isolate,
    Kind::IsolateLeader,
    Kind::ClockSkew,
    Kind::DiskFull,
    Kind::FsyncEio,
    Kind::TransferLeader,
    Kind::Membership,
];

/// What the nemesis works on: the cluster's processes and the special data nodes.
pub struct Target {
    pub cluster: ProcCluster,
    pub gateways: Vec<ControlProc>,
    /// A data node whose data directory is a small tmpfs.
    pub disk_node: u64,
    pub disk_dir: PathBuf,
    /// A data node running with the fsync EIO shim, and the shim's trigger file.
    pub eio_node: u64,
    pub eio_trigger: PathBuf,
    /// libfaketime's library.
    pub faketime: &'static str,
}

impl Target {
    fn ids(&self) -> Vec<u64> {
        let c = &self.cluster;
        c.controls().chain(&c.data).chain(&self.gateways).map(|p| p.id).collect()
    }

    fn node(&mut self, id: u64) -> &mut ControlProc {
        let c = &mut self.cluster;
        std::iter::once(&mut c.control)
            .chain(c.more_controls.iter_mut())
            .chain(c.data.iter_mut())
            .chain(self.gateways.iter_mut())
            .find(|p| p.id == id)
            .expect("a node of the cluster")
    }

    fn data_ids(&self) -> Vec<u64> {
        self.cluster.data.iter().map(|p| p.id).collect()
    }

    async fn partitions(&self) -> Vec<PartitionInfo> {
        let ctl = self.cluster.control_client();
        let md = ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await;
        md.ok().and_then(|m| m.topics.into_iter().find(|t| t.name == TOPIC)).map(|t| t.partitions).unwrap_or_default()
    }
}

/// Runs faults until `until`; returns how many of each kind ran.
pub async fn run(t: &mut Target, rng: &mut Rng, history: &History, until: Instant) -> Vec<(Kind, usize)> {
    let mut counts: Vec<(Kind, usize)> = KINDS.iter().map(|k| (*k, 0)).collect();
    let mut first_round: Vec<Kind> = KINDS.to_vec();
    // Seeded shuffle of the first round.
    for i in (1..first_round.len()).rev() {
        first_round.swap(i, rng.below(i + 1));
    }
    let mut queue = first_round.into_iter();
    while Instant::now() < until {
        let kind = queue.next().unwrap_or_else(|| KINDS[rng.below(KINDS.len())]);
        let hold = Duration::from_millis(3000 + rng.below(5000) as u64);
        let what = inject(t, rng, kind, hold, history).await;
        if let Some(c) = counts.iter_mut().find(|(k, _)| *k == kind) {
            c.1 += 1;
        }
        eprintln!("torture: {:>6.1} s  healed: {what}", history_secs(history));
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    counts
}

fn history_secs(history: &History) -> f64 {
    history.events().last().map(|e| e.at_ms as f64 / 1000.0).unwrap_or(0.0)
}

/// Injects one fault of `kind`, holds it for `hold`, heals it; returns what it was.
async fn inject(t: &mut Target, rng: &mut Rng, kind: Kind, hold: Duration, history: &History) -> String {
    let ids = t.ids();
    let data = t.data_ids();
    // The node it hits, for the kinds that pick one (one draw, as the seed replays it).
    let victim = match kind {
        Kind::Kill | Kind::Pause => ids[rng.below(ids.len())],
        Kind::Isolate | Kind::ClockSkew | Kind::Membership => data[rng.below(data.len())],
        _ => 0,
    };
    let what = match kind {
        Kind::Kill => format!("kill -9 of node {victim}"),
        Kind::Pause => format!("SIGSTOP of node {victim}"),
        Kind::Isolate => format!("data node {victim} cut off (its Raft port drops everything)"),
        Kind::IsolateLeader => "the leader of a partition cut off".to_string(),
        Kind::ClockSkew => format!("data node {victim} restarted with its clock 30 s ahead"),
        Kind::DiskFull => format!("the disk of data node {} full", t.disk_node),
        Kind::FsyncEio => format!("fsync failing with EIO on data node {}", t.eio_node),
        Kind::TransferLeader => "a partition's leadership transferred".to_string(),
        Kind::Membership => format!("data node {victim} decommissioned, then taking replicas again"),
    };
    history.record("nemesis", Outcome::Invoke, Op::Nemesis { what: what.clone() });
    eprintln!("torture: {:>6.1} s  fault: {what} for {hold:?}", history_secs(history));
    let detail = match kind {
        Kind::Kill => {
            let n = t.node(victim);
            n.kill9();
            tokio::time::sleep(hold).await;
            n.restart();
            String::new()
        }
        Kind::Pause => {
            let n = t.node(victim);
            n.pause();
            tokio::time::sleep(hold.min(Duration::from_secs(6))).await;
            n.resume();
            String::new()
        }
        Kind::Isolate => {
            let port = t.node(victim).port;
            let rule = DropInbound::new(port);
            tokio::time::sleep(hold).await;
            drop(rule);
            String::new()
        }
        Kind::IsolateLeader => {
            let parts = t.partitions().await;
            let leader = parts.get(rng.below(parts.len().max(1))).and_then(|p| p.leader);
            match leader {
                Some(l) => {
                    let port = t.node(l).port;
                    let rule = DropInbound::new(port);
                    tokio::time::sleep(hold).await;
                    drop(rule);
                    format!(" (node {l})")
                }
                None => " (no leader known: skipped)".to_string(),
            }
        }
        Kind::ClockSkew => {
            let faketime = t.faketime;
            let n = t.node(victim);
            let normal = n.env.clone();
            n.kill9();
            n.env.extend([("LD_PRELOAD", faketime), ("FAKETIME", "+30s"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")]);
            // The EIO node already preloads its shim: both libraries, then.
            if let Some(shim) = normal.iter().find(|(k, _)| *k == "LD_PRELOAD").map(|(_, v)| *v) {
                let both: &'static str = Box::leak(format!("{faketime} {shim}").into_boxed_str());
                n.env.retain(|(k, _)| *k != "LD_PRELOAD");
                n.env.push(("LD_PRELOAD", both));
            }
            n.restart();
            tokio::time::sleep(hold).await;
            n.kill9();
            n.env = normal;
            n.restart();
            String::new()
        }
        Kind::DiskFull => {
            let ballast = t.disk_dir.join("ballast");
            let fill = free_bytes(&t.disk_dir).saturating_sub(16 << 20);
            let ok = Command::new("fallocate").args(["-l", &fill.to_string()]).arg(&ballast).status();
            tokio::time::sleep(hold).await;
            let _ = std::fs::remove_file(&ballast);
            format!(" ({} MiB ballast, fallocate {:?})", fill >> 20, ok.map(|s| s.success()))
        }
        Kind::FsyncEio => {
            std::fs::write(&t.eio_trigger, b"").expect("EIO trigger");
            tokio::time::sleep(hold).await;
            let _ = std::fs::remove_file(&t.eio_trigger);
            // A fail-stopped node stays stopped until it is restarted (by an operator).
            let n = t.node(t.eio_node);
            n.kill9();
            n.restart();
            String::new()
        }
        Kind::TransferLeader => {
            let parts = t.partitions().await;
            let Some(p) = parts.get(rng.below(parts.len().max(1))) else { return what };
            let Some(leader) = p.leader else { return what };
            let others: Vec<u64> = p.replicas.iter().copied().filter(|r| *r != leader).collect();
            if others.is_empty() {
                return what;
            }
            let target = others[rng.below(others.len())];
            let token = t.cluster.token(chronik_shared::auth::Role::Operator);
            let body = json!({"target_node_id": target, "topic": TOPIC, "partition": p.partition}).to_string();
            let gw = t.gateways[0].http;
            let (status, resp) = http(gw, "POST", "/admin/cluster/transfer-leader", Some(&token), Some(&body)).await;
            tokio::time::sleep(hold).await;
            format!(" ({TOPIC}-{} from node {leader} to node {target}: HTTP {status} {})", p.partition, resp.trim())
        }
        Kind::Membership => {
            let id = victim;
            let ctl = t.cluster.control_client();
            let deadline = Instant::now() + hold + Duration::from_secs(60);
            let mut left = String::from("not finished");
            while Instant::now() < deadline {
                let req = DecommissionNodeRequest { node_id: id, cancel: false };
                if let Ok(r) = ctl.call(|mut c| async move { c.decommission_node(req).await }).await {
                    left = format!("{} replica(s) left, {} move(s) in flight", r.remaining_replicas, r.moves_in_flight);
                    if r.remaining_replicas == 0 && r.moves_in_flight == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let req = DecommissionNodeRequest { node_id: id, cancel: true };
            let _ = ctl.call(|mut c| async move { c.decommission_node(req).await }).await;
            format!(" ({left} when cancelled)")
        }
    };
    let what = format!("{what}{detail}");
    history.record("nemesis", Outcome::Ok, Op::Nemesis { what: what.clone() });
    what
}
