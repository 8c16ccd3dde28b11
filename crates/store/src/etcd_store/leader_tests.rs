//! Leadership through etcd: one holder at a time; a holder that stops keeping its lease
//! alive (a paused process) loses it and knows it; a store fenced by a lost leadership
//! can write nothing more, even where no one else has written since.

use std::time::{Duration, Instant};

use crate::conformance::event;
use crate::conformance::fixtures::EtcdFixture;
use crate::{Change, EtcdConfig, EtcdLeadership, EtcdStore, Store, StoreError};

const TTL: Duration = Duration::from_secs(2);

fn audit_only(action: &str) -> Change {
    Change {
        audit: vec![event(action)],
        ..Change::default()
    }
}

/// Campaigns, giving up after `within`.
fn campaign(config: &EtcdConfig, holder: &str, within: Duration) -> Option<EtcdLeadership> {
    let until = Instant::now() + within;
    EtcdLeadership::campaign(config.clone(), holder, TTL, |_| Instant::now() > until).unwrap()
}

fn fenced(config: &EtcdConfig, by: &EtcdLeadership) -> EtcdConfig {
    EtcdConfig {
        fence: Some(by.fence()),
        ..config.clone()
    }
}

#[test]
fn one_leader_at_a_time_and_a_paused_one_loses_the_lease_and_every_write() {
    let mut f = EtcdFixture::new();
    drop(f.store.take());
    let config = f.config.clone();
    let mut a = campaign(&config, "a:7468", Duration::from_secs(10)).expect("a leads");
    assert!(a.holds());
    assert_eq!(
        EtcdLeadership::holder(config.clone()).unwrap().as_deref(),
        Some("a:7468")
    );
    // B waits while A keeps its lease alive (longer than the lease itself), told that A
    // holds the key.
    let until = Instant::now() + TTL * 2;
    let mut seen = None;
    let waited = EtcdLeadership::campaign(config.clone(), "b:7468", TTL, |holder| {
        seen = holder.map(str::to_owned);
        Instant::now() > until
    })
    .unwrap();
    assert!(waited.is_none());
    assert_eq!(seen.as_deref(), Some("a:7468"));
    assert!(a.holds(), "the keep-alives hold the lease");

    let store_a = EtcdStore::open(fenced(&config, &a)).unwrap();
    store_a.commit(audit_only("by a")).unwrap();
    store_a.flush().unwrap();

    // A stops keeping its lease alive (paused): it knows it no longer holds within a
    // lease time, and B takes over once etcd expires the lease.
    a.stop_keeping_alive();
    let b = campaign(&config, "b:7468", Duration::from_secs(20)).expect("b leads after expiry");
    assert!(!a.holds(), "a sees its lease ended");
    assert_ne!(b.fence(), a.fence());
    assert_eq!(
        EtcdLeadership::holder(config.clone()).unwrap().as_deref(),
        Some("b:7468")
    );
    // Nothing was written since A's last change, so the audit head still matches what A
    // wrote: only the fence stops A.
    store_a.commit(audit_only("by a, too late")).unwrap();
    let refused = store_a.flush().unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(why) if why.contains("no longer leads")),
        "{refused}"
    );
    drop(store_a);
    let store_b = EtcdStore::open(fenced(&config, &b)).unwrap();
    let log = store_b.audit_after(0, 10).unwrap();
    assert_eq!(
        log.iter()
            .map(|r| r.event.action.as_str())
            .collect::<Vec<_>>(),
        ["by a"],
        "a's late change never reached etcd"
    );
    store_b.commit(audit_only("by b")).unwrap();
    store_b.flush().unwrap();
    drop(store_b);
    // Resigning (or dropping) a leadership releases it at once.
    b.resign();
    assert!(!b.holds());
    let c = campaign(&config, "c:7468", TTL).expect("c leads at once after b let go");
    assert!(c.holds());
    drop(a);
}
