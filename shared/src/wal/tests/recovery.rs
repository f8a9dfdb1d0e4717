//! Crash recovery, corruption detection and the offline tools.

use std::fs;

use bytes::Bytes;

use super::{append_wait, assert_reads, flip_byte, frames, last_segment, opts, payload, records, set_len};
use crate::wal::*;

#[test]
fn truncated_mid_record_tail_is_recovered() {
    for cut_inside_header in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), 2, opts(WalProfile::Medium, 1 << 20)).unwrap();
        append_wait(&wal, records(1..11)).unwrap();
        let path = last_segment(&wal);
        wal.close();
        drop(wal);

        let (pos, id, len) = *frames(&path).last().unwrap();
        assert_eq!(id, 10);
        let file_len = pos + 16 + len;
        let keep = if cut_inside_header { pos + 7 } else { pos + 16 + len / 2 };
        set_len(&path, keep);

        let (wal, report) = Wal::open(dir.path(), 2, opts(WalProfile::Medium, 1 << 20)).unwrap();
        let tail = report.truncated.expect("torn tail reported");
        assert_eq!(tail.path, path);
        assert_eq!(tail.position, pos);
        assert_eq!(tail.bytes_dropped, keep - pos);
        assert!(tail.bytes_dropped < file_len - pos);
        assert_eq!(report.records, 9);
        assert_eq!(fs::metadata(&path).unwrap().len(), pos);
        assert_eq!(wal.last_id(), Some(9));
        assert_reads(&wal, 1..10);

        append_wait(&wal, records(10..13)).unwrap();
        assert_reads(&wal, 1..13);
        wal.close();
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), 2, opts(WalProfile::Medium, 1 << 20)).unwrap();
        assert_eq!(report.truncated, None);
        assert_reads(&wal, 1..13);
    }
}

#[test]
fn crc_mismatch_in_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 1 << 20)).unwrap();
    append_wait(&wal, vec![(1, payload(1)), (2, payload(2)), (3, Bytes::from(vec![9u8; 32]))]).unwrap();
    let path = last_segment(&wal);
    drop(wal);
    let (pos, _, len) = *frames(&path).last().unwrap();
    flip_byte(&path, pos + 16 + 20);

    let (wal, report) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    let tail = report.truncated.unwrap();
    assert_eq!((tail.path.as_path(), tail.position, tail.bytes_dropped), (path.as_path(), pos, 16 + len));
    assert!(tail.reason.contains("CRC"), "{}", tail.reason);
    assert_eq!(wal.last_id(), Some(2));
    append_wait(&wal, vec![(3, payload(3))]).unwrap();
    assert_reads(&wal, 1..4);
}

#[test]
fn zero_filled_tail_is_a_torn_tail() {
    // What a filesystem can leave when the size reached disk but the data did not.
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    append_wait(&wal, records(1..6)).unwrap();
    let path = last_segment(&wal);
    drop(wal);
    let len = fs::metadata(&path).unwrap().len();
    set_len(&path, len + 4096);
    let (wal, report) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    let tail = report.truncated.unwrap();
    assert_eq!((tail.position, tail.bytes_dropped), (len, 4096));
    assert_reads(&wal, 1..6);
}

#[test]
fn corruption_in_the_middle_is_an_error_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 4, opts(WalProfile::Medium, 1 << 20)).unwrap();
    append_wait(&wal, records(1..21)).unwrap();
    let path = last_segment(&wal);
    drop(wal);
    let (pos, id, len) = frames(&path)[9];
    assert!(len > 0);
    flip_byte(&path, pos + 16);
    let size = fs::metadata(&path).unwrap().len();

    let check = |err: WalError| {
        let WalError::Corrupt { path: p, position, reason } = &err else {
            panic!("expected Corrupt, got {err}");
        };
        assert_eq!((p, *position), (&path, pos));
        assert!(reason.contains(&format!("record id {id}")), "{reason}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("byte {pos}")), "{msg}");
        assert!(msg.contains("wal-verify"), "{msg}");
        assert!(msg.contains("replica"), "{msg}");
    };
    check(Wal::open(dir.path(), 4, WalOptions::default()).unwrap_err());
    check(verify_path(dir.path()).unwrap_err());
    check(verify_path(&path).unwrap_err());
    assert_eq!(fs::metadata(&path).unwrap().len(), size, "nothing may be cut off");
    // The dump shows the bad record and goes on past it.
    let mut out = Vec::new();
    dump_path(&path, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().filter(|l| l.contains("crc=BAD")).count(), 1, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains(" id=")).count(), 20, "{out}");
}

#[test]
fn damage_in_a_corrupt_length_field_mid_file_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    append_wait(&wal, records(1..21)).unwrap();
    let path = last_segment(&wal);
    drop(wal);
    let (pos, _, _) = frames(&path)[4];
    // A length pointing past the end of the file looks like a torn write, but records follow.
    flip_byte(&path, pos + 3);
    let err = Wal::open(dir.path(), 0, WalOptions::default()).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { position, .. } if position == pos), "{err}");
}

#[test]
fn damage_in_a_non_last_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    append_wait(&wal, records(1..40)).unwrap();
    let segs = wal.segments();
    assert!(segs.len() >= 3);
    drop(wal);
    // Cutting the end of the first segment would be a torn tail, were it the last one.
    let first = &segs[0].path;
    let (pos, _, _) = *frames(first).last().unwrap();
    set_len(first, pos + 5);
    let err = Wal::open(dir.path(), 0, WalOptions::default()).unwrap_err();
    assert!(matches!(&err, WalError::Corrupt { path, position, .. } if path == first && *position == pos), "{err}");
    assert!(verify_path(dir.path()).is_err());
    assert!(verify_path(first).is_err());
    // The last segment alone may have a torn tail.
    let last = &segs.last().unwrap().path;
    let report = verify_path(last).unwrap();
    assert!(report.torn_tails.is_empty());
}

#[test]
fn torn_segment_header_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    append_wait(&wal, records(1..4)).unwrap();
    drop(wal);
    // A crash right after creating the next segment.
    let next = dir.path().join("wal_0_00000002.log");
    fs::write(&next, b"CHRW").unwrap();
    let (wal, report) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    let tail = report.truncated.unwrap();
    assert_eq!((tail.path, tail.position, tail.bytes_dropped), (next.clone(), 0, 4));
    assert_eq!(fs::metadata(&next).unwrap().len(), 16);
    append_wait(&wal, records(4..6)).unwrap();
    assert_reads(&wal, 1..6);
}

#[test]
fn dump_and_stats_describe_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 5, opts(WalProfile::Medium, 200)).unwrap();
    append_wait(&wal, vec![(1, Bytes::from_static(b"hello")), (2, Bytes::new())]).unwrap();
    append_wait(&wal, records(3..30)).unwrap();
    let segs = wal.segments();
    drop(wal);
    fs::write(dir.path().join("raft_vote"), b"not ours").unwrap();

    let mut out = Vec::new();
    dump_path(&segs[0].path, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let first = out.lines().nth(1).unwrap();
    assert_eq!(first, "wal_5_00000001.log pos=16 id=1 len=5 crc=ok data=68656c6c6f");
    assert_eq!(out.lines().nth(2).unwrap(), "wal_5_00000001.log pos=37 id=2 len=0 crc=ok data=");

    let mut out = Vec::new();
    dump_path(dir.path(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().filter(|l| l.starts_with('#')).count(), segs.len());
    assert_eq!(out.lines().filter(|l| l.contains("crc=ok")).count(), 29);

    let stats = stats_path(dir.path()).unwrap();
    assert_eq!(stats.segments, segs.len());
    assert_eq!(stats.records, 29);
    assert_eq!((stats.first_id, stats.last_id), (Some(1), Some(29)));
    assert_eq!(stats.bytes, segs.iter().map(|s| s.bytes).sum::<u64>());
    assert_eq!(stats.rows.len(), segs.len());
    let table = stats.to_string();
    assert!(table.contains("wal_5_00000001.log"), "{table}");
    assert!(table.contains("records: 29"), "{table}");

    let report = verify_path(dir.path()).unwrap();
    assert_eq!((report.files.len(), report.records), (segs.len(), 29));
    assert!(report.torn_tails.is_empty());
    assert!(report.to_string().starts_with("OK:"));

    // A torn tail is reported by verify and stats, but nothing is changed.
    let last = &segs.last().unwrap().path;
    let len = fs::metadata(last).unwrap().len();
    set_len(last, len - 3);
    let report = verify_path(dir.path()).unwrap();
    assert_eq!(report.torn_tails.len(), 1);
    assert_eq!(&report.torn_tails[0].path, last);
    assert_eq!(fs::metadata(last).unwrap().len(), len - 3);
    let stats = stats_path(dir.path()).unwrap();
    assert!(stats.rows.last().unwrap().damage.is_some());
    assert!(verify_path(&dir.path().join("nope")).is_err());
}

#[test]
fn reads_recheck_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    append_wait(&wal, records(1..10)).unwrap();
    let path = last_segment(&wal);
    let (pos, _, _) = frames(&path)[3];
    flip_byte(&path, pos + 16);
    assert!(matches!(wal.read(4, 5, 100), Err(WalError::Corrupt { position, .. }) if position == pos));
    assert_eq!(wal.read(1, 4, usize::MAX).unwrap(), records(1..4));
}
