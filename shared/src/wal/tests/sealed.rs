//! The index written when a segment is sealed, and what a start trusts it for.

use std::fs;

use super::{append_wait, assert_reads, flip_byte, frames, opts, records, set_len};
use crate::wal::*;

fn index_of(seg: &SegmentInfo) -> std::path::PathBuf {
    seg.path.with_extension("idx")
}

/// A log of 60 records over several 200-byte segments, closed.
fn sealed_log(dir: &std::path::Path) -> Vec<SegmentInfo> {
    let (wal, _) = Wal::open(dir, 0, opts(WalProfile::Medium, 200)).unwrap();
    append_wait(&wal, records(1..61)).unwrap();
    let segs = wal.segments();
    assert!(segs.len() >= 4, "{segs:?}");
    drop(wal);
    segs
}

#[test]
fn sealed_segments_get_an_index_and_the_active_one_none() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_log(dir.path());
    let (last, sealed) = segs.split_last().unwrap();
    for s in sealed {
        assert!(index_of(s).exists(), "no index for {}", s.path.display());
    }
    assert!(!index_of(last).exists());
    let (wal, report) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    assert_eq!(report.records, 60);
    assert_eq!(wal.segments(), segs);
    assert_reads(&wal, 1..61);
}

#[test]
fn a_trusted_index_skips_the_records_check_which_reads_and_verify_still_make() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_log(dir.path());
    let first = &segs[0].path;
    let (pos, id, len) = frames(first)[1];
    assert!(len > 0);
    flip_byte(first, pos + 16);

    // The default start trusts the index and serves everything else.
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    assert!(matches!(wal.read(id, id + 1, usize::MAX), Err(WalError::Corrupt { position, .. }) if position == pos));
    assert_eq!(wal.read(id + 1, 61, usize::MAX).unwrap(), records(id + 1..61));
    drop(wal);
    assert!(check_before_open(dir.path(), true).is_ok());

    // Asked to, a start reads sealed segments too, as wal-verify and the scrub do.
    let full = WalOptions { verify_sealed_on_start: true, ..WalOptions::default() };
    let err = Wal::open(dir.path(), 0, full).unwrap_err();
    assert!(matches!(&err, WalError::Corrupt { path, position, .. } if path == first && *position == pos), "{err}");
    assert!(check_before_open(dir.path(), false).is_err());
    assert!(verify_path(dir.path()).is_err());
}

#[test]
fn an_index_that_disagrees_with_its_segment_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_log(dir.path());
    // Garbage, a torn index, and an index of another segment: each is read around.
    fs::write(index_of(&segs[0]), b"not an index").unwrap();
    let idx1 = fs::read(index_of(&segs[1])).unwrap();
    fs::write(index_of(&segs[1]), &idx1[..idx1.len() - 3]).unwrap();
    fs::write(index_of(&segs[2]), &idx1).unwrap();
    let (wal, report) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    assert_eq!(report.records, 60);
    assert_reads(&wal, 1..61);
    drop(wal);

    // A segment cut short no longer matches its index: the cut is found, not believed away.
    let (pos, _, _) = *frames(&segs[1].path).last().unwrap();
    set_len(&segs[1].path, pos + 5);
    let err = Wal::open(dir.path(), 0, WalOptions::default()).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { path, position, .. } if *path == segs[1].path && *position == pos),
        "{err}"
    );
}

#[test]
fn truncation_and_purge_take_the_index_with_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    append_wait(&wal, records(1..61)).unwrap();
    let segs = wal.segments();
    // Cut into the second segment: it is active again and has no index; later ones are gone.
    let cut = segs[1].first_id.unwrap() + 1;
    wal.truncate_from(cut).unwrap();
    assert!(index_of(&segs[0]).exists());
    for s in &segs[1..] {
        assert!(!index_of(s).exists(), "{} kept its index", s.path.display());
    }
    // Refilled past the old length, the segment is sealed again with a fresh index.
    append_wait(&wal, records(cut..80)).unwrap();
    wal.purge_before(segs[1].first_id.unwrap()).unwrap();
    assert!(!index_of(&segs[0]).exists() && !segs[0].path.exists());
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    assert_eq!(report.records, 80 - segs[1].first_id.unwrap());
    assert_reads(&wal, segs[1].first_id.unwrap()..80);
}
