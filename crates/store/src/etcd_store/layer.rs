//! The pending layer: changes committed and not yet shipped, laid over etcd for every read;
//! the read cache; the nonces held whole; and values stored in parts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::client::Etcd;
use super::{NONCES, PAGE};
use crate::kv::{Kv, Ops, Visit, key};
use crate::{Result, StoreError};

/// One change waiting to be shipped.
pub(super) struct Pending {
    pub(super) no: u64,
    pub(super) ops: Arc<Ops>,
    /// Operations and bytes it takes in a transaction.
    pub(super) size: (usize, usize),
    /// The audit head after it, as stored, if it moved the head.
    pub(super) head: Option<Vec<u8>>,
}

/// What this store has committed and not yet shipped, laid over etcd.
#[derive(Default)]
pub(super) struct Layer {
    pub(super) queue: VecDeque<Pending>,
    /// Every key the queue writes, with the number of the last change writing it.
    pub(super) overlay: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    pub(super) next: u64,
    /// The audit head including the queue.
    pub(super) head: (u64, String),
    /// The audit head as etcd holds it (`None`: no change ever wrote one).
    pub(super) shipped_head: Option<Vec<u8>>,
    /// Why the last flush failed, while it keeps failing.
    pub(super) failing: Option<String>,
    /// Set when another writer moved the audit head: nothing more is taken.
    pub(super) conflict: Option<String>,
    /// Values read from etcd or shipped to it (see [`ReadCache`]).
    pub(super) cache: ReadCache,
    /// Every request nonce etcd holds (`n`), with its value: loaded at open and kept by
    /// every shipped write, so that the replay check of each signed request is answered
    /// here (the table is small: nonces live for the request window until collected).
    pub(super) nonces: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    /// The sealed segments of the audit log (first and last sequence), in order
    /// (`seal.rs`).
    pub(super) sealed: Vec<(u64, u64)>,
    /// Where the log begins after a prune: the last removed record and its hash
    /// (`None`: nothing was pruned).
    pub(super) start: Option<(u64, String)>,
}

/// Values (and absences) of keys as etcd holds them, so that reads of agents, tasks and
/// links this coordinator wrote or read recently cost no round trip. Coherent because
/// this coordinator is etcd's only writer (a second writer is caught by the audit head's
/// compare, and the store then stops): every shipped write goes through it. Two
/// generations, each up to half the byte budget: a full one becomes the old one, entries
/// found in the old one move back; values over [`MAX_CACHED`] are not kept.
#[derive(Default)]
pub(super) struct ReadCache {
    pub(super) current: std::collections::HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    pub(super) old: std::collections::HashMap<Vec<u8>, Option<Arc<[u8]>>>,
    pub(super) bytes: usize,
    pub(super) budget: usize,
    /// Bumped when a generation is dropped: a read that started before may not insert.
    pub(super) rotations: u64,
}

/// The largest value the read cache keeps.
pub(super) const MAX_CACHED: usize = 64 << 10;

impl ReadCache {
    pub(super) fn get(&mut self, k: &[u8]) -> Option<Option<Vec<u8>>> {
        if let Some(v) = self.current.get(k) {
            return Some(v.as_deref().map(<[u8]>::to_vec));
        }
        let (k, v) = self.old.remove_entry(k)?;
        let out = v.as_deref().map(<[u8]>::to_vec);
        self.insert(k, v);
        Some(out)
    }

    pub(super) fn contains(&self, k: &[u8]) -> bool {
        self.current.contains_key(k) || self.old.contains_key(k)
    }

    /// Records `k` as etcd now holds it (`None`: absent). Audit records (`q`), read in
    /// order by followers and exports rather than by key, are not kept.
    pub(super) fn put(&mut self, k: &[u8], v: Option<&[u8]>) {
        if v.is_some_and(|v| v.len() > MAX_CACHED) || self.budget == 0 || k.first() == Some(&b'q') {
            self.forget(k);
            return;
        }
        self.old.remove(k);
        self.insert(k.to_vec(), v.map(Arc::from));
    }

    pub(super) fn insert(&mut self, k: Vec<u8>, v: Option<Arc<[u8]>>) {
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

    pub(super) fn forget(&mut self, k: &[u8]) {
        self.old.remove(k);
        if let Some(old) = self.current.remove(k) {
            self.bytes -= k.len() + old.map_or(0, |v| v.len()) + 64;
        }
    }
}

/// etcd under the pending layer: what every read of this store goes through.
pub(crate) struct EtcdKv {
    pub(super) etcd: Etcd,
    pub(super) layer: Mutex<Layer>,
}

impl EtcdKv {
    pub(super) fn layer(&self) -> std::sync::MutexGuard<'_, Layer> {
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

/// Values larger than this are stored in parts (etcd takes at most 1.5 MiB a request).
pub(super) const SPILL_OVER: usize = 512 << 10;
/// The value left under a key whose value is stored in parts, followed by the number of
/// parts (4, big endian). No table value starts with 0xFF.
pub(super) const SPILLED: &[u8] = b"\xffMANDSPL";

/// Where the parts of `k`'s value live: `S`, the first 16 bytes of SHA-256 of `k`, and the
/// part (4, big endian).
pub(super) fn spill_prefix(k: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    key(b'S', &[&sha2::Sha256::digest(k)[..16]])
}

/// The key of part `i` of a value stored under `prefix` ([`spill_prefix`]).
fn part_key(prefix: &[u8], i: u32) -> Vec<u8> {
    key(b'S', &[&prefix[1..], &i.to_be_bytes()])
}

/// `ops` as etcd stores them: a value over [`SPILL_OVER`] (in practice the audit record
/// of a cascade naming tens of thousands of links) becomes a marker with the number of
/// parts, and the parts under [`spill_prefix`]. Parts are only ever written with their
/// key's value (audit records, which carry them, are never removed one by one).
pub(super) fn spill(ops: Ops) -> Ops {
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
                    out.put(part_key(&prefix, i), part);
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
    pub(super) fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<Vec<Vec<crate::kv::Entry>>> {
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

    /// The keys of the parts of `k`'s value, if it is stored in parts, as this store sees
    /// it (the pending layer, then etcd): removing `k` must remove them too.
    pub(super) fn part_keys(&self, k: &[u8]) -> Result<Vec<Vec<u8>>> {
        let pending = self
            .layer()
            .overlay
            .get(k)
            .map(|(_, v)| v.as_ref().map(Vec::len));
        let count = match pending {
            Some(len) => len
                .filter(|&n| n > SPILL_OVER)
                .map_or(0, |n| n.div_ceil(SPILL_OVER)),
            None => self
                .etcd
                .get(k)?
                .and_then(|v| {
                    v.strip_prefix(SPILLED)
                        .and_then(|c| <[u8; 4]>::try_from(c).ok())
                })
                .map_or(0, |c| u32::from_be_bytes(c) as usize),
        };
        let prefix = spill_prefix(k);
        Ok((0..u32::try_from(count).unwrap_or(u32::MAX))
            .map(|i| part_key(&prefix, i))
            .collect())
    }

    /// `v` as stored under `k`, with its parts put back together if it was spilled.
    pub(super) fn unspill(&self, k: &[u8], v: Vec<u8>) -> Result<Vec<u8>> {
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
