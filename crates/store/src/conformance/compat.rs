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

/// Writes `l`'s index entries as layout 1 did (six keys: `k` by task and link with the
/// root flag, parent and expiry; `c` by parent; `h` under holder and issuer) in place of
/// the current ones.
fn write_layout_1(f: &dyn Fixture, l: &crate::LinkRecord) {
    let (id, expiry) = (l.id.as_bytes(), be(l.expires_at_ms));
    f.raw_delete(&crate::tables::tree_key(&l.task, l.parent.as_ref(), &l.id));
    let parent = l.parent.map_or([0; 16], |p| *p.as_bytes());
    let flag = u8::from(l.parent.is_none());
    f.raw_put(
        &key(b'k', &[l.task.as_bytes(), id]),
        &[&[flag][..], &parent, &expiry].concat(),
    );
    if l.parent.is_some() {
        f.raw_put(&key(b'c', &[&parent, id]), &expiry);
        f.raw_put(&key(b'h', &[l.issuer.as_bytes(), &[0], id]), &[]);
    }
}

/// A store written in index layout 1 (six keys a link) is moved to layout 2 (four) when it
/// opens: every answer is the same, and no entry of the old layout is left.
pub(super) fn stores_in_the_six_key_layout_are_moved_to_four_keys_at_open(f: &mut dyn Fixture) {
    let s = f.store();
    let t = task(9);
    // An issuer holds the parent: h1 delegates 2 and 3, h2 delegates 4; a self-delegation
    // (5, to h1 again) shares the holder's entry.
    let mut links = vec![link(1, None, t.id)];
    for (id, parent, issuer) in [(2, 1, 1), (3, 1, 1), (4, 2, 2), (5, 1, 1)] {
        let mut l = link(id, Some(parent), t.id);
        l.issuer = format!("spiffe://t/h{issuer}");
        links.push(l);
    }
    links[4].holder = "spiffe://t/h1".into();
    s.commit(Change {
        tasks: vec![t.clone()],
        links: links.clone(),
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    let before = |s: &dyn crate::Store| {
        let mut tree = s.task_tree(&t.id).unwrap();
        tree.sort();
        let mut kids = s.children_with_expiry(&t.id, &links[0].id).unwrap();
        kids.sort();
        let held: Vec<Vec<LinkId>> = (1..=4)
            .map(|h| s.agent_links(&format!("spiffe://t/h{h}")).unwrap())
            .collect();
        (tree, kids, held, s.task_roots(&t.id).unwrap())
    };
    let expected = before(s);
    assert_eq!(expected.1.len(), 3);
    assert_eq!(expected.2[0], vec![links[0].id, links[4].id]);
    for l in &links {
        write_layout_1(f, l);
    }
    // Entries an earlier version left behind: a tree entry and a task entry whose link is
    // gone.
    f.raw_put(&key(b'c', &[&[7; 16], &[8; 16]]), &be(5));
    f.raw_put(&key(b'k', &[t.id.as_bytes(), &[8; 16]]), &[0]);
    f.raw_delete(b"mlayout");
    assert_eq!(f.raw_keys(b"c").len(), 5);

    f.reopen();
    let s = f.store();
    assert_eq!(before(s), expected);
    assert_eq!(f.raw_get(b"mlayout"), Some(be(2).to_vec()));
    assert!(f.raw_keys(b"c").is_empty());
    assert_eq!(f.raw_keys(b"k").len(), links.len());
    assert!(
        f.raw_keys(b"k")
            .iter()
            .all(|k| k.len() == 34 || k.len() == 50)
    );
    // The issuers' entries are gone where they named another agent than the holder.
    assert_eq!(f.raw_keys(b"h").len(), links.len());
    assert_eq!(s.task_link_count(&t.id).unwrap(), links.len());

    // Opening again changes nothing.
    f.reopen();
    let s = f.store();
    assert_eq!(before(s), expected);
    // An earlier version run on the moved store writes layout 1 again: the next open moves
    // what it wrote.
    write_layout_1(f, &links[3]);
    f.reopen();
    let s = f.store();
    assert_eq!(before(s), expected);
    assert!(f.raw_keys(b"c").is_empty());
    // Collection removes every entry of the new layout.
    let stats = s.gc(u64::MAX, u64::MAX).unwrap();
    assert_eq!(stats.links, links.len());
    for prefix in [b"l", b"c", b"k", b"x", b"h"] {
        assert_eq!(f.raw_keys(prefix), Vec::<Vec<u8>>::new(), "{prefix:?}");
    }
}
