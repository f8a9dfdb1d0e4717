//! The index of a sealed segment, written next to it when the log rolls past it, so a restart
//! learns where each record is without reading the segment (design §5, M9 restart goal).
//!
//! `wal_{stream}_{seq:08}.idx`: `CHRIDX01`, u64 segment length, u64 count, then count × (u64 id,
//! u64 frame offset), then a CRC32C of everything before it; little endian. It is not synced:
//! an index that is missing, torn, or that does not describe the segment as it is on disk
//! (length, header, the last frame's id and length) is ignored and the segment is read instead.
//! Trusting an index skips the CRC check of the segment's records at start; the background
//! scrub and every read still check them.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, FRAME_HEADER_LEN, HEADER_LEN};
use super::recovery::ScannedSegment;
use super::segment::Segment;

const MAGIC: &[u8; 8] = b"CHRIDX01";
const FIXED_LEN: usize = 8 + 8 + 8 + 4;
const ENTRY_LEN: usize = 16;

/// Where the index of the segment at `segment` lives.
pub(crate) fn index_path(segment: &Path) -> PathBuf {
    segment.with_extension("idx")
}

/// Writes the index of `seg`, which is complete and synced. Failing only costs a slower next
/// start, so it is logged, and no older index is left behind to be believed.
pub(crate) fn write(seg: &Segment) {
    let path = index_path(&seg.file.path);
    let tmp = path.with_extension("idx.tmp");
    let mut buf = Vec::with_capacity(FIXED_LEN + seg.ids.len() * ENTRY_LEN);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&seg.size.to_le_bytes());
    buf.extend_from_slice(&(seg.ids.len() as u64).to_le_bytes());
    for (id, pos) in seg.ids.iter().zip(&seg.positions) {
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&pos.to_le_bytes());
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    let written = File::create(&tmp).and_then(|mut f| f.write_all(&buf)).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        remove(&seg.file.path);
        tracing::warn!(path = %path.display(), error = %e, "could not write a sealed segment's index; the next start reads the segment instead");
    }
}

/// Removes the index of the segment at `segment`, if any (the segment is being cut or deleted).
pub(crate) fn remove(segment: &Path) {
    let path = index_path(segment);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove a stale segment index"),
    }
}

/// The segment at `path` as its index describes it, if the index is there and agrees with the
/// file: records after `prev_last`, header of `stream`, frames from the header to the end.
pub(crate) fn load(path: &Path, seq: u64, stream: u32, prev_last: Option<u64>) -> Option<ScannedSegment> {
    let bytes = fs::read(index_path(path)).ok()?;
    let (ids, positions, size) = decode(&bytes)?;
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() != size {
        return None;
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).ok()?;
    if header != format::encode_header(stream) {
        return None;
    }
    // Frames are back to back from the header on; ids ascend past the previous segment's.
    if positions.first().is_some_and(|&p| p != HEADER_LEN) {
        return None;
    }
    let mut expected_pos = HEADER_LEN;
    let mut last = prev_last;
    for (&id, &pos) in ids.iter().zip(&positions) {
        if pos < expected_pos || last.is_some_and(|l| id <= l) {
            return None;
        }
        expected_pos = pos + FRAME_HEADER_LEN;
        last = Some(id);
    }
    let payload_bytes = match (ids.last(), positions.last()) {
        (Some(&id), Some(&pos)) => {
            let mut h = [0u8; FRAME_HEADER_LEN as usize];
            file.read_exact_at(&mut h, pos).ok()?;
            let (len, _, found) = format::decode_frame_header(&h);
            if found != id || pos + FRAME_HEADER_LEN + u64::from(len) != size {
                return None;
            }
            size - HEADER_LEN - FRAME_HEADER_LEN * ids.len() as u64
        }
        _ if size == HEADER_LEN => 0,
        _ => return None,
    };
    Some(ScannedSegment {
        path: path.to_path_buf(),
        seq,
        ids,
        positions,
        file_len: size,
        valid_end: size,
        payload_bytes,
        damage: None,
    })
}

fn decode(bytes: &[u8]) -> Option<(Vec<u64>, Vec<u64>, u64)> {
    if bytes.len() < FIXED_LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let u64_at = |at: usize| body.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let size = u64_at(8)?;
    let count = usize::try_from(u64_at(16)?).ok()?;
    if body.len() != 24 + count.checked_mul(ENTRY_LEN)? {
        return None;
    }
    let mut ids = Vec::with_capacity(count);
    let mut positions = Vec::with_capacity(count);
    for i in 0..count {
        ids.push(u64_at(24 + i * ENTRY_LEN)?);
        positions.push(u64_at(32 + i * ENTRY_LEN)?);
    }
    Some((ids, positions, size))
}
