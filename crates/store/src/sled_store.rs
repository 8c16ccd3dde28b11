//! The embedded store on sled: one tree holding the tables of `tables.rs`, every change one
//! atomic batch. Audit records are not in sled: they go to the audit journal and sealed
//! segments beside it (`journal.rs`, `segments.rs`), written before the batch they
//! belong to (`sealing.rs` has the recovery that keeps the two together). sled keeps `q`
//! only in stores written before the journal (moved into it at open).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use mandate_core::TaskId;

use crate::kv::{Kv, Ops, Visit};
use crate::records::AuditRecord;
use crate::tables;
use crate::{Change, Committed, GcStats, Result, Store, StoreError};

pub use generations::DEFAULT_REWRITE_FLOOR;
#[cfg(feature = "tamper")]
pub(crate) use generations::open_closed;
use generations::{Generations, LiveDb, Rewriter};
pub use sealing::AuditSealing;
use sealing::recover_compaction;

/// The sled-backed [`Store`].
pub struct SledStore {
    /// sled's tree, swapped when a rewrite replaces it (`generations.rs`).
    db: Arc<LiveDb>,
    /// Where sled's generations live, and the rewrite that replaces one.
    generations: Arc<Generations>,
    // Commits read counters (epoch, audit head) and write them back, and every write to
    // sled takes it: one at a time.
    commit_lock: Arc<Mutex<()>>,
    /// Sealed audit segments (`segments.rs`), in order, and where they live.
    segments: std::sync::RwLock<Vec<crate::segments::Segment>>,
    segments_dir: std::path::PathBuf,
    /// Where the log begins: the last pruned record and its hash ((0, genesis): none).
    start: std::sync::RwLock<(u64, String)>,
    /// The segment most recently read, decoded (exports and queries page through one
    /// segment at a time).
    last_read: Mutex<Option<(u64, std::sync::Arc<Vec<AuditRecord>>)>>,
    sealing: AuditSealing,
    /// The open segment of the audit log. Lock order: the commit lock, then this.
    journal: Arc<Mutex<crate::journal::Journal>>,
    /// When sealing last failed (it is retried a while later, not on every commit).
    seal_failed: Mutex<Option<std::time::Instant>>,
    /// The background flusher (which also starts rewrites of sled's files and waits for
    /// one under way when it stops), and dropping the sender stops it.
    flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The flusher holds a handle on sled: it is gone before the store is, so the
        // directory can be opened again as soon as this returns.
        self.generations.cancel();
        if let Some((stop, thread)) = self.flusher.take() {
            drop(stop);
            let _ = thread.join();
        }
        self.generations.close();
    }
}

/// How often the background flusher makes committed changes durable (sled's own periodic
/// flush is off: it could make a change durable before its audit record).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Makes every record written to the audit journal durable.
fn sync_journal(journal: &Mutex<crate::journal::Journal>) -> Result<()> {
    let file = journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sync_handle()?;
    file.sync_data()
        .map_err(|e| StoreError::Backend(format!("syncing the audit journal: {e}")))
}

/// Syncs the audit journal, then flushes sled: a change is never durable before its
/// record.
fn flush_in_order(db: &LiveDb, journal: &Mutex<crate::journal::Journal>) -> Result<()> {
    sync_journal(journal)?;
    db.current().flush().map_err(backend)?;
    Ok(())
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Kv for sled::Db {
    type Bytes = sled::IVec;

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>> {
        sled::Tree::get(self, k).map_err(backend)
    }

    fn contains(&self, k: &[u8]) -> Result<bool> {
        self.contains_key(k).map_err(backend)
    }

    fn scan(&self, start: &[u8], end: &[u8], f: &mut Visit<'_>) -> Result<()> {
        for item in self.range(start..end) {
            let (k, v) = item.map_err(backend)?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}

/// `ops` as one sled batch.
fn batch(ops: Ops) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in ops.into_iter() {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}

/// The page cache `SledStore::open` asks sled for: enough for the hot records (agents,
/// live tasks, recent links), a fraction of sled's 1 GiB default.
pub const DEFAULT_CACHE_BYTES: u64 = 128 << 20;

impl SledStore {
    /// Opens (creating if needed) the store in directory `path`, with a page cache of
    /// [`DEFAULT_CACHE_BYTES`].
    pub fn open(path: &Path) -> Result<SledStore> {
        SledStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store with a page cache of `cache_bytes` (sled's own default is 1 GiB,
    /// which it fills on a large store whatever the working set).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        SledStore::open_with(path, cache_bytes, AuditSealing::default())
    }

    /// Opens the store with a page cache of `cache_bytes` and audit records sealed into
    /// segments as `sealing` says.
    pub fn open_with(path: &Path, cache_bytes: u64, sealing: AuditSealing) -> Result<SledStore> {
        recover_compaction(path)?;
        let (db, generations) = Generations::open(path, cache_bytes)?;
        let segments_dir = path.join("audit-segments");
        let start = crate::segments::pruned(&segments_dir)?;
        let segments = crate::segments::list(&segments_dir, start.0)?;
        let journal = sealing::open_journal(&db, &segments_dir, &segments, &start)?;
        let journal = Arc::new(Mutex::new(journal));
        let db = Arc::new(LiveDb::new(db));
        let generations = Arc::new(generations);
        let commit_lock = Arc::new(Mutex::new(()));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let (db, journal) = (Arc::clone(&db), Arc::clone(&journal));
            let mut rewriter = Rewriter {
                generations: Arc::clone(&generations),
                live: Arc::clone(&db),
                commit_lock: Arc::clone(&commit_lock),
                journal: Arc::clone(&journal),
                running: None,
            };
            std::thread::Builder::new()
                .name("mandate-store-flush".into())
                .spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(FLUSH_EVERY)
                    {
                        if let Err(e) = flush_in_order(&db, &journal) {
                            tracing::warn!(error = %e, "background flush failed");
                        }
                        rewriter.tick();
                    }
                    rewriter.finish();
                })
                .map_err(|e| StoreError::Backend(format!("cannot start the flusher: {e}")))?
        };
        let store = SledStore {
            db,
            generations,
            commit_lock,
            segments: std::sync::RwLock::new(segments),
            segments_dir,
            start: std::sync::RwLock::new(start),
            last_read: Mutex::new(None),
            sealing: AuditSealing {
                records_per_segment: sealing.records_per_segment.max(1),
            },
            journal,
            seal_failed: Mutex::new(None),
            flusher: Some((stop, thread)),
        };
        store.upgrade()?;
        Ok(store)
    }

    /// Brings a store written by an earlier version to the current layout (once): the
    /// approval indexes, then the tree index (`tables/layout.rs`).
    fn upgrade(&self) -> Result<()> {
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ops) = tables::plan_approval_index(&self.db)? {
            self.db.apply(ops)?;
            self.db.current().flush().map_err(backend)?;
        }
        tables::migrate(&self.db, &mut |ops| {
            self.db.apply(ops)?;
            self.db.current().flush().map(drop).map_err(backend)
        })?;
        Ok(())
    }

    /// The sled tree beneath, for tests that damage or age what the store holds.
    #[cfg(test)]
    pub(crate) fn db(&self) -> sled::Db {
        self.db.current()
    }

    /// Rewrites sled's live keys into a fresh generation while the store stays open, and
    /// returns sled's size before and after (`generations.rs`). The store does this by
    /// itself when sled's files grow past [`SledStore::rewrite_above`] and twice what
    /// the last rewrite left.
    pub fn rewrite_state(&self) -> Result<(u64, u64)> {
        self.generations
            .rewrite(&self.db, &self.commit_lock, &self.journal)
    }

    /// Makes a rewrite under way give up, as closing the store does.
    #[cfg(test)]
    pub(crate) fn cancel_rewrites(&self) {
        self.generations.cancel();
    }

    /// Sets the size below which sled's files are never rewritten in the background
    /// (default [`DEFAULT_REWRITE_FLOOR`]; `u64::MAX`: never).
    pub fn rewrite_above(&self, bytes: u64) {
        self.generations.set_floor(bytes);
    }

    /// Keys and value bytes per key prefix (the record kinds of the module table), for
    /// sizing and for finding what a store spends its space on.
    pub fn key_stats(&self) -> Result<std::collections::BTreeMap<char, (u64, u64)>> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.db.current().iter() {
            let (k, v) = item.map_err(backend)?;
            let e = out
                .entry(k.first().map_or('?', |b| *b as char))
                .or_insert((0u64, 0u64));
            e.0 += 1;
            e.1 += (k.len() + v.len()) as u64;
        }
        Ok(out)
    }

    /// Size of the store on disk, in bytes: sled's files, the sealed audit segments and
    /// the journal.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.current().size_on_disk().map_err(backend)? + self.audit_bytes())
    }

    /// Bytes of the audit log on disk: the sealed segments and the journal.
    fn audit_bytes(&self) -> u64 {
        let segments: u64 = self
            .segments
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|s| std::fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum();
        let journal = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes();
        segments + journal
    }
}

impl Store for SledStore {
    fn commit(&self, change: Change) -> Result<Committed> {
        tables::check_audited(&change)?;
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stateful = tables::writes_state(&change);
        let mut ops = Ops::default();
        let mut committed = tables::plan(&self.db, &change, &mut ops)?;

        // The records go to the journal first, with one write; the state (and the head
        // of the log it moves to) to sled after. A change that writes no state (an
        // `Authorize` decision) touches sled not at all.
        let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let (records, mark) = journal.append(change.audit, stateful)?;
        committed.audit_seqs = records.iter().map(|r| r.seq).collect();
        if stateful {
            let (seq, hash) = journal.head();
            tables::put_audit_head(&mut ops, seq, hash)?;
            if let Err(e) = self.db.apply(ops) {
                journal.rollback(mark)?;
                return Err(e);
            }
        }
        if journal.len() >= self.sealing.records_per_segment {
            self.seal_locked(&mut journal);
        }
        Ok(committed)
    }

    fn flush(&self) -> Result<()> {
        flush_in_order(&self.db, &self.journal)
    }

    fn disk_usage(&self) -> Result<crate::DiskUsage> {
        Ok(crate::DiskUsage {
            state: Some(self.db.current().size_on_disk().map_err(backend)?),
            audit: Some(self.audit_bytes()),
        })
    }

    tables::store_reads!(db);

    fn approvals_due(&self, now_ms: u64, limit: usize) -> Result<Vec<TaskId>> {
        let mut stale = Ops::default();
        let due = tables::approvals_due(&self.db, now_ms, limit, &mut stale)?;
        if !stale.is_empty() {
            let _guard = self
                .commit_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.db.apply(stale)?;
        }
        Ok(due)
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        // A seal moving records out of the store between reading the segment list and
        // reading the tail would leave a gap: then read again.
        for _ in 0..8 {
            if let Some(records) = self.audit_after_once(after, limit)? {
                return Ok(records);
            }
        }
        Err(StoreError::Backend(
            "the audit log kept moving while it was read".into(),
        ))
    }

    fn audit_start(&self) -> Result<(u64, String)> {
        Ok(self
            .start
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    fn audit_prunable(&self, before: u64) -> Result<Option<crate::AuditPrune>> {
        Ok(self.prune_plan(before)?.map(|(plan, _)| plan))
    }

    fn prune_audit(&self, through: u64, change: Change) -> Result<Committed> {
        if !matches!(self.prunable(through.saturating_add(1))?, Some((last, ..)) if last == through)
        {
            return Err(crate::AuditPrune::not_a_segment_end(through));
        }
        // The record first, durable; then where the log begins; then the files (an open
        // finishes a removal cut short).
        let committed = self.commit(change)?;
        self.flush()?;
        self.prune_segments(through)?;
        Ok(committed)
    }

    fn audit_head(&self) -> Result<(u64, String)> {
        let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let (seq, hash) = journal.head();
        Ok((seq, hash.to_owned()))
    }

    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        self.collect(now_ms, history_before_ms)
    }
}

/// Opens the store in `dir` for a test, waiting while the store closed just before still
/// holds sled's lock (its threads wind down after it is dropped).
#[cfg(test)]
pub(crate) fn open_when_unlocked(dir: &Path, sealing: AuditSealing) -> SledStore {
    for _ in 0..200 {
        match SledStore::open_with(dir, DEFAULT_CACHE_BYTES, sealing) {
            Ok(s) => return s,
            Err(e) if e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open the store: {e}"),
        }
    }
    panic!("the store stayed locked");
}

#[cfg(test)]
mod audit_tests;
mod gc;
#[cfg(test)]
mod generation_tests;
mod generations;
mod sealing;
#[cfg(test)]
mod tests;
