//! Turning written records into durable ones: one flusher thread per log (group commit).
//!
//! Appends write (one `writev` per segment) under the log's lock and queue their callback here, in the same
//! order. The flusher takes what is queued (one item for `Low`, everything for `Medium`, everything
//! after a linger for `High`), syncs every segment those items touched, and only then completes
//! their callbacks, in queue order. Appends never wait for a sync, so concurrent appends share one.
//!
//! Every fsync of the log goes through [`Flusher::guarded_sync`]. On Linux a failed fsync may drop
//! the dirty pages and report success next time, so after the first failure the log never reports
//! success again (fail-stop). The failure is recorded under the same lock the syncs hold, so a sync
//! that "succeeds" after another thread's failed one on the same file still sees it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{WalError, WalProfile};

/// `High` stops lingering once this much is waiting: the sync is long enough already.
const HIGH_MAX_PENDING_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) type Callback = Box<dyn FnOnce(Result<(), WalError>) + Send + 'static>;

/// An open segment file. Shared between the log's index and queued items, so a segment deleted by
/// truncation or purge can still be synced for the appends that wrote to it.
#[derive(Debug)]
pub(crate) struct SegFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
}

pub(crate) struct Pending {
    /// Segments this append wrote to (two or more only when it rolled).
    pub(crate) files: Vec<Arc<SegFile>>,
    pub(crate) bytes: u64,
    pub(crate) callback: Callback,
    enqueued: Instant,
}

impl Pending {
    pub(crate) fn new(files: Vec<Arc<SegFile>>, bytes: u64, callback: Callback) -> Self {
        Self { files, bytes, callback, enqueued: Instant::now() }
    }
}

struct Queue {
    items: VecDeque<Pending>,
    bytes: u64,
    closing: bool,
}

/// Every log of this process that fail-stopped, for `/health`: a process is one node, and
/// its node is unhealthy while any of its logs accepts no writes.
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Why the logs of this process that fail-stopped did so (empty while none has).
pub fn failures() -> Vec<String> {
    FAILURES.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) struct Flusher {
    profile: WalProfile,
    linger: Duration,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held across every fsync of the log; see the module doc.
    sync_lock: Mutex<()>,
    failure: OnceLock<String>,
    syncs: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the data as consistent as it was; the
    // queue and the unit sync lock carry no invariants a half-done update could break.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Flusher {
    pub(crate) fn new(profile: WalProfile, linger: Duration) -> Arc<Self> {
        Arc::new(Self {
            profile,
            linger,
            queue: Mutex::new(Queue { items: VecDeque::new(), bytes: 0, closing: false }),
            wake: Condvar::new(),
            sync_lock: Mutex::new(()),
            failure: OnceLock::new(),
            syncs: AtomicU64::new(0),
        })
    }

    pub(crate) fn spawn(self: &Arc<Self>, name: String) -> io::Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        thread::Builder::new().name(name).spawn(move || me.run())
    }

    pub(crate) fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The fail-stop error, if the log has seen an fsync fail.
    pub(crate) fn failed(&self) -> Option<WalError> {
        self.failure.get().map(|m| WalError::Failed(m.clone()))
    }

    /// Runs one fsync-like call, fail-stopping the log if it fails.
    pub(crate) fn guarded_sync(
        &self,
        path: &Path,
        what: &'static str,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), WalError> {
        let _held = lock(&self.sync_lock);
        if let Some(err) = self.failed() {
            return Err(err);
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sync() {
            self.fail(format!("{what} of {} failed: {e}", path.display()));
        }
        match self.failed() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Fail-stops the log (first call wins) for a reason other than a sync error, e.g. an append
    /// that could not undo a partial write.
    pub(crate) fn fail(&self, msg: String) {
        if self.failure.set(msg).is_ok()
            && let Some(msg) = self.failure.get()
        {
            tracing::error!(
                error = %msg,
                "WAL fail-stopped: pending and later appends will fail until restart"
            );
            FAILURES.lock().unwrap_or_else(|p| p.into_inner()).push(msg.clone());
        }
        // Wake the flusher so queued callbacks learn about it now, not at the end of a linger.
        // Taking the queue lock first means the flusher is either before its check or waiting.
        let _queue = lock(&self.queue);
        self.wake.notify_all();
    }

    /// Queues an append's callback. Gives it back if the flusher is shutting down.
    pub(crate) fn enqueue(&self, item: Pending) -> Result<(), Pending> {
        let mut q = lock(&self.queue);
        if q.closing {
            return Err(item);
        }
        let was_empty = q.items.is_empty();
        let before = q.bytes;
        q.bytes += item.bytes;
        q.items.push_back(item);
        // The flusher only waits on an empty queue, or (High) while lingering under the cap.
        let crossed_cap = before < HIGH_MAX_PENDING_BYTES && q.bytes >= HIGH_MAX_PENDING_BYTES;
        if was_empty || (self.profile == WalProfile::High && crossed_cap) {
            self.wake.notify_all();
        }
        Ok(())
    }

    /// Asks the thread to finish what is queued and exit.
    pub(crate) fn shut_down(&self) {
        lock(&self.queue).closing = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        while let Some(batch) = self.next_batch() {
            let result = self.sync_batch(&batch);
            for item in batch {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(msg) => Err(WalError::Failed(msg.clone())),
                };
                let callback = item.callback;
                // A panicking callback must not take the thread, and every later callback, with it.
                if catch_unwind(AssertUnwindSafe(move || callback(outcome))).is_err() {
                    tracing::error!("a WAL durability callback panicked; continuing with the next");
                }
            }
        }
    }

    /// Blocks until there is something to sync; None once closing and drained.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut q = lock(&self.queue);
        while q.items.is_empty() && !q.closing {
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.items.is_empty() {
            return None;
        }
        if self.profile == WalProfile::High {
            while let Some(first) = q.items.front() {
                let deadline = first.enqueued + self.linger;
                let now = Instant::now();
                if q.closing || q.bytes >= HIGH_MAX_PENDING_BYTES || now >= deadline || self.failure.get().is_some() {
                    break;
                }
                q = self.wake.wait_timeout(q, deadline - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
        }
        let batch: Vec<Pending> = match self.profile {
            WalProfile::Low => q.items.pop_front().into_iter().collect(),
            WalProfile::Medium | WalProfile::High => q.items.drain(..).collect(),
        };
        let taken: u64 = batch.iter().map(|p| p.bytes).sum();
        q.bytes -= taken;
        Some(batch)
    }

    fn sync_batch(&self, batch: &[Pending]) -> Result<(), String> {
        let mut files: Vec<&Arc<SegFile>> = Vec::new();
        for f in batch.iter().flat_map(|p| p.files.iter()) {
            if !files.iter().any(|seen| Arc::ptr_eq(seen, f)) {
                files.push(f);
            }
        }
        if files.is_empty() {
            // Appends of no records still wait for the ones before them, and still fail after
            // a failure.
            return match self.failure.get() {
                Some(msg) => Err(msg.clone()),
                None => Ok(()),
            };
        }
        for f in files {
            if let Err(e) = self.guarded_sync(&f.path, "fdatasync", || f.file.sync_data()) {
                return Err(match e {
                    WalError::Failed(msg) => msg,
                    other => other.to_string(),
                });
            }
        }
        Ok(())
    }
}
