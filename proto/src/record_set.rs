//! A fetched partition's record set, which a data node sends either whole (`records`) or as
//! the pieces it read (`record_pieces`, when the caller asked for them).

use bytes::{BufMut, Bytes, BytesMut};

use crate::data::FetchedPartition;

impl FetchedPartition {
    /// Bytes in the record set, whichever form it came in.
    pub fn records_len(&self) -> usize {
        self.records.len() + self.record_pieces.iter().map(Bytes::len).sum::<usize>()
    }

    /// The record set as pieces to send in order, whichever form it came in.
    pub fn take_record_pieces(&mut self) -> Vec<Bytes> {
        let mut pieces = std::mem::take(&mut self.record_pieces);
        if !self.records.is_empty() {
            pieces.insert(0, std::mem::take(&mut self.records));
        }
        pieces
    }
}

/// Pieces as one buffer (no copy for a single piece).
pub fn concat(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() <= 1 {
        return pieces.pop().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for p in &pieces {
        out.put_slice(p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_form_reads_the_same() {
        let mut whole = FetchedPartition { records: Bytes::from_static(b"abcdef"), ..Default::default() };
        let mut pieces = FetchedPartition {
            record_pieces: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cdef")],
            ..Default::default()
        };
        assert_eq!((whole.records_len(), pieces.records_len()), (6, 6));
        assert_eq!(concat(whole.take_record_pieces()), concat(pieces.take_record_pieces()));
        assert_eq!(concat(Vec::new()), Bytes::new());
    }
}
