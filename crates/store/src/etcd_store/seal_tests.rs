//! The audit tail sealed into segments inside etcd: read back as one log, across a
//! restart, and atomic when a crash cuts a seal in the middle.

use crate::conformance::event;
use crate::conformance::fixtures::EtcdFixture;
use crate::{Change, Store};

fn record(s: &dyn Store, i: usize) {
    s.commit(Change {
        audit: vec![event(&format!("r{i}"))],
        ..Change::default()
    })
    .unwrap();
}

fn check_log(s: &dyn Store, n: u64) {
    let all = s.audit_after(0, 10_000).unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    for (after, limit) in [(15, 3), (37, 5), (n - 2, 10), (0, 1)] {
        let page = s.audit_after(after, limit).unwrap();
        let want: Vec<u64> = (after + 1..=n).take(limit).collect();
        assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), want);
    }
    let v = crate::verify_audit(s, 1, 0).unwrap();
    assert!(v.broken.is_none(), "{v:?}");
    assert_eq!(v.checked, n);
}

#[test]
fn the_tail_is_sealed_into_segments_and_read_as_one_log() {
    let mut f = EtcdFixture::with_config(1, |c| c.records_per_segment = 16);
    let s = f.store.take().unwrap();
    for i in 0..100 {
        record(&s, i);
    }
    s.flush().unwrap();
    while s.seal_due().unwrap() {}
    // At most two segments' worth stays in the tail; the rest is in 16-record segments.
    let tail = s.raw_keys(b"q").unwrap().len();
    assert!((16..32).contains(&tail), "{tail} records in the tail");
    assert_eq!(s.raw_keys(b"Q").unwrap().len(), (100 - tail) / 16);
    check_log(&s, 100);
    drop(s);
    f.reopen_store();
    let s = f.store.take().unwrap();
    check_log(&s, 100);
    for i in 100..140 {
        record(&s, i);
    }
    s.flush().unwrap();
    while s.seal_due().unwrap() {}
    check_log(&s, 140);
}

#[test]
fn a_seal_cut_off_by_a_crash_is_completed_at_the_next_open() {
    // 200 records a segment: a seal is larger than one transaction (201 writes).
    let mut f = EtcdFixture::with_config(1, |c| c.records_per_segment = 200);
    let s = f.store.take().unwrap();
    for i in 0..450 {
        record(&s, i);
    }
    s.flush().unwrap();
    s.stop_large_at(2);
    // This attempt or the background thread's is cut after the marker; its retry too.
    let _ = s.seal_due();
    assert!(s.flush().is_err(), "the injected crash after the marker");
    drop(s);
    f.reopen_store();
    let s = f.store.take().unwrap();
    assert_eq!(s.raw_keys(b"Q").unwrap().len(), 1, "the seal was completed");
    assert_eq!(s.raw_keys(b"q").unwrap().len(), 250);
    check_log(&s, 450);

    // Cut before the marker: nothing happened, and the next seal goes through.
    s.stop_large_at(1);
    for i in 450..650 {
        record(&s, i);
    }
    let _ = s.seal_due();
    assert!(s.flush().is_err(), "the injected crash before the marker");
    drop(s);
    f.reopen_store();
    let s = f.store.take().unwrap();
    assert_eq!(s.raw_keys(b"Q").unwrap().len(), 1);
    // Only what was flushed before the cut is there: the records up to the seal.
    let n = s.audit_head().unwrap().0;
    assert!((450..=650).contains(&n), "{n}");
    check_log(&s, n);
    if n >= 600 {
        let _ = s.seal_due();
        s.flush().unwrap();
        assert_eq!(s.raw_keys(b"Q").unwrap().len(), 2);
        check_log(&s, n);
    }
}
