//! Offline inspection for `chronik-server debug wal-verify|wal-dump|wal-stats --path P`.
//!
//! `P` is one segment file or a directory of them (all streams in it). These functions only read:
//! they are safe to run next to a live log, where they may see a tail still being written.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::format::{self, Frame, FrameReader, Header};
use super::recovery::{self, SegmentFile};
use super::{TruncatedTail, WalError};

/// The outcome of [`verify_path`] when nothing is corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub files: Vec<VerifiedFile>,
    pub records: u64,
    pub bytes: u64,
    /// Torn tails the next open would cut off (at most one per stream).
    pub torn_tails: Vec<TruncatedTail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    pub path: PathBuf,
    pub stream: Option<u32>,
    pub seq: Option<u64>,
    pub records: u64,
    pub bytes: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
}

/// The outcome of [`stats_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    pub segments: usize,
    pub records: u64,
    /// File bytes, headers and frames included.
    pub bytes: u64,
    pub payload_bytes: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    pub rows: Vec<SegmentStats>,
}

/// One segment in [`WalStats`]; counts cover the readable records before any damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStats {
    pub path: PathBuf,
    pub stream: Option<u32>,
    pub seq: Option<u64>,
    pub records: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    /// Where and why reading stopped early (run `wal-verify` to know whether it is a torn tail).
    pub damage: Option<String>,
}

/// The segment files `path` names, grouped by stream. A file whose name is not a segment name is
/// taken as it is (stream from its header).
struct Target {
    groups: BTreeMap<Option<u32>, Vec<SegmentFile>>,
    /// False when `path` is one file with newer segments of its stream next to it.
    tail_may_be_torn: bool,
}

fn target(path: &Path) -> Result<Target, WalError> {
    let meta = std::fs::metadata(path).map_err(|e| WalError::io(path, "stat", e))?;
    let mut groups: BTreeMap<Option<u32>, Vec<SegmentFile>> = BTreeMap::new();
    if meta.is_dir() {
        let files = recovery::list_segment_files(path)?;
        if files.is_empty() {
            return Err(WalError::io(
                path,
                "find WAL segments in",
                io::Error::new(io::ErrorKind::NotFound, "no wal_<stream>_<seq>.log files there"),
            ));
        }
        for f in files {
            groups.entry(Some(f.stream)).or_default().push(f);
        }
        return Ok(Target { groups, tail_may_be_torn: true });
    }
    let name = path.file_name().and_then(|n| n.to_str());
    let parsed = name.and_then(format::parse_segment_file_name);
    let mut tail_may_be_torn = true;
    if let (Some((stream, seq)), Some(parent)) = (parsed, path.parent()) {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        // Unreadable siblings only cost us the distinction; the file itself is what was asked for.
        if let Ok(siblings) = recovery::list_segment_files(parent) {
            tail_may_be_torn = !siblings.iter().any(|s| s.stream == stream && s.seq > seq);
        }
    }
    let file = SegmentFile {
        stream: parsed.map_or(0, |(stream, _)| stream),
        seq: parsed.map_or(0, |(_, seq)| seq),
        path: path.to_path_buf(),
    };
    groups.insert(parsed.map(|(stream, _)| stream), vec![file]);
    Ok(Target { groups, tail_may_be_torn })
}

/// What a node reads of the log directory `dir` before it serves: what [`Wal::open`] will,
/// without repairing anything. With `trust_sealed`, sealed segments whose index agrees with them
/// are not read (the scrub and every read check their records).
///
/// [`Wal::open`]: super::Wal::open
pub fn check_before_open(dir: &Path, trust_sealed: bool) -> Result<(), WalError> {
    let mut streams: BTreeMap<u32, Vec<SegmentFile>> = BTreeMap::new();
    for f in recovery::list_segment_files(dir)? {
        streams.entry(f.stream).or_default().push(f);
    }
    for files in streams.values() {
        recovery::scan_stream(files, true, true, trust_sealed)?;
    }
    Ok(())
}

/// Checks every record's frame and CRC, and that ids increase. `Err(Corrupt)` names the first
/// damage that is not a torn tail of a stream's newest segment.
pub fn verify_path(path: &Path) -> Result<VerifyReport, WalError> {
    let target = target(path)?;
    let mut report = VerifyReport { files: Vec::new(), records: 0, bytes: 0, torn_tails: Vec::new() };
    for (stream, files) in &target.groups {
        let scan = recovery::scan_stream(files, stream.is_some(), target.tail_may_be_torn, false)?;
        for (file, seg) in files.iter().zip(&scan.segments) {
            report.records += seg.ids.len() as u64;
            report.bytes += seg.file_len;
            report.files.push(VerifiedFile {
                path: seg.path.clone(),
                stream: stream.map(|_| file.stream),
                seq: stream.map(|_| file.seq),
                records: seg.ids.len() as u64,
                bytes: seg.file_len,
                first_id: seg.ids.first().copied(),
                last_id: seg.ids.last().copied(),
            });
        }
        report.torn_tails.extend(scan.torn);
    }
    Ok(report)
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "OK: {} segment file(s), {} record(s), {} byte(s); every CRC32C checked",
            self.files.len(),
            self.records,
            self.bytes
        )?;
        for file in &self.files {
            writeln!(
                f,
                "  {}  records={} ids={} bytes={}",
                file.path.display(),
                file.records,
                id_range(file.first_id, file.last_id),
                file.bytes
            )?;
        }
        for tail in &self.torn_tails {
            writeln!(f, "{tail}; the next open truncates it (normal after a crash)")?;
        }
        Ok(())
    }
}

/// Writes one line per record: file, byte position, id, payload length, CRC status and the first
/// payload bytes in hex. Damage is printed where it is met; the dump goes on with the next file.
pub fn dump_path(path: &Path, out: &mut dyn Write) -> Result<(), WalError> {
    let target = target(path)?;
    let output = Path::new("<dump output>");
    let w = |r: io::Result<()>| r.map_err(|e| WalError::io(output, "write", e));
    for file in target.groups.values().flatten() {
        let name =
            file.path.file_name().map_or_else(|| file.path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let (mut reader, header) = FrameReader::open(&file.path)?;
        match header {
            Header::Valid { stream } => {
                w(writeln!(out, "# {}: stream {stream}, {} bytes", file.path.display(), reader.file_len()))?
            }
            Header::Short { len } => {
                w(writeln!(out, "# {}: incomplete header ({len} bytes)", file.path.display()))?;
                continue;
            }
            Header::BadMagic => {
                w(writeln!(out, "# {}: not a WAL segment (bad magic)", file.path.display()))?;
                continue;
            }
        }
        while let Some(frame) = reader.next_frame()? {
            match frame {
                Frame::Record { pos, id, crc_ok, payload } => w(writeln!(
                    out,
                    "{name} pos={pos} id={id} len={} crc={} data={}",
                    payload.len(),
                    if crc_ok { "ok" } else { "BAD" },
                    hex_prefix(payload, 16)
                ))?,
                Frame::Incomplete { pos, reason } => w(writeln!(out, "{name} pos={pos} INCOMPLETE {reason}"))?,
            }
        }
    }
    Ok(())
}

fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push_str("..");
    }
    s
}

fn id_range(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "-".to_string(),
    }
}

/// Counts segments, records and bytes, stopping at damage in a file instead of failing (use
/// [`verify_path`] for a verdict).
pub fn stats_path(path: &Path) -> Result<WalStats, WalError> {
    let target = target(path)?;
    let mut stats = WalStats {
        segments: 0,
        records: 0,
        bytes: 0,
        payload_bytes: 0,
        first_id: None,
        last_id: None,
        rows: Vec::new(),
    };
    for (stream, files) in &target.groups {
        for file in files {
            let expected = stream.map(|_| file.stream);
            let seg = recovery::scan_segment(&file.path, file.seq, expected, None)?;
            let row = SegmentStats {
                path: seg.path.clone(),
                stream: expected,
                seq: stream.map(|_| file.seq),
                records: seg.ids.len() as u64,
                bytes: seg.file_len,
                payload_bytes: seg.payload_bytes,
                first_id: seg.ids.first().copied(),
                last_id: seg.ids.last().copied(),
                damage: seg.damage.as_ref().map(|d| format!("at byte {}: {}", d.position, d.reason)),
            };
            stats.segments += 1;
            stats.records += row.records;
            stats.bytes += row.bytes;
            stats.payload_bytes += row.payload_bytes;
            stats.first_id = min_opt(stats.first_id, row.first_id);
            stats.last_id = stats.last_id.max(row.last_id);
            stats.rows.push(row);
        }
    }
    Ok(stats)
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl fmt::Display for WalStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "segments: {}  records: {}  bytes: {}  payload bytes: {}  ids: {}",
            self.segments,
            self.records,
            self.bytes,
            self.payload_bytes,
            id_range(self.first_id, self.last_id)
        )?;
        writeln!(
            f,
            "{:<28} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12}  note",
            "file", "stream", "seq", "records", "bytes", "first_id", "last_id"
        )?;
        let dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        for row in &self.rows {
            let name = row
                .path
                .file_name()
                .map_or_else(|| row.path.display().to_string(), |n| n.to_string_lossy().into_owned());
            writeln!(
                f,
                "{:<28} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12}  {}",
                name,
                row.stream.map_or_else(|| "-".to_string(), |s| s.to_string()),
                dash(row.seq),
                row.records,
                row.bytes,
                dash(row.first_id),
                dash(row.last_id),
                row.damage.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}
