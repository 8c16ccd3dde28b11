//! The audit log beside sled: opening the journal (and recovering it against the head sled
//! holds), sealing it into segment files (`crate::segments`), reading one log across the
//! segments and the journal, and rewriting a store with only its live data
//! (`SledStore::compact`).

use std::path::Path;
use std::sync::PoisonError;

use super::{SledStore, backend};
use crate::journal::Journal;
use crate::records::{AuditEvent, AuditRecord, Severity};
use crate::segments::Segment;
use crate::tables;
use crate::{Result, StoreError};

/// When audit records leave the store for sealed segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSealing {
    /// Records per segment: the journal is sealed when it holds this many.
    pub records_per_segment: usize,
}

impl Default for AuditSealing {
    fn default() -> AuditSealing {
        AuditSealing {
            records_per_segment: 8_192,
        }
    }
}

/// The hash of the last record of sealed segment `s`.
fn segment_last_hash(s: &Segment) -> Result<String> {
    crate::segments::read(s)?
        .last()
        .map(|r| r.hash.clone())
        .ok_or_else(|| {
            StoreError::Backend(format!("audit segment `{}` is empty", s.path.display()))
        })
}

/// The hash of the last record in `segments` (`start`'s when there is none).
fn last_sealed_hash(segments: &[Segment], start: &(u64, String)) -> Result<String> {
    match segments.last() {
        Some(s) => segment_last_hash(s),
        None => Ok(start.1.clone()),
    }
}

/// The hash of record `seq`, wherever it is.
fn hash_of(segments: &[Segment], journal: &Journal, seq: u64) -> Result<Option<String>> {
    if seq >= journal.first() {
        return Ok(journal.read(seq, 1)?.pop().map(|r| r.hash));
    }
    match segments.iter().find(|s| s.first <= seq && seq <= s.last) {
        Some(s) => Ok(crate::segments::read(s)?
            .into_iter()
            .find(|r| r.seq == seq)
            .map(|r| r.hash)),
        None => Ok(None),
    }
}

/// Opens the audit journal and brings it into agreement with sled, which stores the log's
/// head with every change that writes state:
///
/// - records of a store written before the journal (kept in sled under `q`) move into it;
/// - records after sled's head whose change wrote state are cut, with everything after
///   them: the process died after writing them and before sled took the change (records
///   of decisions that wrote no state stay);
/// - a journal that ends before sled's head (a power failure lost its unsynced tail while
///   sled kept a later change: never a process crash, which keeps both) gets an
///   `audit.records_lost` record saying which sequence numbers were lost, and the log
///   continues from what survived.
pub(super) fn open_journal(
    db: &sled::Db,
    dir: &Path,
    segments: &[Segment],
    start: &(u64, String),
) -> Result<Journal> {
    let sealed = segments.last().map_or(start.0, |s| s.last);
    let get_head = || tables::audit_head(db);
    let legacy = tables::audit_records(db, 0, usize::MAX)?;
    let (mut journal, stateful) =
        Journal::open(dir, sealed + 1, &last_sealed_hash(segments, start)?)?;
    if !legacy.is_empty() {
        // Records a segment already holds (a seal of the old layout was interrupted) and
        // records the journal already took (this move was interrupted) are only removed.
        let fresh: Vec<AuditRecord> = legacy
            .iter()
            .filter(|r| r.seq > journal.head().0)
            .cloned()
            .collect();
        journal.append_records(&fresh)?;
        journal
            .sync_handle()?
            .sync_all()
            .map_err(|e| StoreError::Backend(format!("audit journal: {e}")))?;
        let mut batch = sled::Batch::default();
        for r in &legacy {
            batch.remove(tables::audit_key(r.seq));
        }
        db.apply_batch(batch).map_err(backend)?;
        db.flush().map_err(backend)?;
        tracing::info!(
            records = fresh.len(),
            "audit records moved from the store into the journal"
        );
    }
    let Some(head) = get_head()? else {
        return Ok(journal);
    };
    let last = journal.head().0;
    if last >= head.seq {
        if head.seq > start.0
            && hash_of(segments, &journal, head.seq)?.as_deref() != Some(&head.hash)
        {
            return Err(StoreError::Backend(format!(
                "the audit log and the store disagree at record {}: not opening",
                head.seq
            )));
        }
        // The first record after sled's head whose change wrote state never had its
        // change applied: cut there.
        let first = journal.first();
        let cut = stateful
            .iter()
            .enumerate()
            .map(|(i, s)| (first + i as u64, *s))
            .find(|(seq, s)| *s && *seq > head.seq)
            .map(|(seq, _)| seq);
        if let Some(cut) = cut {
            let dropped = journal.truncate_after(cut - 1)?;
            tracing::warn!(
                from = cut,
                dropped,
                "audit records of changes that never reached the store were dropped"
            );
        }
        return Ok(journal);
    }
    // The journal lost records that sled's changes have.
    let mut e = AuditEvent::new(
        "coordinator",
        crate::records::AuditAction::AuditRecordsLost,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    e.severity = Severity::High;
    e.detail.insert("lost_from".into(), (last + 1).to_string());
    e.detail.insert("lost_to".into(), head.seq.to_string());
    e.detail.insert("lost_head_hash".into(), head.hash.clone());
    let (records, _) = journal.append(vec![e], true)?;
    journal
        .sync_handle()?
        .sync_all()
        .map_err(|e| StoreError::Backend(format!("audit journal: {e}")))?;
    let (seq, hash) = journal.head();
    let mut ops = crate::kv::Ops::default();
    tables::put_audit_head(&mut ops, seq, hash)?;
    db.apply_batch(super::batch(ops)).map_err(backend)?;
    db.flush().map_err(backend)?;
    tracing::error!(
        from = last + 1,
        to = head.seq,
        record = records.first().map_or(0, |r| r.seq),
        "audit records were lost (a power failure before they were synced); an audit.records_lost record says which"
    );
    Ok(journal)
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
    /// lock, and this refuses) with only sled's live data, as the running store does by
    /// itself ([`SledStore::rewrite_state`]), and returns the store's size on disk before
    /// and after. Crash-safe: the new generation is complete before it is named current.
    pub fn compact(path: &Path) -> Result<(u64, u64)> {
        let before = {
            let store = SledStore::open(path)?;
            let before = store.size_on_disk()?;
            store.rewrite_state()?;
            before
        };
        // Closing the store removed the generation the rewrite replaced.
        let after = SledStore::open(path)?.size_on_disk()?;
        Ok((before, after))
    }

    /// Seals the journal (called under the commit lock when it is full): everything in it
    /// is made durable first, journal and store, so no recovery ever needs to cut into a
    /// sealed segment. A failure is logged and retried a minute later; the journal keeps
    /// growing meanwhile.
    pub(super) fn seal_locked(&self, journal: &mut Journal) {
        let mut failed = self
            .seal_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failed.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60)) {
            return;
        }
        let sealed = (|| -> Result<Segment> {
            journal
                .sync_handle()?
                .sync_data()
                .map_err(|e| StoreError::Backend(format!("audit journal: {e}")))?;
            self.db.current().flush().map_err(backend)?;
            journal.seal()
        })();
        match sealed {
            Ok(segment) => {
                *failed = None;
                tracing::info!(
                    first = segment.first,
                    last = segment.last,
                    "audit journal sealed into a segment"
                );
                self.segments
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(segment);
            }
            Err(e) => {
                *failed = Some(std::time::Instant::now());
                tracing::warn!(error = %e, "sealing the audit journal failed; retrying in a minute");
            }
        }
    }

    /// Removes the sealed segments that end before record `before` (whole segments only),
    /// after recording where the log now begins; returns the last removed record's
    /// sequence number and hash, and the files removed (none: nothing to remove). The
    /// caller has already written the signed `audit.pruned` record that says what goes
    /// ([`SledStore::prunable`] tells it) and flushed it.
    pub fn prune_segments(&self, through: u64) -> Result<Vec<std::path::PathBuf>> {
        let mut segments = self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<Segment> = segments
            .iter()
            .filter(|s| s.last <= through)
            .cloned()
            .collect();
        let Some(last) = gone.last() else {
            return Ok(Vec::new());
        };
        if last.last != through {
            return Err(crate::AuditPrune::not_a_segment_end(through));
        }
        let hash = segment_last_hash(last)?;
        crate::segments::set_pruned(&self.segments_dir, through, &hash)?;
        *self.start.write().unwrap_or_else(PoisonError::into_inner) = (through, hash);
        segments.retain(|s| s.last > through);
        *self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let mut removed = Vec::new();
        for s in gone {
            std::fs::remove_file(&s.path).map_err(|e| {
                StoreError::Backend(format!("removing `{}`: {e}", s.path.display()))
            })?;
            removed.push(s.path);
        }
        Ok(removed)
    }

    /// What a prune before record `before` would remove ([`crate::Store::audit_prunable`]), and
    /// the segment files that go.
    pub fn prune_plan(
        &self,
        before: u64,
    ) -> Result<Option<(crate::AuditPrune, Vec<std::path::PathBuf>)>> {
        let Some((last, last_hash, files)) = self.prunable(before)? else {
            return Ok(None);
        };
        let plan = crate::AuditPrune {
            first: crate::Store::audit_start(self)?.0 + 1,
            last,
            last_hash,
            segments: files.len(),
        };
        Ok(Some((plan, files)))
    }

    /// What a prune before record `before` would remove: the last record of the last
    /// whole sealed segment that ends before it, that record's hash, and the segment
    /// files. `None`: no segment ends before it.
    pub fn prunable(&self, before: u64) -> Result<Option<(u64, String, Vec<std::path::PathBuf>)>> {
        let segments = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let gone: Vec<&Segment> = segments.iter().filter(|s| s.last < before).collect();
        let Some(last) = gone.last() else {
            return Ok(None);
        };
        let hash = segment_last_hash(last)?;
        Ok(Some((
            last.last,
            hash,
            gone.iter().map(|s| s.path.clone()).collect(),
        )))
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
        // Nothing before where a prune left the log begins.
        let start = self.start.read().unwrap_or_else(PoisonError::into_inner).0;
        let mut next = after.max(start).saturating_add(1);
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
        let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        // A seal between reading the segment list and here moved records on: read again.
        if journal.first() > next {
            return Ok(None);
        }
        out.extend(journal.read(next, rest)?);
        Ok(Some(out))
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
