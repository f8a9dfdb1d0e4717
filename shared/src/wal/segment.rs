//! One segment file of the live log: its index, and the file operations on it.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::WalError;
use super::flusher::{Flusher, SegFile};
use super::format::{self, FRAME_HEADER_LEN, HEADER_LEN, Payload};
use super::recovery::ScannedSegment;

pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) file: Arc<SegFile>,
    pub(crate) ids: Vec<u64>,
    /// Frame offsets, parallel to `ids`.
    pub(crate) positions: Vec<u64>,
    /// Bytes written, header included; the next frame goes here.
    pub(crate) size: u64,
}

impl Segment {
    pub(crate) fn frame_end(&self, idx: usize) -> u64 {
        self.positions.get(idx + 1).copied().unwrap_or(self.size)
    }
}

/// Opens a segment file of the log in `dir` for reading and writing, and locks it.
///
/// Every segment a live log holds is `flock`ed through the descriptor it keeps anyway, so a
/// second open (by this process or another) fails on the first one it tries, and a log costs
/// no descriptor beyond its segments (10,000 partitions fit in 20,000 descriptors).
pub(crate) fn open_locked(dir: &Path, path: &Path) -> Result<File, WalError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| WalError::io(path, "open", e))?;
    lock(dir, path, &file)?;
    Ok(file)
}

fn lock(dir: &Path, path: &Path, file: &File) -> Result<(), WalError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(WalError::Locked { dir: dir.to_path_buf(), lock: path.to_path_buf() }),
        Err(TryLockError::Error(e)) => Err(WalError::io(path, "lock", e)),
    }
}

/// The live segment for `seg`, whose file the caller opened with [`open_locked`].
pub(crate) fn open_segment(seg: ScannedSegment, file: File) -> Segment {
    Segment {
        seq: seg.seq,
        file: Arc::new(SegFile { file, path: seg.path }),
        ids: seg.ids,
        positions: seg.positions,
        size: seg.valid_end,
    }
}

/// A new, empty, synced segment. The caller syncs the directory.
pub(crate) fn create_segment(dir: &Path, stream: u32, seq: u64, flusher: &Flusher) -> Result<Segment, WalError> {
    let path = dir.join(format::segment_file_name(stream, seq));
    let file = match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => reuse_empty_leftover(dir, &path)?,
        other => other.map_err(|e| WalError::io(&path, "create segment", e))?,
    };
    lock(dir, &path, &file)?;
    if let Err(e) = file.write_all_at(&format::encode_header(stream), 0) {
        // Best effort: a header-less file would be read as a torn segment on the next start.
        let _ = fs::remove_file(&path);
        return Err(WalError::io(&path, "write header of", e));
    }
    flusher.guarded_sync(&path, "fdatasync", || file.sync_data())?;
    Ok(Segment {
        seq,
        file: Arc::new(SegFile { file, path }),
        ids: Vec::new(),
        positions: Vec::new(),
        size: HEADER_LEN,
    })
}

/// A file of the next seq can only be left by an append whose roll failed and whose cleanup could
/// not remove it (the segment locks keep everyone else out). With no record in it, it is reused;
/// anything bigger is not ours to overwrite.
fn reuse_empty_leftover(dir: &Path, path: &Path) -> Result<File, WalError> {
    let file = open_locked(dir, path)?;
    let len = file.metadata().map_err(|e| WalError::io(path, "stat", e))?.len();
    if len > HEADER_LEN {
        return Err(WalError::corrupt(
            path,
            HEADER_LEN,
            format!(
                "segment file already exists with {len} bytes although the log ends in the \
                 segment before it"
            ),
        ));
    }
    Ok(file)
}

/// Payload parts at least this long are written from their own buffers; shorter ones are copied
/// next to their frame headers, where one more iovec would cost more than the copy.
const SHARE_FROM: usize = 16 * 1024;

/// Frames on their way to the end of one segment, written with one `writev`: headers and short
/// payloads copied into one buffer, long payload parts referenced where they are.
#[derive(Default)]
pub(crate) struct Frames {
    staged: Vec<u8>,
    chunks: Vec<Chunk>,
    len: u64,
}

enum Chunk {
    Staged { start: usize, end: usize },
    Shared(Bytes),
}

impl Frames {
    /// Bytes queued so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Queues one frame; the caller has checked `payload.len() <= MAX_PAYLOAD`.
    pub(crate) fn push(&mut self, id: u64, payload: &Payload) {
        self.stage(&format::frame_header(id, payload));
        for part in payload.parts() {
            if part.len() >= SHARE_FROM {
                self.len += part.len() as u64;
                self.chunks.push(Chunk::Shared(part.clone()));
            } else {
                self.stage(part);
            }
        }
    }

    fn stage(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let start = self.staged.len();
        self.staged.extend_from_slice(bytes);
        let end = self.staged.len();
        self.len += bytes.len() as u64;
        match self.chunks.last_mut() {
            Some(Chunk::Staged { end: last, .. }) if *last == start => *last = end,
            _ => self.chunks.push(Chunk::Staged { start, end }),
        }
    }

    /// Writes what is queued at the end of `seg` and starts over empty.
    pub(crate) fn write_to(&mut self, seg: &mut Segment) -> Result<(), WalError> {
        if self.len == 0 {
            return Ok(());
        }
        let mut slices: Vec<IoSlice<'_>> = self
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Staged { start, end } => IoSlice::new(&self.staged[*start..*end]),
                Chunk::Shared(b) => IoSlice::new(b),
            })
            .collect();
        write_all_vectored_at(&seg.file.file, &mut slices, seg.size)
            .map_err(|e| WalError::io(&seg.file.path, "write", e))?;
        seg.size += self.len;
        self.staged.clear();
        self.chunks.clear();
        self.len = 0;
        Ok(())
    }
}

/// `pwritev` in safe std: the file position is only ever used here, under the log's write lock
/// (reads are positional), so a seek and `writev`s do the same.
fn write_all_vectored_at(file: &File, mut slices: &mut [IoSlice<'_>], at: u64) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(at))?;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `len` bytes of `file` from `at`, read into memory that is not zeroed first: fetches read
/// megabytes at a time, and the memset was 3 % of a consume profile.
fn read_at(file: &File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let offset = at + buf.len() as u64;
        let read = match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset) {
            Err(rustix::io::Errno::INTR) => continue,
            r => r?,
        };
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ends before byte {} (read {} of {len} bytes from {at})", at + len as u64, buf.len()),
            ));
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Reads records `start..end` of `seg` with one `pread`, checking each frame again: the page
/// cache is trusted no more than the disk.
pub(crate) fn read_frames(
    seg: &Segment,
    start: usize,
    end: usize,
    out: &mut Vec<(u64, Bytes)>,
) -> Result<(), WalError> {
    let path = &seg.file.path;
    let base = seg.positions[start];
    let stop = seg.frame_end(end - 1);
    let buf =
        Bytes::from(read_at(&seg.file.file, base, (stop - base) as usize).map_err(|e| WalError::io(path, "read", e))?);
    for i in start..end {
        let pos = seg.positions[i];
        let at = (pos - base) as usize;
        let frame_end = (seg.frame_end(i) - base) as usize;
        let (len, crc, id) = format::decode_frame_header(&buf[at..at + FRAME_HEADER_LEN as usize]);
        let payload = buf.slice(at + FRAME_HEADER_LEN as usize..frame_end);
        if id != seg.ids[i] || len as usize != payload.len() {
            return Err(WalError::corrupt(
                path,
                pos,
                format!(
                    "frame header changed on disk: expected record id {} of {} bytes, found id \
                     {id} of {len} bytes",
                    seg.ids[i],
                    payload.len()
                ),
            ));
        }
        if format::frame_crc(id, &payload) != crc {
            return Err(WalError::corrupt(
                path,
                pos,
                format!("CRC32C mismatch in record id {id} (it was valid when written)"),
            ));
        }
        out.push((id, payload));
    }
    Ok(())
}
