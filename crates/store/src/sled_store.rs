//! The embedded store on sled: one tree, keys prefixed by record kind, every change one
//! atomic batch. Audit records are not in sled: they go to the audit journal and sealed
//! segments beside it (`journal.rs`, `segments.rs`), written before the batch they
//! belong to (`sealing.rs` has the recovery that keeps the two together).
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `a` | agent id | [`AgentRecord`] |
//! | `t` | task id (16) | [`TaskRecord`] |
//! | `l` | link id (16) | [`LinkRecord`] |
//! | `c` | parent id (16), child id (16) | the child's expiry (8, big endian; empty in stores written before): the tree |
//! | `k` | task id (16), link id (16) | `1` for a root link, `0` otherwise (empty in stores written before): links of a task |
//! | `h` | agent id, 0, link id (16) | empty: links an agent holds or issued |
//! | `x` | expiry (8, big endian), link id (16) | empty: links by expiry, for GC |
//! | `y` | deadline (8, big endian), task id (16) | empty: tasks by deadline, for GC |
//! | `p` | task id (16) | [`ApprovalRecord`] |
//! | `w` | expiry (8, big endian), task id (16) | empty: pending approval requests by expiry |
//! | `u` | requester, 0, expiry (8, big endian), task id (16) | empty: pending approval requests by requester |
//! | `r` | link id (16) | [`RevocationRecord`] |
//! | `e` | epoch (8, big endian), link id (16) | empty: revocations by epoch |
//! | `v` | epoch (8, big endian), task id (16) | every implied revocation of that change in that task, as one value (`implied.rs`) |
//! | `n` | nonce (16) | expiry (8, big endian) |
//! | `g` | `t` task id (16) or `l` link id (16) | uses so far (4, big endian): use-limited roots (per task) and delegations |
//! | `q` | sequence (8, big endian) | [`AuditRecord`]: only in stores written before the audit journal; moved into it at open |
//! | `m` | name | `epoch`, `audit` (sequence and hash of the last audit record of a change that wrote state), `policy` (hash of the policy set in force), `approval_index` (present once `w` and `u` were built for a store written before them) |

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use mandate_core::{LinkId, TaskId};
use serde::{Serialize, de::DeserializeOwned};

use crate::records::{
    AgentRecord, ApprovalRecord, ApprovalState, AuditRecord, LinkRecord, RevocationRecord,
    TaskRecord,
};
use crate::{Change, Committed, GcStats, Result, Store, StoreError, UseCounter};

pub use sealing::AuditSealing;
use sealing::recover_compaction;

/// The sled-backed [`Store`].
pub struct SledStore {
    db: sled::Db,
    // Commits read counters (epoch, audit head) and write them back: one at a time.
    commit_lock: Mutex<()>,
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
    /// The background flusher, and dropping the sender stops it.
    flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // The flusher holds a handle on sled: it is gone before the store is, so the
        // directory can be opened again as soon as this returns.
        if let Some((stop, thread)) = self.flusher.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// How often the background flusher makes committed changes durable (sled's own periodic
/// flush is off: it could make a change durable before its audit record).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Syncs the audit journal, then flushes sled: a change is never durable before its
/// record.
fn flush_in_order(db: &sled::Db, journal: &Mutex<crate::journal::Journal>) -> Result<()> {
    let file = journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .sync_handle()?;
    file.sync_data()
        .map_err(|e| StoreError::Backend(format!("syncing the audit journal: {e}")))?;
    db.flush().map_err(backend)?;
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

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

fn decode<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        why: e.to_string(),
    })
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_be(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn use_key(counter: &UseCounter) -> Vec<u8> {
    match counter {
        UseCounter::Task(t) => key(b'g', &[b"t", t.as_bytes()]),
        UseCounter::Link(l) => key(b'g', &[b"l", l.as_bytes()]),
    }
}

/// The index entries of a pending approval request.
fn approval_keys(a: &ApprovalRecord) -> [Vec<u8>; 2] {
    let (expiry, task) = (be(a.expires_ms), a.task.as_bytes());
    [
        key(b'w', &[&expiry, task]),
        key(b'u', &[a.requester.as_bytes(), &[0], &expiry, task]),
    ]
}

fn index_approval(batch: &mut sled::Batch, a: &ApprovalRecord) {
    if a.state == ApprovalState::Pending {
        for k in approval_keys(a) {
            batch.insert(k, &[]);
        }
    }
}

fn unindex_approval(batch: &mut sled::Batch, a: &ApprovalRecord) {
    for k in approval_keys(a) {
        batch.remove(k);
    }
}

fn link_id_at(k: &[u8], at: usize) -> Option<LinkId> {
    k.get(at..at + 16).and_then(LinkId::from_slice)
}

/// The last audit record's sequence and hash.
#[derive(serde::Serialize, serde::Deserialize)]
struct AuditHead {
    seq: u64,
    hash: String,
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
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(backend)?;
        let segments_dir = path.join("audit-segments");
        let start = crate::segments::pruned(&segments_dir)?;
        let segments = crate::segments::list(&segments_dir, start.0)?;
        let journal = sealing::open_journal(&db, &segments_dir, &segments, &start)?;
        let journal = Arc::new(Mutex::new(journal));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let (db, journal) = (db.clone(), Arc::clone(&journal));
            std::thread::Builder::new()
                .name("mandate-store-flush".into())
                .spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(FLUSH_EVERY)
                    {
                        if let Err(e) = flush_in_order(&db, &journal) {
                            tracing::warn!(error = %e, "background flush failed");
                        }
                    }
                })
                .map_err(|e| StoreError::Backend(format!("cannot start the flusher: {e}")))?
        };
        let store = SledStore {
            db,
            commit_lock: Mutex::new(()),
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
        store.index_approvals()?;
        Ok(store)
    }

    /// Builds the approval indexes of a store written before them (once).
    fn index_approvals(&self) -> Result<()> {
        if self.db.contains_key(b"mapproval_index").map_err(backend)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for item in self.db.scan_prefix(b"p") {
            let (k, v) = item.map_err(backend)?;
            match decode::<ApprovalRecord>(&k, &v) {
                Ok(a) => index_approval(&mut batch, &a),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable approval request"),
            }
        }
        batch.insert(b"mapproval_index".to_vec(), &[]);
        self.db.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    /// Keys and value bytes per key prefix (the record kinds of the module table), for
    /// sizing and for finding what a store spends its space on.
    pub fn key_stats(&self) -> Result<std::collections::BTreeMap<char, (u64, u64)>> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.db.iter() {
            let (k, v) = item.map_err(backend)?;
            let e = out
                .entry(k.first().map_or('?', |b| *b as char))
                .or_insert((0u64, 0u64));
            e.0 += 1;
            e.1 += (k.len() + v.len()) as u64;
        }
        Ok(out)
    }

    /// Size of the store on disk, in bytes: sled's files and the sealed audit segments.
    pub fn size_on_disk(&self) -> Result<u64> {
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
        Ok(self.db.size_on_disk().map_err(backend)? + segments + journal)
    }

    fn get<T: DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>> {
        match self.db.get(k).map_err(backend)? {
            Some(v) => decode(k, &v).map(Some),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<T>> {
        let start = match after {
            // The smallest key above `after` with the same prefix.
            Some(a) => {
                let mut s = key(prefix[0], &[a]);
                s.push(0);
                s
            }
            None => prefix.to_vec(),
        };
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<sled::IVec>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
    }
}

impl Store for SledStore {
    fn commit(&self, change: Change) -> Result<Committed> {
        if change.audit.is_empty() {
            return Err(StoreError::Backend(
                "a change without an audit record is refused".into(),
            ));
        }
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stateful = !(change.agents.is_empty()
            && change.tasks.is_empty()
            && change.links.is_empty()
            && change.revocations.is_empty()
            && change.nonces.is_empty()
            && change.approvals.is_empty()
            && change.policy_hash.is_none()
            && change.uses.is_empty());
        let mut batch = sled::Batch::default();
        let mut committed = Committed::default();

        for a in &change.agents {
            batch.insert(key(b'a', &[a.id.as_bytes()]), encode(a)?);
        }
        for t in &change.tasks {
            // The deadline index moves with the deadline (an approved task gets a new one).
            let old: Option<TaskRecord> = self.get(&key(b't', &[t.id.as_bytes()]))?;
            if let Some(old) = old.filter(|o| o.deadline_ms != t.deadline_ms) {
                batch.remove(key(b'y', &[&be(old.deadline_ms), old.id.as_bytes()]));
            }
            batch.insert(key(b'y', &[&be(t.deadline_ms), t.id.as_bytes()]), &[]);
            batch.insert(key(b't', &[t.id.as_bytes()]), encode(t)?);
        }
        for a in &change.approvals {
            // An unreadable old record cannot stop its replacement (its index entries, if
            // any, are dropped when the expiry pass meets them).
            match self.get::<ApprovalRecord>(&key(b'p', &[a.task.as_bytes()])) {
                Ok(Some(old)) => unindex_approval(&mut batch, &old),
                Ok(None) => {}
                Err(StoreError::Corrupt { key, why }) => {
                    tracing::warn!(key, why, "replacing an unreadable approval request");
                }
                Err(e) => return Err(e),
            }
            index_approval(&mut batch, a);
            batch.insert(key(b'p', &[a.task.as_bytes()]), encode(a)?);
        }
        for (counter, n) in &change.uses {
            batch.insert(use_key(counter), &n.to_be_bytes());
        }
        for l in &change.links {
            let id = l.id.as_bytes();
            if self.db.contains_key(key(b'l', &[id])).map_err(backend)? {
                return Err(StoreError::AlreadyExists {
                    what: "link",
                    id: l.id.to_string(),
                });
            }
            batch.insert(key(b'l', &[id]), encode(l)?);
            if let Some(parent) = &l.parent {
                batch.insert(key(b'c', &[parent.as_bytes(), id]), &be(l.expires_at_ms));
            }
            let root = u8::from(l.parent.is_none());
            batch.insert(key(b'k', &[l.task.as_bytes(), id]), &[root]);
            batch.insert(key(b'x', &[&be(l.expires_at_ms), id]), &[]);
            batch.insert(key(b'h', &[l.holder.as_bytes(), &[0], id]), &[]);
            // Root links are issued by the coordinator, which is not an agent: indexing them
            // under its name would let whoever holds that name reach every root.
            if l.parent.is_some() {
                batch.insert(key(b'h', &[l.issuer.as_bytes(), &[0], id]), &[]);
            }
        }

        let mut seen = std::collections::HashSet::new();
        // Implied revocations (descendants of a link cut in the same change) are not
        // checked against earlier ones one by one: the caller passes links not yet revoked,
        // and a repeat is harmless (readers keep one entry per link).
        let (implied, cut): (Vec<_>, Vec<_>) = change
            .revocations
            .iter()
            .filter(|r| seen.insert(r.link))
            .partition(|r| r.implied);
        let fresh: Vec<_> = cut
            .into_iter()
            .filter_map(
                |r| match self.db.contains_key(key(b'r', &[r.link.as_bytes()])) {
                    Ok(true) => None,
                    Ok(false) => Some(Ok(r)),
                    Err(e) => Some(Err(backend(e))),
                },
            )
            .collect::<Result<_>>()?;
        if !fresh.is_empty() || !implied.is_empty() {
            let epoch = read_be(&self.db.get(b"mepoch").map_err(backend)?.unwrap_or_default()) + 1;
            let mut by_task: std::collections::BTreeMap<TaskId, Vec<&crate::NewRevocation>> =
                std::collections::BTreeMap::new();
            for r in &implied {
                by_task.entry(r.task).or_default().push(r);
            }
            for (task, revocations) in by_task {
                batch.insert(
                    key(b'v', &[&be(epoch), task.as_bytes()]),
                    implied::encode(epoch, &revocations)?,
                );
            }
            committed.revoked.extend(implied.iter().map(|r| r.link));
            for r in fresh {
                let rec = RevocationRecord {
                    link: r.link,
                    task: r.task,
                    epoch,
                    expires_at_ms: r.expires_at_ms,
                    reason: r.reason.clone(),
                    time_ms: r.time_ms,
                    implied: r.implied,
                };
                batch.insert(key(b'r', &[r.link.as_bytes()]), encode(&rec)?);
                batch.insert(key(b'e', &[&be(epoch), r.link.as_bytes()]), &[]);
                committed.revoked.push(r.link);
            }
            batch.insert(b"mepoch".to_vec(), &be(epoch));
            committed.epoch = Some(epoch);
        }

        if let Some(hash) = &change.policy_hash {
            batch.insert(b"mpolicy".to_vec(), hash.as_bytes());
        }
        for (nonce, expiry) in &change.nonces {
            batch.insert(key(b'n', &[nonce]), &be(*expiry));
        }

        // The records go to the journal first, with one write; the state (and the head
        // of the log it moves to) to sled after. A change that writes no state (an
        // `Authorize` decision) touches sled not at all.
        let mut journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let (records, mark) = journal.append(change.audit, stateful)?;
        committed.audit_seqs = records.iter().map(|r| r.seq).collect();
        if stateful {
            let (seq, hash) = journal.head();
            batch.insert(
                b"maudit".to_vec(),
                encode(&AuditHead {
                    seq,
                    hash: hash.to_owned(),
                })?,
            );
            if let Err(e) = self.db.apply_batch(batch) {
                journal.rollback(mark)?;
                return Err(backend(e));
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

    fn agent(&self, id: &str) -> Result<Option<AgentRecord>> {
        self.get(&key(b'a', &[id.as_bytes()]))
    }

    fn agents(&self, after: Option<&str>, limit: usize) -> Result<Vec<AgentRecord>> {
        self.scan(b"a", after.map(str::as_bytes), limit)
    }

    fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        self.get(&key(b't', &[id.as_bytes()]))
    }

    fn tasks(&self, after: Option<&TaskId>, limit: usize) -> Result<Vec<TaskRecord>> {
        self.scan(b"t", after.map(|t| &t.as_bytes()[..]), limit)
    }

    fn approval(&self, task: &TaskId) -> Result<Option<ApprovalRecord>> {
        self.get(&key(b'p', &[task.as_bytes()]))
    }

    fn approvals(&self, after: Option<&TaskId>, limit: usize) -> Result<Vec<ApprovalRecord>> {
        self.scan(b"p", after.map(|t| &t.as_bytes()[..]), limit)
    }

    fn uses(&self, counter: &UseCounter) -> Result<u32> {
        Ok(self
            .db
            .get(use_key(counter))
            .map_err(backend)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    fn approvals_due(&self, now_ms: u64, limit: usize) -> Result<Vec<TaskId>> {
        let end = key(b'w', &[&be(now_ms.saturating_add(1))]);
        let mut out = Vec::new();
        // Entries whose request is gone, unreadable or no longer pending (a store written
        // by another version, a corrupt record) are dropped as they are met, so they
        // cannot fill every pass.
        let mut stale = sled::Batch::default();
        let mut any_stale = false;
        for item in self.db.range(b"w".to_vec()..end).keys().take(limit) {
            let k = item.map_err(backend)?;
            let Some(t) = k.get(9..25).and_then(TaskId::from_slice) else {
                stale.remove(k);
                any_stale = true;
                continue;
            };
            match self.get::<ApprovalRecord>(&key(b'p', &[t.as_bytes()])) {
                Ok(Some(a)) if a.state == ApprovalState::Pending => out.push(t),
                Ok(Some(a)) => {
                    unindex_approval(&mut stale, &a);
                    stale.remove(k);
                    any_stale = true;
                }
                Ok(None) | Err(StoreError::Corrupt { .. }) => {
                    stale.remove(k);
                    any_stale = true;
                }
                Err(e) => return Err(e),
            }
        }
        if any_stale {
            self.db.apply_batch(stale).map_err(backend)?;
        }
        Ok(out)
    }

    fn pending_approvals_of(&self, requester: &str, now_ms: u64, cap: usize) -> Result<usize> {
        // Entries sort by expiry after the requester: count those after `now_ms`.
        let prefix = key(b'u', &[requester.as_bytes(), &[0]]);
        let start = key(
            b'u',
            &[requester.as_bytes(), &[0], &be(now_ms.saturating_add(1))],
        );
        let mut n = 0;
        for item in self.db.range(start..).keys() {
            let k = item.map_err(backend)?;
            if !k.starts_with(&prefix) || n >= cap {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn link(&self, id: &LinkId) -> Result<Option<LinkRecord>> {
        self.get(&key(b'l', &[id.as_bytes()]))
    }

    fn children(&self, id: &LinkId) -> Result<Vec<LinkId>> {
        let prefix = key(b'c', &[id.as_bytes()]);
        Ok(self
            .keys_with_prefix(&prefix)?
            .iter()
            .filter_map(|k| link_id_at(k, 17))
            .collect())
    }

    fn children_with_expiry(&self, id: &LinkId) -> Result<Vec<(LinkId, Option<u64>)>> {
        let prefix = key(b'c', &[id.as_bytes()]);
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(backend)?;
            if let Some(child) = link_id_at(&k, 17) {
                let expiry = <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes);
                out.push((child, expiry));
            }
        }
        Ok(out)
    }

    fn task_links(&self, task: &TaskId) -> Result<Vec<LinkRecord>> {
        let prefix = key(b'k', &[task.as_bytes()]);
        self.keys_with_prefix(&prefix)?
            .iter()
            .filter_map(|k| link_id_at(k, 17))
            .filter_map(|id| self.link(&id).transpose())
            .collect()
    }

    fn task_link_count(&self, task: &TaskId) -> Result<usize> {
        Ok(self.db.scan_prefix(key(b'k', &[task.as_bytes()])).count())
    }

    fn task_roots(&self, task: &TaskId) -> Result<Vec<LinkId>> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(key(b'k', &[task.as_bytes()])) {
            let (k, v) = kv.map_err(backend)?;
            let Some(id) = link_id_at(&k, 17) else {
                continue;
            };
            let root = match &v[..] {
                [flag] => *flag == 1,
                // Written before the index said: read the record.
                _ => self.link(&id)?.is_some_and(|l| l.parent.is_none()),
            };
            if root {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn agent_links(&self, agent: &str) -> Result<Vec<LinkId>> {
        let prefix = key(b'h', &[agent.as_bytes(), &[0]]);
        let mut ids: Vec<LinkId> = self
            .keys_with_prefix(&prefix)?
            .iter()
            .filter_map(|k| link_id_at(k, prefix.len()))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    fn revocation(&self, id: &LinkId) -> Result<Option<RevocationRecord>> {
        self.get(&key(b'r', &[id.as_bytes()]))
    }

    fn implied_revocations(&self, epoch: u64, task: &TaskId) -> Result<Vec<RevocationRecord>> {
        let k = key(b'v', &[&be(epoch), task.as_bytes()]);
        match self.db.get(&k).map_err(backend)? {
            Some(v) => implied::decode(&k, &v),
            None => Ok(Vec::new()),
        }
    }

    fn all_implied_revocations(&self) -> Result<Vec<RevocationRecord>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"v") {
            let (k, v) = item.map_err(backend)?;
            out.extend(implied::decode(&k, &v)?);
        }
        Ok(out)
    }

    fn revocations_after(&self, epoch: u64) -> Result<Vec<RevocationRecord>> {
        let start = key(b'e', &[&be(epoch.saturating_add(1))]);
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, _) = item.map_err(backend)?;
            if k.first() != Some(&b'e') {
                break;
            }
            // Revocations garbage-collected after expiry leave no record behind.
            if let Some(rec) = link_id_at(&k, 9)
                .map(|id| self.revocation(&id))
                .transpose()?
                .flatten()
            {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn policy_hash(&self) -> Result<Option<String>> {
        Ok(self
            .db
            .get(b"mpolicy")
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn epoch(&self) -> Result<u64> {
        Ok(read_be(
            &self.db.get(b"mepoch").map_err(backend)?.unwrap_or_default(),
        ))
    }

    fn nonce(&self, nonce: &[u8; 16]) -> Result<Option<u64>> {
        Ok(self
            .db
            .get(key(b'n', &[nonce]))
            .map_err(backend)?
            .map(|v| read_be(&v)))
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

    fn audit_head(&self) -> Result<(u64, String)> {
        let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let (seq, hash) = journal.head();
        Ok((seq, hash.to_owned()))
    }

    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        self.collect(now_ms, history_before_ms)
    }
}

#[cfg(test)]
mod audit_tests;
mod gc;
mod implied;
mod sealing;
#[cfg(test)]
mod tests;
