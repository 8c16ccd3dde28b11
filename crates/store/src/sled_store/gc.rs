//! Garbage collection of expired state, through the expiry indexes.

use std::sync::PoisonError;

use super::{SledStore, backend, be, decode, implied, key, link_id_at, read_be, unindex_approval};
use crate::records::{ApprovalRecord, LinkRecord, RevocationRecord};
use crate::{GcStats, Result, StoreError};

impl SledStore {
    /// [`crate::Store::gc`]: expired revocations, nonces and implied revocations; links and tasks
    /// (with their index entries and approval requests) past the history cutoff.
    pub(super) fn collect(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        let guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut stats = GcStats::default();
        let mut batch = sled::Batch::default();
        // Links expired before the cutoff, through the expiry index, with every index entry.
        let end = key(b'x', &[&be(history_before_ms)]);
        for item in self.db.range(b"x".to_vec()..end) {
            let (k, _) = item.map_err(backend)?;
            batch.remove(k.clone());
            let Some(id) = link_id_at(&k, 9) else {
                continue;
            };
            let Some(l) = self.get::<LinkRecord>(&key(b'l', &[id.as_bytes()]))? else {
                continue;
            };
            let raw = id.as_bytes();
            batch.remove(key(b'l', &[raw]));
            batch.remove(key(b'g', &[b"l", raw]));
            if let Some(parent) = &l.parent {
                batch.remove(key(b'c', &[parent.as_bytes(), raw]));
                batch.remove(key(b'h', &[l.issuer.as_bytes(), &[0], raw]));
            }
            batch.remove(key(b'k', &[l.task.as_bytes(), raw]));
            batch.remove(key(b'h', &[l.holder.as_bytes(), &[0], raw]));
            stats.links += 1;
        }
        // Tasks (and their approval requests) whose deadline passed before the cutoff: no
        // link of a task outlives its deadline.
        let end = key(b'y', &[&be(history_before_ms)]);
        for item in self.db.range(b"y".to_vec()..end) {
            let (k, _) = item.map_err(backend)?;
            batch.remove(k.clone());
            let Some(raw) = k.get(9..25) else { continue };
            batch.remove(key(b't', &[raw]));
            batch.remove(key(b'g', &[b"t", raw]));
            match self.get::<ApprovalRecord>(&key(b'p', &[raw])) {
                Ok(Some(a)) => unindex_approval(&mut batch, &a),
                Ok(None) => {}
                Err(StoreError::Corrupt { key, why }) => {
                    tracing::warn!(key, why, "collecting an unreadable approval request");
                }
                Err(e) => return Err(e),
            }
            batch.remove(key(b'p', &[raw]));
            stats.tasks += 1;
        }
        for item in self.db.scan_prefix(b"r") {
            let (k, v) = item.map_err(backend)?;
            // One unreadable record must not stop every later collection.
            let rec: RevocationRecord = match decode(&k, &v) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable revocation record");
                    continue;
                }
            };
            if rec.expires_at_ms < now_ms {
                batch.remove(k);
                batch.remove(key(b'e', &[&be(rec.epoch), rec.link.as_bytes()]));
                stats.revocations += 1;
            }
        }
        // The implied revocations of a change go when the last of them expires.
        for item in self.db.scan_prefix(b"v") {
            let (k, v) = item.map_err(backend)?;
            match implied::max_expiry(&k, &v) {
                Ok(last) if last < now_ms => {
                    stats.revocations += implied::decode(&k, &v).map_or(0, |r| r.len());
                    batch.remove(k);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable implied revocations"),
            }
        }
        for item in self.db.scan_prefix(b"n") {
            let (k, v) = item.map_err(backend)?;
            if read_be(&v) < now_ms {
                batch.remove(k);
                stats.nonces += 1;
            }
        }
        self.db.apply_batch(batch).map_err(backend)?;
        drop(guard);
        Ok(stats)
    }
}
