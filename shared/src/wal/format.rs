//! The bytes of a segment file, and a reader that walks its frames without trusting them.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::WalError;

pub(crate) const MAGIC: &[u8; 8] = b"CHRWAL01";
pub(crate) const HEADER_LEN: u64 = 16;
/// `len` + `crc` + `id` in front of every payload.
pub(crate) const FRAME_HEADER_LEN: u64 = 16;
pub(crate) const MAX_PAYLOAD: u64 = u32::MAX as u64;

/// The name of segment `seq` of `stream`: what [`Wal::open`](super::Wal::open) looks for.
pub fn segment_file_name(stream: u32, seq: u64) -> String {
    format!("wal_{stream}_{seq:08}.log")
}

/// `(stream, seq)` of a segment file name. Only the exact name we would write is accepted, so a
/// stray `wal_0_1.log` next to `wal_0_00000001.log` cannot be taken for the same segment.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix("wal_")?.strip_suffix(".log")?;
    let (stream, seq) = rest.split_once('_')?;
    if !stream.bytes().all(|b| b.is_ascii_digit()) || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let stream: u32 = stream.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    (segment_file_name(stream, seq) == name).then_some((stream, seq))
}

pub(crate) fn encode_header(stream: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&stream.to_le_bytes());
    h
}

pub(crate) fn frame_crc(id: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&id.to_le_bytes()), payload)
}

/// A record's payload as [`Wal::append`](super::Wal::append) takes it: a head and a tail that
/// land back to back in one frame. The tail is written from its own buffer, so a record batch
/// goes from the buffer it arrived in to the page cache without being copied into a frame first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    head: Bytes,
    tail: Bytes,
}

impl Payload {
    pub fn new(head: Bytes, tail: Bytes) -> Self {
        Self { head, tail }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn parts(&self) -> [&Bytes; 2] {
        [&self.head, &self.tail]
    }
}

impl From<Bytes> for Payload {
    fn from(head: Bytes) -> Self {
        Self { head, tail: Bytes::new() }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(head: Vec<u8>) -> Self {
        Bytes::from(head).into()
    }
}

/// The 16 bytes in front of `payload`; the caller has checked `payload.len() <= MAX_PAYLOAD`.
pub(crate) fn frame_header(id: u64, payload: &Payload) -> [u8; FRAME_HEADER_LEN as usize] {
    let crc = payload.parts().iter().fold(crc32c::crc32c(&id.to_le_bytes()), |crc, p| crc32c::crc32c_append(crc, p));
    let mut h = [0u8; FRAME_HEADER_LEN as usize];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// A frame header as it sits in a byte slice of at least 16 bytes.
pub(crate) fn decode_frame_header(b: &[u8]) -> (u32, u32, u64) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    let mut id = [0u8; 8];
    len.copy_from_slice(&b[0..4]);
    crc.copy_from_slice(&b[4..8]);
    id.copy_from_slice(&b[8..16]);
    (u32::from_le_bytes(len), u32::from_le_bytes(crc), u64::from_le_bytes(id))
}

/// What the first 16 bytes of a segment say.
pub(crate) enum Header {
    Valid {
        stream: u32,
    },
    /// Shorter than a header: a crash while the segment was being created.
    Short {
        len: u64,
    },
    BadMagic,
}

pub(crate) enum Frame<'a> {
    Record {
        pos: u64,
        id: u64,
        crc_ok: bool,
        payload: &'a [u8],
    },
    /// The file ends inside this frame; nothing can be read after it.
    Incomplete {
        pos: u64,
        reason: String,
    },
}

/// Walks the frames of one segment front to back. A frame with a bad CRC is returned (not an
/// error) so callers decide what it means; a length running past the end of the file ends the walk.
pub(crate) struct FrameReader {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    file_len: u64,
    buf: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn open(path: &Path) -> Result<(FrameReader, Header), WalError> {
        let file = File::open(path).map_err(|e| WalError::io(path, "open", e))?;
        let file_len = file.metadata().map_err(|e| WalError::io(path, "stat", e))?.len();
        let mut reader = FrameReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(256 * 1024, file),
            pos: 0,
            file_len,
            buf: Vec::new(),
        };
        if file_len < HEADER_LEN {
            reader.pos = file_len;
            return Ok((reader, Header::Short { len: file_len }));
        }
        let mut h = [0u8; HEADER_LEN as usize];
        reader.read_exact(&mut h)?;
        if &h[..8] != MAGIC {
            reader.pos = file_len;
            return Ok((reader, Header::BadMagic));
        }
        let mut stream = [0u8; 4];
        stream.copy_from_slice(&h[8..12]);
        let stream = u32::from_le_bytes(stream);
        Ok((reader, Header::Valid { stream }))
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), WalError> {
        // The length was checked against the file size, so a short read means the file shrank
        // under us (someone else truncating it): an I/O problem, not corruption.
        self.reader.read_exact(out).map_err(|e| WalError::io(&self.path, "read", e))?;
        self.pos += out.len() as u64;
        Ok(())
    }

    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WalError> {
        let pos = self.pos;
        let remaining = self.file_len - pos;
        if remaining == 0 {
            return Ok(None);
        }
        if remaining < FRAME_HEADER_LEN {
            self.pos = self.file_len;
            return Ok(Some(Frame::Incomplete {
                pos,
                reason: format!("partial frame header ({remaining} of {FRAME_HEADER_LEN} bytes) at end of file"),
            }));
        }
        let mut h = [0u8; FRAME_HEADER_LEN as usize];
        self.read_exact(&mut h)?;
        let (len, crc, id) = decode_frame_header(&h);
        let available = remaining - FRAME_HEADER_LEN;
        if u64::from(len) > available {
            self.pos = self.file_len;
            return Ok(Some(Frame::Incomplete {
                pos,
                reason: format!(
                    "frame of record id {id} claims a {len}-byte payload but only {available} \
                     bytes follow"
                ),
            }));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len as usize, 0);
        let read = self.read_exact(&mut buf);
        self.buf = buf;
        read?;
        let payload = &self.buf[..];
        Ok(Some(Frame::Record { pos, id, crc_ok: frame_crc(id, payload) == crc, payload }))
    }
}

/// Is there a frame with a good CRC and an id above `after_id` anywhere in `bytes` (which start at
/// file offset `base`)? Used to tell a torn tail (nothing valid after the damage) from corruption in
/// the middle of a log. Random bytes make many lengths look plausible, so the CRC work is capped.
pub(crate) enum Resync {
    Nothing,
    Found {
        position: u64,
        id: u64,
    },
    /// The cap was hit before the search finished; the caller must assume the worst.
    GaveUp {
        searched_to: u64,
    },
}

const RESYNC_CRC_BUDGET: u64 = 512 * 1024 * 1024;

pub(crate) fn find_valid_frame(bytes: &[u8], base: u64, after_id: Option<u64>) -> Resync {
    let mut budget = RESYNC_CRC_BUDGET;
    let n = bytes.len();
    let header = FRAME_HEADER_LEN as usize;
    let mut q = 0usize;
    while q + header <= n {
        let (len, crc, id) = decode_frame_header(&bytes[q..q + header]);
        let end = q + header + len as usize;
        let id_fits = after_id.is_none_or(|after| id > after);
        if end <= n && id_fits {
            let cost = 8 + u64::from(len);
            if cost > budget {
                return Resync::GaveUp { searched_to: base + q as u64 };
            }
            budget -= cost;
            if frame_crc(id, &bytes[q + header..end]) == crc {
                return Resync::Found { position: base + q as u64, id };
            }
        }
        q += 1;
    }
    Resync::Nothing
}
