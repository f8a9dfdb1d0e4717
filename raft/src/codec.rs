//! One binary encoding of a Raft log entry, used in WAL records and in `RaftMessage.entries`.
//!
//! Layout: `u32 LE header length`, the header as JSON (log id, kind, membership), then the
//! body: the application payload of a normal entry in the plane's own binary form. A record
//! batch therefore crosses the network and lands on disk as the producer sent it.

use std::io;

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A plane's log entry encoding. Implemented with [`impl_entry_codec!`] for type configs
/// that use openraft's default `Entry` and `EntryPayload`.
pub trait EntryCodec: openraft::RaftTypeConfig {
    /// Writes `entry` into `out` up to a trailing buffer it returns (empty if none): the
    /// encoding is `out` followed by that buffer, so a record batch need not be copied to be
    /// written or sent.
    fn encode_entry(entry: &Self::Entry, out: &mut Vec<u8>) -> io::Result<Bytes>;
    fn decode_entry(bytes: Bytes) -> io::Result<Self::Entry>;
}

/// The binary form of a plane's application data (`D` of its type config).
pub trait AppPayload: Sized {
    /// Like [`EntryCodec::encode_entry`]: writes into `out` up to a trailing buffer it returns.
    fn encode_payload(&self, out: &mut Vec<u8>) -> io::Result<Bytes>;
    fn decode_payload(body: Bytes) -> io::Result<Self>;
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Blank,
    Normal,
    Membership,
}

#[derive(Serialize, Deserialize)]
pub struct EntryHeader<L, M> {
    pub log_id: L,
    pub kind: EntryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<M>,
}

/// Writes `header` and `body` in the entry layout; returns the trailing buffer `body` returned.
pub fn encode_parts<H: Serialize>(
    header: &H,
    body: impl FnOnce(&mut Vec<u8>) -> io::Result<Bytes>,
    out: &mut Vec<u8>,
) -> io::Result<Bytes> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut *out, header).map_err(io::Error::other)?;
    let header_len = u32::try_from(out.len() - start - 4).map_err(io::Error::other)?;
    out[start..start + 4].copy_from_slice(&header_len.to_le_bytes());
    body(out)
}

/// Splits an encoded entry into its decoded header and its body, without copying the body.
pub fn decode_parts<H: DeserializeOwned>(bytes: Bytes) -> io::Result<(H, Bytes)> {
    if bytes.len() < 4 {
        return Err(invalid(format!("entry of {} bytes is shorter than its 4-byte header length", bytes.len())));
    }
    let header_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if bytes.len() < 4 + header_len {
        return Err(invalid(format!("entry header claims {header_len} bytes but only {} follow", bytes.len() - 4)));
    }
    let header =
        serde_json::from_slice(&bytes[4..4 + header_len]).map_err(|e| invalid(format!("entry header: {e}")))?;
    Ok((header, bytes.slice(4 + header_len..)))
}

pub fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Implements [`EntryCodec`] for a type config declared with openraft's default entry types
/// whose `D` implements [`AppPayload`].
#[macro_export]
macro_rules! impl_entry_codec {
    ($tc:ty) => {
        impl $crate::codec::EntryCodec for $tc {
            fn encode_entry(
                entry: &<$tc as openraft::RaftTypeConfig>::Entry,
                out: &mut Vec<u8>,
            ) -> std::io::Result<bytes::Bytes> {
                use $crate::codec::{AppPayload, EntryHeader, EntryKind, encode_parts};
                match &entry.payload {
                    openraft::EntryPayload::Blank => {
                        let h =
                            EntryHeader::<_, ()> { log_id: &entry.log_id, kind: EntryKind::Blank, membership: None };
                        encode_parts(&h, |_| Ok(bytes::Bytes::new()), out)
                    }
                    openraft::EntryPayload::Normal(data) => {
                        let h =
                            EntryHeader::<_, ()> { log_id: &entry.log_id, kind: EntryKind::Normal, membership: None };
                        encode_parts(&h, |o| data.encode_payload(o), out)
                    }
                    openraft::EntryPayload::Membership(m) => {
                        let h = EntryHeader { log_id: &entry.log_id, kind: EntryKind::Membership, membership: Some(m) };
                        encode_parts(&h, |_| Ok(bytes::Bytes::new()), out)
                    }
                }
            }

            fn decode_entry(bytes: bytes::Bytes) -> std::io::Result<<$tc as openraft::RaftTypeConfig>::Entry> {
                use $crate::codec::{AppPayload, EntryHeader, EntryKind, decode_parts, invalid};
                let (h, body): (
                    EntryHeader<
                        openraft::alias::LogIdOf<$tc>,
                        openraft::Membership<openraft::alias::NodeIdOf<$tc>, openraft::alias::NodeOf<$tc>>,
                    >,
                    _,
                ) = decode_parts(bytes)?;
                let payload = match h.kind {
                    EntryKind::Blank => openraft::EntryPayload::Blank,
                    EntryKind::Normal => openraft::EntryPayload::Normal(AppPayload::decode_payload(body)?),
                    EntryKind::Membership => openraft::EntryPayload::Membership(
                        h.membership.ok_or_else(|| invalid("membership entry without membership".to_string()))?,
                    ),
                };
                Ok(openraft::Entry { log_id: h.log_id, payload })
            }
        }
    };
}
