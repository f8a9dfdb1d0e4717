//! Kafka v2 record batches as the data plane sees them: validated once when produced, stored
//! exactly as sent, and read back with only `baseOffset` rewritten (it is outside the CRC).

use chronik_shared::error::{ChronikError, ErrorCode};

/// Bytes before `attributes`, where the CRC-covered part of a batch starts.
const CRC_START: usize = 21;
/// Size of a v2 batch header up to and including the record count.
pub const HEADER_LEN: usize = 61;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchInfo {
    pub fn compressed(&self) -> bool {
        self.attributes & 0x07 != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn corrupt(msg: String) -> ChronikError {
    ChronikError::new(ErrorCode::CorruptMessage, msg)
}

/// Checks that `b` is exactly one v2 record batch with a valid CRC32C.
pub fn validate(b: &[u8]) -> Result<BatchInfo, ChronikError> {
    if b.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "record batch of {} bytes is shorter than the {HEADER_LEN}-byte v2 header",
            b.len()
        )));
    }
    let batch_len = i32_at(b, 8);
    if batch_len < 0 || 12 + batch_len as usize != b.len() {
        return Err(corrupt(format!(
            "record batch length field says {} bytes but {} were sent",
            batch_len as i64 + 12,
            b.len()
        )));
    }
    let magic = b[16] as i8;
    if magic != 2 {
        return Err(corrupt(format!(
            "record batch magic is {magic}; only v2 batches (magic 2, Kafka 0.11+ clients) are accepted"
        )));
    }
    let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
    let actual = crc32c::crc32c(&b[CRC_START..]);
    if crc != actual {
        return Err(corrupt(format!("record batch CRC mismatch: header says {crc:#010x}, content has {actual:#010x}")));
    }
    let info = info(b).ok_or_else(|| corrupt("record batch header is truncated".to_string()))?;
    if info.last_offset_delta < 0 || info.record_count <= 0 || info.last_offset_delta + 1 < info.record_count {
        return Err(corrupt(format!(
            "record batch claims {} records with last offset delta {}",
            info.record_count, info.last_offset_delta
        )));
    }
    Ok(info)
}

/// Header fields of a stored (already validated) batch.
pub fn info(b: &[u8]) -> Option<BatchInfo> {
    if b.len() < HEADER_LEN {
        return None;
    }
    Some(BatchInfo {
        attributes: i16_at(b, 21),
        last_offset_delta: i32_at(b, 23),
        base_timestamp: i64_at(b, 27),
        max_timestamp: i64_at(b, 35),
        producer_id: i64_at(b, 43),
        producer_epoch: i16_at(b, 51),
        base_sequence: i32_at(b, 53),
        record_count: i32_at(b, 57),
    })
}

fn varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// The offset delta of the first record whose timestamp is at least `ts`, for an
/// uncompressed batch; `None` when the batch is compressed or has no such record.
pub fn first_offset_delta_at_or_after(b: &[u8], ts: i64) -> Option<i64> {
    let i = info(b)?;
    if i.compressed() {
        return None;
    }
    let mut pos = HEADER_LEN;
    for _ in 0..i.record_count {
        let len = varint(b, &mut pos)?;
        let start = pos;
        pos += 1; // attributes
        let ts_delta = varint(b, &mut pos)?;
        let offset_delta = varint(b, &mut pos)?;
        if i.base_timestamp + ts_delta >= ts {
            return Some(offset_delta);
        }
        pos = start + usize::try_from(len).ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid uncompressed batch with `n` empty records.
    pub(crate) fn batch(n: i32, base_ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..n {
            let mut rec = vec![0u8]; // attributes
            rec.push(zig(i as i64)); // timestamp delta
            rec.push(zig(i as i64)); // offset delta
            rec.push(zig(-1)); // key length -1
            rec.push(zig(0)); // value length 0
            rec.push(zig(0)); // headers 0
            records.push(zig(rec.len() as i64));
            records.extend(rec);
        }
        let mut b = vec![0u8; HEADER_LEN];
        b[16] = 2;
        b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
        b[27..35].copy_from_slice(&base_ts.to_be_bytes());
        b[35..43].copy_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
        b.extend(records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn zig(v: i64) -> u8 {
        (((v << 1) ^ (v >> 63)) as u64) as u8
    }

    #[test]
    fn accepts_valid_and_finds_timestamps() {
        let b = batch(5, 1000);
        let i = validate(&b).unwrap();
        assert_eq!(i.record_count, 5);
        assert_eq!(first_offset_delta_at_or_after(&b, 1003), Some(3));
        assert_eq!(first_offset_delta_at_or_after(&b, 2000), None);
    }

    #[test]
    fn rejects_bad_crc_magic_and_length() {
        let mut b = batch(2, 0);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert_eq!(validate(&b).unwrap_err().code, ErrorCode::CorruptMessage);
        let mut b = batch(2, 0);
        b[16] = 1;
        assert!(validate(&b).unwrap_err().message.contains("magic"));
        let b = batch(2, 0);
        assert!(validate(&b[..b.len() - 1]).is_err());
        assert!(validate(&b[..10]).is_err());
    }
}
