//! Consumer groups against a standalone node with librdkafka: balanced, disjoint assignments
//! under each client-side assignor (range, roundrobin, cooperative-sticky), rebalancing when a
//! member leaves, resuming exactly after the committed offsets, static membership, the lag
//! gauge, and committed offsets surviving a restart.

mod cluster;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use harness::*;

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let res = admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    for r in res {
        r.expect("topic created");
    }
}

/// Produces `n` messages round-robin over `partitions` (value = "i"), all acknowledged.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, n: usize) {
    let producer: FutureProducer = producer_config(bootstrap).create().expect("producer");
    let mut pending = Vec::new();
    for i in 0..n {
        let value = i.to_string();
        let rec = FutureRecord::<(), _>::to(topic).partition((i as i32) % partitions).payload(&value);
        pending.push(producer.send_result(rec).expect("queued"));
    }
    for p in pending {
        p.await.expect("delivery").expect("acknowledged");
    }
}

fn group_consumer(bootstrap: &str, group: &str, strategy: &str) -> BaseConsumer {
    consumer_config(bootstrap)
        .set("group.id", group)
        .set("partition.assignment.strategy", strategy)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("consumer")
}

fn partitions_of(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment().expect("assignment").elements().iter().map(|e| e.partition()).collect()
}

fn partitions_of_ctx<C: ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment().expect("assignment").elements().iter().map(|e| e.partition()).collect()
}

/// Polls every consumer until their assignments are disjoint and cover `0..partitions`, each
/// consumer holding at least one partition; panics after `timeout`.
fn wait_balanced(consumers: &[&BaseConsumer], partitions: i32, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        for c in consumers {
            let _ = c.poll(Duration::from_millis(50));
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| partitions_of(c)).collect();
        let total: usize = sets.iter().map(|s| s.len()).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if total == partitions as usize && union == (0..partitions).collect() && sets.iter().all(|s| !s.is_empty()) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: assignments never became disjoint and complete: {sets:?}");
    }
}

/// Three consumers share six partitions; one leaves; the two others take over everything
/// within the session timeout.
fn three_then_two(bootstrap: &str, topic: &str, group: &str, strategy: &str) {
    let a = group_consumer(bootstrap, group, strategy);
    let b = group_consumer(bootstrap, group, strategy);
    let c = group_consumer(bootstrap, group, strategy);
    for x in [&a, &b, &c] {
        x.subscribe(&[topic]).expect("subscribe");
    }
    wait_balanced(&[&a, &b, &c], 6, Duration::from_secs(60), strategy);
    // DescribeGroups (through librdkafka's group list) sees the three members, their client
    // ids and hosts, the chosen assignor and a stable group.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for x in [&a, &b, &c] {
            let _ = x.poll(Duration::from_millis(20));
        }
        let list = a.fetch_group_list(Some(group), Duration::from_secs(5)).expect("group list");
        let g = list.groups().iter().find(|g| g.name() == group).expect("the group is listed");
        if g.state() == "Stable" {
            assert_eq!((g.protocol_type(), g.protocol(), g.members().len()), ("consumer", strategy, 3));
            assert!(g.members().iter().all(|m| m.client_id() == "rdkafka" && m.client_host() == "/127.0.0.1"));
            assert!(g.members().iter().all(|m| m.assignment().is_some_and(|a| !a.is_empty())));
            break;
        }
        assert!(Instant::now() < deadline, "{strategy}: the group is {} rather than Stable", g.state());
    }
    let left = Instant::now();
    drop(c); // closes: LeaveGroup
    wait_balanced(&[&a, &b], 6, Duration::from_secs(6), strategy);
    eprintln!("{strategy}: survivors covered every partition {:?} after the leave", left.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_assignor_balances_and_survivors_take_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    create_topic(&bootstrap, "balanced", 6).await;
    produce(&bootstrap, "balanced", 6, 60).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        for strategy in ["range", "roundrobin", "cooperative-sticky"] {
            three_then_two(&b, "balanced", &format!("g-{strategy}"), strategy);
        }
    })
    .await
    .expect("consumers ran");
    node.shutdown().await;
}

/// Consumes until `n` messages arrived; returns (partition, offset, value) in arrival order.
fn consume(c: &BaseConsumer, n: usize, timeout: Duration) -> Vec<(i32, i64, String)> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} messages arrived", got.len());
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8");
            got.push((m.partition(), m.offset(), value));
        }
    }
    got
}

fn committed(c: &BaseConsumer, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .expect("OffsetFetch")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replacement_resumes_after_the_committed_offsets_and_lag_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    create_topic(&bootstrap, "resume", 3).await;
    produce(&bootstrap, "resume", 3, 300).await;
    let b = bootstrap.clone();
    let (first, committed_by_first) = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "resumers", "range");
        c.subscribe(&["resume"]).expect("subscribe");
        let got = consume(&c, 120, Duration::from_secs(60));
        // Commit exactly what was consumed (the next offset to read), not the fetch position.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o, _) in &got {
            let e = next.entry(*p).or_default();
            *e = (*e).max(o + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset("resume", *p, Offset::Offset(*o)).expect("tpl");
        }
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        assert_eq!(committed(&c, "resume", 3), next, "OffsetFetch returns what was committed");
        (got, next)
    })
    .await
    .expect("first consumer");

    // The lag gauge: 100 messages per partition minus the committed offset.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lags: BTreeMap<i32, i64> = committed_by_first
            .keys()
            .map(|p| {
                let g =
                    chronik_shared::metrics::CONSUMER_LAG.with_label_values(&["resumers", "resume", &p.to_string()]);
                (*p, g.get())
            })
            .collect();
        let want: BTreeMap<i32, i64> = committed_by_first.iter().map(|(p, o)| (*p, 100 - o)).collect();
        if lags == want {
            break;
        }
        assert!(Instant::now() < deadline, "chronik_consumer_lag is {lags:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let b = bootstrap.clone();
    let expected_rest = 300 - first.len();
    let second = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "resumers", "range");
        c.subscribe(&["resume"]).expect("subscribe");
        consume(&c, expected_rest, Duration::from_secs(60))
    })
    .await
    .expect("second consumer");

    // The replacement starts exactly at each committed offset and nothing is read twice.
    for (p, start) in &committed_by_first {
        let first_seen = second.iter().filter(|(q, _, _)| q == p).map(|(_, o, _)| *o).min();
        assert_eq!(first_seen.or(Some(*start)), Some(*start), "partition {p} resumed elsewhere");
    }
    let all: BTreeSet<String> = first.iter().chain(second.iter()).map(|(_, _, v)| v.clone()).collect();
    assert_eq!(all.len(), 300, "every message exactly once across both consumers");
    assert_eq!(first.len() + second.len(), 300);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    create_topic(&bootstrap, "durable", 2).await;
    produce(&bootstrap, "durable", 2, 20).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "durable-group", "range");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("durable", 0, Offset::Offset(7)).expect("tpl");
        tpl.add_partition_offset("durable", 1, Offset::Offset(3)).expect("tpl");
        // A commit outside any generation (the consumer never joined): Kafka allows it for
        // a group without members.
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    })
    .await
    .expect("commit");
    node.shutdown().await;

    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone restarts");
    let b = node.kafka_addr.to_string();
    let after = tokio::task::spawn_blocking(move || {
        let c = group_consumer(&b, "durable-group", "range");
        committed(&c, "durable", 2)
    })
    .await
    .expect("fetch");
    assert_eq!(after, BTreeMap::from([(0, 7), (1, 3)]));
    node.shutdown().await;
}

/// Counts the rebalances a consumer goes through.
#[derive(Clone, Default)]
struct Rebalances(Arc<AtomicUsize>);

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_member_coming_back_keeps_its_partitions_without_a_rebalance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = chronik_server::Standalone::start(standalone_config(dir.path())).await.expect("standalone starts");
    let bootstrap = node.kafka_addr.to_string();
    create_topic(&bootstrap, "statics", 4).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let static_consumer = |id: &str| -> BaseConsumer {
            consumer_config(&b)
                .set("group.id", "statics")
                .set("group.instance.id", id)
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "300")
                .create()
                .expect("consumer")
        };
        let a = static_consumer("a");
        let rebalances = Rebalances::default();
        let s: BaseConsumer<Rebalances> = consumer_config(&b)
            .set("group.id", "statics")
            .set("group.instance.id", "b")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "300")
            .create_with_context(rebalances.clone())
            .expect("consumer");
        a.subscribe(&["statics"]).expect("subscribe");
        s.subscribe(&["statics"]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(60);
        while partitions_of(&a).len() + partitions_of_ctx(&s).len() != 4
            || partitions_of(&a).is_empty()
            || partitions_of_ctx(&s).is_empty()
        {
            assert!(Instant::now() < deadline, "the two static members never shared the partitions");
            let _ = a.poll(Duration::from_millis(50));
            let _ = s.poll(Duration::from_millis(50));
        }
        let before_a = partitions_of(&a);
        let before_b = partitions_of_ctx(&s);
        let seen = rebalances.0.load(Ordering::SeqCst);
        // A static member does not leave the group when it closes (KIP-345).
        drop(a);
        let a2 = static_consumer("a");
        a2.subscribe(&["statics"]).expect("subscribe");
        let deadline = Instant::now() + Duration::from_secs(8);
        while partitions_of(&a2) != before_a {
            assert!(Instant::now() < deadline, "the returning static member did not get {before_a:?} back");
            let _ = a2.poll(Duration::from_millis(50));
            let _ = s.poll(Duration::from_millis(50));
        }
        // A few more heartbeats of the other member: no rebalance reaches it.
        for _ in 0..20 {
            let _ = a2.poll(Duration::from_millis(50));
            let _ = s.poll(Duration::from_millis(50));
        }
        assert_eq!(partitions_of_ctx(&s), before_b);
        assert_eq!(rebalances.0.load(Ordering::SeqCst), seen, "the other member went through a rebalance");
    })
    .await
    .expect("consumers ran");
    node.shutdown().await;
}

/// Three control processes, a data node and a gateway; two group members consume and commit
/// every 100 ms while the control-plane leader (the group coordinator) is killed with -9.
/// The same consumers carry on after the election, and no committed offset goes backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_control_leader_keeps_consumers_going_and_commits_monotonic() {
    use chronik_proto::client::ControlClient;
    use chronik_proto::control::GetMetadataRequest;
    use cluster::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    let dir = tempfile::tempdir().expect("tempdir");
    let tune = |cfg: &mut chronik_shared::config::ChronikConfig| {
        cfg.cluster.raft.election_timeout_ms = 300;
        cfg.cluster.raft.heartbeat_interval_ms = 30;
        cfg.cluster.heartbeat.interval_ms = 200;
        cfg.cluster.heartbeat.node_timeout_ms = 3000;
    };
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut controls = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = i as u64 + 1;
        let seeds = if id == 1 { vec![] } else { vec![seed(1, ports[0])] };
        let mut cfg = control_config(dir.path(), id, *port, seeds);
        tune(&mut cfg);
        controls.push(ControlProc::start(dir.path(), &cfg));
    }
    wait_views(&ports, Duration::from_secs(30), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let seeds: Vec<_> = ports.iter().enumerate().map(|(i, p)| seed(i as u64 + 1, *p)).collect();
    let mut dcfg = control_config(dir.path(), 10, free_port(), seeds.clone());
    tune(&mut dcfg);
    let _data = ControlProc::start_role(dir.path(), &dcfg, "data");
    let mut gcfg = control_config(dir.path(), 11, free_port(), seeds);
    tune(&mut gcfg);
    let kafka = gcfg.listeners.kafka.to_string();
    let _gateway = ControlProc::start_role(dir.path(), &gcfg, "gateway");
    let ctl = ControlClient::new(ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(), Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = ctl.call(|mut c| async move { c.get_metadata(GetMetadataRequest::default()).await }).await;
        if md.is_ok_and(|md| md.data_nodes.iter().any(|n| n.alive) && !md.gateways.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_topic(&kafka, "failover", 4).await;

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (kafka, stop) = (kafka.clone(), stop.clone());
        tokio::spawn(async move {
            let p: FutureProducer = producer_config(&kafka).create().expect("producer");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let v = i.to_string();
                let _ = p.send(FutureRecord::<(), _>::to("failover").payload(&v), Duration::from_secs(30)).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let consumed = Arc::new(AtomicUsize::new(0));
    let backwards: Arc<Mutex<Vec<String>>> = Arc::default();
    let highest: Arc<Mutex<BTreeMap<i32, i64>>> = Arc::default();
    let mut members = Vec::new();
    for _ in 0..2 {
        let (kafka, stop, consumed) = (kafka.clone(), stop.clone(), consumed.clone());
        members.push(std::thread::spawn(move || {
            let c = group_consumer(&kafka, "failover-group", "range");
            c.subscribe(&["failover"]).expect("subscribe");
            let mut last_commit = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                    consumed.fetch_add(1, Ordering::SeqCst);
                }
                if last_commit.elapsed() >= Duration::from_millis(100) {
                    // Failures while the coordinator moves are expected; the next one retries.
                    let _ = c.commit_consumer_state(CommitMode::Sync);
                    last_commit = Instant::now();
                }
            }
        }));
    }
    // Watches the group's committed offsets (OffsetFetch) for anything going backwards.
    let watcher = {
        let (kafka, stop, backwards, highest) = (kafka.clone(), stop.clone(), backwards.clone(), highest.clone());
        std::thread::spawn(move || {
            let c = group_consumer(&kafka, "failover-group", "range");
            while !stop.load(Ordering::SeqCst) {
                let mut tpl = TopicPartitionList::new();
                for p in 0..4 {
                    tpl.add_partition("failover", p);
                }
                if let Ok(now) = c.committed_offsets(tpl, Duration::from_secs(2)) {
                    let mut high = highest.lock().unwrap_or_else(|p| p.into_inner());
                    for e in now.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            let h = high.entry(e.partition()).or_insert(o);
                            if o < *h {
                                backwards.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                                    "partition {} went from {} back to {o}",
                                    e.partition(),
                                    *h
                                ));
                            }
                            *h = (*h).max(o);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Steady consumption first.
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed.load(Ordering::SeqCst) < 200 || highest.lock().map(|h| h.len()).unwrap_or(0) < 4 {
        assert!(Instant::now() < deadline, "the group never reached steady consumption");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = wait_views(&ports, Duration::from_secs(10), |v| agreed(v, &[1, 2, 3]).is_some()).await;
    let leader = agreed(&leader, &[1, 2, 3]).expect("a leader");
    let before_kill = consumed.load(Ordering::SeqCst);
    let committed_before = highest.lock().map(|h| h.clone()).unwrap_or_default();
    controls[(leader - 1) as usize].kill9();
    let killed = Instant::now();

    // The same consumers keep consuming and committing past what was committed before.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = consumed.load(Ordering::SeqCst);
        let advanced = highest
            .lock()
            .map(|h| committed_before.iter().all(|(p, o)| h.get(p).is_some_and(|n| n > o)))
            .unwrap_or(false);
        if now > before_kill + 200 && advanced {
            break;
        }
        assert!(Instant::now() < deadline, "consumption or commits did not continue after the kill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("consumers consumed and committed past the kill after {:?}", killed.elapsed());
    stop.store(true, Ordering::SeqCst);
    for m in members {
        m.join().expect("member thread");
    }
    watcher.join().expect("watcher thread");
    producer.await.expect("producer");
    let backwards = backwards.lock().map(|b| b.clone()).unwrap_or_default();
    assert!(backwards.is_empty(), "committed offsets went backwards: {backwards:?}");
}

/// Offset commits of many groups arriving at once are coalesced: far fewer `__meta` entries
/// than commits, and every commit readable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_raft_entries() {
    use chronik_control_plane::ControlNode;
    use chronik_data_plane::DataNode;
    use chronik_proto::client::ControlClient;
    use chronik_proto::control::{
        CommitOffset, CreateTopicRequest, OffsetCommitRequest, OffsetFetchRequest, TopicPartitions,
    };
    use cluster::*;
    use openraft::async_runtime::WatchReceiver;

    let dir = tempfile::tempdir().expect("tempdir");
    let cport = free_port();
    let control = ControlNode::builder(control_config(dir.path(), 1, cport, vec![])).start().await.expect("control");
    control.wait_for_leader(Duration::from_secs(10)).await.expect("a leader");
    let mut dcfg = control_config(dir.path(), 10, free_port(), vec![seed(1, cport)]);
    dcfg.cluster.heartbeat.interval_ms = 200;
    let data = DataNode::builder(dcfg).start().await.expect("data node");
    assert!(data.wait_registered(Duration::from_secs(20)).await, "the data node never registered");
    let ctl = ControlClient::new(vec![format!("127.0.0.1:{cport}")], Duration::from_secs(5));
    let topic =
        CreateTopicRequest { name: "commits".into(), partitions: 1, replication_factor: 1, ..Default::default() };
    ctl.call(|mut c| {
        let t = topic.clone();
        async move { c.create_topic(t).await }
    })
    .await
    .expect("topic created");

    let last_index = || control.raft().metrics().borrow_watched().last_log_index.unwrap_or(0);
    let before = last_index();
    const N: i64 = 64;
    let commits = (0..N).map(|i| {
        let ctl = ctl.clone();
        async move {
            let req = OffsetCommitRequest {
                group_id: format!("g{i}"),
                generation_id: -1,
                offsets: vec![CommitOffset {
                    topic: "commits".into(),
                    partition: 0,
                    offset: i,
                    leader_epoch: -1,
                    metadata: None,
                }],
                ..Default::default()
            };
            ctl.call(|mut c| {
                let r = req.clone();
                async move { c.offset_commit(r).await }
            })
            .await
        }
    });
    for r in futures::future::join_all(commits).await {
        let r = r.expect("OffsetCommit answered");
        assert!(r.results.iter().all(|p| p.error == 0), "{r:?}");
    }
    let entries = last_index() - before;
    assert!(entries < (N as u64) / 4, "{N} concurrent commits took {entries} Raft entries");
    eprintln!("{N} concurrent commits took {entries} Raft entries");
    for i in 0..N {
        let req = OffsetFetchRequest {
            group_id: format!("g{i}"),
            all: false,
            topics: vec![TopicPartitions { topic: "commits".into(), partitions: vec![0] }],
        };
        let got = ctl
            .call(|mut c| {
                let r = req.clone();
                async move { c.offset_fetch(r).await }
            })
            .await
            .expect("OffsetFetch answered");
        assert_eq!(got.offsets.first().map(|o| o.offset), Some(i));
    }
    data.shutdown().await;
    control.shutdown().await;
}
