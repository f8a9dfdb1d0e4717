//! Kafka v2 record batches as the data plane sees them: validated once when produced, stored
//! exactly as sent, and read back with only `baseOffset` rewritten (it is outside the CRC).

use chronik_shared::error::{ChronikError, ErrorCode};

/// Bytes before `attributes`, where the CRC-covered part of a batch starts.
const CRC_START: usize = 21;
/// Size of a v2 batch header up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// The bits of `attributes` that name the compression codec, and the highest codec Kafka has
/// (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
const COMPRESSION_CODEC: i16 = 0x07;
const MAX_COMPRESSION_CODEC: i16 = 4;

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
        self.attributes & COMPRESSION_CODEC != 0
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
    let codec = info.attributes & COMPRESSION_CODEC;
    if codec > MAX_COMPRESSION_CODEC {
        // Stored as sent, it would make every consumer of the partition fail to decode it.
        return Err(corrupt(format!(
            "record batch compression codec {codec} is unknown (attributes {:#06x}); Kafka's are 0 (none) to 4 (zstd)",
            info.attributes
        )));
    }
    // As Kafka checks: the batch's offsets span exactly its records (a larger span would open
    // a gap of up to 2^31 offsets in the partition). In i64, since the delta may be i32::MAX.
    let (delta, count) = (i64::from(info.last_offset_delta), i64::from(info.record_count));
    if delta < 0 || count <= 0 || delta + 1 != count {
        return Err(corrupt(format!(
            "record batch claims {count} records with last offset delta {delta}; a batch of n records has delta n-1"
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
        // A delta may carry a timestamp past i64::MAX (or below MIN): it counts as the last
        // (first) possible one rather than overflowing.
        if i.base_timestamp.saturating_add(ts_delta) >= ts {
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

    /// Found by the `record_batch` fuzz target: the records of a valid batch whose base
    /// timestamp (7710164357785223705) plus a record's timestamp delta overflows i64, which
    /// panicked ListOffsets' timestamp search in builds with overflow checks.
    #[test]
    fn timestamp_search_survives_timestamp_overflow() {
        let records = [
            0x18, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x0a, 0x6f, 0x6c, 0x64, 0x2d, 0x30, 0x00, 0x18, 0x00, 0x00, 0x02, 0x02,
            0x6b, 0x0a, 0x6f, 0x6c, 0x64, 0x2d, 0x30, 0x00, 0x00, 0x00, 0x00, 0xfc, 0xfd, 0x94, 0xf5, 0x90, 0xff, 0xff,
            0xff, 0x63, 0x00,
        ];
        let mut b = vec![0u8; HEADER_LEN];
        b[16] = 2;
        b[23..27].copy_from_slice(&3i32.to_be_bytes());
        b[27..35].copy_from_slice(&7_710_164_357_785_223_705i64.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[57..61].copy_from_slice(&4i32.to_be_bytes());
        b.extend(records);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        validate(&b).expect("a valid batch: Chronik does not decode records when produced");
        // The fourth record's timestamp is past i64::MAX: it is at or after any timestamp.
        assert_eq!(first_offset_delta_at_or_after(&b, i64::MAX), Some(0));
        assert_eq!(first_offset_delta_at_or_after(&b, 7_710_164_357_785_223_705), Some(0));
    }

    /// Found by the `record_batch` fuzz target: a batch whose last offset delta is i32::MAX
    /// overflowed the record count check (a panic with overflow checks, in release a wrap
    /// that happened to reject it).
    #[test]
    fn rejects_offset_spans_that_do_not_match_the_record_count() {
        let with = |delta: i32, count: i32| {
            let mut b = batch(1, 0);
            b[23..27].copy_from_slice(&delta.to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            validate(&b)
        };
        // The fuzzer's batch: 44 records, last offset delta 2147483647.
        let err = with(i32::MAX, 44).expect_err("offsets span 2^31");
        assert_eq!(err.code, ErrorCode::CorruptMessage);
        assert!(err.message.contains("44 records with last offset delta 2147483647"), "{}", err.message);
        assert!(with(i32::MAX, i32::MAX).is_err());
        assert!(with(5, 2).is_err(), "a gap of offsets");
        assert!(with(0, 2).is_err());
        assert!(with(-1, 0).is_err());
        assert!(with(0, 1).is_ok());
    }

    /// Found by the `record_batch` fuzz target: a batch with compression codec 7 (attributes
    /// 0x0047) was accepted and would have been stored for consumers to choke on.
    #[test]
    fn rejects_unknown_compression_codecs() {
        let mut found = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x39\x00\x00\x00\x00\x02\x2b\x99\x01\x00\x00\x47\
            \x00\x00\x00\x00\x00\x00\x84\xa2\x19\xaa\xcf\xad\x00\x00\x01\xa2\x19\xaa\xcf\xad\xff\xff\xff\xff\xff\xff\
            \xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x01\x0e\x00\x00\x00\x01\x02\x63\x00"
            .to_vec();
        // The fuzz target tries every input with its CRC made right too; this one needs it.
        let crc = crc32c::crc32c(&found[CRC_START..]);
        found[17..21].copy_from_slice(&crc.to_be_bytes());
        let err = validate(&found).expect_err("codec 7 does not exist");
        assert_eq!(err.code, ErrorCode::CorruptMessage);
        assert!(err.message.contains("compression codec 7 is unknown"), "{}", err.message);

        for codec in 0..=4i16 {
            let mut b = batch(1, 0);
            b[21..23].copy_from_slice(&codec.to_be_bytes());
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(validate(&b).expect("known codec").compressed(), codec != 0);
        }
    }
}
