//! The audit log's way out of sled: sealing committed records into segment files
//! (`crate::segments`), reading one log across the segments and the tail, and rewriting a
//! store with only its live data (`SledStore::compact`).

use std::path::Path;
use std::sync::PoisonError;

use super::{AuditHead, SledStore, backend, be, decode, key};
use crate::records::AuditRecord;
use crate::{Result, StoreError};

/// When audit records leave the store for sealed segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSealing {
    /// Records per segment.
    pub records_per_segment: usize,
    /// Newest records always kept in the store (the live tail).
    pub keep_in_store: usize,
}

impl Default for AuditSealing {
    fn default() -> AuditSealing {
        AuditSealing {
            records_per_segment: 8_192,
            keep_in_store: 4_096,
        }
    }
}

/// Finishes or undoes a compaction a crash interrupted: the old store moved aside and the
/// new one not yet in place is put back; a half-built new one is removed.
pub(super) fn recover_compaction(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Backend(format!("`{}`: {e}", path.display()));
    let staged = path.with_extension("compact");
    let previous = path.with_extension("pre-compact");
    if !path.exists() && previous.exists() {
        std::fs::rename(&previous, path).map_err(io)?;
    }
    if path.exists() && previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(io)?;
    }
    if staged.exists() && path.exists() {
        std::fs::remove_dir_all(&staged).map_err(io)?;
    }
    Ok(())
}

impl SledStore {
    /// Rewrites the store at `path` (not open anywhere: a running coordinator holds its
    /// lock, and this refuses) into a fresh sled directory, keeping every key and value
    /// and the sealed segments, and returns its size on disk before and after. sled keeps
    /// old page versions in its log and cleans them up late; the rewrite holds only the
    /// live data. Crash-safe: the new store is complete before it replaces the old one
    /// (two renames; [`SledStore::open_with`] finishes an interrupted swap).
    pub fn compact(path: &Path) -> Result<(u64, u64)> {
        recover_compaction(path)?;
        let io = |e: std::io::Error| {
            StoreError::Backend(format!("compacting `{}`: {e}", path.display()))
        };
        let staged = path.with_extension("compact");
        let previous = path.with_extension("pre-compact");
        if staged.exists() {
            std::fs::remove_dir_all(&staged).map_err(io)?;
        }
        let before;
        {
            let old = SledStore::open(path)?;
            before = old.size_on_disk()?;
            let new = sled::Config::new()
                .path(&staged)
                .mode(sled::Mode::HighThroughput)
                .open()
                .map_err(backend)?;
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in old.db.iter() {
                let (k, v) = item.map_err(backend)?;
                batch.insert(k, v);
                n += 1;
                if n % 10_000 == 0 {
                    new.apply_batch(std::mem::take(&mut batch))
                        .map_err(backend)?;
                }
            }
            new.apply_batch(batch).map_err(backend)?;
            new.flush().map_err(backend)?;
            if new.len() != old.db.len() {
                return Err(StoreError::Backend(
                    "the rewritten store does not hold every key: the old one is kept".into(),
                ));
            }
            // Sealed segments never change: hard links (or copies) into the new store.
            let segments = path.join("audit-segments");
            if segments.exists() {
                let to = staged.join("audit-segments");
                std::fs::create_dir_all(&to).map_err(io)?;
                for entry in std::fs::read_dir(&segments).map_err(io)? {
                    let p = entry.map_err(io)?.path();
                    if let Some(name) = p.file_name()
                        && std::fs::hard_link(&p, to.join(name)).is_err()
                    {
                        std::fs::copy(&p, to.join(name)).map_err(io)?;
                    }
                }
            }
        }
        std::fs::rename(path, &previous).map_err(io)?;
        std::fs::rename(&staged, path).map_err(io)?;
        std::fs::remove_dir_all(&previous).map_err(io)?;
        let after = SledStore::open(path)?.size_on_disk()?;
        Ok((before, after))
    }

    /// The last sequence number in a sealed segment (0: none).
    pub(super) fn sealed(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map_or(0, |s| s.last)
    }

    /// Records still in the store that a segment already holds (a crash between writing
    /// the segment and removing them): removed now.
    pub(super) fn drop_sealed_tail(&self) -> Result<()> {
        let sealed = self.sealed();
        if sealed == 0 {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut any = false;
        for k in self
            .db
            .range(key(b'q', &[&be(0)])..key(b'q', &[&be(sealed.saturating_add(1))]))
            .keys()
        {
            batch.remove(k.map_err(backend)?);
            any = true;
        }
        if any {
            self.db.apply_batch(batch).map_err(backend)?;
            self.db.flush().map_err(backend)?;
        }
        Ok(())
    }

    /// Moves the oldest audit records of the store into sealed segments while more than
    /// `keep_in_store + records_per_segment` are there. Called under the seal lock.
    /// Returns how many records were sealed.
    pub(super) fn seal_audit_locked(&self) -> Result<usize> {
        let mut moved = 0;
        // Only durable records are sealed: the head first, then a flush that covers it. A
        // segment holding a record a crash could still take back would outlive it, and the
        // log would fork at restart.
        let head = self.get::<AuditHead>(b"maudit")?.map_or(0, |h| h.seq);
        let s = self.sealing;
        if head.saturating_sub(self.sealed()) < (s.keep_in_store + s.records_per_segment) as u64 {
            return Ok(0);
        }
        self.db.flush().map_err(backend)?;
        loop {
            let sealed = self.sealed();
            if head.saturating_sub(sealed) < (s.keep_in_store + s.records_per_segment) as u64 {
                return Ok(moved);
            }
            let records = self.audit_tail_after(sealed, s.records_per_segment)?;
            if records.len() < s.records_per_segment
                || records.first().map(|r| r.seq) != Some(sealed + 1)
            {
                return Err(StoreError::Backend(format!(
                    "the audit log in the store does not continue after record {sealed}: not sealing"
                )));
            }
            // The segment is durable before its records leave the store; readers see it
            // in the list before they are gone.
            let segment = crate::segments::write(&self.segments_dir, &records)?;
            let last = segment.last;
            self.segments
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push(segment);
            let mut batch = sled::Batch::default();
            for r in &records {
                batch.remove(key(b'q', &[&be(r.seq)]));
            }
            self.db.apply_batch(batch).map_err(backend)?;
            tracing::info!(
                first = sealed + 1,
                last,
                "audit records sealed into a segment"
            );
            moved += records.len();
        }
    }

    /// One read of [`Store::audit_after`]; `None` when a seal got in the way.
    pub(super) fn audit_after_once(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Option<Vec<AuditRecord>>> {
        let mut out = Vec::new();
        // Sealed segments first, then the store's tail: one sequence, no gap.
        let segments = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut next = after.saturating_add(1);
        for segment in &segments {
            if segment.last < next {
                continue;
            }
            if out.len() >= limit {
                return Ok(Some(out));
            }
            let records = self.segment_records(segment)?;
            let skip = usize::try_from(next.saturating_sub(segment.first)).unwrap_or(usize::MAX);
            for r in records.iter().skip(skip) {
                if out.len() >= limit {
                    return Ok(Some(out));
                }
                out.push(r.clone());
            }
            next = segment.last + 1;
        }
        let rest = limit - out.len();
        let tail = self.audit_tail_after(next - 1, rest)?;
        if tail.first().is_some_and(|r| r.seq != next) {
            return Ok(None);
        }
        out.extend(tail);
        Ok(Some(out))
    }

    /// Audit records in the store (not in segments) after `after`.
    pub(super) fn audit_tail_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let start = key(b'q', &[&be(after.saturating_add(1))]);
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, v) = item.map_err(backend)?;
            if k.first() != Some(&b'q') || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// The records of the segment holding `seq`, decoded (the last one read is kept).
    pub(super) fn segment_records(
        &self,
        segment: &crate::segments::Segment,
    ) -> Result<std::sync::Arc<Vec<AuditRecord>>> {
        let mut cached = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((first, records)) = cached.as_ref()
            && *first == segment.first
        {
            return Ok(std::sync::Arc::clone(records));
        }
        let records = std::sync::Arc::new(crate::segments::read(segment)?);
        *cached = Some((segment.first, std::sync::Arc::clone(&records)));
        Ok(records)
    }
}
