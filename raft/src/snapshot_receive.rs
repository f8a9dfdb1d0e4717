//! Receiving a snapshot stream from a leader into a staging directory of its own.
//!
//! Everything about the stream is checked before it is believed: file names are single plain
//! components (no `..`, no absolute paths), sizes are bounded and must add up exactly, chunks
//! arrive in order with valid CRC32C, and the stream must end with `done`. Files are fsynced
//! before the snapshot is handed to the state machine.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chronik_proto::raft::SnapshotChunk;
use tonic::Status;

/// No snapshot of ours comes near this; a peer claiming more is broken or hostile.
const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;

static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

fn internal(what: &str, e: std::io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// Accepts only a bare file name.
fn safe_name(name: &str) -> Result<(), Status> {
    let mut comps = Path::new(name).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) if !name.is_empty() => Ok(()),
        _ => Err(Status::invalid_argument(format!("snapshot file name {name:?} is not a plain file name"))),
    }
}

pub(crate) struct Receiver {
    pub dir: PathBuf,
    files: Vec<(String, u64)>,
    current: Option<(usize, u64, std::fs::File)>,
    next_file: usize,
    expected_offset: u64,
    total: u64,
    pub done: bool,
}

impl Receiver {
    /// Prepares a fresh staging directory under `staging` for `group`'s stream.
    pub fn new(staging: &Path, group: &str, files: Vec<(String, u64)>) -> Result<Receiver, Status> {
        for (name, _) in &files {
            safe_name(name)?;
        }
        let total = files.iter().try_fold(0u64, |acc, (_, n)| acc.checked_add(*n)).unwrap_or(u64::MAX);
        if total > MAX_SNAPSHOT_BYTES {
            return Err(Status::invalid_argument(format!(
                "snapshot of {total} bytes is larger than any Chronik writes"
            )));
        }
        let group: String =
            group.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
        let n = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
        let dir = staging.join(format!("incoming-{group}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| internal(&format!("creating {}", dir.display()), e))?;
        Ok(Receiver { dir, files, current: None, next_file: 0, expected_offset: 0, total, done: false })
    }

    fn open_next(&mut self) -> Result<bool, Status> {
        if let Some((_, _, f)) = self.current.take() {
            f.sync_all().map_err(|e| internal("syncing a snapshot file", e))?;
        }
        let Some((name, len)) = self.files.get(self.next_file).cloned() else { return Ok(false) };
        let f = std::fs::File::create(self.dir.join(&name)).map_err(|e| internal("creating a snapshot file", e))?;
        self.current = Some((self.next_file, len, f));
        self.next_file += 1;
        Ok(true)
    }

    pub fn accept(&mut self, chunk: &SnapshotChunk) -> Result<(), Status> {
        if chunk.offset != self.expected_offset {
            tracing::error!(target: "chronik_raft", "Failed to install snapshot from leader: ChunkMissing (expected offset {}, got {})", self.expected_offset, chunk.offset);
            return Err(Status::data_loss(format!(
                "ChunkMissing: expected offset {}, got {}",
                self.expected_offset, chunk.offset
            )));
        }
        if !chunk.data.is_empty() && crc32c::crc32c(&chunk.data) != chunk.crc32c {
            return Err(Status::data_loss(format!("snapshot chunk at offset {} failed its checksum", chunk.offset)));
        }
        if self.expected_offset + chunk.data.len() as u64 > self.total {
            return Err(Status::invalid_argument("snapshot has more bytes than its header lists"));
        }
        let mut data = &chunk.data[..];
        while !data.is_empty() {
            if self.current.as_ref().is_none_or(|(_, left, _)| *left == 0) && !self.open_next()? {
                return Err(Status::invalid_argument("snapshot has more bytes than its header lists"));
            }
            let Some((_, left, f)) = self.current.as_mut() else { break };
            let n = (*left).min(data.len() as u64) as usize;
            f.write_all(&data[..n]).map_err(|e| internal("writing a snapshot file", e))?;
            *left -= n as u64;
            data = &data[n..];
        }
        self.expected_offset += chunk.data.len() as u64;
        self.done |= chunk.done;
        Ok(())
    }

    /// Checks the stream was complete and makes every file durable.
    pub fn finish(mut self) -> Result<(PathBuf, Vec<(String, u64)>), Status> {
        if !self.done || self.expected_offset != self.total {
            return Err(Status::data_loss(format!(
                "snapshot stream ended after {} of {} bytes; the leader will send it again",
                self.expected_offset, self.total
            )));
        }
        // Empty files (and any after the last byte) still have to exist.
        while self.open_next()? {}
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| internal("syncing the snapshot directory", e))?;
        Ok((self.dir, self.files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_that_leave_the_staging_dir() {
        for bad in ["../x", "/etc/passwd", "a/b", "", ".."] {
            assert!(safe_name(bad).is_err(), "{bad} accepted");
        }
        assert!(safe_name("snapshot_00000010.snap").is_ok());
    }

    #[test]
    fn incomplete_streams_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Receiver::new(dir.path(), "__meta", vec![("a".into(), 4)]).unwrap();
        let data = bytes::Bytes::from_static(b"ab");
        r.accept(&SnapshotChunk {
            group: "__meta".into(),
            header: Default::default(),
            offset: 0,
            crc32c: crc32c::crc32c(&data),
            data,
            done: true,
        })
        .unwrap();
        assert!(r.finish().is_err());
    }
}
