//! The etcd store when etcd fails: members lost, quorum lost and back, another writer,
//! and a crash in the middle of a change larger than a transaction.

use std::time::{Duration, Instant};

use mandate_core::{LinkId, TaskId};

use crate::conformance::fixtures::EtcdFixture;
use crate::conformance::{event, task};
use crate::{Change, EtcdStore, NewRevocation, Store, StoreError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn revoke(i: u32, implied: bool) -> NewRevocation {
    let mut b = [0xCD; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    NewRevocation {
        link: LinkId::from_bytes(b),
        task: TaskId::from_bytes([1; 16]),
        expires_at_ms: u64::MAX,
        reason: "test".into(),
        time_ms: 5,
        implied,
    }
}

fn audit_only(action: &str) -> Change {
    Change {
        audit: vec![event(action)],
        ..Change::default()
    }
}

/// Polls `cond` every 50 ms for at most `within`.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn one_member_lost_changes_nothing_quorum_lost_refuses_changes_and_its_return_resumes_them() {
    let mut f = EtcdFixture::with_members(3);
    let s = f.store.take().unwrap();
    s.commit(audit_only("before")).unwrap();
    s.flush().unwrap();

    // One of three lost: the store goes on.
    f.cluster.kill(0);
    s.commit(Change {
        tasks: vec![task(1)],
        audit: vec![event("one lost")],
        ..Change::default()
    })
    .unwrap();
    s.flush().unwrap();

    // Quorum lost: a change that reads state fails (reads are linearizable); one that
    // reads nothing is taken and kept, its flush fails, and every change after is refused
    // until etcd is back.
    f.cluster.kill(1);
    assert!(matches!(
        s.commit(Change {
            tasks: vec![task(2)],
            audit: vec![event("needs a read")],
            ..Change::default()
        }),
        Err(StoreError::Backend(_))
    ));
    s.commit(audit_only("taken")).unwrap();
    assert!(matches!(s.flush(), Err(StoreError::Backend(_))));
    let refused = s.commit(Change {
        tasks: vec![task(3)],
        audit: vec![event("refused")],
        ..Change::default()
    });
    assert!(
        matches!(&refused, Err(StoreError::Backend(e)) if e.contains("etcd")),
        "{refused:?}"
    );
    assert!(
        matches!(s.task(&task(3).id), Err(StoreError::Backend(_))),
        "reads fail without quorum, never answer stale"
    );

    // Quorum back: the background flush ships what was taken, changes are taken again.
    let rt = runtime();
    rt.block_on(f.cluster.restart(0)).unwrap();
    rt.block_on(f.cluster.restart(1)).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || s.pending() == 0),
        "the pending change is shipped once etcd is back"
    );
    assert!(eventually(Duration::from_secs(10), || {
        s.commit(audit_only("after")).is_ok()
    }));
    s.flush().unwrap();
    drop(s);
    f.reopen_store();
    let s = f.store.as_ref().unwrap();
    assert!(s.task(&task(1).id).unwrap().is_some());
    assert!(s.task(&task(2).id).unwrap().is_none());
    assert!(s.task(&task(3).id).unwrap().is_none());
    let log = s.audit_after(0, 100).unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(actions, ["before", "one lost", "taken", "after"]);
    assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
}

#[test]
fn another_writer_moving_the_audit_head_is_a_conflict_and_the_chain_never_forks() {
    let mut f = EtcdFixture::new();
    let s = f.store.take().unwrap();
    s.commit(audit_only("mine")).unwrap();
    s.flush().unwrap();
    // A second coordinator (simulated) appends its own record 2.
    let other = EtcdStore::open(f.config.clone()).unwrap();
    other.commit(audit_only("theirs")).unwrap();
    other.flush().unwrap();
    drop(other);

    s.commit(audit_only("mine too")).unwrap();
    assert!(matches!(s.flush(), Err(StoreError::Conflict(_))));
    assert!(matches!(
        s.commit(audit_only("refused")),
        Err(StoreError::Conflict(_))
    ));
    drop(s);
    f.reopen_store();
    let s = f.store.as_ref().unwrap();
    let log = s.audit_after(0, 100).unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(
        actions,
        ["mine", "theirs"],
        "the losing change never landed"
    );
    assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
}

fn cascade() -> Change {
    let mut revocations = vec![revoke(0, false)];
    revocations.extend((1..40_000).map(|i| revoke(i, true)));
    Change {
        revocations,
        audit: vec![event("cascade")],
        ..Change::default()
    }
}

#[test]
fn a_large_change_cut_off_after_its_marker_is_completed_at_the_next_open() {
    let mut f = EtcdFixture::new();
    let s = f.store.take().unwrap();
    s.stop_large_at(2);
    s.commit(cascade()).unwrap();
    assert!(s.flush().is_err(), "the injected crash");
    // The process dies here: what it had pending is gone with it.
    drop(s);
    f.reopen_store();
    let s = f.store.as_ref().unwrap();
    assert_eq!(s.epoch().unwrap(), 1);
    assert_eq!(s.revocations_after(0).unwrap().len(), 1);
    assert_eq!(
        s.implied_revocations(1, &TaskId::from_bytes([1; 16]))
            .unwrap()
            .len(),
        39_999
    );
    assert_eq!(s.audit_head().unwrap().0, 1);
    assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
    assert!(s.raw_keys(b"z").unwrap().is_empty());
    assert!(s.raw_get(b"mstaged").unwrap().is_none());
}

#[test]
fn a_large_change_cut_off_before_its_marker_never_happened() {
    let mut f = EtcdFixture::new();
    let s = f.store.take().unwrap();
    s.commit(audit_only("first")).unwrap();
    s.flush().unwrap();
    s.stop_large_at(1);
    s.commit(cascade()).unwrap();
    assert!(s.flush().is_err(), "the injected crash");
    assert!(
        !s.raw_keys(b"z").unwrap().is_empty(),
        "staged, not published"
    );
    drop(s);
    f.reopen_store();
    let s = f.store.as_ref().unwrap();
    assert_eq!(s.epoch().unwrap(), 0);
    assert!(s.all_implied_revocations().unwrap().is_empty());
    assert_eq!(s.audit_head().unwrap().0, 1);
    assert!(
        s.raw_keys(b"z").unwrap().is_empty(),
        "the staging is dropped"
    );
    // The log goes on from the last change that was published.
    s.commit(audit_only("next")).unwrap();
    s.flush().unwrap();
    assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
}
