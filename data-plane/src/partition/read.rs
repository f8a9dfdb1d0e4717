//! Reading a partition's batches back for Fetch and ListOffsets. A stored batch goes out as
//! the bytes the WAL read gave, after its first 8 bytes: its `baseOffset` as the producer sent
//! it (outside the batch CRC), rewritten to the offset the partition gave it in a small piece
//! of its own. Batches under [`PIECE_MIN`] are copied together with those offsets instead:
//! a piece each would cost more (in iovecs, or in gRPC framing) than the copy.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use chronik_raft::codec::EntryCodec;
use chronik_shared::error::ChronikError;
use openraft::EntryPayload;

use super::{IndexedBatch, Partition, storage_error};
use crate::types::{DataCommand, PartitionTypeConfig};

/// Batches at least this large are passed on uncopied.
const PIECE_MIN: usize = 4096;
/// A batch's `baseOffset`: its first field.
const BASE_OFFSET_LEN: usize = 8;

impl Partition {
    /// Batches from `offset` on, up to about `max_bytes` (at least one batch when any), with
    /// their `baseOffset` rewritten to the offsets they were given, as pieces to be sent in
    /// order.
    pub fn read_pieces(&self, offset: i64, max_bytes: usize) -> Result<Vec<Bytes>, ChronikError> {
        let selected: Vec<IndexedBatch> = {
            let idx = self.sm.lock();
            let mut out = Vec::new();
            let mut total = 0usize;
            for b in &idx.batches[idx.find(offset)..] {
                if !out.is_empty() && total + b.bytes as usize > max_bytes {
                    break;
                }
                total += b.bytes as usize;
                out.push(*b);
                if total >= max_bytes {
                    break;
                }
            }
            out
        };
        let (Some(first), Some(last)) = (selected.first(), selected.last()) else {
            return Ok(Vec::new());
        };
        let offsets: HashMap<u64, i64> = selected.iter().map(|b| (b.log_index, b.base_offset)).collect();
        let records = self
            .sm
            .data
            .read(first.log_index, last.log_index)
            .map_err(|e| storage_error(e, &format!("reading {}", self.name)))?;
        // The copied part: every baseOffset, and the small batches whole.
        let copied: usize = selected
            .iter()
            .map(|b| if (b.bytes as usize) < PIECE_MIN { b.bytes as usize } else { BASE_OFFSET_LEN })
            .sum();
        let mut small = BytesMut::with_capacity(copied);
        let mut pieces = Vec::new();
        let mut found = 0usize;
        for (index, rec) in records {
            let Some(base) = offsets.get(&index) else { continue };
            found += 1;
            let entry = PartitionTypeConfig::decode_entry(rec)
                .map_err(|e| storage_error(e, &format!("decoding {}", self.name)))?;
            let EntryPayload::Normal(DataCommand::Append { batch }) = entry.payload else { continue };
            if batch.len() < BASE_OFFSET_LEN {
                return Err(storage_error(
                    format!(
                        "a stored batch of {} bytes at log index {index} is shorter than a baseOffset",
                        batch.len()
                    ),
                    &format!("reading {}", self.name),
                ));
            }
            small.put_i64(*base);
            if batch.len() >= PIECE_MIN {
                pieces.push(small.split().freeze());
                pieces.push(batch.slice(BASE_OFFSET_LEN..));
            } else {
                small.put_slice(&batch[BASE_OFFSET_LEN..]);
            }
        }
        if found != selected.len() {
            // The index names entries the log no longer has: answering without them would
            // silently skip records.
            return Err(storage_error(
                format!("{} of {} indexed batches are missing from the log", selected.len() - found, selected.len()),
                &format!("reading {} from offset {offset}", self.name),
            ));
        }
        if !small.is_empty() {
            pieces.push(small.freeze());
        }
        Ok(pieces)
    }

    /// [`Partition::read_pieces`] as one buffer.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, ChronikError> {
        self.read_pieces(offset, max_bytes).map(chronik_proto::record_set::concat)
    }
}
