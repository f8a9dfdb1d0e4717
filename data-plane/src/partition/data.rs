//! Where a partition's batches are on disk: the live WAL (the Raft log) and, below it, the
//! archive of segments a leader shipped inside a snapshot (design §4).
//!
//! A follower that was away while retention deleted entries it never received cannot catch up
//! by AppendEntries: the leader sends a snapshot holding the offset index *and* the retained
//! segments. Those segments become the archive, read-only: entries up to the snapshot's last
//! index are read from it, later ones from the WAL (which may still hold stale, possibly
//! conflicting entries at lower indexes; they are never read and go with retention).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use chronik_shared::wal::{Wal, WalError};

/// Segments received with a snapshot: entries up to `last`.
pub struct Archive {
    /// Directory name within the partition's directory, recorded in the offset index.
    pub name: String,
    wal: Wal,
    last: u64,
}

/// A run of log indexes stored in one segment file, for retention.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub first: u64,
    pub last: u64,
    pub bytes: u64,
}

#[derive(Clone)]
pub struct PartitionData {
    dir: PathBuf,
    wal: Wal,
    archive: Arc<RwLock<Option<Arc<Archive>>>>,
}

const ARCHIVE_PREFIX: &str = "archive-";

fn wal_io(e: WalError) -> io::Error {
    io::Error::other(e.to_string())
}

impl PartitionData {
    /// Opens the data of the partition in `dir` whose Raft log is `wal`, with the archive the
    /// offset index names (a missing one is an error: the index points into it). Archives the
    /// index does not name are leftovers of an interrupted install and are removed.
    pub fn open(dir: &Path, wal: Wal, archive: Option<&str>) -> io::Result<PartitionData> {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(ARCHIVE_PREFIX) && Some(name.as_str()) != archive {
                    std::fs::remove_dir_all(e.path())?;
                }
            }
        }
        let data = PartitionData { dir: dir.to_path_buf(), wal, archive: Arc::default() };
        if let Some(name) = archive {
            let path = dir.join(name);
            if !path.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is missing, but the partition's offset index points into it; delete the \
                         partition directory {} so the replica is rebuilt from its leader",
                        path.display(),
                        dir.display()
                    ),
                ));
            }
            let (archive, _) = Wal::open(&path, data.wal.stream(), data.wal.options().clone()).map_err(wal_io)?;
            let last = archive.last_id().unwrap_or(0);
            *data.lock_mut() = Some(Arc::new(Archive { name: name.to_string(), wal: archive, last }));
        }
        Ok(data)
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    fn archive(&self) -> Option<Arc<Archive>> {
        self.archive.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock_mut(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Archive>>> {
        self.archive.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Name of the archive, while it still holds entries at or above `from`.
    pub fn archive_name(&self, from: u64) -> Option<String> {
        self.archive().filter(|a| a.last >= from).map(|a| a.name.clone())
    }

    /// The first log index whose entry is stored.
    pub fn first_id(&self) -> Option<u64> {
        match self.archive() {
            Some(a) => a.wal.first_id().or(Some(a.last + 1)),
            None => self.wal.first_id(),
        }
    }

    /// Entries `first..=last`, from the archive and then the WAL.
    pub fn read(&self, first: u64, last: u64) -> Result<Vec<(u64, Bytes)>, WalError> {
        let Some(a) = self.archive() else { return self.wal.read(first, last + 1, usize::MAX) };
        let mut out = if first <= a.last { a.wal.read(first, last.min(a.last) + 1, usize::MAX)? } else { Vec::new() };
        if last > a.last {
            out.extend(self.wal.read(first.max(a.last + 1), last + 1, usize::MAX)?);
        }
        Ok(out)
    }

    /// Every stored segment, oldest first, as the log indexes it contributes.
    pub fn spans(&self) -> Vec<Span> {
        let archive = self.archive();
        let floor = archive.as_ref().map(|a| a.last + 1).unwrap_or(0);
        let mut out = Vec::new();
        let mut push = |segs: Vec<chronik_shared::wal::SegmentInfo>, floor: u64| {
            for s in segs {
                let (Some(first), Some(last)) = (s.first_id, s.last_id) else { continue };
                if last >= floor {
                    out.push(Span { first: first.max(floor), last, bytes: s.bytes });
                }
            }
        };
        if let Some(a) = &archive {
            push(a.wal.segments(), 0);
        }
        push(self.wal.segments(), floor);
        out
    }

    /// Segment files holding entries `from..=to`, with the length of each that covers them.
    pub fn files_through(&self, from: u64, to: u64) -> Vec<(PathBuf, u64)> {
        let Some(a) = self.archive() else { return self.wal.files_through(from, to) };
        let mut out = a.wal.files_through(from, to.min(a.last));
        out.extend(self.wal.files_through(from.max(a.last + 1), to));
        out
    }

    /// Makes the segment files `files` in `from_dir` (a received snapshot) the archive of
    /// entries up to `last`, by hard link. Returns the archive it replaces, which the caller
    /// retires once the new offset index is durable.
    pub fn adopt(&self, from_dir: &Path, files: &[String], last: u64) -> io::Result<Option<Arc<Archive>>> {
        if files.is_empty() {
            return Ok(self.lock_mut().take());
        }
        let name = format!("{ARCHIVE_PREFIX}{last:020}");
        let path = self.dir.join(&name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        for f in files {
            std::fs::hard_link(from_dir.join(f), path.join(f))?;
        }
        std::fs::File::open(&path)?.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let (wal, _) = Wal::open(&path, self.wal.stream(), self.wal.options().clone()).map_err(wal_io)?;
        let archive = Arc::new(Archive { name, wal, last });
        Ok(self.lock_mut().replace(archive))
    }

    /// Removes an archive that was replaced, and the WAL segments the new snapshot covers.
    pub fn retire(&self, old: Option<Arc<Archive>>, covered_through: u64) -> io::Result<()> {
        if let Some(old) = old {
            old.wal.close();
            std::fs::remove_dir_all(self.dir.join(&old.name))?;
        }
        self.wal.purge_before(covered_through + 1).map_err(wal_io)?;
        Ok(())
    }

    /// Deletes whole segments whose entries are all below `cut` (retention).
    pub fn purge_before(&self, cut: u64) -> io::Result<()> {
        self.wal.purge_before(cut).map_err(wal_io)?;
        let Some(a) = self.archive() else { return Ok(()) };
        if a.last < cut {
            self.lock_mut().take();
            a.wal.close();
            std::fs::remove_dir_all(self.dir.join(&a.name))?;
        } else {
            a.wal.purge_before(cut).map_err(wal_io)?;
        }
        Ok(())
    }

    pub fn close(&self) {
        if let Some(a) = self.archive() {
            a.wal.close();
        }
        self.wal.close();
    }
}
