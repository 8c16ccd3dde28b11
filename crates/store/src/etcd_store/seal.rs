//! The audit log's history out of the live keys: once the tail of records (`q`, one key
//! each, about 700 bytes of JSON) holds two segments' worth, the oldest segment's worth
//! is sealed into one compact value (`Q` + first + last sequence; the segment encoding of
//! `crate::segments`, about 130 bytes a record, stored in parts) in one change with the
//! removal of its records, atomic like any change larger than a transaction. Reads go
//! through the segment index (`Layer::sealed`), then the tail.

use std::path::Path;
use std::sync::{Arc, PoisonError};

use super::{EtcdStore, Inner};
use crate::kv::{Ops, be, encode, key};
use crate::records::AuditRecord;
use crate::{AuditPrune, Change, Committed, Result, StoreError, tables};

/// Where the log begins after a prune: the last removed record and its hash (the
/// [`tables::AuditHead`] encoding).
const AUDIT_START: &[u8] = b"mpruned";

/// A sealed segment's range and its records, decoded.
pub(super) type Decoded = ((u64, u64), Arc<Vec<AuditRecord>>);

/// The key of a sealed segment.
pub(super) fn segment_key(first: u64, last: u64) -> Vec<u8> {
    key(b'Q', &[&be(first), &be(last)])
}

/// The first and last sequence numbers a segment key names.
pub(super) fn segment_range(k: &[u8]) -> Option<(u64, u64)> {
    let first = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    let last = u64::from_be_bytes(k.get(9..17)?.try_into().ok()?);
    (k.len() == 17 && first <= last).then_some((first, last))
}

impl Inner {
    /// Loads the segment index at open: the sealed ranges, in order.
    pub(super) fn load_sealed(&self) -> Result<()> {
        let keys = self.kv.etcd.all(b"Q", b"R", 8192, true)?;
        let mut sealed = Vec::with_capacity(keys.len());
        for (k, _) in keys {
            let range = segment_range(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                why: "not a segment key".into(),
            })?;
            sealed.push(range);
        }
        let start = match self.kv.etcd.get(AUDIT_START)? {
            Some(v) => {
                let h: tables::AuditHead = crate::kv::decode(AUDIT_START, &v)?;
                Some((h.seq, h.hash))
            }
            None => None,
        };
        let mut layer = self.kv.layer();
        layer.sealed = sealed;
        layer.start = start;
        Ok(())
    }

    /// What pruning the segments that end before record `before` removes.
    pub(super) fn prunable(&self, before: u64) -> Result<Option<AuditPrune>> {
        let (gone, first) = {
            let layer = self.kv.layer();
            let gone: Vec<(u64, u64)> = layer
                .sealed
                .iter()
                .copied()
                .filter(|r| r.1 < before)
                .collect();
            (gone, layer.start.as_ref().map_or(0, |s| s.0) + 1)
        };
        let Some(&last) = gone.last() else {
            return Ok(None);
        };
        let last_hash = self
            .segment(last)?
            .last()
            .filter(|r| r.seq == last.1)
            .map(|r| r.hash.clone())
            .ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&segment_key(last.0, last.1)).into_owned(),
                why: "the segment does not end where its key says".into(),
            })?;
        Ok(Some(AuditPrune {
            first,
            last: last.1,
            last_hash,
            segments: gone.len(),
        }))
    }

    /// Removes the sealed segments through record `through` and commits `change` (the
    /// `audit.pruned` record) with the new start of the log, in one atomic change.
    pub(super) fn prune(&self, through: u64, change: Change) -> Result<Committed> {
        let _sealing = self
            .seal_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let plan = self
            .prunable(through.saturating_add(1))?
            .filter(|p| p.last == through)
            .ok_or_else(|| crate::AuditPrune::not_a_segment_end(through))?;
        let committed = {
            let _guard = self.begin_commit()?;
            let mut ops = Ops::default();
            let (committed, raw, last) = self.plan_commit(change, &mut ops)?;
            let gone: Vec<(u64, u64)> = self
                .kv
                .layer()
                .sealed
                .iter()
                .copied()
                .filter(|r| r.1 <= through)
                .collect();
            for r in gone {
                let k = segment_key(r.0, r.1);
                for part in self.kv.part_keys(&k)? {
                    ops.delete(part);
                }
                ops.delete(k);
            }
            let start = tables::AuditHead {
                seq: through,
                hash: plan.last_hash,
            };
            ops.put(AUDIT_START, encode(&start)?);
            let mut layer = self.queue(ops, Some(raw));
            layer.head = last;
            layer.sealed.retain(|r| r.1 > through);
            layer.start = Some((start.seq, start.hash));
            committed
        };
        *self
            .last_segment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.flush()?;
        tracing::info!(through, "audit segments pruned in etcd");
        Ok(committed)
    }

    /// Seals the oldest segment's worth of the tail when the tail holds two.
    pub(super) fn seal_due(&self) -> Result<bool> {
        let _sealing = self
            .seal_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let per = self.kv.etcd.config().records_per_segment.max(1) as u64;
        let (from, head) = {
            let layer = self.kv.layer();
            (layer.sealed.last().map_or(0, |s| s.1), layer.head.0)
        };
        if head.saturating_sub(from) < 2 * per {
            return Ok(false);
        }
        // Records are never rewritten: they are read without the commit lock.
        let records = tables::audit_records(&self.kv, from, per as usize)?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(false);
        };
        if first.seq != from + 1 || last.seq != from + per {
            return Err(StoreError::Corrupt {
                key: "q".into(),
                why: format!("the audit tail after {from} is not contiguous"),
            });
        }
        let range = (first.seq, last.seq);
        let bytes = crate::segments::encode(&records)?;
        let mut ops = Ops::default();
        ops.put(segment_key(range.0, range.1), bytes);
        for r in &records {
            let k = tables::audit_key(r.seq);
            // A record stored in parts (a cascade's) takes its parts with it.
            if encode(r)?.len() > super::layer::SPILL_OVER {
                for part in self.kv.part_keys(&k)? {
                    ops.delete(part);
                }
            }
            ops.delete(k);
        }
        {
            let _guard = self.begin_commit()?;
            // Visible at once, like any change: the index moves with the layer.
            let mut layer = self.queue(ops, None);
            layer.sealed.push(range);
        }
        self.flush()?;
        tracing::debug!(
            first = range.0,
            last = range.1,
            "audit records sealed in etcd"
        );
        Ok(true)
    }

    /// The records of the sealed segment `range`, decoded (the last one read is kept:
    /// exports and followers page through one segment at a time).
    fn segment(&self, range: (u64, u64)) -> Result<Arc<Vec<AuditRecord>>> {
        {
            let last = self
                .last_segment
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((r, records)) = &*last
                && *r == range
            {
                return Ok(Arc::clone(records));
            }
        }
        let k = segment_key(range.0, range.1);
        let bytes = crate::kv::Kv::get(&self.kv, &k)?.ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(&k).into_owned(),
            why: "a sealed audit segment is missing".into(),
        })?;
        let records = Arc::new(crate::segments::decode(
            &bytes,
            Path::new(&format!("etcd segment {}-{}", range.0, range.1)),
        )?);
        *self
            .last_segment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((range, Arc::clone(&records)));
        Ok(records)
    }

    /// Records after `after`, at most `limit`, across the segments and the tail; `None`
    /// when a seal moved records between the two reads (read again).
    fn audit_after_once(&self, after: u64, limit: usize) -> Result<Option<Vec<AuditRecord>>> {
        let (sealed, start) = {
            let layer = self.kv.layer();
            (
                layer.sealed.clone(),
                layer.start.as_ref().map_or(0, |s| s.0),
            )
        };
        // Nothing before where a prune left the log begins.
        let after = after.max(start);
        let mut out = Vec::new();
        for range in sealed.iter().filter(|r| r.1 > after) {
            if out.len() >= limit {
                return Ok(Some(out));
            }
            let records = self.segment(*range)?;
            out.extend(
                records
                    .iter()
                    .filter(|r| r.seq > after)
                    .take(limit - out.len())
                    .cloned(),
            );
        }
        if out.len() >= limit {
            return Ok(Some(out));
        }
        let from = out
            .last()
            .map_or(after, |r| r.seq)
            .max(sealed.last().map_or(0, |s| s.1));
        let tail = tables::audit_records(&self.kv, from, limit - out.len())?;
        if tail.first().is_some_and(|r| r.seq != from + 1) {
            return Ok(None);
        }
        out.extend(tail);
        Ok(Some(out))
    }
}

impl EtcdStore {
    /// Seals a segment of the audit tail if it is due (the background thread does this
    /// after its flushes).
    #[cfg(test)]
    pub(crate) fn seal_due(&self) -> Result<bool> {
        self.inner.seal_due()
    }

    pub(super) fn audit_after_sealed(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        for _ in 0..8 {
            if let Some(records) = self.inner.audit_after_once(after, limit)? {
                return Ok(records);
            }
        }
        Err(StoreError::Backend(
            "the audit log kept moving while it was read".into(),
        ))
    }
}
