//! A partition group's type config: log entries carry record batches as produced.

use std::fmt;
use std::io;

use bytes::Bytes;
use chronik_raft::codec::AppPayload;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    pub PartitionTypeConfig:
        D = DataCommand,
        R = DataResponse,
);

chronik_raft::impl_entry_codec!(PartitionTypeConfig);

/// One entry of a partition's log. Its binary form is a tag byte then the batch bytes, so the
/// batch is written to disk and sent to followers without re-encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataCommand {
    /// One validated Kafka v2 record batch, exactly as the producer sent it.
    Append { batch: Bytes },
}

const TAG_APPEND: u8 = 1;

// openraft requires serde on application data even though the WAL and the wire use the
// binary form below; serde is only used for debugging output.
impl Serialize for DataCommand {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DataCommand::Append { batch } => s.serialize_bytes(batch),
        }
    }
}

impl<'de> Deserialize<'de> for DataCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<u8> = Deserialize::deserialize(d)?;
        Ok(DataCommand::Append { batch: Bytes::from(v) })
    }
}

impl fmt::Display for DataCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataCommand::Append { batch } => write!(f, "append batch of {} bytes", batch.len()),
        }
    }
}

impl AppPayload for DataCommand {
    fn encode_payload(&self, out: &mut Vec<u8>) -> io::Result<Bytes> {
        match self {
            DataCommand::Append { batch } => {
                out.push(TAG_APPEND);
                Ok(batch.clone())
            }
        }
    }

    fn decode_payload(body: Bytes) -> io::Result<Self> {
        match body.first() {
            Some(&TAG_APPEND) => Ok(DataCommand::Append { batch: body.slice(1..) }),
            other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown data entry tag {other:?}"))),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataResponse {
    /// Offset given to the first record of the batch; -1 for entries that carry no records.
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// Why the entry was not appended (shared error-code id and message), e.g. an idempotent
    /// producer's sequence gap.
    #[serde(default)]
    pub error: Option<(i32, String)>,
}

impl fmt::Display for DataResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base_offset={}", self.base_offset)
    }
}
