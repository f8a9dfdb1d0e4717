//! Fault injection in the Raft transport, for the cluster harness: cut links between nodes
//! (partitions, isolation, one-way loss) and drop snapshot chunks. A node built without
//! [`Faults`] pays nothing for this.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    /// (from, to): messages from `from` to `to` are lost.
    blocked: HashSet<(u64, u64)>,
    drop_snapshot_chunks: u32,
}

/// Shared by every node of one test cluster.
#[derive(Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses every message from `from` to `to` (one way).
    pub fn block(&self, from: u64, to: u64) {
        self.lock().blocked.insert((from, to));
    }

    /// Cuts `node` off from each of `others`, both ways.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        let mut st = self.lock();
        for o in others {
            st.blocked.insert((node, *o));
            st.blocked.insert((*o, node));
        }
    }

    pub fn heal(&self) {
        self.lock().blocked.clear();
    }

    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.lock().blocked.contains(&(from, to))
    }

    /// The next `n` snapshot chunks sent by any node are lost on the way.
    pub fn drop_snapshot_chunks(&self, n: u32) {
        self.lock().drop_snapshot_chunks += n;
    }

    pub(crate) fn take_chunk_drop(&self) -> bool {
        let mut st = self.lock();
        if st.drop_snapshot_chunks > 0 {
            st.drop_snapshot_chunks -= 1;
            true
        } else {
            false
        }
    }
}
