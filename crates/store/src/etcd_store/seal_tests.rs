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

fn pruned(s: &dyn Store, through: u64) -> crate::Result<crate::Committed> {
    s.prune_audit(
        through,
        Change {
            audit: vec![event("audit.pruned")],
            ..Change::default()
        },
    )
}

#[test]
fn pruned_segments_go_whole_with_their_record_and_the_log_verifies_from_where_it_begins() {
    let mut f = EtcdFixture::with_config(1, |c| c.records_per_segment = 10);
    let s = f.store.take().unwrap();
    for i in 0..50 {
        record(&s, i);
    }
    s.flush().unwrap();
    while s.seal_due().unwrap() {}
    assert_eq!(s.raw_keys(b"Q").unwrap().len(), 4, "1-40 sealed");
    let all = s.audit_after(0, 100).unwrap();
    // Only whole segments that end before the record: 1-10 and 11-20 for "before 25".
    let plan = s.audit_prunable(25).unwrap().unwrap();
    assert_eq!(
        (plan.first, plan.last, plan.segments),
        (1, 20, 2),
        "{plan:?}"
    );
    assert_eq!(plan.last_hash, all[19].hash);
    assert!(s.audit_prunable(10).unwrap().is_none());
    // Through a record inside a segment, or past the sealed ones: refused, nothing written.
    for through in [25, 45] {
        assert!(pruned(&s, through).is_err());
    }
    assert_eq!(s.audit_head().unwrap().0, 50);
    let committed = pruned(&s, 20).unwrap();
    assert_eq!(committed.audit_seqs, vec![51]);
    assert_eq!(s.raw_keys(b"Q").unwrap().len(), 2);
    assert_eq!(s.audit_start().unwrap(), (20, all[19].hash.clone()));
    let check = |s: &dyn Store| {
        let log = s.audit_after(0, 100).unwrap();
        assert_eq!(log[0], all[20]);
        assert_eq!(log.last().map(|r| r.seq), Some(51));
        let v = crate::verify_audit(s, 0, 0).unwrap();
        assert!(v.intact(), "{:?}", v.broken);
        assert_eq!(v.checked, 31);
    };
    check(&s);
    drop(s);
    f.reopen_store();
    let s = f.store.take().unwrap();
    check(&s);
    // The next prune starts where this one ended; it may take every sealed segment.
    let plan = s.audit_prunable(100).unwrap().unwrap();
    assert_eq!((plan.first, plan.last), (21, 40));
    pruned(&s, 40).unwrap();
    assert!(s.raw_keys(b"Q").unwrap().is_empty());
    let log = s.audit_after(0, 100).unwrap();
    assert_eq!(log.first().map(|r| r.seq), Some(41));
    assert_eq!(log.len(), 12);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

/// A record stored in parts (a cascade naming tens of thousands of links) leaves no part
/// behind when its record is sealed, nor the segment's parts when the segment is pruned.
#[test]
fn values_stored_in_parts_go_with_their_keys_when_sealed_and_pruned() {
    let mut f = EtcdFixture::with_config(1, |c| c.records_per_segment = 10);
    let s = f.store.take().unwrap();
    let mut big = event("link.revoked");
    big.links = (0..40_000u32)
        .map(|i| format!("{:032x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15))
        .collect();
    s.commit(Change {
        audit: vec![big],
        ..Change::default()
    })
    .unwrap();
    for i in 1..30 {
        record(&s, i);
    }
    s.flush().unwrap();
    assert!(
        !s.raw_keys(b"S").unwrap().is_empty(),
        "the record is in parts"
    );
    while s.seal_due().unwrap() {}
    let after_seal = s.raw_keys(b"S").unwrap().len();
    let segment = s
        .raw_get(&super::seal::segment_key(1, 10))
        .unwrap()
        .unwrap();
    assert!(
        segment.starts_with(super::layer::SPILLED),
        "the segment is stored in parts too"
    );
    let parts = u32::from_be_bytes(segment[super::layer::SPILLED.len()..].try_into().unwrap());
    assert_eq!(
        after_seal, parts as usize,
        "only the segment's parts are left"
    );
    check_log(&s, 30);
    pruned(&s, 10).unwrap();
    assert!(
        s.raw_keys(b"S").unwrap().is_empty(),
        "no part outlives its key"
    );
}
