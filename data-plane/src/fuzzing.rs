//! Entry point of the `record_batch` fuzz target in `fuzz/` (not an API).

use chronik_shared::error::ChronikError;

use crate::batch::{self, BatchInfo};

/// What a data node does with the bytes of a produced batch: the validation of
/// `Partition::produce`, then, for a batch it accepted, what the state machine and ListOffsets
/// run on the stored copy (the header parse, and the timestamp search at a few timestamps).
pub fn validate_batch(bytes: &[u8]) -> Result<BatchInfo, ChronikError> {
    let info = batch::validate(bytes)?;
    if batch::info(bytes) != Some(info) {
        unreachable!("a validated batch's stored header reads differently");
    }
    for ts in [i64::MIN, -1, 0, info.base_timestamp, info.max_timestamp, i64::MAX] {
        let _ = batch::first_offset_delta_at_or_after(bytes, ts);
    }
    Ok(info)
}
