//! Reading a stream's segments back after a restart, and deciding what damage means.
//!
//! A crash in the middle of a write can only hurt the end of the last segment: appends go to the
//! end of the active segment, and a segment is synced before the next one is created. So damage
//! there, with nothing valid after it, is a torn write of records that were never acknowledged, and
//! is cut off. Damage anywhere else means the disk lost or changed data we had synced: that is an
//! error for a person to look at, because skipping it would hand Raft a log with a hole in it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{self, FRAME_HEADER_LEN, Frame, FrameReader, HEADER_LEN, Header, Resync, find_valid_frame};
use super::sealed;
use super::{TruncatedTail, WalError};

/// A segment file found in a WAL directory.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile {
    pub(crate) stream: u32,
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
}

/// Every `wal_{stream}_{seq:08}.log` in `dir`, sorted by stream then seq. Other files (the lock
/// file, `raft_*` files of the Raft store, editor leftovers) are not ours and are ignored.
pub(crate) fn list_segment_files(dir: &Path) -> Result<Vec<SegmentFile>, WalError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io(dir, "list directory", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io(dir, "list directory", e))?;
        let name = entry.file_name();
        let Some((stream, seq)) = name.to_str().and_then(format::parse_segment_file_name) else {
            continue;
        };
        out.push(SegmentFile { stream, seq, path: entry.path() });
    }
    out.sort_by_key(|s| (s.stream, s.seq));
    Ok(out)
}

#[derive(Debug, Clone)]
pub(crate) struct Damage {
    pub(crate) position: u64,
    pub(crate) reason: String,
    /// Could a crash mid-write have left this (if it is at the end of the last segment)?
    pub(crate) can_be_torn: bool,
}

/// What one pass over a segment found: the valid records up to the first damage.
#[derive(Debug, Clone)]
pub(crate) struct ScannedSegment {
    pub(crate) path: PathBuf,
    pub(crate) seq: u64,
    pub(crate) ids: Vec<u64>,
    /// File offset of each record's frame, parallel to `ids`.
    pub(crate) positions: Vec<u64>,
    pub(crate) file_len: u64,
    /// End of the last valid frame (or of the header).
    pub(crate) valid_end: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) damage: Option<Damage>,
}

/// Reads one segment. `stream` is what the file name says (None: trust the header); `prev_last` is
/// the last id of the segment before it, which this one's ids must exceed.
pub(crate) fn scan_segment(
    path: &Path,
    seq: u64,
    stream: Option<u32>,
    prev_last: Option<u64>,
) -> Result<ScannedSegment, WalError> {
    let (mut reader, header) = FrameReader::open(path)?;
    let mut seg = ScannedSegment {
        path: path.to_path_buf(),
        seq,
        ids: Vec::new(),
        positions: Vec::new(),
        file_len: reader.file_len(),
        valid_end: 0,
        payload_bytes: 0,
        damage: None,
    };
    let header_damage = match header {
        Header::Short { len } => Some(Damage {
            position: 0,
            reason: format!("segment header incomplete ({len} of {HEADER_LEN} bytes)"),
            can_be_torn: true,
        }),
        Header::BadMagic => Some(Damage {
            position: 0,
            reason: "not a Chronik WAL segment (bad magic; expected CHRWAL01)".to_string(),
            can_be_torn: false,
        }),
        Header::Valid { stream: found } => match stream {
            Some(expected) if expected != found => Some(Damage {
                position: 8,
                reason: format!("header says stream {found} but the file name says stream {expected}"),
                can_be_torn: false,
            }),
            _ => None,
        },
    };
    if header_damage.is_some() {
        seg.damage = header_damage;
        return Ok(seg);
    }
    seg.valid_end = HEADER_LEN;
    let mut last = prev_last;
    while let Some(frame) = reader.next_frame()? {
        match frame {
            Frame::Record { pos, id, crc_ok, payload } => {
                if !crc_ok {
                    seg.damage = Some(Damage {
                        position: pos,
                        reason: format!(
                            "CRC32C mismatch in the frame of record id {id} ({} payload bytes)",
                            payload.len()
                        ),
                        can_be_torn: true,
                    });
                    break;
                }
                if let Some(prev) = last.filter(|&prev| id <= prev) {
                    seg.damage = Some(Damage {
                        position: pos,
                        reason: format!("record id {id} does not follow the previous id {prev}"),
                        can_be_torn: false,
                    });
                    break;
                }
                seg.ids.push(id);
                seg.positions.push(pos);
                seg.payload_bytes += payload.len() as u64;
                seg.valid_end = pos + FRAME_HEADER_LEN + payload.len() as u64;
                last = Some(id);
            }
            Frame::Incomplete { pos, reason } => {
                seg.damage = Some(Damage { position: pos, reason, can_be_torn: true });
                break;
            }
        }
    }
    Ok(seg)
}

/// All segments of one stream, checked as a whole.
#[derive(Debug)]
pub(crate) struct StreamScan {
    pub(crate) segments: Vec<ScannedSegment>,
    /// Damage at the end of the last segment that a crash mid-write explains.
    pub(crate) torn: Option<TruncatedTail>,
}

/// Scans `files` (one stream, ascending seq). A torn tail of the last file is reported (if
/// `tail_may_be_torn`: the last file is the stream's newest), any other damage is `Corrupt`.
/// With `trust_sealed`, a segment before the last one whose index (`sealed.rs`) agrees with it
/// is taken from the index, unread. Nothing is modified.
pub(crate) fn scan_stream(
    files: &[SegmentFile],
    check_stream: bool,
    tail_may_be_torn: bool,
    trust_sealed: bool,
) -> Result<StreamScan, WalError> {
    let mut segments: Vec<ScannedSegment> = Vec::with_capacity(files.len());
    let mut torn = None;
    let mut last_id: Option<u64> = None;
    for (i, file) in files.iter().enumerate() {
        let is_last = i + 1 == files.len() && tail_may_be_torn;
        let stream = check_stream.then_some(file.stream);
        let indexed = (trust_sealed && check_stream && i + 1 < files.len())
            .then(|| sealed::load(&file.path, file.seq, file.stream, last_id))
            .flatten();
        let seg = match indexed {
            Some(seg) => seg,
            None => scan_segment(&file.path, file.seq, stream, last_id)?,
        };
        if let Some(d) = &seg.damage {
            if !is_last {
                return Err(WalError::corrupt(
                    &seg.path,
                    d.position,
                    format!("{}; later segments exist, so this is not a write torn by a crash", d.reason),
                ));
            }
            if !d.can_be_torn {
                return Err(WalError::corrupt(&seg.path, d.position, d.reason.clone()));
            }
            let after_id = seg.ids.last().copied().or(last_id);
            match resync_after(&seg.path, d.position, after_id)? {
                Resync::Nothing => {
                    torn = Some(TruncatedTail {
                        path: seg.path.clone(),
                        position: d.position,
                        bytes_dropped: seg.file_len - d.position,
                        reason: d.reason.clone(),
                    });
                }
                Resync::Found { position, id } => {
                    return Err(WalError::corrupt(
                        &seg.path,
                        d.position,
                        format!("{}, yet a valid record (id {id}) follows at byte {position}", d.reason),
                    ));
                }
                Resync::GaveUp { searched_to } => {
                    return Err(WalError::corrupt(
                        &seg.path,
                        d.position,
                        format!(
                            "{}; could not rule out valid records after it (searched up to byte \
                             {searched_to})",
                            d.reason
                        ),
                    ));
                }
            }
        }
        last_id = seg.ids.last().copied().or(last_id);
        segments.push(seg);
    }
    Ok(StreamScan { segments, torn })
}

fn resync_after(path: &Path, position: u64, after_id: Option<u64>) -> Result<Resync, WalError> {
    let mut file = File::open(path).map_err(|e| WalError::io(path, "open", e))?;
    let start = position + 1;
    file.seek(SeekFrom::Start(start)).map_err(|e| WalError::io(path, "seek", e))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).map_err(|e| WalError::io(path, "read", e))?;
    Ok(find_valid_frame(&rest, start, after_id))
}

/// Cuts a torn tail off, durably. A segment torn inside its header is rewritten as an empty one.
pub(crate) fn repair_torn_tail(tail: &TruncatedTail, stream: u32, seg: &mut ScannedSegment) -> Result<(), WalError> {
    let path = &tail.path;
    let file = OpenOptions::new().write(true).open(path).map_err(|e| WalError::io(path, "open for repair", e))?;
    if tail.position < HEADER_LEN {
        file.set_len(0).map_err(|e| WalError::io(path, "truncate", e))?;
        file.write_all_at(&format::encode_header(stream), 0).map_err(|e| WalError::io(path, "write header", e))?;
        seg.valid_end = HEADER_LEN;
    } else {
        file.set_len(tail.position).map_err(|e| WalError::io(path, "truncate", e))?;
    }
    file.sync_all().map_err(|e| WalError::io(path, "sync", e))?;
    seg.file_len = seg.valid_end;
    seg.damage = None;
    tracing::warn!(
        path = %path.display(),
        position = tail.position,
        bytes_dropped = tail.bytes_dropped,
        reason = %tail.reason,
        "WAL torn tail truncated to the last valid record"
    );
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| WalError::io(dir, "sync directory", e))
}
