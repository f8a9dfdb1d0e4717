use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

mod recovery;
mod sealed;

pub(super) fn opts(profile: WalProfile, segment_bytes: u64) -> WalOptions {
    WalOptions { profile, segment_bytes, linger: Duration::from_millis(2), ..WalOptions::default() }
}

/// Payloads of varying length (0..40 bytes), content tied to the id.
pub(super) fn payload(id: u64) -> Bytes {
    let len = (id * 7 % 40) as usize;
    Bytes::from((0..len).map(|i| (id as u8).wrapping_mul(31).wrapping_add(i as u8)).collect::<Vec<u8>>())
}

pub(super) fn records(ids: std::ops::Range<u64>) -> Vec<(u64, Bytes)> {
    ids.map(|id| (id, payload(id))).collect()
}

/// Appends and blocks until the durability callback ran.
pub(super) fn append_wait(wal: &Wal, recs: Vec<(u64, Bytes)>) -> Result<(), WalError> {
    let (tx, rx) = mpsc::channel();
    wal.append(
        recs,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv_timeout(Duration::from_secs(30)).expect("durability callback never ran")
}

/// The frames of a segment as this test reads them, independently of the code under test:
/// (position, id, payload length).
pub(super) fn frames(path: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"CHRWAL01");
    let mut out = Vec::new();
    let mut pos = 16usize;
    while pos + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let id = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
        if pos + 16 + len > bytes.len() {
            break;
        }
        out.push((pos as u64, id, len as u64));
        pos += 16 + len;
    }
    out
}

pub(super) fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
}

pub(super) fn set_len(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

pub(super) fn last_segment(wal: &Wal) -> PathBuf {
    wal.segments().last().unwrap().path.clone()
}

pub(super) fn assert_reads(wal: &Wal, ids: std::ops::Range<u64>) {
    let got = wal.read(0, u64::MAX, usize::MAX).unwrap();
    assert_eq!(got, records(ids));
}

#[test]
fn round_trip_across_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, report) = Wal::open(dir.path(), 7, opts(WalProfile::Medium, 256)).unwrap();
    assert_eq!(report, RecoveryReport { truncated: None, segments: 1, records: 0 });
    assert_eq!((wal.first_id(), wal.last_id()), (None, None));

    let mut next = 1;
    for batch in [1u64, 5, 13, 2, 30, 9, 40] {
        append_wait(&wal, records(next..next + batch)).unwrap();
        next += batch;
    }
    let segs = wal.segments();
    assert!(segs.len() >= 5, "expected several rolls, got {segs:?}");
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.seq, i as u64 + 1);
        assert_eq!(s.path, dir.path().join(format!("wal_7_{:08}.log", i + 1)));
        assert_eq!(fs::metadata(&s.path).unwrap().len(), s.bytes);
        assert!(s.records > 0);
        // A segment only exceeds the limit when one record alone does.
        assert!(s.bytes <= 256 || s.records == 1, "{s:?}");
        let ids: Vec<u64> = frames(&s.path).iter().map(|f| f.1).collect();
        assert_eq!(ids.len() as u64, s.records);
        assert_eq!((ids.first().copied(), ids.last().copied()), (s.first_id, s.last_id));
    }
    assert_reads(&wal, 1..next);
    assert_eq!(wal.read(10, 20, usize::MAX).unwrap(), records(10..20));
    assert_eq!(wal.read(20, 20, usize::MAX).unwrap(), vec![]);
    assert_eq!(wal.read(next, u64::MAX, usize::MAX).unwrap(), vec![]);
    wal.close();

    let (wal, report) = Wal::open(dir.path(), 7, opts(WalProfile::Medium, 256)).unwrap();
    assert_eq!(report.truncated, None);
    assert_eq!(report.segments, segs.len());
    assert_eq!(report.records, next - 1);
    assert_eq!(wal.segments(), segs);
    assert_eq!((wal.first_id(), wal.last_id()), (Some(1), Some(next - 1)));
    assert_reads(&wal, 1..next);
    append_wait(&wal, records(next..next + 3)).unwrap();
    assert_reads(&wal, 1..next + 3);
}

/// Records whose payload is a head and a tail, the tails both shorter and longer than what the
/// log copies, read back as one payload each, across rolls and a reopen.
#[test]
fn head_and_tail_payloads_land_back_to_back() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 3, opts(WalProfile::Medium, 96 * 1024)).unwrap();
    let payload = |id: u64| {
        let head = Bytes::from(format!("head of {id}|"));
        let tail_len = [0usize, 100, 16 * 1024 - 1, 16 * 1024, 40_000][id as usize % 5];
        let tail = Bytes::from((0..tail_len).map(|i| (i as u64 * 7 + id) as u8).collect::<Vec<u8>>());
        Payload::new(head, tail)
    };
    let joined = |p: &Payload| Bytes::from([p.parts()[0].as_ref(), p.parts()[1].as_ref()].concat());
    let mut next = 1u64;
    for batch in [1u64, 7, 3, 12] {
        let recs: Vec<(u64, Payload)> = (next..next + batch).map(|id| (id, payload(id))).collect();
        let (tx, rx) = mpsc::channel();
        wal.append(recs, Box::new(move |r| tx.send(r).unwrap())).unwrap();
        rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
        next += batch;
    }
    let expected: Vec<(u64, Bytes)> = (1..next).map(|id| (id, joined(&payload(id)))).collect();
    assert!(wal.segments().len() >= 3, "expected rolls, got {:?}", wal.segments());
    assert_eq!(wal.read(0, u64::MAX, usize::MAX).unwrap(), expected);
    for s in wal.segments() {
        assert_eq!(fs::metadata(&s.path).unwrap().len(), s.bytes);
    }
    wal.close();

    // Corruption is an error, so a clean verify is the CRCs of the written frames matching.
    let report = verify_path(dir.path()).unwrap();
    assert_eq!((report.records, report.torn_tails.len()), (next - 1, 0));
    let (wal, report) = Wal::open(dir.path(), 3, opts(WalProfile::Medium, 96 * 1024)).unwrap();
    assert_eq!((report.truncated, report.records), (None, next - 1));
    assert_eq!(wal.read(0, u64::MAX, usize::MAX).unwrap(), expected);
}

#[test]
fn read_respects_max_bytes_but_returns_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 300)).unwrap();
    let recs: Vec<(u64, Bytes)> = (1..=20).map(|id| (id, Bytes::from(vec![id as u8; 50]))).collect();
    append_wait(&wal, recs.clone()).unwrap();
    assert_eq!(wal.read(1, 100, 0).unwrap(), recs[..1].to_vec());
    assert_eq!(wal.read(1, 100, 149).unwrap(), recs[..2].to_vec());
    assert_eq!(wal.read(1, 100, 150).unwrap(), recs[..3].to_vec());
    // Spans segments (300-byte segments hold 4 of these frames).
    assert_eq!(wal.read(3, 100, 400).unwrap(), recs[2..10].to_vec());
}

#[test]
fn ids_must_increase() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    append_wait(&wal, records(5..8)).unwrap();
    let err = wal.append(records(7..9), Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, WalError::OutOfOrder { last: 7, got: 7 }), "{err}");
    let bad = vec![(10, payload(10)), (10, payload(10))];
    let err = wal.append(bad, Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, WalError::OutOfOrder { last: 10, got: 10 }), "{err}");
    // Nothing of the rejected batches was written; gaps are allowed.
    append_wait(&wal, records(20..22)).unwrap();
    let got: Vec<u64> = wal.read(0, 100, usize::MAX).unwrap().iter().map(|r| r.0).collect();
    assert_eq!(got, vec![5, 6, 7, 20, 21]);
    assert_eq!(wal.read(8, 21, usize::MAX).unwrap(), records(20..21));
}

#[test]
fn concurrent_appends_share_fsyncs_and_complete_in_order() {
    let (syncs, total) = concurrent_appends(1 << 20);
    assert!(syncs >= 1 && syncs < total, "{syncs} fsyncs for {total} appends");
}

#[test]
fn concurrent_appends_across_segment_rolls_complete_in_order() {
    concurrent_appends(300);
}

/// 4 threads x 50 appends; checks order and content, returns (fsyncs, appends).
fn concurrent_appends(segment_bytes: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1, opts(WalProfile::Medium, segment_bytes)).unwrap();
    let before = wal.sync_count();
    let next_id = Arc::new(Mutex::new(1u64));
    let completed = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let threads = 4;
    let per_thread = 50;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (wal, next_id, completed, tx) = (wal.clone(), next_id.clone(), completed.clone(), tx.clone());
            thread::spawn(move || {
                for _ in 0..per_thread {
                    // Ids come from a shared counter taken together with the append, so the
                    // append order across threads is the id order.
                    let mut next = next_id.lock().unwrap();
                    let id = *next;
                    let (completed, tx) = (completed.clone(), tx.clone());
                    wal.append(
                        vec![(id, payload(id))],
                        Box::new(move |r| {
                            r.unwrap();
                            completed.lock().unwrap().push(id);
                            tx.send(()).unwrap();
                        }),
                    )
                    .unwrap();
                    *next += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = threads * per_thread;
    for _ in 0..total {
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert_eq!(completed, (1..=total as u64).collect::<Vec<_>>());
    let syncs = wal.sync_count() - before;
    assert_reads(&wal, 1..total as u64 + 1);
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), 1, opts(WalProfile::Medium, segment_bytes)).unwrap();
    assert_reads(&wal, 1..total as u64 + 1);
    (syncs, total as u64)
}

#[test]
fn low_profile_syncs_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1, opts(WalProfile::Low, 1 << 20)).unwrap();
    let before = wal.sync_count();
    let (tx, rx) = mpsc::channel();
    for id in 1..=20u64 {
        let tx = tx.clone();
        wal.append(vec![(id, payload(id))], Box::new(move |r| tx.send((id, r.is_ok())).unwrap())).unwrap();
    }
    let got: Vec<(u64, bool)> = (0..20).map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap()).collect();
    assert_eq!(got, (1..=20).map(|id| (id, true)).collect::<Vec<_>>());
    assert_eq!(wal.sync_count() - before, 20);
}

#[test]
fn high_profile_lingers_to_batch() {
    let dir = tempfile::tempdir().unwrap();
    let linger = Duration::from_millis(200);
    let o = WalOptions { profile: WalProfile::High, segment_bytes: 1 << 20, linger, ..WalOptions::default() };
    let (wal, _) = Wal::open(dir.path(), 1, o).unwrap();
    let before = wal.sync_count();
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    for id in 1..=20u64 {
        let tx = tx.clone();
        wal.append(vec![(id, payload(id))], Box::new(move |r| tx.send((id, r.is_ok())).unwrap())).unwrap();
    }
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(start.elapsed() >= linger - Duration::from_millis(20), "{:?}", start.elapsed());
    assert_eq!(first, (1, true));
    for id in 2..=20 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), (id, true));
    }
    // 20 appends well inside one linger: one fsync (two if the machine stalled mid-loop).
    assert!(wal.sync_count() - before <= 2, "{}", wal.sync_count() - before);
}

#[tokio::test]
async fn append_durable_waits_for_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 3, WalOptions::default()).unwrap();
    let before = wal.sync_count();
    wal.append_durable(records(1..4)).await.unwrap();
    assert!(wal.sync_count() > before);
    assert_eq!(wal.last_id(), Some(3));
    let err = wal.append_durable(records(2..3)).await.unwrap_err();
    assert!(matches!(err, WalError::OutOfOrder { .. }));
}

#[test]
fn truncate_from_removes_the_suffix_durably() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(WalProfile::Medium, 200);
    let (wal, _) = Wal::open(dir.path(), 0, o.clone()).unwrap();
    append_wait(&wal, records(1..51)).unwrap();
    let segs = wal.segments();
    let mid = &segs[segs.len() / 2];
    let cut = mid.first_id.unwrap() + 1;

    wal.truncate_from(cut).unwrap();
    assert_eq!(wal.last_id(), Some(cut - 1));
    assert_eq!(wal.segments().len(), segs.len() / 2 + 1);
    for s in &segs[segs.len() / 2 + 1..] {
        assert!(!s.path.exists(), "{} should be deleted", s.path.display());
    }
    assert_eq!(frames(&mid.path).last().unwrap().1, cut - 1);
    assert_reads(&wal, 1..cut);
    // Raft then appends the leader's entries from the cut on.
    append_wait(&wal, records(cut..cut + 30)).unwrap();
    assert_reads(&wal, 1..cut + 30);
    // Truncating past the end is a no-op.
    wal.truncate_from(1000).unwrap();
    assert_eq!(wal.last_id(), Some(cut + 29));
    wal.truncate_from(cut + 10).unwrap();
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), 0, o.clone()).unwrap();
    assert_eq!(report.truncated, None);
    assert_reads(&wal, 1..cut + 10);
    wal.truncate_from(0).unwrap();
    assert_eq!((wal.first_id(), wal.last_id()), (None, None));
    assert_eq!(wal.segments().len(), 1);
    append_wait(&wal, records(100..103)).unwrap();
    drop(wal);
    let (wal, _) = Wal::open(dir.path(), 0, o).unwrap();
    assert_reads(&wal, 100..103);
}

#[test]
fn purge_before_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(WalProfile::Medium, 200);
    let (wal, _) = Wal::open(dir.path(), 0, o.clone()).unwrap();
    append_wait(&wal, records(1..51)).unwrap();
    let segs = wal.segments();
    let boundary = segs[2].first_id.unwrap();

    assert_eq!(wal.purge_before(boundary - 1).unwrap(), segs[0].bytes);
    assert_eq!(wal.first_id(), segs[1].first_id);
    assert!(!segs[0].path.exists());
    assert_eq!(wal.purge_before(boundary).unwrap(), segs[1].bytes);
    assert_eq!(wal.first_id(), Some(boundary));
    assert_eq!(wal.purge_before(boundary).unwrap(), 0);
    assert_eq!(wal.read(0, 100, usize::MAX).unwrap(), records(boundary..51));

    // Never the active segment, even when everything is older.
    let freed = wal.purge_before(u64::MAX).unwrap();
    assert_eq!(freed, segs[2..segs.len() - 1].iter().map(|s| s.bytes).sum::<u64>());
    assert_eq!(wal.segments().len(), 1);
    assert_eq!(wal.segments()[0].path, segs.last().unwrap().path);
    let first = wal.first_id();
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), 0, o).unwrap();
    assert_eq!(report.segments, 1);
    assert_eq!(wal.first_id(), first);
    append_wait(&wal, records(51..53)).unwrap();
    assert_reads(&wal, first.unwrap()..53);
}

#[test]
fn fail_stop_fails_pending_and_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        profile: WalProfile::High,
        segment_bytes: 1 << 20,
        linger: Duration::from_secs(30),
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir.path(), 0, o).unwrap();
    let (tx, rx) = mpsc::channel();
    wal.append(records(1..3), Box::new(move |r| tx.send(r).unwrap())).unwrap();
    wal.inject_failure("fdatasync of wal_0_00000001.log failed: Input/output error (os error 5)");
    let err = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap_err();
    assert!(matches!(&err, WalError::Failed(m) if m.contains("os error 5")), "{err}");
    let err = wal.append(records(3..4), Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, WalError::Failed(_)), "{err}");
    assert!(!err.is_disk_full());
    assert!(matches!(wal.truncate_from(1), Err(WalError::Failed(_))));
}

#[test]
fn close_and_drop_complete_pending_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let o = WalOptions {
        profile: WalProfile::High,
        segment_bytes: 1 << 20,
        linger: Duration::from_secs(30),
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir.path(), 0, o.clone()).unwrap();
    let (tx, rx) = mpsc::channel();
    wal.append(records(1..3), Box::new(move |r| tx.send(r.is_ok()).unwrap())).unwrap();
    drop(wal);
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());

    let (wal, _) = Wal::open(dir.path(), 0, o.clone()).unwrap();
    let again = Wal::open(dir.path(), 0, o.clone()).unwrap_err();
    assert!(matches!(again, WalError::Locked { .. }), "{again}");
    // The segments themselves are locked: a log needs no descriptor beyond them.
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(names.iter().all(|n| n.to_string_lossy().ends_with(".log")), "{names:?}");
    // Another stream in the same directory is another log.
    let (other, _) = Wal::open(dir.path(), 1, o.clone()).unwrap();
    assert_eq!(other.last_id(), None);
    wal.close();
    assert!(matches!(wal.append(records(3..4), Box::new(|_| {})), Err(WalError::Closed)));
    assert!(matches!(wal.read(0, 10, 100), Err(WalError::Closed)));
    let (reopened, _) = Wal::open(dir.path(), 0, o).unwrap();
    assert_reads(&reopened, 1..3);
}

#[test]
fn a_callback_may_drop_the_last_handle() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, WalOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let keep = wal.clone();
    wal.append(
        records(1..2),
        Box::new(move |r| {
            drop(keep);
            tx.send(r.is_ok()).unwrap();
        }),
    )
    .unwrap();
    drop(wal);
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
}

#[test]
fn profiles_parse_print_and_serialize() {
    for p in WalProfile::ALL {
        assert_eq!(p.to_string().parse::<WalProfile>().unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("\"{p}\""));
        assert_eq!(serde_json::from_str::<WalProfile>(&json).unwrap(), p);
    }
    assert_eq!("HIGH".parse::<WalProfile>().unwrap(), WalProfile::High);
    let err = "fast".parse::<WalProfile>().unwrap_err();
    assert!(err.contains("low") && err.contains("medium") && err.contains("high"), "{err}");
    assert_eq!(WalProfile::default(), WalProfile::Medium);
    let d = WalOptions::default();
    assert_eq!((d.segment_bytes, d.linger), (64 << 20, Duration::from_millis(1)));
}

#[test]
fn disk_full_is_recognised() {
    let full = WalError::Io { path: PathBuf::from("/x"), op: "write", source: std::io::Error::from_raw_os_error(28) };
    assert!(full.is_disk_full());
    let other = WalError::Io { path: PathBuf::from("/x"), op: "write", source: std::io::Error::from_raw_os_error(5) };
    assert!(!other.is_disk_full());
    assert!(WalError::Failed("fdatasync of x failed: No space left on device (os error 28)".into()).is_disk_full());
}

#[test]
fn every_held_segment_is_locked_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    append_wait(&wal, records(1..40)).unwrap();
    assert!(wal.segments().len() >= 3);
    // The first segment it tries is held: the open fails before reading or repairing anything.
    let err = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap_err();
    assert!(matches!(&err, WalError::Locked { lock, .. } if *lock == wal.segments()[0].path), "{err}");
    wal.close();
    let (wal, report) = Wal::open(dir.path(), 0, opts(WalProfile::Medium, 200)).unwrap();
    assert_eq!(report.records, 39);
    assert_reads(&wal, 1..40);
}
