//! The audit log's history out of the live keys: once the tail of records (`q`, one key
//! each, about 700 bytes of JSON) holds two segments' worth, the oldest segment's worth
//! is sealed into one compact value (`Q` + first + last sequence; the segment encoding of
//! `crate::segments`, about 130 bytes a record, stored in parts) in one change with the
//! removal of its records, atomic like any change larger than a transaction. Reads go
//! through the segment index (`Layer::sealed`), then the tail.

use std::path::Path;
use std::sync::{Arc, PoisonError};

use super::{EtcdStore, Inner};
use crate::kv::{Ops, be, key};
use crate::records::AuditRecord;
use crate::{Result, StoreError, tables};

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
        self.kv.layer().sealed = sealed;
        Ok(())
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
            ops.delete(tables::audit_key(r.seq));
        }
        {
            let _guard = self
                .commit_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.check_open()?;
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
        let sealed = self.kv.layer().sealed.clone();
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
