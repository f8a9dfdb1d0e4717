//! Entry points for the fuzz targets in `fuzz/` (not an API): each runs the production code
//! on bytes a client chose, with the default configuration's limits.

use bytes::Bytes;
use chronik_shared::config::ChronikConfig;

use crate::server::{Parsed, parse};
use crate::{context, frame, handlers};

/// What a connection does with `input` before any handler runs, read two ways: as one request
/// (header and body) whose size prefix was already read, and as the byte stream of a connection
/// (size-prefixed frames, read until the first frame the connection would close on). `Err` is
/// why the connection would be closed on the first reading.
pub fn decode_request(input: &[u8]) -> Result<(), String> {
    let first = match parse(Bytes::copy_from_slice(input)) {
        Parsed::Request { .. } | Parsed::Answer(_) => Ok(()),
        Parsed::Reject(reason) => Err(reason),
    };
    let config = ChronikConfig::default();
    let max = usize::try_from(config.kafka.max_request_size).unwrap_or(usize::MAX).min(i32::MAX as usize);
    // Reading from a slice never waits, so the frame reader's futures finish on first poll.
    futures::executor::block_on(async {
        let mut stream = input;
        while let Ok(size) = frame::read_size(&mut stream, max).await {
            let Ok(body) = frame::read_body(&mut stream, size).await else { break };
            if let Parsed::Reject(_) = parse(body) {
                break;
            }
        }
    });
    first
}

/// What the Produce handler does with a partition's `records` before forwarding them: the
/// record batches it would send to the partition's leader, one by one.
pub fn split_batches(records: &[u8]) -> Result<Vec<Bytes>, String> {
    let max_batch = usize::try_from(context::max_batch_bytes(&ChronikConfig::default())).unwrap_or(usize::MAX);
    handlers::produce::split_batches(&Bytes::copy_from_slice(records), max_batch).map_err(|e| e.to_string())
}
