//! The store on etcd v3: the tables of `tables.rs` under a key prefix, the audit log's
//! records among them (`q`), every change shipped in transactions guarded by a compare on
//! the audit head, so two writers can never fork the hash chain.
//!
//! # Commits and flushes
//!
//! The server's contract is sled's: a commit is visible at once and durable after the
//! next flush, which the server shares between concurrent callers. So a commit plans its
//! writes against what this store sees (etcd, under the writes not shipped yet), appends
//! them to the *pending* queue and lays them over etcd for every read here; a flush ships
//! the queue in order. Consecutive changes are packed into one transaction up to etcd's
//! limits (`max_txn_ops`, `max_txn_bytes`): one transaction (one raft round, one fsync
//! per member) makes many changes durable. Each transaction compares the audit head
//! (`maudit`) with the one this store last wrote; another writer having moved it is a
//! [`StoreError::Conflict`], and the store refuses everything afterwards (a restart reads
//! the state again).
//!
//! # Changes larger than a transaction
//!
//! A cascade over 100,000 descendants or a drift pass is far larger than one transaction.
//! It is written in three steps: its writes are staged under `z` + change number + part
//! (no reader looks there); one guarded transaction then moves the audit head and writes
//! the marker `mstaged` (the change number and how many parts); then the parts are
//! applied and the marker and staging removed. The change is durable once the marker is:
//! a store opening over a marker applies the staged parts before it serves anything.
//! Until the parts are applied, this process keeps the whole change in its pending
//! layer, so its readers see all of it or none.
//!
//! # etcd unavailable
//!
//! A flush that fails (no quorum, a timeout) keeps the queue and marks the store failing:
//! every later commit is refused with a backend error (the server answers
//! `STORE_UNAVAILABLE`) instead of piling up, and reads that reach etcd fail the same way.
//! A background thread retries the flush; once it goes through, commits are taken again,
//! without a restart.

mod client;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mandate_core::TaskId;
use mandate_etcd::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op, response_op,
};

use client::Etcd;
pub use client::EtcdConfig;

use crate::kv::{Kv, Ops, Visit, be, encode, key, read_be};
use crate::records::AuditRecord;
use crate::{Change, Committed, GENESIS_HASH, GcStats, Result, Store, StoreError, tables};

/// How often the background thread ships what commits left pending.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Entries read from etcd per range call of a scan. Large: etcd counts every key left in
/// the range on each call, so small pages make a long scan quadratic.
const PAGE: usize = 8192;
/// Bytes an operation costs beyond its key and value, in a transaction's size.
const OP_OVERHEAD: usize = 16;
/// The table of request nonces, which this store keeps whole in memory.
const NONCES: u8 = b'n';
/// The marker of a large change being applied.
const STAGED: &[u8] = b"mstaged";

/// One change waiting to be shipped.
struct Pending {
    no: u64,
    ops: Arc<Ops>,
    /// Operations and bytes it takes in a transaction.
    size: (usize, usize),
    /// The audit head after it, as stored, if it moved the head.
    head: Option<Vec<u8>>,
}

/// What this store has committed and not yet shipped, laid over etcd.
#[derive(Default)]
struct Layer {
    queue: VecDeque<Pending>,
    /// Every key the queue writes, with the number of the last change writing it.
    overlay: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    next: u64,
    /// The audit head including the queue.
    head: (u64, String),
    /// The audit head as etcd holds it (`None`: no change ever wrote one).
    shipped_head: Option<Vec<u8>>,
    /// Why the last flush failed, while it keeps failing.
    failing: Option<String>,
    /// Set when another writer moved the audit head: nothing more is taken.
    conflict: Option<String>,
    /// Values read from etcd or shipped to it (see [`ReadCache`]).
    cache: ReadCache,
    /// Every request nonce etcd holds (`n`), with its value: loaded at open and kept by
    /// every shipped write, so that the replay check of each signed request is answered
    /// here (the table is small: nonces live for the request window until collected).
    nonces: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

/// Values (and absences) of keys as etcd holds them, so that reads of agents, tasks and
/// links this coordinator wrote or read recently cost no round trip. Coherent because
/// this coordinator is etcd's only writer (a second writer is caught by the audit head's
/// compare, and the store then stops): every shipped write goes through it. Two
/// generations, each up to half the byte budget: a full one becomes the old one, entries
/// found in the old one move back; values over [`MAX_CACHED`] are not kept.
#[derive(Default)]
struct ReadCache {
    current: std::collections::HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    old: std::collections::HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    bytes: usize,
    budget: usize,
    /// Bumped when a generation is dropped: a read that started before may not insert.
    rotations: u64,
}

/// The largest value the read cache keeps.
const MAX_CACHED: usize = 64 << 10;

impl ReadCache {
    fn get(&mut self, k: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = self.current.get(k) {
            return Some(v.as_deref().map(<[u8]>::to_vec));
        }
        let (k, v) = self.old.remove_entry(k)?;
        let out = v.as_deref().map(<[u8]>::to_vec);
        self.insert(k, v);
        Some(out)
    }

    fn contains(&self, k: &[u8]) -> bool {
        self.current.contains_key(k) || self.old.contains_key(k)
    }

    /// Records `k` as etcd now holds it (`None`: absent). Audit records (`q`), read in
    /// order by followers and exports rather than by key, are not kept.
    fn put(&mut self, k: &[u8], v: Option<&[u8]>) {
        if v.is_some_and(|v| v.len() > MAX_CACHED) || self.budget == 0 || k.first() == Some(&b'q') {
            self.forget(k);
            return;
        }
        self.old.remove(k);
        self.insert(k.to_vec(), v.map(Arc::from));
    }

    fn insert(&mut self, k: Vec<u8>, v: Option<Arc<[u8]>>) {
        let size = k.len() + v.as_ref().map_or(0, |v| v.len()) + 64;
        if self.bytes + size > self.budget / 2 {
            self.old = std::mem::take(&mut self.current);
            self.bytes = 0;
            self.rotations += 1;
        }
        if let Some(prev) = self.current.insert(k.clone(), v) {
            self.bytes -= k.len() + prev.map_or(0, |v| v.len()) + 64;
        }
        self.bytes += size;
    }

    fn forget(&mut self, k: &[u8]) {
        self.old.remove(k);
        if let Some(old) = self.current.remove(k) {
            self.bytes -= k.len() + old.map_or(0, |v| v.len()) + 64;
        }
    }
}

/// etcd under the pending layer: what every read of this store goes through.
pub(crate) struct EtcdKv {
    etcd: Etcd,
    layer: Mutex<Layer>,
}

impl EtcdKv {
    fn layer(&self) -> std::sync::MutexGuard<'_, Layer> {
        self.layer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Kv for EtcdKv {
    type Bytes = Vec<u8>;

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let rotations = {
            let mut layer = self.layer();
            if let Some((_, v)) = layer.overlay.get(k) {
                return Ok(v.clone());
            }
            if k.first() == Some(&NONCES) {
                return Ok(layer.nonces.get(k).cloned());
            }
            if let Some(v) = layer.cache.get(k) {
                return Ok(v);
            }
            layer.cache.rotations
        };
        tracing::trace!(table = %char::from(k.first().copied().unwrap_or(b'?')), "etcd get");
        let v = match self.etcd.get(k)? {
            Some(v) => Some(self.unspill(k, v)?),
            None => None,
        };
        let mut layer = self.layer();
        // A write of `k` queued or shipped meanwhile is newer than what was read.
        if !layer.overlay.contains_key(k)
            && !layer.cache.contains(k)
            && layer.cache.rotations == rotations
        {
            layer.cache.put(k, v.as_deref());
        }
        Ok(v)
    }

    fn contains_all(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>> {
        let mut out: Vec<Option<bool>> = Vec::with_capacity(keys.len());
        let rotations = {
            let mut layer = self.layer();
            for k in keys {
                out.push(match layer.overlay.get(k.as_slice()) {
                    Some((_, v)) => Some(v.is_some()),
                    None => layer.cache.get(k).map(|v| v.is_some()),
                });
            }
            layer.cache.rotations
        };
        let missing: Vec<&[u8]> = keys
            .iter()
            .zip(&out)
            .filter(|(_, known)| known.is_none())
            .map(|(k, _)| k.as_slice())
            .collect();
        if missing.is_empty() {
            return Ok(out.into_iter().map(|k| k.unwrap_or(false)).collect());
        }
        tracing::trace!(keys = missing.len(), "etcd contains_all");
        let found = self.etcd.count_each(&missing)?;
        let mut layer = self.layer();
        let mut found = found.into_iter();
        for (k, known) in keys.iter().zip(out.iter_mut()) {
            if known.is_some() {
                continue;
            }
            let present = found.next().unwrap_or(false);
            *known = Some(present);
            // Absences are kept (a new link's id is asked for again when it is committed);
            // a present key's value is read when it is wanted.
            if !present
                && !layer.overlay.contains_key(k.as_slice())
                && !layer.cache.contains(k)
                && layer.cache.rotations == rotations
            {
                layer.cache.put(k, None);
            }
        }
        Ok(out.into_iter().map(|k| k.unwrap_or(false)).collect())
    }

    fn scan(&self, start: &[u8], end: &[u8], f: &mut Visit<'_>) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let over: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .layer()
            .overlay
            .range(start.to_vec()..end.to_vec())
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        let mut over = over.into_iter().peekable();
        let mut cursor = start.to_vec();
        tracing::trace!(table = %char::from(start.first().copied().unwrap_or(b'?')), "etcd scan");
        loop {
            let (page, more) = self.etcd.range(&cursor, end, PAGE)?;
            let page = page
                .into_iter()
                .map(|(k, v)| {
                    let v = self.unspill(&k, v)?;
                    Ok((k, v))
                })
                .collect::<Result<Vec<_>>>()?;
            // This page covers `cursor..bound`: etcd has nothing else there.
            let bound = match (more, page.last()) {
                (true, Some((last, _))) => [&last[..], &[0]].concat(),
                _ => end.to_vec(),
            };
            let mut page = page.into_iter().peekable();
            loop {
                let next_over = over.peek().filter(|(k, _)| *k < bound).map(|(k, _)| k);
                let take_over = match (next_over, page.peek()) {
                    (None, None) => break,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some(o), Some((p, _))) => o <= p,
                };
                let (k, v) = if take_over {
                    let Some((k, v)) = over.next() else { break };
                    if page.peek().is_some_and(|(p, _)| *p == k) {
                        page.next();
                    }
                    match v {
                        Some(v) => (k, v),
                        None => continue,
                    }
                } else {
                    let Some(entry) = page.next() else { break };
                    entry
                };
                if !f(&k, &v)? {
                    return Ok(());
                }
            }
            if bound.as_slice() >= end {
                return Ok(());
            }
            cursor = bound;
        }
    }
}

/// The etcd-backed [`Store`].
pub struct EtcdStore {
    inner: Arc<Inner>,
    /// The background flusher; dropping the sender stops it.
    flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

struct Inner {
    kv: EtcdKv,
    // Commits read state and counters and queue their writes: one at a time.
    commit_lock: Mutex<()>,
    // One flush ships at a time, in order.
    flush_lock: Mutex<()>,
    /// Failure injection for tests: a large change stops before (1) or after (2) its
    /// marker is published, as a crash there would.
    #[cfg(test)]
    stop_large_at: std::sync::atomic::AtomicU8,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.flusher.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", self.inner.kv.etcd.config())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd, finishes a large change a crash interrupted, and reads the audit
    /// head.
    pub fn open(config: EtcdConfig) -> Result<EtcdStore> {
        let cache_bytes = config.cache_bytes;
        let etcd = Etcd::connect(config)?;
        let inner = Arc::new(Inner {
            kv: EtcdKv {
                etcd,
                layer: Mutex::new(Layer {
                    cache: ReadCache {
                        budget: usize::try_from(cache_bytes).unwrap_or(usize::MAX),
                        ..ReadCache::default()
                    },
                    ..Layer::default()
                }),
            },
            commit_lock: Mutex::new(()),
            flush_lock: Mutex::new(()),
            #[cfg(test)]
            stop_large_at: std::sync::atomic::AtomicU8::new(0),
        });
        inner.finish_staged()?;
        let mut nonces = std::collections::HashMap::new();
        let mut cursor = vec![NONCES];
        loop {
            let (page, more) = inner.kv.etcd.range(&cursor, &[NONCES + 1], PAGE)?;
            let Some((last, _)) = page.last() else { break };
            cursor = [&last[..], &[0]].concat();
            nonces.extend(page);
            if !more {
                break;
            }
        }
        inner.kv.layer().nonces = nonces;
        let raw = inner.kv.etcd.get(tables::AUDIT_HEAD)?;
        {
            let mut layer = inner.kv.layer();
            layer.head = match &raw {
                Some(v) => {
                    let h: tables::AuditHead = crate::kv::decode(tables::AUDIT_HEAD, v)?;
                    (h.seq, h.hash)
                }
                None => (0, GENESIS_HASH.to_owned()),
            };
            layer.shipped_head = raw;
        }
        if let Some(ops) = tables::plan_approval_index(&inner.kv)? {
            inner.queue(ops, None);
            inner.flush()?;
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("mandate-etcd-flush".into())
                .spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(FLUSH_EVERY)
                    {
                        if inner.kv.layer().queue.is_empty() {
                            continue;
                        }
                        if let Err(e) = inner.flush() {
                            tracing::warn!(error = %e, "background flush to etcd failed");
                        }
                    }
                })
                .map_err(|e| StoreError::Backend(format!("cannot start the flusher: {e}")))?
        };
        Ok(EtcdStore {
            inner,
            flusher: Some((stop, thread)),
        })
    }

    /// Writes (or with `None` removes) a key of the map, bypassing the store: for tests
    /// that damage or age what the store holds.
    #[cfg(test)]
    pub(crate) fn raw_write(&self, k: &[u8], v: Option<&[u8]>) -> Result<()> {
        {
            let mut layer = self.inner.kv.layer();
            layer.cache.forget(k);
            match v {
                Some(v) if k.first() == Some(&NONCES) => {
                    layer.nonces.insert(k.to_vec(), v.to_vec());
                }
                _ => {
                    layer.nonces.remove(k);
                }
            }
        }
        self.inner
            .apply_in_parts(std::iter::once((k, v)), 1, usize::MAX)
    }

    /// How many times the store authenticated again after its token expired.
    #[cfg(test)]
    pub(crate) fn reauthentications(&self) -> u64 {
        self.inner
            .kv
            .etcd
            .reauthentications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads a key of the map as etcd holds it.
    #[cfg(test)]
    pub(crate) fn raw_get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.kv.etcd.get(k)
    }

    /// The keys in etcd that start with `prefix`.
    #[cfg(test)]
    pub(crate) fn raw_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (entries, _) =
            self.inner
                .kv
                .etcd
                .range(prefix, &crate::kv::prefix_end(prefix), usize::MAX >> 1)?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    /// Makes a large change stop before (1) or after (2) its marker is published.
    #[cfg(test)]
    pub(crate) fn stop_large_at(&self, at: u8) {
        self.inner
            .stop_large_at
            .store(at, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many changes wait to be shipped.
    pub fn pending(&self) -> usize {
        self.inner.kv.layer().queue.len()
    }
}

fn op_size(k: &[u8], v: Option<&[u8]>) -> usize {
    k.len() + v.map_or(0, <[u8]>::len) + OP_OVERHEAD
}

impl Inner {
    /// Refuses work while another writer owns the log or etcd is failing.
    fn check_open(&self) -> Result<()> {
        let layer = self.kv.layer();
        if let Some(why) = &layer.conflict {
            return Err(StoreError::Conflict(why.clone()));
        }
        if let Some(why) = &layer.failing {
            return Err(StoreError::Backend(format!(
                "etcd is failing, nothing is taken until it recovers: {why}"
            )));
        }
        Ok(())
    }

    /// Queues `ops` (which move the audit head to `head`, if given) and lays them over
    /// etcd for every read.
    fn queue(&self, ops: Ops, head: Option<Vec<u8>>) {
        let mut layer = self.kv.layer();
        let no = layer.next;
        layer.next += 1;
        for (k, v) in ops.iter() {
            layer
                .overlay
                .insert(k.to_vec(), (no, v.map(<[u8]>::to_vec)));
        }
        let ops = spill(ops);
        let size = ops
            .iter()
            .fold((0, 0), |(n, b), (k, v)| (n + 1, b + op_size(k, v)));
        layer.queue.push_back(Pending {
            no,
            ops: Arc::new(ops),
            size,
            head,
        });
    }

    fn commit(&self, change: Change) -> Result<Committed> {
        tables::check_audited(&change)?;
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_open()?;
        let mut ops = Ops::default();
        let mut committed = tables::plan(&self.kv, &change, &mut ops)?;
        let head = self.kv.layer().head.clone();
        let records = crate::records::chain(&head, change.audit);
        for r in &records {
            ops.put(tables::audit_key(r.seq), encode(r)?);
        }
        committed.audit_seqs = records.iter().map(|r| r.seq).collect();
        let last = records
            .last()
            .map(|r| (r.seq, r.hash.clone()))
            .unwrap_or(head);
        tables::put_audit_head(&mut ops, last.0, &last.1)?;
        let raw = encode(&tables::AuditHead {
            seq: last.0,
            hash: last.1.clone(),
        })?;
        self.queue(ops, Some(raw));
        self.kv.layer().head = last;
        Ok(committed)
    }

    /// Ships every change queued before the call.
    fn flush(&self) -> Result<()> {
        let _guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let target = {
            let layer = self.kv.layer();
            if let Some(why) = &layer.conflict {
                return Err(StoreError::Conflict(why.clone()));
            }
            layer.next
        };
        let config = self.kv.etcd.config();
        let (max_ops, max_bytes) = (config.max_txn_ops.max(2), config.max_txn_bytes.max(1024));
        loop {
            // The longest run of queued changes that fits one transaction (with the head's
            // compare and write), or one change too large for any.
            let (group, expected) = {
                let layer = self.kv.layer();
                let mut group: Vec<(u64, Arc<Ops>, Option<Vec<u8>>)> = Vec::new();
                let (mut n, mut bytes) = (0, 0);
                for p in layer.queue.iter().take_while(|p| p.no < target) {
                    let fits = n + p.size.0 <= max_ops && bytes + p.size.1 <= max_bytes;
                    if !group.is_empty() && !fits {
                        break;
                    }
                    group.push((p.no, Arc::clone(&p.ops), p.head.clone()));
                    (n, bytes) = (n + p.size.0, bytes + p.size.1);
                    if !fits {
                        break;
                    }
                }
                (group, layer.shipped_head.clone())
            };
            let Some(&(last_no, _, _)) = group.last() else {
                return Ok(());
            };
            let new_head = group
                .iter()
                .rev()
                .find_map(|(_, _, h)| h.clone())
                .or_else(|| expected.clone());
            let result = if group.len() == 1 && {
                let (ops, bytes) = group[0]
                    .1
                    .iter()
                    .fold((0, 0), |(n, b), (k, v)| (n + 1, b + op_size(k, v)));
                ops > max_ops || bytes > max_bytes
            } {
                self.ship_large(
                    last_no,
                    &group[0].1,
                    expected.as_deref(),
                    max_ops,
                    max_bytes,
                )
            } else {
                let mut merged = Ops::default();
                for (_, ops, _) in &group {
                    merged.extend((**ops).clone());
                }
                self.ship(&merged, expected.as_deref())
            };
            let mut layer = self.kv.layer();
            match result {
                Ok(()) => {
                    let shipped = group.len();
                    let layer = &mut *layer;
                    for p in layer.queue.drain(..shipped) {
                        for (k, _) in p.ops.iter() {
                            // The overlay holds the key's last write; a later change
                            // still queued keeps it there.
                            if layer.overlay.get(k).is_none_or(|(no, _)| *no > last_no) {
                                continue;
                            }
                            let Some((_, v)) = layer.overlay.remove(k) else {
                                continue;
                            };
                            if k.first() == Some(&NONCES) {
                                match v {
                                    Some(v) => layer.nonces.insert(k.to_vec(), v),
                                    None => layer.nonces.remove(k),
                                };
                            } else {
                                layer.cache.put(k, v.as_deref());
                            }
                        }
                    }
                    layer.shipped_head = new_head;
                    if layer.failing.take().is_some() {
                        tracing::info!("etcd is back: the store takes changes again");
                    }
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::error!(%why, "another writer moved the audit head: this store stops taking changes");
                    layer.conflict = Some(why.clone());
                    return Err(StoreError::Conflict(why));
                }
                Err(e) => {
                    if layer.failing.is_none() {
                        tracing::error!(error = %e, "etcd failed: changes are refused until it recovers");
                    }
                    layer.failing = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// The compare that guards a transaction: the audit head is still `expected`.
    fn head_compare(&self, expected: Option<&[u8]>) -> Compare {
        let key = self.kv.etcd.full(tables::AUDIT_HEAD);
        match expected {
            Some(v) => Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key,
                target_union: Some(compare::TargetUnion::Value(v.to_vec())),
                range_end: Vec::new(),
            },
            None => Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key,
                target_union: Some(compare::TargetUnion::Version(0)),
                range_end: Vec::new(),
            },
        }
    }

    fn request_ops<'a>(
        &self,
        ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Vec<RequestOp> {
        ops.map(|(k, v)| {
            let key = self.kv.etcd.full(k);
            RequestOp {
                request: Some(match v {
                    Some(v) => request_op::Request::RequestPut(PutRequest {
                        key,
                        value: v.to_vec(),
                        ..PutRequest::default()
                    }),
                    None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..DeleteRangeRequest::default()
                    }),
                }),
            }
        })
        .collect()
    }

    /// One guarded transaction. A transaction whose answer was lost may have been applied:
    /// shipped again, its compare fails, and the head it wrote tells that it did.
    fn ship(&self, ops: &Ops, expected: Option<&[u8]>) -> Result<()> {
        let head_key = self.kv.etcd.full(tables::AUDIT_HEAD);
        let reply = self.kv.etcd.txn(TxnRequest {
            compare: vec![self.head_compare(expected)],
            success: self.request_ops(ops.iter()),
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: head_key,
                    ..RangeRequest::default()
                })),
            }],
        })?;
        if reply.succeeded {
            return Ok(());
        }
        let now = reply.responses.into_iter().find_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(range)) => {
                range.kvs.into_iter().next().map(|kv| kv.value)
            }
            _ => None,
        });
        match (ops.get(tables::AUDIT_HEAD), now) {
            (Some(Some(ours)), Some(now)) if ours == now.as_slice() => Ok(()),
            _ => Err(StoreError::Conflict(
                "the audit head in etcd is not the one this coordinator wrote".into(),
            )),
        }
    }

    /// Unguarded transactions of at most `max_ops` operations and `max_bytes` each.
    fn apply_in_parts<'a>(
        &self,
        ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        let mut part: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        let mut bytes = 0;
        let send = |part: &mut Vec<(&[u8], Option<&[u8]>)>| -> Result<()> {
            if !part.is_empty() {
                self.kv.etcd.txn(TxnRequest {
                    compare: Vec::new(),
                    success: self.request_ops(part.drain(..)),
                    failure: Vec::new(),
                })?;
            }
            Ok(())
        };
        for (k, v) in ops {
            let size = op_size(k, v);
            if !part.is_empty() && (part.len() >= max_ops || bytes + size > max_bytes) {
                send(&mut part)?;
                bytes = 0;
            }
            part.push((k, v));
            bytes += size;
        }
        send(&mut part)
    }

    /// Stages a change too large for one transaction, publishes it with the marker, then
    /// applies it (the module's "Changes larger than a transaction").
    fn ship_large(
        &self,
        no: u64,
        ops: &Ops,
        expected: Option<&[u8]>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        // A part holds writes up to half a transaction's bytes (one value can be larger:
        // it goes alone).
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        for (k, v) in ops.iter() {
            if k == tables::AUDIT_HEAD {
                continue;
            }
            if !current.is_empty() && current.len() + op_size(k, v) > max_bytes / 2 {
                parts.push(std::mem::take(&mut current));
            }
            encode_op(&mut current, k, v);
        }
        if !current.is_empty() {
            parts.push(current);
        }
        let staged: Vec<(Vec<u8>, Vec<u8>)> = (0u32..)
            .zip(parts)
            .map(|(i, p)| (staging_key(no, i), p))
            .collect();
        self.apply_in_parts(
            staged
                .iter()
                .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
            max_ops,
            max_bytes,
        )?;
        self.injected(1)?;
        let count = u32::try_from(staged.len()).unwrap_or(u32::MAX);
        let mut publish = Ops::default();
        publish.put(STAGED, [&be(no)[..], &count.to_be_bytes()].concat());
        if let Some((_, Some(head))) = ops.iter().find(|(k, _)| *k == tables::AUDIT_HEAD) {
            publish.put(tables::AUDIT_HEAD, head);
        }
        self.ship(&publish, expected)?;
        self.injected(2)?;
        self.apply_staged(no, staged.into_iter().map(|(_, v)| v), max_ops, max_bytes)
    }

    /// Fails at injection point `at` when a test asked for it.
    fn injected(&self, at: u8) -> Result<()> {
        #[cfg(test)]
        if self.stop_large_at.load(std::sync::atomic::Ordering::SeqCst) == at {
            return Err(StoreError::Backend(format!("injected failure at {at}")));
        }
        let _ = at;
        Ok(())
    }

    /// Applies staged parts, then removes the marker and the staging.
    fn apply_staged(
        &self,
        no: u64,
        parts: impl Iterator<Item = Vec<u8>>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        for part in parts {
            let writes = decode_ops(&part)?;
            self.apply_in_parts(
                writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                max_ops,
                max_bytes,
            )?;
        }
        let prefix = key(b'z', &[&be(no)]);
        self.kv.etcd.txn(TxnRequest {
            compare: Vec::new(),
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: self.kv.etcd.full(STAGED),
                            ..DeleteRangeRequest::default()
                        },
                    )),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: self.kv.etcd.full(&prefix),
                            range_end: self.kv.etcd.full(&crate::kv::prefix_end(&prefix)),
                            ..DeleteRangeRequest::default()
                        },
                    )),
                },
            ],
            failure: Vec::new(),
        })?;
        Ok(())
    }

    /// At open: applies a large change whose marker is written, and drops staging a crash
    /// left without one.
    fn finish_staged(&self) -> Result<()> {
        let config = self.kv.etcd.config();
        let (max_ops, max_bytes) = (config.max_txn_ops.max(2), config.max_txn_bytes.max(1024));
        let marker = self.kv.etcd.get(STAGED)?;
        let mut staged = Vec::new();
        let mut cursor = b"z".to_vec();
        loop {
            let (page, more) = self.kv.etcd.range(&cursor, b"{", 64)?;
            let Some((last, _)) = page.last() else { break };
            cursor = [&last[..], &[0]].concat();
            staged.extend(page);
            if !more {
                break;
            }
        }
        let complete = marker.as_deref().and_then(|m| {
            let no = read_be(m.get(..8)?);
            let count = u32::from_be_bytes(m.get(8..12)?.try_into().ok()?);
            Some((no, count))
        });
        if let Some((no, count)) = complete {
            let parts: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let k = staging_key(no, i);
                    staged
                        .iter()
                        .find(|(s, _)| *s == k)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| StoreError::Corrupt {
                            key: "mstaged".into(),
                            why: format!("staged part {i} of change {no} is missing"),
                        })
                })
                .collect::<Result<_>>()?;
            tracing::info!(
                parts = count,
                "applying a large change a restart interrupted"
            );
            self.apply_staged(no, parts.into_iter(), max_ops, max_bytes)?;
        }
        // Staging without a marker: the change was never published.
        let leftover: Vec<Vec<u8>> = staged
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| complete.is_none_or(|(no, _)| k.get(1..9) != Some(&be(no)[..])))
            .collect();
        if !leftover.is_empty() {
            self.apply_in_parts(
                leftover.iter().map(|k| (k.as_slice(), None)),
                max_ops,
                max_bytes,
            )?;
        }
        Ok(())
    }

    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        let stats = {
            let _guard = self
                .commit_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.check_open()?;
            let mut ops = Ops::default();
            let stats = tables::plan_gc(&self.kv, now_ms, history_before_ms, &mut ops)?;
            if !ops.is_empty() {
                self.queue(ops, None);
            }
            stats
        };
        self.flush()?;
        Ok(stats)
    }
}

/// Values larger than this are stored in parts (etcd takes at most 1.5 MiB a request).
const SPILL_OVER: usize = 512 << 10;
/// The value left under a key whose value is stored in parts, followed by the number of
/// parts (4, big endian). No table value starts with 0xFF.
const SPILLED: &[u8] = b"\xffMANDSPL";

/// Where the parts of `k`'s value live: `S`, the first 16 bytes of SHA-256 of `k`, and the
/// part (4, big endian).
fn spill_prefix(k: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    key(b'S', &[&sha2::Sha256::digest(k)[..16]])
}

/// `ops` as etcd stores them: a value over [`SPILL_OVER`] (in practice the audit record
/// of a cascade naming tens of thousands of links) becomes a marker with the number of
/// parts, and the parts under [`spill_prefix`]. Parts are only ever written with their
/// key's value (audit records, which carry them, are never removed one by one).
fn spill(ops: Ops) -> Ops {
    if ops
        .iter()
        .all(|(_, v)| v.is_none_or(|v| v.len() <= SPILL_OVER))
    {
        return ops;
    }
    let mut out = Ops::default();
    for (k, v) in ops.into_iter() {
        match v {
            Some(v) if v.len() > SPILL_OVER => {
                let prefix = spill_prefix(&k);
                let mut count = 0u32;
                for (i, part) in (0u32..).zip(v.chunks(SPILL_OVER)) {
                    out.put(key(b'S', &[&prefix[1..], &i.to_be_bytes()]), part);
                    count = i + 1;
                }
                out.put(k, [SPILLED, &count.to_be_bytes()].concat());
            }
            Some(v) => out.put(k, v),
            None => out.delete(k),
        }
    }
    out
}

impl EtcdKv {
    /// The entries under each of `prefixes` (small values only: index tables), etcd's under
    /// the pending layer, with one round trip for many prefixes.
    fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<Vec<Vec<crate::kv::Entry>>> {
        let over: Vec<Vec<crate::kv::Write>> = {
            let layer = self.layer();
            prefixes
                .iter()
                .map(|p| {
                    layer
                        .overlay
                        .range(p.clone()..crate::kv::prefix_end(p))
                        .map(|(k, (_, v))| (k.clone(), v.clone()))
                        .collect()
                })
                .collect()
        };
        let stored = self.etcd.prefixes(prefixes)?;
        Ok(stored
            .into_iter()
            .zip(over)
            .map(|(stored, over)| {
                let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
                    stored.into_iter().map(|(k, v)| (k, Some(v))).collect();
                merged.extend(over);
                merged
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            })
            .collect())
    }

    /// `v` as stored under `k`, with its parts put back together if it was spilled.
    fn unspill(&self, k: &[u8], v: Vec<u8>) -> Result<Vec<u8>> {
        let Some(count) = v
            .strip_prefix(SPILLED)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes)
        else {
            return Ok(v);
        };
        let prefix = spill_prefix(k);
        let (parts, _) =
            self.etcd
                .range(&prefix, &crate::kv::prefix_end(&prefix), count as usize)?;
        if parts.len() != count as usize {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(k).into_owned(),
                why: format!("{} of its {count} parts are stored", parts.len()),
            });
        }
        Ok(parts.into_iter().flat_map(|(_, p)| p).collect())
    }
}

fn staging_key(no: u64, part: u32) -> Vec<u8> {
    key(b'z', &[&be(no), &part.to_be_bytes()])
}

/// A staged write: key length (4), key, 0 (removal) or 1 and value length (4) and value.
fn encode_op(out: &mut Vec<u8>, k: &[u8], v: Option<&[u8]>) {
    out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(k);
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

fn decode_ops(mut b: &[u8]) -> Result<Vec<crate::kv::Write>> {
    let corrupt = || StoreError::Corrupt {
        key: "z".into(),
        why: "a staged part does not decode".into(),
    };
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        let (head, rest) = b.split_at_checked(n).ok_or_else(corrupt)?;
        *b = rest;
        Ok(head.to_vec())
    };
    let len = |v: Vec<u8>| -> Result<usize> {
        Ok(u32::from_be_bytes(v.try_into().map_err(|_| corrupt())?) as usize)
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = len(take(&mut b, 4)?)?;
        let k = take(&mut b, n)?;
        let v = match take(&mut b, 1)?[..] {
            [0] => None,
            [1] => {
                let n = len(take(&mut b, 4)?)?;
                Some(take(&mut b, n)?)
            }
            _ => return Err(corrupt()),
        };
        out.push((k, v));
    }
    Ok(out)
}

impl Store for EtcdStore {
    fn commit(&self, change: Change) -> Result<Committed> {
        self.inner.commit(change)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    tables::store_reads!(inner.kv);

    fn approvals_due(&self, now_ms: u64, limit: usize) -> Result<Vec<TaskId>> {
        let mut stale = Ops::default();
        let due = tables::approvals_due(&self.inner.kv, now_ms, limit, &mut stale)?;
        if !stale.is_empty() {
            let _guard = self
                .inner
                .commit_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.inner.queue(stale, None);
        }
        Ok(due)
    }

    fn children_with_expiry_of(
        &self,
        ids: &[mandate_core::LinkId],
    ) -> Result<Vec<Vec<(mandate_core::LinkId, Option<u64>)>>> {
        let prefixes: Vec<Vec<u8>> = ids.iter().map(|id| key(b'c', &[id.as_bytes()])).collect();
        Ok(self
            .inner
            .kv
            .scan_prefixes(&prefixes)?
            .into_iter()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|(k, v)| tables::tree_entry(k, v))
                    .collect()
            })
            .collect())
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        tables::audit_records(&self.inner.kv, after, limit)
    }

    fn audit_head(&self) -> Result<(u64, String)> {
        Ok(self.inner.kv.layer().head.clone())
    }

    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        self.inner.gc(now_ms, history_before_ms)
    }
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_parts_decode_to_what_was_encoded() {
        let mut b = Vec::new();
        encode_op(&mut b, b"lkey", Some(b"value"));
        encode_op(&mut b, b"x", None);
        encode_op(&mut b, b"e", Some(b""));
        assert_eq!(
            decode_ops(&b).unwrap(),
            vec![
                (b"lkey".to_vec(), Some(b"value".to_vec())),
                (b"x".to_vec(), None),
                (b"e".to_vec(), Some(Vec::new())),
            ]
        );
        assert!(decode_ops(&b[..b.len() - 1]).is_err());
        assert!(decode_ops(&[0, 0, 0, 1, b'k', 7]).is_err());
    }
}
