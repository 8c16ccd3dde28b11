//! The index layout a store is written in, and the migration to the current one at open.
//!
//! - Layout 1 (no `mlayout` key): a link had six index entries: `k` (task, link) with its
//!   root flag, parent and expiry, `c` (parent, child) with the child's expiry, `x`, and
//!   `h` under both its holder and, for a delegation, its issuer.
//! - Layout 2: four. `k` is keyed by task, then a root's id or a child's parent and id
//!   (a tag byte tells which), so a link's children are one prefix of its task's entries
//!   and `c` is gone; `h` holds holders only (a delegation's
//!   issuer holds its parent, so the links an agent issued are the children of the links
//!   it holds). Every link costs the store's page cache about a third less.
//!
//! The migration runs once, at open, before the store serves: in changes of [`CHUNK`]
//! links, each complete on its own (a link's old entries go in the change that writes its
//! new one), so a crash between two redoes only what is left; the layout is recorded
//! last.

use super::{LAYOUT_KEY, LinkRecord, get, key, link_id_at, scan_prefix, tree_key};
use crate::kv::{Kv, Ops, be, prefix_end, read_be};
use crate::{Result, StoreError};

/// The index layout this version writes.
pub(crate) const LAYOUT: u64 = 2;
/// Links moved to the current layout per change.
const CHUNK: usize = 1024;
/// The length of a layout-1 `k` key: the prefix, the task and the link.
const V1_TREE_KEY: usize = 33;

/// Whether any key starts with `prefix`.
fn any<K: Kv + ?Sized>(kv: &K, prefix: &[u8]) -> Result<bool> {
    let mut found = false;
    scan_prefix(kv, prefix, &mut |_, _| {
        found = true;
        Ok(false)
    })?;
    Ok(found)
}

/// Brings a store written in an earlier layout to the current one, handing each change to
/// `apply` (which must make it durable before returning); refuses a store written in a
/// later one. Returns how many links moved.
pub(crate) fn migrate<K: Kv + ?Sized>(
    kv: &K,
    apply: &mut dyn FnMut(Ops) -> Result<()>,
) -> Result<u64> {
    match kv.get(LAYOUT_KEY)?.map(|v| read_be(v.as_ref())) {
        // Moved already; an earlier version run on it since would have left parent
        // entries (`c`) behind with every delegation it wrote: move those too.
        Some(LAYOUT) if !any(kv, b"c")? => return Ok(0),
        Some(LAYOUT) => {
            tracing::warn!(
                "this store holds index entries an earlier version wrote after it was moved \
                 to layout {LAYOUT}: moving them"
            );
        }
        Some(later) if later > LAYOUT => {
            return Err(StoreError::Backend(format!(
                "this store was written in index layout {later} by a later version of \
                 Mandate; this version reads layout {LAYOUT}: run the later version, or \
                 restore a backup taken before the upgrade"
            )));
        }
        _ => {}
    }
    let mut moved = 0;
    let mut from = b"k".to_vec();
    loop {
        let mut old = Vec::new();
        kv.scan(&from, &prefix_end(b"k"), &mut |k, _| {
            if k.len() == V1_TREE_KEY {
                old.push(k.to_vec());
            }
            Ok(old.len() < CHUNK)
        })?;
        let Some(last) = old.last() else { break };
        from = [last.as_slice(), &[0]].concat();
        let mut ops = Ops::default();
        for k in old {
            if let Some(id) = link_id_at(&k, 17)
                && let Some(l) = get::<LinkRecord, _>(kv, &key(b'l', &[id.as_bytes()]))?
            {
                ops.put(
                    tree_key(&l.task, l.parent.as_ref(), &id),
                    be(l.expires_at_ms),
                );
                if let Some(parent) = &l.parent {
                    ops.delete(key(b'c', &[parent.as_bytes(), id.as_bytes()]));
                    if l.issuer != l.holder {
                        ops.delete(key(b'h', &[l.issuer.as_bytes(), &[0], id.as_bytes()]));
                    }
                }
                moved += 1;
            }
            // An entry whose link is gone pointed at nothing: it goes too.
            ops.delete(k);
        }
        apply(ops)?;
    }
    // Tree entries left by links collected without their `k` entry.
    loop {
        let mut stray = Ops::default();
        scan_prefix(kv, b"c", &mut |k, _| {
            stray.delete(k.to_vec());
            Ok(stray.len() < CHUNK)
        })?;
        if stray.is_empty() {
            break;
        }
        apply(stray)?;
    }
    let mut done = Ops::default();
    done.put(LAYOUT_KEY, be(LAYOUT));
    apply(done)?;
    if moved > 0 {
        tracing::info!(
            links = moved,
            layout = LAYOUT,
            "moved the store's index to the current layout"
        );
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::Value as _;
    use crate::conformance::link;
    use mandate_core::TaskId;

    fn apply(db: &sled::Db, ops: Ops) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops.into_iter() {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        db.apply_batch(batch)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    /// `n` delegations below one root, in layout 1 (the records and the tree entries).
    fn layout_1(n: u16) -> sled::Db {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let task = TaskId::from_bytes([9; 16]);
        let mut ops = Ops::default();
        for i in 0..=n {
            let mut l = link(1, (i > 0).then_some(1), task);
            let mut id = [0xaa; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            l.id = mandate_core::LinkId::from_bytes(id);
            l.parent = (i > 0).then(|| mandate_core::LinkId::from_bytes([0xaa; 16]));
            ops.put(key(b'l', &[&id]), l.to_value().unwrap());
            ops.put(key(b'k', &[task.as_bytes(), &id]), []);
            if let Some(p) = l.parent {
                ops.put(key(b'c', &[p.as_bytes(), &id]), be(l.expires_at_ms));
            }
        }
        apply(&db, ops).unwrap();
        db
    }

    fn count(db: &sled::Db, prefix: &[u8]) -> usize {
        db.scan_prefix(prefix).count()
    }

    #[test]
    fn a_migration_cut_off_between_two_changes_finishes_at_the_next_open() {
        let n = 2 * CHUNK as u16 + 10;
        let db = layout_1(n);
        // The second change fails (the process died there): the first stays, whole.
        let mut calls = 0;
        let cut = migrate(&db, &mut |ops| {
            calls += 1;
            if calls == 2 {
                return Err(StoreError::Backend("killed".into()));
            }
            apply(&db, ops)
        });
        assert!(cut.is_err());
        assert!(db.get(LAYOUT_KEY).unwrap().is_none());
        let new = |db: &sled::Db| {
            db.scan_prefix(b"k")
                .keys()
                .filter(|k| k.as_ref().unwrap().len() != V1_TREE_KEY)
                .count()
        };
        assert_eq!(new(&db), CHUNK);
        // The first change moved the root and `CHUNK - 1` delegations, with their entries.
        assert_eq!(count(&db, b"c"), usize::from(n) - (CHUNK - 1));
        // The next open finishes the rest, once.
        let moved = migrate(&db, &mut |ops| apply(&db, ops)).unwrap();
        assert_eq!(moved, u64::from(n) + 1 - CHUNK as u64);
        assert_eq!(new(&db), usize::from(n) + 1);
        assert_eq!(count(&db, b"k"), usize::from(n) + 1);
        assert_eq!(count(&db, b"c"), 0);
        assert_eq!(
            db.get(LAYOUT_KEY).unwrap().as_deref(),
            Some(&be(LAYOUT)[..])
        );
        assert_eq!(migrate(&db, &mut |_| panic!("nothing to do")).unwrap(), 0);
    }

    #[test]
    fn a_store_in_a_later_layout_is_refused() {
        let db = layout_1(1);
        db.insert(LAYOUT_KEY, &be(LAYOUT + 1)).unwrap();
        let err = migrate(&db, &mut |_| panic!("nothing is written")).unwrap_err();
        assert!(err.to_string().contains("layout 3"), "{err}");
        assert_eq!(count(&db, b"c"), 1);
    }
}
