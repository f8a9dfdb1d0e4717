//! The `__meta` state machine on redb: applies committed commands, serves reads, and builds
//! and installs snapshots (a JSON dump of every table, taken from a read transaction so
//! writes carry on meanwhile).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chronik_raft::service::SnapshotFiles;
use futures::{Stream, StreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::schema::{GROUPS, META, META_APPLIED, META_MEMBERSHIP, META_NEXT_PRODUCER_ID, NODES, OFFSETS, TOPICS};
use crate::types::{
    ControlCommand, ControlResponse, GroupRecord, MetaTypeConfig, NodeRecord, OffsetRecord, TopicRecord, offset_key,
    offset_key_prefix,
};
use chronik_shared::error::ErrorCode;

type C = MetaTypeConfig;

fn db_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("control-plane state (redb): {e}"))
}

fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> io::Result<T> {
    serde_json::from_slice(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io::Error::other)
}

/// Everything in the state machine, as written into a snapshot file.
#[derive(Serialize, Deserialize, Default)]
struct Dump {
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    nodes: Vec<NodeRecord>,
    topics: Vec<TopicRecord>,
    #[serde(default)]
    groups: Vec<GroupRecord>,
    #[serde(default)]
    offsets: Vec<OffsetRecord>,
    #[serde(default)]
    next_producer_id: i64,
}

/// The tables a command may change, opened once per applied batch.
struct Tables<'t> {
    nodes: redb::Table<'t, u64, &'static [u8]>,
    topics: redb::Table<'t, &'static str, &'static [u8]>,
    groups: redb::Table<'t, &'static str, &'static [u8]>,
    offsets: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> io::Result<Self> {
        Ok(Tables {
            nodes: txn.open_table(NODES).map_err(db_err)?,
            topics: txn.open_table(TOPICS).map_err(db_err)?,
            groups: txn.open_table(GROUPS).map_err(db_err)?,
            offsets: txn.open_table(OFFSETS).map_err(db_err)?,
        })
    }
}

/// The latest snapshot's metadata and files.
type CurrentSnapshot = Arc<Mutex<Option<(SnapshotMetaOf<C>, SnapshotFiles)>>>;

#[derive(Clone)]
pub struct ControlStateMachine {
    db: Arc<Database>,
    snapshot_dir: PathBuf,
    current: CurrentSnapshot,
}

impl ControlStateMachine {
    /// Opens (or creates) `dir/state.redb`; snapshots go to `dir/snapshots/`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("snapshots"))?;
        let path = dir.join("state.redb");
        // Another handle in this process (a node being shut down for an in-process restart)
        // may still hold the file lock for a moment; a different process never does by then.
        let mut waited = std::time::Duration::ZERO;
        let db = loop {
            match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if waited < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    waited += std::time::Duration::from_millis(50);
                }
                other => {
                    break other.map_err(|e| {
                        io::Error::other(format!("cannot open the control-plane state {}: {e}", path.display()))
                    })?;
                }
            }
        };
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(META).map_err(db_err)?;
            txn.open_table(NODES).map_err(db_err)?;
            txn.open_table(TOPICS).map_err(db_err)?;
            txn.open_table(GROUPS).map_err(db_err)?;
            txn.open_table(OFFSETS).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let sm = Self { db: Arc::new(db), snapshot_dir: dir.join("snapshots"), current: Arc::default() };
        sm.load_latest_snapshot()?;
        Ok(sm)
    }

    fn load_latest_snapshot(&self) -> io::Result<()> {
        let meta_path = self.snapshot_dir.join("current.meta.json");
        if let Ok(bytes) = std::fs::read(&meta_path) {
            let (meta, files): (SnapshotMetaOf<C>, SnapshotFiles) = decode(&bytes)?;
            chronik_shared::metrics::RAFT_SNAPSHOT_SIZE_BYTES
                .with_label_values(&["__meta"])
                .set(files.total_bytes() as i64);
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta, files));
        }
        Ok(())
    }

    pub fn applied(&self) -> io::Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>)> {
        let txn = self.db.begin_read().map_err(db_err)?;
        Self::applied_in(&txn)
    }

    fn applied_in(txn: &redb::ReadTransaction) -> io::Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>)> {
        let t = txn.open_table(META).map_err(db_err)?;
        let applied = match t.get(META_APPLIED).map_err(db_err)? {
            Some(v) => decode(v.value())?,
            None => None,
        };
        let membership = match t.get(META_MEMBERSHIP).map_err(db_err)? {
            Some(v) => decode(v.value())?,
            None => StoredMembershipOf::<C>::default(),
        };
        Ok((applied, membership))
    }

    fn rows_in<K: redb::Key + 'static, T: for<'a> Deserialize<'a>>(
        txn: &redb::ReadTransaction,
        table: redb::TableDefinition<K, &[u8]>,
    ) -> io::Result<Vec<T>> {
        let t = txn.open_table(table).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    pub fn topics(&self) -> io::Result<Vec<TopicRecord>> {
        Self::rows_in(&self.db.begin_read().map_err(db_err)?, TOPICS)
    }

    pub fn topic(&self, name: &str) -> io::Result<Option<TopicRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(TOPICS).map_err(db_err)?;
        match t.get(name).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn nodes(&self) -> io::Result<Vec<NodeRecord>> {
        Self::rows_in(&self.db.begin_read().map_err(db_err)?, NODES)
    }

    pub fn groups(&self) -> io::Result<Vec<GroupRecord>> {
        Self::rows_in(&self.db.begin_read().map_err(db_err)?, GROUPS)
    }

    pub fn group(&self, group_id: &str) -> io::Result<Option<GroupRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(GROUPS).map_err(db_err)?;
        match t.get(group_id).map_err(db_err)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every committed offset of `group_id`.
    pub fn offsets(&self, group_id: &str) -> io::Result<Vec<OffsetRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(OFFSETS).map_err(db_err)?;
        let (from, to) = offset_key_prefix(group_id);
        let mut out = Vec::new();
        for row in t.range(from.as_str()..to.as_str()).map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Every committed offset of every group (for the consumer-lag gauge).
    pub fn all_offsets(&self) -> io::Result<Vec<OffsetRecord>> {
        Self::rows_in(&self.db.begin_read().map_err(db_err)?, OFFSETS)
    }

    /// Every table from ONE read transaction: a snapshot must be exactly the state at its
    /// applied index, even while apply carries on concurrently.
    fn dump(&self) -> io::Result<Dump> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let (applied, membership) = Self::applied_in(&txn)?;
        Ok(Dump {
            applied,
            membership,
            nodes: Self::rows_in(&txn, NODES)?,
            topics: Self::rows_in(&txn, TOPICS)?,
            groups: Self::rows_in(&txn, GROUPS)?,
            offsets: Self::rows_in(&txn, OFFSETS)?,
            next_producer_id: Self::next_producer_id_in(&txn.open_table(META).map_err(db_err)?)?,
        })
    }

    fn next_producer_id_in(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> io::Result<i64> {
        match meta.get(META_NEXT_PRODUCER_ID).map_err(db_err)? {
            Some(v) => decode(v.value()),
            None => Ok(0),
        }
    }

    /// Builds and persists a snapshot at the current applied point (used by the rebuild, so a
    /// node rejoining the rebuilt cluster gets a snapshot that covers the purged log).
    pub async fn snapshot_now(&mut self) -> io::Result<()> {
        RaftSnapshotBuilder::build_snapshot(self).await.map(|_| ())
    }

    fn apply_command(cmd: &ControlCommand, tables: &mut Tables<'_>) -> io::Result<ControlResponse> {
        let Tables { nodes, topics, groups, offsets } = tables;
        let rejected = |code: ErrorCode, message: String| ControlResponse::Rejected { code: code.id(), message };
        Ok(match cmd {
            ControlCommand::RegisterNode(n) => {
                // A node that restarts while being decommissioned stays decommissioning.
                let existing = nodes.get(n.node_id).map_err(db_err)?.map(|v| decode::<NodeRecord>(v.value()));
                let draining = match existing {
                    Some(e) => e?.draining,
                    None => false,
                };
                let n = NodeRecord { draining: n.draining || draining, ..n.clone() };
                nodes.insert(n.node_id, encode(&n)?.as_slice()).map_err(db_err)?;
                ControlResponse::Ok
            }
            ControlCommand::SetDraining { node_id, draining } => {
                let existing = nodes.get(*node_id).map_err(db_err)?.map(|v| decode::<NodeRecord>(v.value()));
                match existing {
                    Some(n) => {
                        let n = NodeRecord { draining: *draining, ..n? };
                        nodes.insert(*node_id, encode(&n)?.as_slice()).map_err(db_err)?;
                        ControlResponse::Ok
                    }
                    None => rejected(ErrorCode::InvalidRequest, format!("node {node_id} is not registered")),
                }
            }
            ControlCommand::MoveReplicas { topic, partition, replicas } => {
                let existing = topics.get(topic.as_str()).map_err(db_err)?.map(|v| decode::<TopicRecord>(v.value()));
                match existing {
                    Some(t) => {
                        let mut t = t?;
                        match t.assignments.get_mut(*partition as usize) {
                            Some(r) => {
                                *r = replicas.clone();
                                t.moved.insert(*partition);
                                topics.insert(topic.as_str(), encode(&t)?.as_slice()).map_err(db_err)?;
                                ControlResponse::Topic(t)
                            }
                            None => rejected(
                                ErrorCode::UnknownTopicOrPartition,
                                format!("topic {topic} has no partition {partition}"),
                            ),
                        }
                    }
                    None => rejected(ErrorCode::UnknownTopicOrPartition, format!("topic {topic} does not exist")),
                }
            }
            // Applied with the `meta` table, in `apply`.
            ControlCommand::AllocateProducerId => ControlResponse::Ok,
            ControlCommand::CreateTopic(t) => {
                if topics.get(t.name.as_str()).map_err(db_err)?.is_some() {
                    rejected(ErrorCode::TopicAlreadyExists, format!("topic {} already exists", t.name))
                } else {
                    topics.insert(t.name.as_str(), encode(t)?.as_slice()).map_err(db_err)?;
                    ControlResponse::Topic(t.clone())
                }
            }
            ControlCommand::DeleteTopic { name } => {
                let removed = topics.remove(name.as_str()).map_err(db_err)?.map(|v| decode::<TopicRecord>(v.value()));
                match removed {
                    Some(t) => ControlResponse::Topic(t?),
                    None => rejected(ErrorCode::UnknownTopicOrPartition, format!("topic {name} does not exist")),
                }
            }
            ControlCommand::CreatePartitions { name, new_assignments } => {
                let existing = topics.get(name.as_str()).map_err(db_err)?.map(|v| decode::<TopicRecord>(v.value()));
                match existing {
                    Some(t) => {
                        let mut t = t?;
                        t.assignments.extend(new_assignments.iter().cloned());
                        topics.insert(name.as_str(), encode(&t)?.as_slice()).map_err(db_err)?;
                        ControlResponse::Topic(t)
                    }
                    None => rejected(ErrorCode::UnknownTopicOrPartition, format!("topic {name} does not exist")),
                }
            }
            ControlCommand::StoreGroup(g) => {
                groups.insert(g.group_id.as_str(), encode(g)?.as_slice()).map_err(db_err)?;
                ControlResponse::Ok
            }
            ControlCommand::DeleteGroup { group_id } => {
                let had_group = groups.remove(group_id.as_str()).map_err(db_err)?.is_some();
                let (from, to) = offset_key_prefix(group_id);
                let mut keys = Vec::new();
                for row in offsets.range(from.as_str()..to.as_str()).map_err(db_err)? {
                    let (k, _) = row.map_err(db_err)?;
                    keys.push(k.value().to_string());
                }
                for k in &keys {
                    offsets.remove(k.as_str()).map_err(db_err)?;
                }
                if had_group || !keys.is_empty() {
                    ControlResponse::Ok
                } else {
                    rejected(ErrorCode::GroupIdNotFound, format!("group {group_id} does not exist"))
                }
            }
            ControlCommand::CommitOffsets(records) => {
                for o in records {
                    offsets.insert(o.key().as_str(), encode(o)?.as_slice()).map_err(db_err)?;
                    // A group known only by its commits (assign()ed consumers) is still listed
                    // and describable, as in Kafka.
                    if groups.get(o.group_id.as_str()).map_err(db_err)?.is_none() {
                        let g = GroupRecord { group_id: o.group_id.clone(), ..GroupRecord::default() };
                        groups.insert(o.group_id.as_str(), encode(&g)?.as_slice()).map_err(db_err)?;
                    }
                }
                ControlResponse::Ok
            }
            ControlCommand::DeleteOffsets { group_id, partitions } => {
                for (topic, partition) in partitions {
                    offsets.remove(offset_key(group_id, topic, *partition).as_str()).map_err(db_err)?;
                }
                ControlResponse::Ok
            }
        })
    }
}

impl RaftStateMachine<C> for ControlStateMachine {
    type SnapshotData = SnapshotFiles;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        self.applied()
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // One write transaction (one fsync) for everything openraft hands over at once.
        let mut batch = Vec::new();
        while let Some(item) = entries.next().await {
            batch.push(item?);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut responses = Vec::with_capacity(batch.len());
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let mut tables = Tables::open(&txn)?;
            let mut last = None;
            for (entry, responder) in batch {
                let resp = match &entry.payload {
                    EntryPayload::Blank => ControlResponse::Ok,
                    EntryPayload::Normal(ControlCommand::AllocateProducerId) => {
                        let id = Self::next_producer_id_in(&meta)?;
                        meta.insert(META_NEXT_PRODUCER_ID, encode(&(id + 1))?.as_slice()).map_err(db_err)?;
                        ControlResponse::ProducerId(id)
                    }
                    EntryPayload::Normal(cmd) => Self::apply_command(cmd, &mut tables)?,
                    EntryPayload::Membership(m) => {
                        let stored = StoredMembershipOf::<C>::new(Some(entry.log_id), m.clone());
                        meta.insert(META_MEMBERSHIP, encode(&stored)?.as_slice()).map_err(db_err)?;
                        ControlResponse::Ok
                    }
                };
                last = Some(entry.log_id);
                responses.push((responder, resp));
            }
            meta.insert(META_APPLIED, encode(&last)?.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        for (responder, resp) in responses {
            if let Some(r) = responder {
                r.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFiles) -> Result<(), io::Error> {
        let bytes = snapshot.read_single("control-plane")?;
        let dump: Dump = decode(&bytes)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            txn.delete_table(NODES).map_err(db_err)?;
            txn.delete_table(TOPICS).map_err(db_err)?;
            txn.delete_table(GROUPS).map_err(db_err)?;
            txn.delete_table(OFFSETS).map_err(db_err)?;
            let mut m = txn.open_table(META).map_err(db_err)?;
            let mut t = Tables::open(&txn)?;
            for n in &dump.nodes {
                t.nodes.insert(n.node_id, encode(n)?.as_slice()).map_err(db_err)?;
            }
            for topic in &dump.topics {
                t.topics.insert(topic.name.as_str(), encode(topic)?.as_slice()).map_err(db_err)?;
            }
            for g in &dump.groups {
                t.groups.insert(g.group_id.as_str(), encode(g)?.as_slice()).map_err(db_err)?;
            }
            for o in &dump.offsets {
                t.offsets.insert(o.key().as_str(), encode(o)?.as_slice()).map_err(db_err)?;
            }
            m.insert(META_APPLIED, encode(&meta.last_log_id)?.as_slice()).map_err(db_err)?;
            m.insert(META_MEMBERSHIP, encode(&meta.last_membership)?.as_slice()).map_err(db_err)?;
            m.insert(META_NEXT_PRODUCER_ID, encode(&dump.next_producer_id)?.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        let files = self.persist_snapshot(meta, &bytes)?;
        tracing::info!(target: "chronik_raft", partition = "__meta", "Snapshot installed: index={}", meta.last_log_id.map(|l| l.index).unwrap_or(0));
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), files));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotFiles>>, io::Error> {
        Ok(self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|(meta, snapshot)| openraft::Snapshot { meta, snapshot }))
    }
}

impl ControlStateMachine {
    /// Writes the snapshot bytes and its meta durably, replacing the previous snapshot.
    fn persist_snapshot(&self, meta: &SnapshotMetaOf<C>, bytes: &[u8]) -> io::Result<SnapshotFiles> {
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        let name = format!("snapshot_{index:08}.snap");
        let files = SnapshotFiles::write_single(&self.snapshot_dir, &name, bytes)?;
        chronik_raft::log_store::write_json_atomic(&self.snapshot_dir, "current.meta.json", &(meta, &files))?;
        // Older snapshots are superseded once the new meta is durable.
        if let Ok(rd) = std::fs::read_dir(&self.snapshot_dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with("snapshot_") && n.ends_with(".snap") && n != name {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        chronik_shared::metrics::RAFT_SNAPSHOT_SIZE_BYTES.with_label_values(&["__meta"]).set(bytes.len() as i64);
        Ok(files)
    }
}

impl RaftSnapshotBuilder<C> for ControlStateMachine {
    type SnapshotData = SnapshotFiles;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotFiles>, io::Error> {
        let dump = self.dump()?;
        let index = dump.applied.map(|l| l.index).unwrap_or(0);
        tracing::info!(target: "chronik_raft", partition = "__meta", "Creating snapshot: index={index}");
        let bytes = encode(&dump)?;
        let meta = SnapshotMetaOf::<C> { last_log_id: dump.applied, last_membership: dump.membership };
        let files = self.persist_snapshot(&meta, &bytes).inspect_err(|e| {
            tracing::error!(target: "chronik_raft", partition = "__meta", "Snapshot save failed: {e}");
        })?;
        tracing::info!(target: "chronik_raft", partition = "__meta", "Snapshot saved: size={} bytes", bytes.len());
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), files.clone()));
        Ok(openraft::Snapshot { meta, snapshot: files })
    }
}

/// Topic configs as the state machine keeps them.
pub type Configs = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemberRecord;

    fn apply(sm: &ControlStateMachine, cmds: &[ControlCommand]) -> Vec<ControlResponse> {
        let txn = sm.db.begin_write().expect("txn");
        let out = {
            let mut t = Tables::open(&txn).expect("tables");
            cmds.iter().map(|c| ControlStateMachine::apply_command(c, &mut t).expect("applies")).collect()
        };
        txn.commit().expect("commit");
        out
    }

    fn offset(group: &str, topic: &str, partition: u32, offset: i64) -> OffsetRecord {
        OffsetRecord {
            group_id: group.into(),
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: 3,
            metadata: Some("m".into()),
            commit_timestamp_ms: 1,
        }
    }

    #[tokio::test]
    async fn groups_and_offsets_are_applied_and_carried_by_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = ControlStateMachine::open(&dir.path().join("a")).expect("open");
        let group = GroupRecord {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            protocol: Some("range".into()),
            generation: 4,
            leader: Some("m1".into()),
            members: vec![MemberRecord { member_id: "m1".into(), assignment: vec![1, 2], ..Default::default() }],
        };
        apply(
            &sm,
            &[
                ControlCommand::StoreGroup(group.clone()),
                ControlCommand::CommitOffsets(vec![offset("g", "t", 0, 10), offset("g", "t", 1, 5)]),
                ControlCommand::CommitOffsets(vec![offset("g", "t", 0, 12), offset("simple", "t", 0, 1)]),
                // "g2" is a prefix of no other group's keys: deleting it leaves "g" alone.
                ControlCommand::CommitOffsets(vec![offset("g2", "t", 0, 7)]),
                ControlCommand::DeleteGroup { group_id: "g2".into() },
            ],
        );
        assert_eq!(sm.group("g").expect("read"), Some(group.clone()));
        assert_eq!(sm.offsets("g").expect("read").iter().map(|o| o.offset).collect::<Vec<_>>(), vec![12, 5]);
        // A group known only by its commits is listed.
        assert!(sm.group("simple").expect("read").is_some());
        assert!(sm.group("g2").expect("read").is_none() && sm.offsets("g2").expect("read").is_empty());
        let rejected = apply(&sm, &[ControlCommand::DeleteGroup { group_id: "nope".into() }]);
        assert!(
            matches!(&rejected[0], ControlResponse::Rejected { code, .. } if *code == ErrorCode::GroupIdNotFound.id())
        );

        let snap = RaftSnapshotBuilder::build_snapshot(&mut sm).await.expect("snapshot");
        let mut other = ControlStateMachine::open(&dir.path().join("b")).expect("open");
        apply(&other, &[ControlCommand::CommitOffsets(vec![offset("stale", "t", 0, 1)])]);
        other.install_snapshot(&snap.meta, snap.snapshot).await.expect("install");
        assert_eq!(other.group("g").expect("read"), Some(group));
        assert_eq!(other.offsets("g").expect("read"), sm.offsets("g").expect("read"));
        assert!(other.offsets("stale").expect("read").is_empty(), "install replaces the tables");
        apply(&sm, &[ControlCommand::DeleteOffsets { group_id: "g".into(), partitions: vec![("t".into(), 0)] }]);
        assert_eq!(sm.offsets("g").expect("read").len(), 1);
    }
}
