//! Response frames: encoded, then written as a list of pieces. A Fetch response is mostly
//! record sets exactly as a data node read them from its log, and encoding it into one buffer
//! copied every byte of them once more (memmove was a third of the gateway's CPU while
//! consumers read). So a large record set is swapped for a 16-byte marker before encoding,
//! and afterwards the frame is cut at each marker and the record set's own `Bytes` put in its
//! place: records go from the data node's read to the socket in a vectored write, uncopied.
//!
//! The marker is a per-process random 64-bit value and the record set's index; it is found
//! right behind the length prefix kafka-protocol wrote for it, in order, or the response is
//! encoded the plain way instead.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::io::IoSlice;
use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied: a piece of their own costs more than the copy.
const SPLICE_MIN: usize = 4096;
const MARKER_LEN: usize = 16;
/// Fetch v12 and later encode records as compact bytes (unsigned varint of length + 1).
const FIRST_FLEXIBLE_FETCH: i16 = 12;

/// Unpredictable to clients, so no topic name or offset they choose can pass for a marker.
static NONCE: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));

/// A whole response frame: size, header, body.
pub(crate) fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut response: ResponseKind,
) -> Result<ResponseFrame, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = key.response_header_version(version);
    let mut spliced = Vec::new();
    if let ResponseKind::Fetch(fetch) = &mut response {
        spliced = take_records(fetch);
    }
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| format!("cannot encode the {key:?} v{version} response header: {e:#}"))?;
    response.encode(&mut buf, version).map_err(|e| format!("cannot encode the {key:?} v{version} response: {e:#}"))?;
    let too_large = || format!("the {key:?} v{version} response is too large for a frame");
    if spliced.is_empty() {
        let size = i32::try_from(buf.len() - 4).map_err(|_| too_large())?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        return Ok(ResponseFrame::from(buf.freeze()));
    }
    match splice(buf, &spliced, version >= FIRST_FLEXIBLE_FETCH) {
        Some(frame) => Ok(frame),
        None => {
            // A marker was not where it belongs: never guess, encode the records in.
            tracing::warn!(target: "chronik_gateway", "a Fetch v{version} response's record sets were not found after encoding; copying them instead");
            if let ResponseKind::Fetch(fetch) = &mut response {
                put_back(fetch, spliced);
            }
            let mut buf = BytesMut::with_capacity(response_size(&response, version) + 64);
            buf.put_i32(0);
            header.encode(&mut buf, header_version).map_err(|e| format!("{e:#}"))?;
            response.encode(&mut buf, version).map_err(|e| format!("{e:#}"))?;
            let size = i32::try_from(buf.len() - 4).map_err(|_| too_large())?;
            buf[..4].copy_from_slice(&size.to_be_bytes());
            Ok(ResponseFrame::from(buf.freeze()))
        }
    }
}

fn response_size(response: &ResponseKind, version: i16) -> usize {
    match response {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 0,
    }
}

fn marker(index: usize) -> [u8; MARKER_LEN] {
    let mut m = [0u8; MARKER_LEN];
    m[..8].copy_from_slice(&NONCE.to_be_bytes());
    m[8..].copy_from_slice(&(index as u64).to_be_bytes());
    m
}

/// Swaps every large record set for its marker; returns them in encoding order.
fn take_records(fetch: &mut FetchResponse) -> Vec<Bytes> {
    let mut out = Vec::new();
    for p in fetch.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        if let Some(records) = p.records.as_mut().filter(|r| r.len() >= SPLICE_MIN) {
            let m = Bytes::copy_from_slice(&marker(out.len()));
            out.push(std::mem::replace(records, m));
        }
    }
    out
}

fn put_back(fetch: &mut FetchResponse, spliced: Vec<Bytes>) {
    for p in fetch.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        let Some(records) = p.records.as_mut() else { continue };
        if records.len() == MARKER_LEN && records[..8] == NONCE.to_be_bytes() {
            let mut index = [0u8; 8];
            index.copy_from_slice(&records[8..]);
            *records = spliced.get(u64::from_be_bytes(index) as usize).cloned().unwrap_or_default();
        }
    }
}

/// The length prefix kafka-protocol writes before `len` bytes of records.
fn put_records_len(buf: &mut BytesMut, len: usize, flexible: bool) -> Option<()> {
    if flexible {
        let mut v = u32::try_from(len).ok()?.checked_add(1)?;
        while v >= 0x80 {
            buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        buf.put_u8(v as u8);
    } else {
        buf.put_i32(i32::try_from(len).ok()?);
    }
    Some(())
}

/// Cuts the encoded frame at each marker (and the prefix before it) and puts the record set
/// and its real prefix in between. `None` if a marker is not found, in order, right behind
/// its prefix.
fn splice(mut encoded: BytesMut, spliced: &[Bytes], flexible: bool) -> Option<ResponseFrame> {
    let mut marker_prefix = BytesMut::new();
    put_records_len(&mut marker_prefix, MARKER_LEN, flexible)?;
    let mut cuts = Vec::with_capacity(spliced.len());
    let mut from = 0;
    for i in 0..spliced.len() {
        let m = marker(i);
        let at = from + encoded.get(from..)?.windows(MARKER_LEN).position(|w| w == m)?;
        let prefix_at = at.checked_sub(marker_prefix.len())?;
        if prefix_at < from || encoded[prefix_at..at] != marker_prefix[..] {
            return None;
        }
        cuts.push((prefix_at, at + MARKER_LEN));
        from = at + MARKER_LEN;
    }
    let mut prefixes = BytesMut::with_capacity(5 * spliced.len());
    let mut total = encoded.len();
    for ((start, end), records) in cuts.iter().zip(spliced) {
        let before = prefixes.len();
        put_records_len(&mut prefixes, records.len(), flexible)?;
        total = total - (end - start) + (prefixes.len() - before) + records.len();
    }
    let size = i32::try_from(total - 4).ok()?;
    encoded[..4].copy_from_slice(&size.to_be_bytes());
    let encoded = encoded.freeze();
    let mut prefixes = prefixes.freeze();
    let mut frame = ResponseFrame { pieces: VecDeque::with_capacity(3 * spliced.len() + 1), remaining: 0 };
    let mut from = 0;
    for ((start, end), records) in cuts.into_iter().zip(spliced) {
        frame.push(encoded.slice(from..start));
        let mut len = BytesMut::new();
        put_records_len(&mut len, records.len(), flexible)?;
        frame.push(prefixes.split_to(len.len()));
        frame.push(records.clone());
        from = end;
    }
    frame.push(encoded.slice(from..));
    Some(frame)
}

/// An encoded response: pieces written in order, in one vectored write where the socket takes it.
#[derive(Debug)]
pub(crate) struct ResponseFrame {
    pieces: VecDeque<Bytes>,
    remaining: usize,
}

impl ResponseFrame {
    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.remaining += piece.len();
            self.pieces.push_back(piece);
        }
    }

    /// The frame as one buffer.
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(frame: Bytes) -> Self {
        let mut f = ResponseFrame { pieces: VecDeque::with_capacity(1), remaining: 0 };
        f.push(frame);
        f
    }
}

impl Buf for ResponseFrame {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.front().map_or(&[], |p| p)
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advanced {cnt} bytes past the {} left of a frame", self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.pieces.front_mut() else { return };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.pieces.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(self.pieces.iter()) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    use super::*;

    fn fetch_response(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| PartitionData::default().with_partition_index(i as i32).with_records(Some(r.clone())))
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default().with_partitions(partitions)])
    }

    fn plain(version: i16, response: &FetchResponse) -> Vec<u8> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let header_version = ApiKey::Fetch.response_header_version(version);
        ResponseHeader::default().with_correlation_id(7).encode(&mut buf, header_version).expect("header");
        response.encode(&mut buf, version).expect("encodes");
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    /// The same bytes as encoding into one buffer, with the large record sets passed through
    /// as the very allocations the data node read into; lengths whose prefix takes 1 to 3
    /// bytes more than the marker's.
    #[test]
    fn record_sets_are_spliced_in_uncopied() {
        let big: Vec<Bytes> = [70_000usize, 5_000, 3_000_000].iter().map(|&n| Bytes::from(vec![n as u8; n])).collect();
        let small = Bytes::from(vec![9u8; 100]);
        let records = vec![big[0].clone(), small.clone(), Bytes::new(), big[1].clone(), big[2].clone()];
        for version in [4i16, 11, 12, 13, 16] {
            let response = fetch_response(&records);
            let want = plain(version, &response);
            let mut frame = encode(ApiKey::Fetch, version, 7, ResponseKind::Fetch(response)).expect("encodes");
            assert_eq!(frame.to_vec(), want, "v{version}");
            let passed: Vec<*const u8> =
                frame.pieces.iter().filter(|p| p.len() >= SPLICE_MIN).map(|p| p.as_ptr()).collect();
            assert_eq!(passed, big.iter().map(|b| b.as_ptr()).collect::<Vec<_>>(), "v{version}");

            // Written as a Buf: every byte once, in order, across piece boundaries.
            let mut out = Vec::new();
            while frame.has_remaining() {
                let mut slices = [IoSlice::new(&[]); 4];
                let n = frame.chunks_vectored(&mut slices);
                assert!(n > 0);
                let take = (slices[0].len().min(1000) + if n > 1 { 7 } else { 0 }).min(frame.remaining());
                out.extend_from_slice(&frame.copy_to_bytes(take));
            }
            assert_eq!(out, want, "v{version}");
        }
    }

    /// A marker that cannot be found in order (here: the response's record sets were
    /// reordered after the markers were set) falls back to copying, with the right bytes.
    #[test]
    fn a_marker_out_of_place_falls_back_to_copying() {
        let a = Bytes::from(vec![1u8; 8000]);
        let b = Bytes::from(vec![2u8; 9000]);
        let mut response = fetch_response(&[a.clone(), b.clone()]);
        let want = plain(12, &response);
        let spliced = take_records(&mut response);
        let ps = &mut response.responses[0].partitions;
        let (first, second) = (ps[0].records.take(), ps[1].records.take());
        ps[0].records = second;
        ps[1].records = first;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        response.encode(&mut buf, 12).expect("encodes");
        assert!(splice(buf, &spliced, true).is_none(), "found out of order");

        put_back(&mut response, spliced);
        let ps = &mut response.responses[0].partitions;
        assert_eq!((ps[0].records.as_ref(), ps[1].records.as_ref()), (Some(&b), Some(&a)), "each by its marker");
        let (first, second) = (ps[0].records.take(), ps[1].records.take());
        ps[0].records = second;
        ps[1].records = first;
        assert_eq!(plain(12, &response), want);
    }
}
