//! Every HTTP command of the operations guide, with a bearer token, against real processes:
//! 3 control nodes, 3 data nodes and a gateway. Checks status codes and JSON shapes, that every
//! node agrees on membership and leader, that transfer-leader (of `__meta` and of a data
//! partition) and add-learner / promote / remove take effect, that refused requests change
//! nothing, and that profiling and the OpenAPI document answer.

mod cluster;
mod harness;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chronik_shared::auth::Role;
use cluster::*;
use harness::{free_port, http};
use serde_json::{Value, json};

const TOPIC: &str = "guide";

async fn call(addr: SocketAddr, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(addr, method, path, Some(token), body.as_deref()).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// `GET path` until `ok` holds for a 200 answer; panics with the last answer after `timeout`.
async fn until(addr: SocketAddr, path: &str, token: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, v) = call(addr, "GET", path, token, None).await;
        if status == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "GET {path} on {addr}: condition never held; last answer {status} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array().map(|a| a.iter().filter_map(|m| m["node_id"].as_u64().or(m.as_u64())).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guide_http_command_answers_on_every_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = ProcCluster::start_full(dir.path(), 3, 3, 3000, |_| {}).await;
    let gateway =
        ControlProc::start_role_env(dir.path(), &cluster.config(50), "gateway", vec![("CHRONIK_CPU_PROFILE", "true")]);
    let viewer = cluster.token(Role::Viewer);
    let operator = cluster.token(Role::Operator);
    let admin = cluster.token(Role::Admin);
    let controls: Vec<&ControlProc> = cluster.controls().collect();
    let everyone: Vec<&ControlProc> = controls.iter().copied().chain(cluster.data.iter()).chain([&gateway]).collect();
    let control_ids: BTreeSet<u64> = BTreeSet::from([1, 101, 102]);
    let data_ids: BTreeSet<u64> = BTreeSet::from([2, 3, 4]);

    // Quick Diagnostic Checklist: health, members, leader, metrics, on every process.
    for node in &everyone {
        let (status, body) = http(node.http, "GET", "/health", None, None).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut answer = (status, body);
        while answer.0 != 200 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = http(node.http, "GET", "/health", None, None).await;
        }
        let v: Value =
            serde_json::from_str(&answer.1).unwrap_or_else(|_| panic!("health of node {}: {answer:?}", node.id));
        assert_eq!(answer.0, 200, "node {} unhealthy: {v}", node.id);
        assert_eq!(v["status"], "healthy");
        assert_eq!(v["node_id"], node.id);
        assert_eq!(v["roles"], json!([node.role]));
        assert!(v["checks"].as_array().is_some_and(|c| !c.is_empty()), "health lists its checks: {v}");
    }
    let mut leaders = BTreeSet::new();
    for node in &everyone {
        let m = until(node.http, "/admin/cluster/members", &viewer, Duration::from_secs(30), |m| {
            ids(&m["data_nodes"]) == data_ids && ids(&m["gateways"]).contains(&50) && m["leader"].is_u64()
        })
        .await;
        assert_eq!(ids(&m["voters"]), control_ids, "node {} members: {m}", node.id);
        assert_eq!(m["node_id"], node.id);
        assert_eq!(m["view"], if node.role == "control" { "raft" } else { "control-plane" });
        let l =
            until(node.http, "/admin/cluster/leader", &viewer, Duration::from_secs(10), |l| l["leader_id"].is_u64())
                .await;
        assert_eq!(l["is_leader"], l["leader_id"] == node.id);
        assert!(l["term"].as_u64().is_some_and(|t| t > 0));
        leaders.insert(l["leader_id"].as_u64().unwrap_or(0));
        let (status, text) = http(node.http, "GET", "/metrics", None, None).await;
        assert_eq!(status, 200);
        assert!(text.contains("chronik_raft_"), "node {} /metrics has chronik_raft families", node.id);
    }
    assert_eq!(leaders.len(), 1, "every node names the same control-plane leader: {leaders:?}");

    // Topics through the gateway: create (operator), list, describe.
    let create = json!({"name": TOPIC, "partitions": 3, "replication_factor": 3});
    let (status, t) = call(gateway.http, "POST", "/admin/topics", &operator, Some(create.clone())).await;
    assert_eq!(status, 200, "create topic: {t}");
    assert_eq!(t["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(t["topic_id"].as_str().map(str::len), Some(32));
    let (status, dup) = call(gateway.http, "POST", "/admin/topics", &operator, Some(create)).await;
    assert_eq!((status, dup["code"].as_str()), (409, Some("TopicAlreadyExists")), "{dup}");
    let (status, list) = call(cluster.data[0].http, "GET", "/admin/topics", &viewer, None).await;
    assert_eq!(status, 200);
    assert!(list.as_array().is_some_and(|l| l.iter().any(|t| t["name"] == TOPIC)), "{list}");
    let (status, missing) = call(gateway.http, "GET", "/admin/topics/no-such-topic", &viewer, None).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("UnknownTopicOrPartition")));

    // Partitions: __meta and every data partition, with leaders and full ISRs.
    let rows = until(cluster.control.http, "/admin/cluster/partitions", &viewer, Duration::from_secs(30), |rows| {
        let Some(rows) = rows.as_array() else { return false };
        let meta = rows.iter().find(|r| r["topic"] == "__meta");
        let data: Vec<&Value> = rows.iter().filter(|r| r["topic"] == TOPIC).collect();
        meta.is_some_and(|m| ids(&m["isr"]) == control_ids)
            && data.len() == 3
            && data.iter().all(|r| r["leader"].is_u64() && ids(&r["isr"]).len() == 3)
    })
    .await;
    let meta = rows.as_array().and_then(|r| r.iter().find(|r| r["topic"] == "__meta")).cloned().unwrap_or_default();
    assert_eq!(meta["partition"], 0);
    assert_eq!(ids(&meta["replicas"]), control_ids);
    for row in rows.as_array().into_iter().flatten().filter(|r| r["topic"] == TOPIC) {
        assert_eq!(ids(&row["replicas"]), data_ids, "{row}");
    }

    // Node info: clocks and the Raft groups each node hosts.
    for node in &everyone {
        let (status, info) = call(node.http, "GET", "/admin/node/info", &viewer, None).await;
        assert_eq!(status, 200);
        assert_eq!(info["node_id"], node.id);
        assert!(info["now_ms"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{info}");
        let groups: BTreeSet<String> = info["raft_groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["group"].as_str().map(String::from))
            .collect();
        match node.role {
            "control" => assert_eq!(groups, BTreeSet::from(["__meta".to_string()])),
            "data" => assert_eq!(groups, (0..3).map(|p| format!("{TOPIC}-{p}")).collect()),
            _ => assert!(groups.is_empty()),
        }
    }

    // Snapshot, snapshot info, compaction of __meta (node 1) and of a data node's partitions.
    let (status, snap) = call(cluster.control.http, "POST", "/admin/snapshot", &operator, None).await;
    assert_eq!(status, 200, "snapshot: {snap}");
    let last_index = snap["groups"][0]["last_index"].as_u64().expect("snapshot index");
    assert_eq!(snap["groups"][0]["group"], "__meta");
    assert!(last_index > 0);
    let (status, info) = call(cluster.control.http, "GET", "/admin/snapshot/info", &viewer, None).await;
    assert_eq!(status, 200);
    assert_eq!(info["groups"][0]["last_index"].as_u64(), Some(last_index));
    let (status, compacted) = call(cluster.control.http, "POST", "/admin/compact", &operator, None).await;
    assert_eq!(status, 200, "compact: {compacted}");
    let (status, data_snap) =
        call(cluster.data[0].http, "POST", "/admin/snapshot", &operator, Some(json!({"topic": TOPIC, "partition": 1})))
            .await;
    assert_eq!(status, 200, "{data_snap}");
    assert_eq!(data_snap["groups"][0]["group"], format!("{TOPIC}-1"));
    let (status, not_here) = call(gateway.http, "POST", "/admin/snapshot", &operator, None).await;
    assert_eq!((status, not_here["code"].as_str()), (409, Some("NotAvailableHere")), "{not_here}");

    // Emergency Leader Transfer of __meta, sent to node 1 whoever leads.
    let leader = *leaders.iter().next().expect("a leader");
    let target = *control_ids.iter().find(|id| **id != leader).expect("another voter");
    let (status, moved) = call(
        cluster.control.http,
        "POST",
        "/admin/cluster/transfer-leader",
        &operator,
        Some(json!({"target_node_id": target})),
    )
    .await;
    assert_eq!(status, 200, "transfer-leader: {moved}");
    assert_eq!(moved["leader"], target);
    let target_http = controls.iter().find(|c| c.id == target).map(|c| c.http).expect("target");
    until(target_http, "/admin/cluster/leader", &viewer, Duration::from_secs(10), |l| l["is_leader"] == true).await;

    // ... and of a data partition, through the gateway.
    let row0 = rows.as_array().and_then(|r| r.iter().find(|r| r["topic"] == TOPIC && r["partition"] == 0)).cloned();
    let p_leader = row0.and_then(|r| r["leader"].as_u64()).expect("partition leader");
    let p_target = *data_ids.iter().find(|id| **id != p_leader).expect("another replica");
    let (status, moved) = call(
        gateway.http,
        "POST",
        "/admin/cluster/transfer-leader",
        &operator,
        Some(json!({"target_node_id": p_target, "topic": TOPIC, "partition": 0})),
    )
    .await;
    assert_eq!(status, 200, "partition transfer-leader: {moved}");
    assert_eq!((moved["group"].as_str(), moved["leader"].as_u64()), (Some("guide-0"), Some(p_target)));

    // Force Quorum's last step: add a learner, then promote and remove it. Node 103 starts
    // with an unreachable seed, so it joins only because the API added it.
    let port = free_port();
    let mut cfg = control_config(dir.path(), 103, port, vec![seed(1, free_port())]);
    fast_failover(&mut cfg, 3000);
    with_auth(dir.path(), &mut cfg);
    let learner = ControlProc::start_role(dir.path(), &cfg, "control");
    let addr = format!("127.0.0.1:{port}");
    // Sent without a Content-Type of JSON, as the guide's `curl -d` does.
    let (status, m) = call(
        cluster.control.http,
        "POST",
        "/admin/cluster/add-learner",
        &admin,
        Some(json!({"node_id": 103, "addr": addr})),
    )
    .await;
    assert_eq!(status, 200, "add-learner: {m}");
    assert!(ids(&m["learners"]).contains(&103), "{m}");
    until(learner.http, "/admin/cluster/members", &viewer, Duration::from_secs(20), |m| {
        ids(&m["learners"]).contains(&103) && m["leader"] == target
    })
    .await;
    let (status, m) =
        call(cluster.control.http, "POST", "/admin/cluster/promote", &admin, Some(json!({"node_id": 103}))).await;
    assert_eq!(status, 200, "promote: {m}");
    assert!(ids(&m["voters"]).contains(&103), "{m}");
    let (status, m) =
        call(cluster.control.http, "POST", "/admin/cluster/remove-member", &admin, Some(json!({"node_id": 103}))).await;
    assert_eq!(status, 200, "remove-member: {m}");
    assert_eq!(ids(&m["voters"]), control_ids, "{m}");
    drop(learner);

    // Refusals change nothing.
    let (status, _) = http(cluster.control.http, "GET", "/admin/cluster/members", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = http(cluster.control.http, "GET", "/admin/cluster/members", Some("not.a.token"), None).await;
    assert_eq!(status, 401);
    let body = json!({"name": "refused", "partitions": 1, "replication_factor": 1}).to_string();
    let (status, _) = http(gateway.http, "POST", "/admin/topics", Some(&viewer), Some(&body)).await;
    assert_eq!(status, 403);
    let (status, _) = call(gateway.http, "DELETE", &format!("/admin/topics/{TOPIC}"), &operator, None).await;
    assert_eq!(status, 403, "deleting a topic needs admin");
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(1 << 21));
    let (status, _) = http(gateway.http, "POST", "/admin/topics", Some(&admin), Some(&huge)).await;
    assert_eq!(status, 413);
    let (status, _) = call(gateway.http, "GET", "/admin/topics/refused", &viewer, None).await;
    assert_eq!(status, 404, "a refused create made no topic");
    let (status, still) = call(gateway.http, "GET", &format!("/admin/topics/{TOPIC}"), &viewer, None).await;
    assert_eq!((status, still["name"].as_str()), (200, Some(TOPIC)));

    // Performance Profiling (the gateway runs with CHRONIK_CPU_PROFILE=true; node 1 without).
    // Samples come with CPU time (99 Hz): a gateway starved on a loaded machine may have none
    // yet (409), and rendering the running profile is itself work that brings some.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http(gateway.http, "GET", "/admin/profile/flamegraph", Some(&operator), None).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 409, "{body}");
        assert!(Instant::now() < deadline, "the gateway's profile never got a sample: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, stopped) = call(gateway.http, "POST", "/admin/profile/stop", &operator, None).await;
    assert_eq!(status, 200, "profile stop: {stopped}");
    assert_eq!(stopped["running"], false);
    let (status, svg) = http(gateway.http, "GET", "/admin/profile/flamegraph", Some(&operator), None).await;
    assert_eq!(status, 200);
    assert!(svg.contains("<svg"), "flamegraph is SVG");
    let (status, off) = call(cluster.control.http, "POST", "/admin/profile/stop", &operator, None).await;
    assert_eq!(status, 409);
    assert!(off["error"].as_str().is_some_and(|e| e.contains("CHRONIK_CPU_PROFILE")), "{off}");

    // The OpenAPI document lists what is served.
    let (status, doc) = call(gateway.http, "GET", "/admin/openapi.json", &viewer, None).await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/admin/cluster/transfer-leader", "post"),
        ("/admin/cluster/add-learner", "post"),
        ("/admin/topics/{name}", "delete"),
        ("/health", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "openapi lacks {method} {path}");
    }

    // Topic deletion (admin).
    let (status, deleted) = call(gateway.http, "DELETE", &format!("/admin/topics/{TOPIC}"), &admin, None).await;
    assert_eq!(status, 200, "{deleted}");
    let (status, _) = call(gateway.http, "GET", &format!("/admin/topics/{TOPIC}"), &viewer, None).await;
    assert_eq!(status, 404);
}
