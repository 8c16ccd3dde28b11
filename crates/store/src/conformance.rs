//! The `Store` conformance suite: every test body runs against each backend (sled in a
//! temporary directory, etcd as a cluster on loopback started for the test), through the
//! trait alone plus raw access to the backend's map for damage and old layouts.

use mandate_core::{LinkId, TaskId};

use crate::kv::{be, key};
use crate::records::LinkRecord;
use crate::{Change, GcStats, NewRevocation, Severity, StoreError, implied};

mod compat;
pub(crate) mod fixtures;
mod records;
mod tree;
use compat::{
    implied_revocations_written_as_one_value_before_parts_are_still_read,
    records_written_as_json_before_are_read_collected_and_rewritten,
    stores_in_the_six_key_layout_are_moved_to_four_keys_at_open,
};
use fixtures::Fixture;
use records::{agent, approval, coordinator_keys, nth, revoke};
pub(crate) use records::{event, link, task, varied_event};
use tree::a_delegation_with_an_all_zero_id_is_a_child_not_a_root;

fn records_round_trip_and_indexes_answer(f: &mut dyn Fixture) {
    let s = f.store();
    let t = task(9);
    s.commit(Change {
        agents: vec![agent("spiffe://t/planner"), agent("spiffe://t/b")],
        tasks: vec![t.clone()],
        links: vec![
            link(1, None, t.id),
            link(2, Some(1), t.id),
            link(3, Some(1), t.id),
            link(4, Some(2), t.id),
        ],
        audit: vec![event("setup")],
        ..Change::default()
    })
    .unwrap();
    assert_eq!(
        s.agent("spiffe://t/planner").unwrap().unwrap(),
        agent("spiffe://t/planner")
    );
    assert!(s.agent("spiffe://t/zz").unwrap().is_none());
    assert_eq!(s.agents(None, 10).unwrap().len(), 2);
    assert_eq!(
        s.agents(Some("spiffe://t/b"), 10).unwrap()[0].id,
        "spiffe://t/planner"
    );
    assert_eq!(s.agents(None, 1).unwrap().len(), 1);
    assert_eq!(s.task(&t.id).unwrap().unwrap(), t);
    assert_eq!(s.tasks(None, 10).unwrap(), vec![t.clone()]);
    assert!(s.tasks(Some(&t.id), 10).unwrap().is_empty());
    let mut kids = s.children(&t.id, &LinkId::from_bytes([1; 16])).unwrap();
    kids.sort();
    assert_eq!(
        kids,
        vec![LinkId::from_bytes([2; 16]), LinkId::from_bytes([3; 16])]
    );
    // The tree index carries each child's expiry, so a cascade reads no link record.
    let mut kids = s
        .children_with_expiry(&t.id, &LinkId::from_bytes([1; 16]))
        .unwrap();
    kids.sort();
    let expiry = |id: u8| {
        s.link(&LinkId::from_bytes([id; 16]))
            .unwrap()
            .unwrap()
            .expires_at_ms
    };
    assert_eq!(
        kids,
        vec![
            (LinkId::from_bytes([2; 16]), expiry(2)),
            (LinkId::from_bytes([3; 16]), expiry(3))
        ]
    );
    // Children are looked up within their task.
    assert!(
        s.children(&task(8).id, &LinkId::from_bytes([1; 16]))
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.task_links(&t.id).unwrap().len(), 4);
    assert_eq!(s.task_link_count(&t.id).unwrap(), 4);
    assert_eq!(
        s.task_roots(&t.id).unwrap(),
        vec![LinkId::from_bytes([1; 16])]
    );
    // The task index holds the whole tree: parents and expiries, read in one scan.
    let mut tree = s.task_tree(&t.id).unwrap();
    tree.sort();
    assert_eq!(
        tree,
        [(1, None), (2, Some(1)), (3, Some(1)), (4, Some(2))]
            .map(|(id, parent): (u8, Option<u8>)| (
                LinkId::from_bytes([id; 16]),
                parent.map(|p| LinkId::from_bytes([p; 16])),
                expiry(id)
            ))
            .to_vec()
    );
    assert_eq!(
        s.agent_links("spiffe://t/h2").unwrap(),
        vec![LinkId::from_bytes([2; 16])]
    );
    // Issuers are not indexed: a delegation's issuer holds its parent.
    assert!(s.agent_links("spiffe://t/planner").unwrap().is_empty());
}

fn revocations_get_one_epoch_per_change_and_skip_duplicates(f: &mut dyn Fixture) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    assert_eq!(s.epoch().unwrap(), 0);
    let c = s
        .commit(Change {
            revocations: vec![revoke(1, t), revoke(2, t), revoke(1, t)],
            audit: vec![event("revoke")],
            ..Change::default()
        })
        .unwrap();
    assert_eq!(c.epoch, Some(1));
    assert_eq!(c.revoked.len(), 2);
    let implied = NewRevocation {
        implied: true,
        ..revoke(3, t)
    };
    let c = s
        .commit(Change {
            revocations: vec![revoke(2, t), implied],
            audit: vec![event("revoke")],
            ..Change::default()
        })
        .unwrap();
    assert_eq!((c.epoch, c.revoked.len()), (Some(2), 1));
    assert_eq!(s.epoch().unwrap(), 2);
    // Cut links are listed by epoch; implied revocations are kept with their change.
    assert_eq!(s.revocations_after(0).unwrap().len(), 2);
    assert!(s.revocations_after(1).unwrap().is_empty());
    let implied = s.all_implied_revocations().unwrap();
    assert_eq!(implied.len(), 1);
    assert_eq!(
        (implied[0].link, implied[0].epoch),
        (LinkId::from_bytes([3; 16]), 2)
    );
    assert!(
        implied[0].implied,
        "whether a revocation is implied is kept"
    );
    assert!(!s.revocations_after(0).unwrap()[0].implied);
    assert_eq!(
        s.revocation(&LinkId::from_bytes([2; 16]))
            .unwrap()
            .unwrap()
            .epoch,
        1
    );
}

fn audit_records_form_a_hash_chain(f: &mut dyn Fixture) {
    let s = f.store();
    for i in 0..3 {
        s.commit(Change {
            audit: vec![event(&format!("a{i}")), event(&format!("b{i}"))],
            ..Change::default()
        })
        .unwrap();
    }
    let records = s.audit_after(0, 100).unwrap();
    assert_eq!(records.len(), 6);
    let mut prev = crate::GENESIS_HASH.to_string();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, crate::audit_hash(r.seq, &r.event, &r.prev_hash));
        prev = r.hash.clone();
    }
    assert_eq!(s.audit_after(4, 100).unwrap().len(), 2);
    assert_eq!(s.audit_after(0, 2).unwrap().len(), 2);
}

fn a_failing_change_applies_nothing(f: &mut dyn Fixture) {
    let s = f.store();
    let t = task(1);
    s.commit(Change {
        links: vec![link(1, None, t.id)],
        audit: vec![event("first")],
        ..Change::default()
    })
    .unwrap();
    // A duplicate link fails the whole change: the agent, revocation and audit record too.
    let err = s
        .commit(Change {
            agents: vec![agent("spiffe://t/new")],
            links: vec![link(1, None, t.id)],
            revocations: vec![revoke(5, t.id)],
            audit: vec![event("second")],
            ..Change::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }));
    assert!(s.agent("spiffe://t/new").unwrap().is_none());
    assert_eq!(s.epoch().unwrap(), 0);
    assert_eq!(s.audit_after(0, 10).unwrap().len(), 1);
    // A change with no audit record is refused.
    assert!(
        s.commit(Change {
            agents: vec![agent("spiffe://t/x")],
            ..Change::default()
        })
        .is_err()
    );
    assert!(s.agent("spiffe://t/x").unwrap().is_none());
}

fn state_survives_reopening(f: &mut dyn Fixture) {
    let t = task(3);
    {
        let s = f.store();
        s.commit(Change {
            agents: vec![agent("spiffe://t/a")],
            tasks: vec![t.clone()],
            links: vec![link(1, None, t.id)],
            revocations: vec![revoke(1, t.id)],
            nonces: vec![([4; 16], 99)],
            approvals: vec![approval(t.id)],
            policy_hash: Some("sha256:ab".into()),
            policy_files: Some(vec![(
                "a.cedar".into(),
                "permit (principal, action, resource);".into(),
            )]),
            coordinator_keys: Some(coordinator_keys()),
            audit: vec![event("x")],
            uses: vec![(crate::UseCounter::Task(t.id), 3)],
        })
        .unwrap();
        s.flush().unwrap();
    }
    f.reopen();
    let s = f.store();
    assert!(s.agent("spiffe://t/a").unwrap().is_some());
    assert_eq!(s.task(&t.id).unwrap().unwrap(), t);
    assert!(s.link(&LinkId::from_bytes([1; 16])).unwrap().is_some());
    assert_eq!(s.epoch().unwrap(), 1);
    assert_eq!(s.nonce(&[4; 16]).unwrap(), Some(99));
    assert_eq!(s.approval(&t.id).unwrap(), Some(approval(t.id)));
    assert_eq!(s.policy_hash().unwrap().as_deref(), Some("sha256:ab"));
    assert_eq!(
        s.policy_files().unwrap().unwrap(),
        [(
            "a.cedar".to_owned(),
            "permit (principal, action, resource);".to_owned()
        )]
    );
    assert_eq!(s.coordinator_keys().unwrap(), Some(coordinator_keys()));
    assert_eq!(s.approvals(None, 10).unwrap(), vec![approval(t.id)]);
    assert!(s.approvals(Some(&t.id), 10).unwrap().is_empty());
    assert_eq!(s.audit_after(0, 10).unwrap().len(), 1);
    assert_eq!(s.uses(&crate::UseCounter::Task(t.id)).unwrap(), 3);
    assert_eq!(
        s.uses(&crate::UseCounter::Link(LinkId::from_bytes(
            *t.id.as_bytes()
        )))
        .unwrap(),
        0,
        "task and link counters are apart"
    );
    // The chain continues from the stored head.
    s.commit(Change {
        audit: vec![event("y")],
        ..Change::default()
    })
    .unwrap();
    let r = s.audit_after(0, 10).unwrap();
    assert_eq!(r[1].prev_hash, r[0].hash);
}

fn gc_forgets_expired_revocations_and_nonces_only(f: &mut dyn Fixture) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    s.commit(Change {
        revocations: vec![revoke(1, t), revoke(50, t)],
        nonces: vec![([1; 16], 10), ([2; 16], 5000)],
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    // A revocation is kept as long as its link's history: with history kept, it stays.
    let stats = s.gc(1010, 0).unwrap();
    assert_eq!(
        stats,
        GcStats {
            revocations: 0,
            nonces: 1,
            links: 0,
            tasks: 0,
        }
    );
    let stats = s.gc(1010, 1010).unwrap();
    assert_eq!(
        stats,
        GcStats {
            revocations: 1,
            nonces: 0,
            links: 0,
            tasks: 0,
        }
    );
    assert!(
        s.revocation(&LinkId::from_bytes([1; 16]))
            .unwrap()
            .is_none()
    );
    assert!(
        s.revocation(&LinkId::from_bytes([50; 16]))
            .unwrap()
            .is_some()
    );
    assert_eq!(s.revocations_after(0).unwrap().len(), 1);
    assert_eq!(s.nonce(&[2; 16]).unwrap(), Some(5000));
    assert_eq!(s.nonce(&[1; 16]).unwrap(), None);
    // The epoch never goes back.
    assert_eq!(s.epoch().unwrap(), 1);
}

fn queries_filter_and_page(f: &mut dyn Fixture) {
    let s = f.store();
    let t = TaskId::from_bytes([3; 16]);
    for i in 0..10u64 {
        let mut e = event(if i % 2 == 0 {
            "link.revoked"
        } else {
            "grant.issued"
        });
        e.time_ms = 100 + i;
        if i % 3 == 0 {
            e.task = Some(t);
            e.severity = Severity::High;
        }
        e.links = vec![format!("l{i}")];
        s.commit(Change {
            audit: vec![e],
            ..Change::default()
        })
        .unwrap();
    }
    let all = crate::AuditFilter::default();
    let (page, more) = crate::query_audit(s, &all, 0, 4).unwrap();
    assert_eq!((page.len(), more), (4, true));
    let (rest, more) = crate::query_audit(s, &all, page[3].seq, 100).unwrap();
    assert_eq!((rest.len(), more), (6, false));
    let f = crate::AuditFilter {
        action_prefix: Some("link.".into()),
        ..Default::default()
    };
    assert_eq!(crate::query_audit(s, &f, 0, 100).unwrap().0.len(), 5);
    let f = crate::AuditFilter {
        task: Some(t),
        ..Default::default()
    };
    assert_eq!(crate::query_audit(s, &f, 0, 100).unwrap().0.len(), 4);
    let f = crate::AuditFilter {
        min_severity: Some(Severity::High),
        ..Default::default()
    };
    assert_eq!(crate::query_audit(s, &f, 0, 100).unwrap().0.len(), 4);
    let f = crate::AuditFilter {
        link: Some("l7".into()),
        ..Default::default()
    };
    assert_eq!(crate::query_audit(s, &f, 0, 100).unwrap().0[0].seq, 8);
    let f = crate::AuditFilter {
        since_ms: 105,
        until_ms: Some(107),
        ..Default::default()
    };
    assert_eq!(crate::query_audit(s, &f, 0, 100).unwrap().0.len(), 2);
}

fn links_are_indexed_under_their_holder_alone(f: &mut dyn Fixture) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    let mut root = link(1, None, t);
    root.issuer = "spiffe://t/coordinator".into();
    s.commit(Change {
        links: vec![root, link(2, Some(1), t)],
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    assert!(s.agent_links("spiffe://t/coordinator").unwrap().is_empty());
    assert!(s.agent_links("spiffe://t/planner").unwrap().is_empty());
    assert_eq!(
        s.agent_links("spiffe://t/h1").unwrap(),
        vec![LinkId::from_bytes([1; 16])]
    );
    assert_eq!(
        s.agent_links("spiffe://t/h2").unwrap(),
        vec![LinkId::from_bytes([2; 16])]
    );
}

fn gc_removes_expired_links_and_ended_tasks_with_every_index_entry(f: &mut dyn Fixture) {
    let s = f.store();
    // Task 9 (deadline 2000): a root (expires 1001), a child (1002), a grandchild (1050).
    // Task 8 (deadline 9000): one root expiring at 1100.
    let old = task(9);
    let mut young = task(8);
    young.deadline_ms = 9000;
    let mut late = link(100, None, young.id);
    late.expires_at_ms = 8000;
    s.commit(Change {
        tasks: vec![old.clone(), young.clone()],
        links: vec![
            link(1, None, old.id),
            link(2, Some(1), old.id),
            link(50, Some(2), old.id),
            late,
        ],
        approvals: vec![approval(old.id)],
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    // A cutoff between the links' expiries: only the first two go.
    let stats = s.gc(0, 1010).unwrap();
    assert_eq!((stats.links, stats.tasks), (2, 0));
    assert!(s.link(&LinkId::from_bytes([1; 16])).unwrap().is_none());
    assert!(s.link(&LinkId::from_bytes([50; 16])).unwrap().is_some());
    assert!(
        s.children(&old.id, &LinkId::from_bytes([1; 16]))
            .unwrap()
            .is_empty()
    );
    // A tree entry goes with its child: 50 is still below the removed 2.
    assert_eq!(
        s.children(&old.id, &LinkId::from_bytes([2; 16])).unwrap(),
        vec![LinkId::from_bytes([50; 16])]
    );
    assert_eq!(s.task_links(&old.id).unwrap().len(), 1);
    assert!(s.agent_links("spiffe://t/h1").unwrap().is_empty());
    assert!(s.agent_links("spiffe://t/h2").unwrap().is_empty());
    assert_eq!(s.agent_links("spiffe://t/h50").unwrap().len(), 1);
    // Past task 9's deadline: the task, its last link and its approval request go.
    let stats = s.gc(0, 2001).unwrap();
    assert_eq!((stats.links, stats.tasks), (1, 1));
    assert!(s.task(&old.id).unwrap().is_none());
    assert!(s.approval(&old.id).unwrap().is_none());
    assert!(s.task_links(&old.id).unwrap().is_empty());
    assert!(
        s.children(&old.id, &LinkId::from_bytes([2; 16]))
            .unwrap()
            .is_empty()
    );
    assert!(s.task(&young.id).unwrap().is_some());
    // A task whose deadline moves (an approved request) is indexed at the new one only.
    young.deadline_ms = 3000;
    s.commit(Change {
        tasks: vec![young.clone()],
        audit: vec![event("y")],
        ..Change::default()
    })
    .unwrap();
    let stats = s.gc(0, 3001).unwrap();
    assert_eq!(stats.tasks, 1);
    assert!(s.task(&young.id).unwrap().is_none());
    // Nothing is left to collect, and a second pass finds nothing.
    let stats = s.gc(0, 3001).unwrap();
    assert_eq!((stats.links, stats.tasks), (0, 0));
    // The audit log keeps the history.
    assert_eq!(s.audit_after(0, 10).unwrap().len(), 2);
}

fn implied_revocations_are_one_value_per_change_read_back_whole_and_collected_together(
    f: &mut dyn Fixture,
) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    let implied = |id: u8, reason: &str| NewRevocation {
        implied: true,
        reason: reason.into(),
        ..revoke(id, t)
    };
    let c = s
        .commit(Change {
            revocations: vec![
                revoke(1, t),
                implied(2, "test"),
                implied(3, "drift: other"),
                implied(2, "test"),
            ],
            audit: vec![event("revoke")],
            ..Change::default()
        })
        .unwrap();
    assert_eq!(c.epoch, Some(1));
    assert_eq!(c.revoked.len(), 3, "every link revoked, a repeat once");
    // The cut link has its own record; the implied ones are stored with the change.
    assert!(
        s.revocation(&LinkId::from_bytes([1; 16]))
            .unwrap()
            .is_some()
    );
    assert!(
        s.revocation(&LinkId::from_bytes([2; 16]))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        f.raw_keys(b"v").len(),
        1,
        "one value for the change's implied revocations in the task"
    );
    let got = s.implied_revocations(1, &t).unwrap();
    let k = key(b'v', &[&be(1), t.as_bytes(), &0u32.to_be_bytes()]);
    assert_eq!(
        implied::max_expiry(&k, &f.raw_get(&k).unwrap()).unwrap(),
        1003,
        "the header holds the latest expiry, which the collector reads alone"
    );
    assert_eq!(
        got.iter()
            .map(|r| (
                r.link,
                r.reason.as_str(),
                r.epoch,
                r.expires_at_ms,
                r.implied
            ))
            .collect::<Vec<_>>(),
        vec![
            (LinkId::from_bytes([2; 16]), "test", 1, 1002, true),
            (LinkId::from_bytes([3; 16]), "drift: other", 1, 1003, true),
        ]
    );
    assert_eq!((got[0].task, got[0].time_ms), (t, 5));
    assert!(s.implied_revocations(2, &t).unwrap().is_empty());
    assert!(
        s.implied_revocations(1, &TaskId::from_bytes([2; 16]))
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.all_implied_revocations().unwrap().len(), 2);
    assert_eq!(s.revocations_after(0).unwrap().len(), 1, "the cut link");

    // Collected when the last of them expires (1003), not before.
    assert_eq!(
        s.gc(1002, 1002).unwrap().revocations,
        1,
        "only the cut link (1001)"
    );
    assert_eq!(s.implied_revocations(1, &t).unwrap().len(), 2);
    assert_eq!(s.gc(1004, 1004).unwrap().revocations, 2);
    assert!(s.all_implied_revocations().unwrap().is_empty());
    assert!(s.revocations_after(0).unwrap().is_empty());
}

/// Commits the implied revocation of link 2 in task `t` (epoch 1), alone.
fn commit_one_implied(s: &dyn crate::Store, t: TaskId) {
    s.commit(Change {
        revocations: vec![NewRevocation {
            implied: true,
            ..revoke(2, t)
        }],
        audit: vec![event("revoke")],
        ..Change::default()
    })
    .unwrap();
}

fn a_damaged_implied_revocation_value_is_reported_not_misread_and_gc_goes_on(f: &mut dyn Fixture) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    commit_one_implied(s, t);
    let k = key(b'v', &[&be(1), t.as_bytes(), &0u32.to_be_bytes()]);
    let good = f.raw_get(&k).unwrap();
    let mut other_epoch = good.clone();
    other_epoch[9..17].copy_from_slice(&be(2));
    // The one entry's task id: after the link id, 52 bytes from the end.
    let mut other_task = good.clone();
    let at = good.len() - 52 + 16;
    other_task[at..at + 16].copy_from_slice(&[9; 16]);
    for bad in [
        good[..good.len() - 1].to_vec(),
        [&good[..], &[0][..]].concat(),
        [&[9][..], &good[1..]].concat(),
        other_epoch,
        other_task,
        Vec::new(),
    ] {
        f.raw_put(&k, &bad);
        assert!(
            matches!(
                s.implied_revocations(1, &t),
                Err(StoreError::Corrupt { .. })
            ),
            "a damaged value must not decode"
        );
    }
    f.raw_put(&k, &[9u8]);
    s.gc(u64::MAX, 0).unwrap();
}

fn pending_approvals_are_indexed_by_expiry_and_requester(f: &mut dyn Fixture) {
    let s = f.store();
    let ids: Vec<TaskId> = (1..=3u8).map(|i| TaskId::from_bytes([i; 16])).collect();
    let mut approvals: Vec<_> = ids.iter().map(|t| approval(*t)).collect();
    approvals[1].expires_ms = 30;
    approvals[2].requester = "spiffe://t/b".into();
    s.commit(Change {
        approvals: approvals.clone(),
        audit: vec![event("approval.requested")],
        ..Change::default()
    })
    .unwrap();
    assert_eq!(s.approvals_due(19, 10).unwrap(), Vec::<TaskId>::new());
    let mut due = s.approvals_due(20, 10).unwrap();
    due.sort();
    assert_eq!(due, vec![ids[0], ids[2]]);
    assert_eq!(s.approvals_due(30, 1).unwrap().len(), 1, "the limit holds");
    assert_eq!(s.pending_approvals_of("spiffe://t/a", 0, 100).unwrap(), 2);
    assert_eq!(
        s.pending_approvals_of("spiffe://t/a", 20, 100).unwrap(),
        1,
        "past expiry"
    );
    assert_eq!(
        s.pending_approvals_of("spiffe://t/a", 0, 1).unwrap(),
        1,
        "capped"
    );
    assert_eq!(s.pending_approvals_of("spiffe://t/b", 0, 100).unwrap(), 1);
    assert_eq!(s.pending_approvals_of("spiffe://t/", 0, 100).unwrap(), 0);

    // Decided: out of both indexes.
    approvals[0].state = crate::ApprovalState::Approved;
    s.commit(Change {
        approvals: vec![approvals[0].clone()],
        audit: vec![event("approval.approved")],
        ..Change::default()
    })
    .unwrap();
    assert_eq!(s.approvals_due(100, 10).unwrap(), vec![ids[2], ids[1]]);
    assert_eq!(s.pending_approvals_of("spiffe://t/a", 0, 100).unwrap(), 1);

    // A store written before the indexes: they are built when it opens.
    for k in f.raw_keys(b"w").into_iter().chain(f.raw_keys(b"u")) {
        f.raw_delete(&k);
    }
    f.raw_delete(b"mapproval_index");
    assert!(s.approvals_due(100, 10).unwrap().is_empty());
    f.reopen();
    let s = f.store();
    assert_eq!(s.approvals_due(100, 10).unwrap(), vec![ids[2], ids[1]]);
    assert_eq!(s.pending_approvals_of("spiffe://t/a", 0, 100).unwrap(), 1);
}

fn stale_approval_index_entries_are_dropped_when_met(f: &mut dyn Fixture) {
    let s = f.store();
    let ids: Vec<TaskId> = (1..=2u8).map(|i| TaskId::from_bytes([i; 16])).collect();
    s.commit(Change {
        approvals: ids.iter().map(|t| approval(*t)).collect(),
        audit: vec![event("approval.requested")],
        ..Change::default()
    })
    .unwrap();
    // One request's record vanishes and the other's no longer decodes, behind the index.
    f.raw_delete(&key(b'p', &[ids[0].as_bytes()]));
    f.raw_put(&key(b'p', &[ids[1].as_bytes()]), b"{not json");
    assert!(s.approvals_due(100, 10).unwrap().is_empty());
    assert_eq!(f.raw_keys(b"w").len(), 0, "both stale entries dropped");
    // A request can still be written over the unreadable record.
    s.commit(Change {
        approvals: vec![approval(ids[1])],
        audit: vec![event("approval.requested")],
        ..Change::default()
    })
    .unwrap();
    assert_eq!(s.approvals_due(100, 10).unwrap(), vec![ids[1]]);
}

/// A cascade far beyond one etcd transaction (128 operations, 1.5 MiB): 300 links and
/// their cut revocations, 40,000 implied revocations in several values, and an audit
/// record naming them all (larger than etcd takes in one value). Every reader sees
/// all of it, before and after the flush, and after reopening; the log goes on after it.
fn a_change_larger_than_any_transaction_is_applied_whole(f: &mut dyn Fixture) {
    let t = task(1);
    let links: Vec<LinkRecord> = (0..300)
        .map(|i| LinkRecord {
            id: nth(i),
            parent: (i > 0).then(|| nth(0)),
            ..link(1, None, t.id)
        })
        .collect();
    let mut revocations: Vec<NewRevocation> = (1..300)
        .map(|i| NewRevocation {
            link: nth(i),
            ..revoke(1, t.id)
        })
        .collect();
    revocations.extend((0..40_000).map(|i| NewRevocation {
        link: nth(1_000_000 + i),
        implied: true,
        ..revoke(1, t.id)
    }));
    let check = |s: &dyn crate::Store| {
        assert_eq!(s.epoch().unwrap(), 1);
        assert_eq!(s.task_link_count(&t.id).unwrap(), 300);
        assert_eq!(s.children(&t.id, &nth(0)).unwrap().len(), 299);
        assert_eq!(s.revocations_after(0).unwrap().len(), 299);
        assert_eq!(s.implied_revocations(1, &t.id).unwrap().len(), 40_000);
        assert_eq!(s.audit_head().unwrap().0, 2);
        assert_eq!(s.audit_after(1, 10).unwrap()[0].event.links.len(), 40_299);
        assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
    };
    {
        let s = f.store();
        s.commit(Change {
            tasks: vec![t.clone()],
            links: vec![links[0].clone()],
            audit: vec![event("grant")],
            ..Change::default()
        })
        .unwrap();
        // Its audit record names every link revoked: over a megabyte of JSON.
        let mut record = event("cascade");
        record.links = revocations.iter().map(|r| r.link.to_string()).collect();
        let c = s
            .commit(Change {
                links: links[1..].to_vec(),
                revocations,
                audit: vec![record],
                ..Change::default()
            })
            .unwrap();
        assert_eq!((c.epoch, c.revoked.len()), (Some(1), 40_299));
        check(s);
        s.flush().unwrap();
        check(s);
    }
    assert!(f.raw_keys(b"z").is_empty(), "no staging is left behind");
    assert!(f.raw_get(b"mstaged").is_none());
    f.reopen();
    let s = f.store();
    check(s);
    s.commit(Change {
        revocations: vec![revoke(9, t.id)],
        audit: vec![event("after")],
        ..Change::default()
    })
    .unwrap();
    s.flush().unwrap();
    assert_eq!(s.epoch().unwrap(), 2);
    assert!(crate::verify_audit(s, 1, 0).unwrap().broken.is_none());
}

/// Runs each named test body against every backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[test]
                fn $name() {
                    super::$name(&mut super::fixtures::SledFixture::new());
                }
            )*
        }
        mod on_etcd {
            $(
                #[test]
                fn $name() {
                    super::$name(&mut super::fixtures::EtcdFixture::new());
                }
            )*
        }
    };
}

conformance!(
    a_change_larger_than_any_transaction_is_applied_whole,
    records_round_trip_and_indexes_answer,
    revocations_get_one_epoch_per_change_and_skip_duplicates,
    audit_records_form_a_hash_chain,
    a_failing_change_applies_nothing,
    gc_forgets_expired_revocations_and_nonces_only,
    queries_filter_and_page,
    links_are_indexed_under_their_holder_alone,
    gc_removes_expired_links_and_ended_tasks_with_every_index_entry,
    implied_revocations_are_one_value_per_change_read_back_whole_and_collected_together,
    a_damaged_implied_revocation_value_is_reported_not_misread_and_gc_goes_on,
    stale_approval_index_entries_are_dropped_when_met,
    implied_revocations_written_as_one_value_before_parts_are_still_read,
    state_survives_reopening,
    pending_approvals_are_indexed_by_expiry_and_requester,
    records_written_as_json_before_are_read_collected_and_rewritten,
    stores_in_the_six_key_layout_are_moved_to_four_keys_at_open,
    a_delegation_with_an_all_zero_id_is_a_child_not_a_root,
);
