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
mod layer;
mod leader;
mod seal;
mod ship;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mandate_core::TaskId;

use client::Etcd;
pub use client::EtcdConfig;
use layer::{EtcdKv, Layer, Pending, ReadCache, spill};
pub use leader::EtcdLeadership;

use crate::kv::{Ops, encode};
use crate::records::AuditRecord;
use crate::{Change, Committed, GENESIS_HASH, GcStats, Result, Store, StoreError, tables};

/// How long the background thread waits before sealing again after a seal failed.
const SEAL_RETRY: Duration = Duration::from_secs(60);
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
    // One seal at a time (`seal.rs`).
    seal_lock: Mutex<()>,
    /// The sealed segment read last, decoded.
    last_segment: Mutex<Option<seal::Decoded>>,
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
            seal_lock: Mutex::new(()),
            last_segment: Mutex::new(None),
            #[cfg(test)]
            stop_large_at: std::sync::atomic::AtomicU8::new(0),
        });
        inner.finish_staged()?;
        inner.load_sealed()?;
        inner.kv.layer().nonces = inner
            .kv
            .etcd
            .all(&[NONCES], &[NONCES + 1], PAGE, false)?
            .into_iter()
            .collect();
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
            drop(inner.queue(ops, None));
            inner.flush()?;
        }
        tables::migrate(&inner.kv, &mut |ops| {
            drop(inner.queue(ops, None));
            inner.flush()
        })?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("mandate-etcd-flush".into())
                .spawn(move || {
                    let mut seal_again_at: Option<Instant> = None;
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(FLUSH_EVERY)
                    {
                        if !inner.kv.layer().queue.is_empty()
                            && let Err(e) = inner.flush()
                        {
                            tracing::warn!(error = %e, "background flush to etcd failed");
                            continue;
                        }
                        if inner.kv.layer().failing.is_some()
                            || seal_again_at.is_some_and(|at| Instant::now() < at)
                        {
                            continue;
                        }
                        seal_again_at = None;
                        if let Err(e) = inner.seal_due() {
                            // A tail that does not seal (a broken chain) is tried again
                            // a minute later, not on every tick.
                            tracing::warn!(error = %e, "sealing audit records in etcd failed");
                            seal_again_at = Some(Instant::now() + SEAL_RETRY);
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

    /// Takes the commit lock, once the store takes changes: a commit plans and queues under
    /// it.
    fn begin_commit(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        let guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.check_open()?;
        Ok(guard)
    }

    /// Queues `ops` (which move the audit head to `head`, if given) and lays them over
    /// etcd for every read.
    fn queue(&self, ops: Ops, head: Option<Vec<u8>>) -> std::sync::MutexGuard<'_, Layer> {
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
        layer
    }

    fn commit(&self, change: Change) -> Result<Committed> {
        tables::check_audited(&change)?;
        let _guard = self.begin_commit()?;
        let mut ops = Ops::default();
        let (committed, raw, last) = self.plan_commit(change, &mut ops)?;
        self.queue(ops, Some(raw)).head = last;
        Ok(committed)
    }

    /// Plans `change` and its audit records into `ops` (the caller holds the commit lock);
    /// returns what it commits, the audit head's new value and the head.
    fn plan_commit(
        &self,
        change: Change,
        ops: &mut Ops,
    ) -> Result<(Committed, Vec<u8>, (u64, String))> {
        let mut committed = tables::plan(&self.kv, &change, ops)?;
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
        let raw = tables::put_audit_head(ops, last.0, &last.1)?;
        Ok((committed, raw, last))
    }

    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        let stats = {
            let _guard = self.begin_commit()?;
            let mut ops = Ops::default();
            let stats = tables::plan_gc(&self.kv, now_ms, history_before_ms, &mut ops)?;
            if !ops.is_empty() {
                drop(self.queue(ops, None));
            }
            stats
        };
        self.flush()?;
        Ok(stats)
    }
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
            drop(self.inner.queue(stale, None));
        }
        Ok(due)
    }

    fn children_with_expiry_of(
        &self,
        links: &[(mandate_core::TaskId, mandate_core::LinkId)],
    ) -> Result<Vec<Vec<crate::Child>>> {
        let prefixes: Vec<Vec<u8>> = links
            .iter()
            .map(|(task, id)| tables::children_prefix(task, id))
            .collect();
        Ok(self
            .inner
            .kv
            .scan_prefixes(&prefixes)?
            .into_iter()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|(k, v)| tables::tree_entry(k, v))
                    .map(|(child, _, expiry)| (child, expiry))
                    .collect()
            })
            .collect())
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.audit_after_sealed(after, limit)
    }

    fn audit_head(&self) -> Result<(u64, String)> {
        Ok(self.inner.kv.layer().head.clone())
    }

    fn audit_start(&self) -> Result<(u64, String)> {
        Ok(self
            .inner
            .kv
            .layer()
            .start
            .clone()
            .unwrap_or_else(|| (0, GENESIS_HASH.to_owned())))
    }

    fn audit_prunable(&self, before: u64) -> Result<Option<crate::AuditPrune>> {
        self.inner.prunable(before)
    }

    fn prune_audit(&self, through: u64, change: Change) -> Result<Committed> {
        tables::check_audited(&change)?;
        self.inner.prune(through, change)
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
mod leader_tests;
#[cfg(test)]
mod seal_tests;
