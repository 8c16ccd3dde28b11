//! Stores written by earlier versions: layouts and encodings that are still read.

use mandate_core::{LinkId, TaskId};

use super::commit_one_implied;
use super::fixtures::Fixture;
use super::records::{event, link, revoke, task};
use crate::Change;
use crate::kv::{be, encode, key};

pub(super) fn implied_revocations_written_as_one_value_before_parts_are_still_read(
    f: &mut dyn Fixture,
) {
    let s = f.store();
    let t = TaskId::from_bytes([1; 16]);
    commit_one_implied(s, t);
    let part = key(b'v', &[&be(1), t.as_bytes(), &0u32.to_be_bytes()]);
    let value = f.raw_get(&part).unwrap();
    f.raw_delete(&part);
    // The layout before parts: the value under epoch and task alone.
    f.raw_put(&key(b'v', &[&be(1), t.as_bytes()]), &value);
    let got = s.implied_revocations(1, &t).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].link, LinkId::from_bytes([2; 16]));
    assert_eq!(s.all_implied_revocations().unwrap().len(), 1);
    assert_eq!(s.gc(u64::MAX, 0).unwrap().revocations, 1);
    assert!(s.implied_revocations(1, &t).unwrap().is_empty());
}

/// Links, tasks and revocations were stored as JSON before the binary encoding: such a
/// store is read as before, collected with every index entry, and a record written over
/// is written in the binary encoding.
pub(super) fn records_written_as_json_before_are_read_collected_and_rewritten(f: &mut dyn Fixture) {
    let s = f.store();
    let t = task(9);
    let (root, child) = (link(1, None, t.id), link(2, Some(1), t.id));
    s.commit(Change {
        tasks: vec![t.clone()],
        links: vec![root.clone(), child.clone()],
        revocations: vec![revoke(2, t.id)],
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    let revocation = s.revocation(&child.id).unwrap().unwrap();
    let (task_key, root_key, child_key, revocation_key) = (
        key(b't', &[t.id.as_bytes()]),
        key(b'l', &[root.id.as_bytes()]),
        key(b'l', &[child.id.as_bytes()]),
        key(b'r', &[child.id.as_bytes()]),
    );
    for k in [&task_key, &root_key, &child_key, &revocation_key] {
        let v = f.raw_get(k).unwrap();
        assert!(v[0] >= 0xb1, "written in the binary encoding");
    }
    // The same records as an earlier version wrote them.
    f.raw_put(&task_key, &encode(&t).unwrap());
    f.raw_put(&root_key, &encode(&root).unwrap());
    f.raw_put(&child_key, &encode(&child).unwrap());
    f.raw_put(&revocation_key, &encode(&revocation).unwrap());
    f.reopen();
    let s = f.store();
    assert_eq!(s.task(&t.id).unwrap().unwrap(), t);
    assert_eq!(s.link(&root.id).unwrap().unwrap(), root);
    assert_eq!(s.link(&child.id).unwrap().unwrap(), child);
    assert_eq!(s.revocation(&child.id).unwrap().unwrap(), revocation);
    assert_eq!(s.tasks(None, 10).unwrap(), vec![t.clone()]);

    // A task written over (its deadline moves: the old JSON record is read for its index
    // entry) is stored in the binary encoding.
    let mut ended = t.clone();
    ended.deadline_ms = 1500;
    s.commit(Change {
        tasks: vec![ended.clone()],
        audit: vec![event("y")],
        ..Change::default()
    })
    .unwrap();
    assert_eq!(f.raw_get(&task_key).unwrap()[0], 0xb2);
    assert_eq!(s.task(&t.id).unwrap().unwrap(), ended);
    assert!(
        f.raw_get(&key(b'y', &[&be(t.deadline_ms), t.id.as_bytes()]))
            .is_none()
    );

    // Collection reads the JSON link records for their index entries and removes them
    // all, and the JSON revocation once its link has expired.
    let stats = s.gc(u64::MAX, 1600).unwrap();
    assert_eq!((stats.links, stats.tasks, stats.revocations), (2, 1, 1));
    assert!(s.link(&root.id).unwrap().is_none());
    assert!(s.revocation(&child.id).unwrap().is_none());
    for prefix in [b"l", b"c", b"k", b"x", b"h", b"t", b"y", b"r", b"e"] {
        assert_eq!(f.raw_keys(prefix), Vec::<Vec<u8>>::new(), "{prefix:?}");
    }
    assert!(s.agent_links("spiffe://t/planner").unwrap().is_empty());
}
