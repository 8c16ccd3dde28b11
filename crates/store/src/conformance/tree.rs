//! The tree index: roots and children kept apart whatever the ids.

use mandate_core::LinkId;

use super::fixtures::Fixture;
use super::records::{event, link, task};
use crate::Change;

/// A delegator chooses its link's id: one of all zeros is a child like any other, never
/// taken for a root, and its children are its own.
pub(super) fn a_delegation_with_an_all_zero_id_is_a_child_not_a_root(f: &mut dyn Fixture) {
    let s = f.store();
    let t = task(9);
    let zero = LinkId::from_bytes([0; 16]);
    s.commit(Change {
        tasks: vec![t.clone()],
        links: vec![
            link(1, None, t.id),
            link(2, None, t.id),
            link(0, Some(1), t.id),
            link(3, Some(0), t.id),
        ],
        audit: vec![event("x")],
        ..Change::default()
    })
    .unwrap();
    let id = |n: u8| LinkId::from_bytes([n; 16]);
    assert_eq!(s.task_roots(&t.id).unwrap(), vec![id(1), id(2)]);
    assert_eq!(s.children(&t.id, &zero).unwrap(), vec![id(3)]);
    assert_eq!(s.children(&t.id, &id(1)).unwrap(), vec![zero]);
    assert!(s.children(&t.id, &id(2)).unwrap().is_empty());
    let mut tree: Vec<_> = s
        .task_tree(&t.id)
        .unwrap()
        .into_iter()
        .map(|(l, parent, _)| (l, parent))
        .collect();
    tree.sort();
    assert_eq!(
        tree,
        vec![
            (zero, Some(id(1))),
            (id(1), None),
            (id(2), None),
            (id(3), Some(zero)),
        ]
    );
    assert_eq!(s.task_link_count(&t.id).unwrap(), 4);
    assert_eq!(s.task_links(&t.id).unwrap().len(), 4);
    assert_eq!(s.gc(u64::MAX, u64::MAX).unwrap().links, 4);
    assert!(f.raw_keys(b"k").is_empty());
}
