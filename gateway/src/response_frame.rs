//! Response frames: encoded, then written as a list of pieces. A Fetch response is mostly
//! record sets exactly as data nodes read them from their logs (each a few pieces: the stored
//! batches and their rewritten 8-byte `baseOffset`s), and encoding it into one buffer copied
//! every byte of them once more (memmove was a third of the gateway's CPU while consumers
//! read). So the Fetch handler hands each large record set to [`record_set`], which keeps its
//! pieces for this request and gives back a 16-byte marker to put in the response instead;
//! after encoding, the frame is cut at each marker (and the length prefix kafka-protocol
//! wrote for it) and the record set's pieces go in its place with their real length prefix.
//! The frame leaves in vectored writes: records go from the data node's read to the socket
//! uncopied.
//!
//! A marker is a per-process random 64-bit value and the record set's index. Any marker found
//! must sit right behind its prefix and name a record set not spliced yet, or the response is
//! encoded the plain way, each marker replaced by its record set copied whole.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::io::IoSlice;
use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chronik_proto::record_set::concat;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied: pieces of their own cost more than the copy.
const SPLICE_MIN: usize = 4096;
const MARKER_LEN: usize = 16;
/// Fetch v12 and later encode records as compact bytes (unsigned varint of length + 1).
const FIRST_FLEXIBLE_FETCH: i16 = 12;

/// Unpredictable to clients, so no topic name, offset or record they choose can pass for a
/// marker.
static NONCE: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));

/// A record set as the pieces to send, in order.
type Pieces = Vec<Bytes>;

tokio::task_local! {
    /// The record sets of the response being handled, by marker index.
    static RECORD_SETS: RefCell<Vec<Pieces>>;
}

/// Runs a request's handling and encoding, `fut`, with a place for its record sets.
pub(crate) async fn scope<F: Future>(fut: F) -> F::Output {
    RECORD_SETS.scope(RefCell::new(Vec::new()), fut).await
}

/// What the Fetch handler puts in a partition's `records`: for a large record set, a marker
/// that [`encode`] replaces with `pieces`; a small one (or any, outside [`scope`]) whole.
pub(crate) fn record_set(pieces: Pieces) -> Bytes {
    let len: usize = pieces.iter().map(Bytes::len).sum();
    if len < SPLICE_MIN || pieces.is_empty() {
        return concat(pieces);
    }
    match RECORD_SETS.try_with(|sets| sets.borrow().len()) {
        Ok(index) => {
            let _ = RECORD_SETS.try_with(|sets| sets.borrow_mut().push(pieces));
            Bytes::copy_from_slice(&marker(index))
        }
        Err(_) => concat(pieces),
    }
}

/// A whole response frame: size, header, body.
pub(crate) fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut response: ResponseKind,
) -> Result<ResponseFrame, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = key.response_header_version(version);
    let sets = RECORD_SETS.try_with(|sets| sets.take()).unwrap_or_default();
    // The size prefix (filled in last), the header, the body.
    let encode_into = |buf: &mut BytesMut, response: &ResponseKind| -> Result<(), String> {
        buf.put_i32(0);
        header
            .encode(buf, header_version)
            .map_err(|e| format!("cannot encode the {key:?} v{version} response header: {e:#}"))?;
        response.encode(buf, version).map_err(|e| format!("cannot encode the {key:?} v{version} response: {e:#}"))
    };
    if matches!(response, ResponseKind::Fetch(_)) && !sets.is_empty() {
        // Encoded with markers, the response is small.
        let mut buf = BytesMut::with_capacity(256 + 64 * sets.len());
        encode_into(&mut buf, &response)?;
        if let Some(frame) = splice(buf, &sets, version >= FIRST_FLEXIBLE_FETCH) {
            return Ok(frame);
        }
        tracing::warn!(target: "chronik_gateway", "a Fetch v{version} response's record sets were not where they belong after encoding; copying them instead");
        if let ResponseKind::Fetch(fetch) = &mut response {
            put_back(fetch, sets);
        }
    }
    let mut buf = BytesMut::with_capacity(response_size(&response, version) + 64);
    encode_into(&mut buf, &response)?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| format!("the {key:?} v{version} response is too large for a frame"))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(ResponseFrame::from(buf.freeze()))
}

/// Room to reserve for a response's frame: a Fetch response's computed size (growing its
/// buffer by doubling copied megabytes again), a small start for anything else.
fn response_size(response: &ResponseKind, version: i16) -> usize {
    match response {
        ResponseKind::Fetch(f) => f.compute_size(version).unwrap_or(0),
        _ => 192,
    }
}

fn marker(index: usize) -> [u8; MARKER_LEN] {
    let mut m = [0u8; MARKER_LEN];
    m[..8].copy_from_slice(&NONCE.to_be_bytes());
    m[8..].copy_from_slice(&(index as u64).to_be_bytes());
    m
}

/// The record set index a marker names, if `bytes` is one.
fn marker_index(bytes: &[u8]) -> Option<usize> {
    if bytes.len() != MARKER_LEN || bytes[..8] != NONCE.to_be_bytes() {
        return None;
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&bytes[8..]);
    usize::try_from(u64::from_be_bytes(index)).ok()
}

/// Replaces every marker in the response by its record set, copied whole.
fn put_back(fetch: &mut FetchResponse, sets: Vec<Pieces>) {
    for p in fetch.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        let Some(records) = p.records.as_mut() else { continue };
        if let Some(index) = marker_index(records) {
            *records = sets.get(index).cloned().map(concat).unwrap_or_default();
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
/// and its real prefix in between. `None` if a marker is not right behind its prefix or names
/// a record set that does not exist or was spliced already. (A record set dropped from the
/// response after it was handed over, for the response's max_bytes, has no marker: skipped.)
fn splice(mut encoded: BytesMut, sets: &[Pieces], flexible: bool) -> Option<ResponseFrame> {
    let mut marker_prefix = BytesMut::new();
    put_records_len(&mut marker_prefix, MARKER_LEN, flexible)?;
    let nonce = NONCE.to_be_bytes();
    let mut used = vec![false; sets.len()];
    let mut cuts = Vec::with_capacity(sets.len());
    let mut from = 0;
    while let Some(found) = encoded.get(from..).and_then(|rest| rest.windows(nonce.len()).position(|w| w == nonce)) {
        let at = from + found;
        let index = marker_index(encoded.get(at..at + MARKER_LEN)?)?;
        let prefix_at = at.checked_sub(marker_prefix.len())?;
        if prefix_at < from || encoded[prefix_at..at] != marker_prefix[..] || used.get(index) != Some(&false) {
            return None;
        }
        used[index] = true;
        cuts.push((prefix_at, at + MARKER_LEN, index));
        from = at + MARKER_LEN;
    }
    // Each record set's real length prefix, a piece of one small buffer.
    let mut prefix_buf = BytesMut::with_capacity(5 * cuts.len());
    let mut prefixes = Vec::with_capacity(cuts.len());
    let mut total = encoded.len();
    for &(start, end, index) in &cuts {
        let len: usize = sets[index].iter().map(Bytes::len).sum();
        put_records_len(&mut prefix_buf, len, flexible)?;
        let prefix = prefix_buf.split().freeze();
        total = total - (end - start) + prefix.len() + len;
        prefixes.push(prefix);
    }
    let size = i32::try_from(total - 4).ok()?;
    encoded[..4].copy_from_slice(&size.to_be_bytes());
    let encoded = encoded.freeze();
    let pieces: usize = cuts.iter().map(|c| sets[c.2].len() + 2).sum();
    let mut frame = ResponseFrame { pieces: VecDeque::with_capacity(pieces + 1), remaining: 0 };
    let mut from = 0;
    for ((start, end, index), prefix) in cuts.into_iter().zip(prefixes) {
        frame.push(encoded.slice(from..start));
        frame.push(prefix);
        for piece in &sets[index] {
            frame.push(piece.clone());
        }
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

    /// Record sets of several pieces each (a small and a large batch, as a data node sends
    /// them), handed over in another order than they are encoded, one dropped afterwards.
    fn record_sets() -> Vec<Pieces> {
        [70_000usize, 5_000, 3_000_000]
            .iter()
            .map(|&n| vec![Bytes::from(vec![1u8; 8]), Bytes::from(vec![n as u8; n]), Bytes::from(vec![2u8; 300])])
            .collect()
    }

    /// The same bytes as encoding the record sets in, with their pieces passed through as the
    /// very allocations the data node read into; lengths whose prefix is 1 to 3 bytes longer
    /// than the marker's.
    #[tokio::test]
    async fn record_sets_are_spliced_in_uncopied() {
        for version in [4i16, 11, 12, 13, 16] {
            let sets = record_sets();
            let small = Bytes::from(vec![9u8; 100]);
            let whole: Vec<Bytes> = sets.iter().cloned().map(concat).collect();
            let want = plain(
                version,
                &fetch_response(&[whole[0].clone(), small.clone(), Bytes::new(), whole[1].clone(), whole[2].clone()]),
            );
            let mut frame = scope(async {
                let dropped = record_set(vec![Bytes::from(vec![5u8; 9000])]);
                let m2 = record_set(sets[2].clone());
                let m0 = record_set(sets[0].clone());
                let m1 = record_set(sets[1].clone());
                assert_eq!(record_set(vec![small.clone()]), small, "small record sets go in whole");
                drop(dropped);
                let response = fetch_response(&[m0, small.clone(), Bytes::new(), m1, m2]);
                encode(ApiKey::Fetch, version, 7, ResponseKind::Fetch(response)).expect("encodes")
            })
            .await;
            assert_eq!(frame.to_vec(), want, "v{version}");
            let passed: Vec<*const u8> = frame.pieces.iter().filter(|p| p.len() >= 5_000).map(|p| p.as_ptr()).collect();
            let read: Vec<*const u8> = sets.iter().map(|s| s[1].as_ptr()).collect();
            assert_eq!(passed, read, "v{version}");

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

    /// A marker that names a record set twice is not spliced: the response is encoded with
    /// every record set copied in, the right bytes all the same.
    #[tokio::test]
    async fn a_marker_out_of_place_falls_back_to_copying() {
        let sets = record_sets();
        let whole: Vec<Bytes> = sets.iter().cloned().map(concat).collect();
        let want = plain(12, &fetch_response(&[whole[0].clone(), whole[0].clone()]));
        let frame = scope(async {
            let m0 = record_set(sets[0].clone());
            let response = fetch_response(&[m0.clone(), m0]);
            encode(ApiKey::Fetch, 12, 7, ResponseKind::Fetch(response)).expect("encodes")
        })
        .await;
        assert_eq!(frame.to_vec(), want);
        assert_eq!(frame.pieces.len(), 1, "copied, not spliced");
    }

    /// Outside a request's scope (handler unit tests), record sets go in whole.
    #[test]
    fn without_a_scope_record_sets_are_copied() {
        let sets = record_sets();
        assert_eq!(record_set(sets[0].clone()), concat(sets[0].clone()));
    }
}
