//! Record batches as a producer sends them: the gateway splits a partition's records into
//! batches by their length fields, and the data node validates each one (length, magic, CRC32C,
//! record count, attributes) and parses the stored header and records. The input is read both
//! as a produce request's `records` and as one batch (what `DataService.Produce` receives),
//! each as it is and with its CRCs made right, so that mutations also reach the checks after
//! the CRC. Besides crashes, an accepted batch must really be what validation promises.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: chronik_fuzz::LimitAlloc = chronik_fuzz::LimitAlloc;

/// baseOffset (8) + batchLength (4): the bytes before those batchLength counts.
const LENGTH_OFFSET: usize = 12;
/// The CRC covers the batch from `attributes` on.
const CRC_START: usize = 21;

fuzz_target!(|data: &[u8]| {
    records(data);
    check(data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed, true);
    records(&fixed);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed, false);
    check(&fixed);
});

/// A partition's records in a produce request, split by the gateway, each batch validated.
fn records(data: &[u8]) {
    let Ok(batches) = chronik_gateway::fuzzing::split_batches(data) else { return };
    let mut total = 0;
    for b in &batches {
        assert!(b.len() >= 61 && b[16] == 2, "the gateway split off a batch that is no v2 batch");
        total += b.len();
        check(b);
    }
    assert_eq!(total, data.len(), "the split batches do not cover the records");
}

/// One batch as the data node's `DataService.Produce` gets it.
fn check(b: &[u8]) {
    let Ok(info) = chronik_data_plane::fuzzing::validate_batch(b) else { return };
    let length = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    assert_eq!(usize::try_from(length).ok().map(|l| l + LENGTH_OFFSET), Some(b.len()), "accepted a wrong length");
    assert_eq!(b[16], 2, "accepted magic {}", b[16]);
    let crc = u32::from_be_bytes([b[17], b[18], b[19], b[20]]);
    assert_eq!(crc, crc32c::crc32c(&b[CRC_START..]), "accepted a bad CRC");
    assert!(info.record_count > 0, "accepted {} records", info.record_count);
    assert_eq!(i64::from(info.last_offset_delta) + 1, i64::from(info.record_count), "accepted an offset span");
    assert!(info.attributes & 0x07 <= 4, "accepted unknown compression codec {}", info.attributes & 0x07);
}

/// Writes the right CRC32C into each batch: batches as their length fields delimit them
/// (`split`), or the whole input as one batch.
fn fix_crcs(b: &mut [u8], split: bool) {
    let mut pos = 0;
    while b.len() - pos > CRC_START {
        let rest = &b[pos..];
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let end = match usize::try_from(length).map(|l| l + LENGTH_OFFSET) {
            Ok(total) if split && total > CRC_START && total <= rest.len() => pos + total,
            _ => b.len(),
        };
        let crc = crc32c::crc32c(&b[pos + CRC_START..end]);
        b[pos + 17..pos + CRC_START].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
