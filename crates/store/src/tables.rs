//! Mandate's tables in an ordered key-value map ([`Kv`]), the same for every backend: one
//! keyspace, keys prefixed by record kind. A change is planned here into [`Ops`] that the
//! backend applies atomically, with the audit records it keeps its own way.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `a` | agent id | [`AgentRecord`] |
//! | `t` | task id (16) | [`TaskRecord`] (binary, `compact.rs`; JSON in stores written before) |
//! | `l` | link id (16) | [`LinkRecord`] (binary, as `t`) |
//! | `k` | task id (16), then `0` and the link id (16) for a root, or `1`, the parent's id (16) and the link id (16) | the link's expiry (8, big endian): links of a task, its roots, and the delegation tree (a link's children are one prefix) |
//! | `h` | agent id, 0, link id (16) | empty: links an agent holds (the links it issued are their children: an issuer holds the parent) |
//! | `x` | expiry (8, big endian), link id (16) | empty: links by expiry, for GC |
//! | `y` | deadline (8, big endian), task id (16) | empty: tasks by deadline, for GC |
//! | `p` | task id (16) | [`ApprovalRecord`] |
//! | `w` | expiry (8, big endian), task id (16) | empty: pending approval requests by expiry |
//! | `u` | requester, 0, expiry (8, big endian), task id (16) | empty: pending approval requests by requester |
//! | `r` | link id (16) | [`RevocationRecord`] (binary, as `t`) |
//! | `e` | epoch (8, big endian), link id (16) | empty: revocations by epoch |
//! | `v` | epoch (8, big endian), task id (16), part (4, big endian; absent in stores written before) | the implied revocations of that change in that task, up to 16,384 a value (`implied.rs`) |
//! | `n` | nonce (16) | expiry (8, big endian) |
//! | `g` | `t` task id (16) or `l` link id (16) | uses so far (4, big endian): use-limited roots (per task) and delegations |
//! | `q` | sequence (8, big endian) | [`AuditRecord`]: the audit log's tail where the backend keeps it in the map (etcd; sled keeps it in a journal file and has `q` only from before) |
//! | `m` | name | `epoch`, `audit` (sequence and hash of the last audit record of a change that wrote state), `policy` (hash of the policy set in force), `approval_index` (present once `w` and `u` were built for a store written before them), `layout` (8, big endian: the index layout, `layout.rs`) |

use crate::compact::Value;
use crate::kv::{Kv, Ops, Visit, be, key, prefix_end, read_be};
use crate::records::{
    AgentRecord, ApprovalRecord, ApprovalState, AuditRecord, CoordinatorKeys, LinkRecord,
    RevocationRecord, TaskRecord,
};
use crate::{Change, Child, Committed, GcStats, Result, StoreError, TreeLink, UseCounter, implied};
use mandate_core::{LinkId, TaskId};

/// Implied revocations per stored value (52 bytes each: 832 KiB a value).
const IMPLIED_PER_VALUE: usize = 16_384;

/// The key of the current revocation epoch.
pub(crate) const EPOCH: &[u8] = b"mepoch";
/// The key of the audit log's head as of the last change that wrote state.
pub(crate) const AUDIT_HEAD: &[u8] = b"maudit";
/// The key of the policy hash in force.
pub(crate) const POLICY: &[u8] = b"mpolicy";
/// The key of the policy set's files (JSON: [[name, text], ...]).
pub(crate) const POLICY_FILES: &[u8] = b"mpolicy_files";
/// The key of the coordinator keys (JSON [`CoordinatorKeys`]).
pub(crate) const COORDINATOR_KEYS: &[u8] = b"mcoordinator_keys";
/// Present once the approval indexes were built.
pub(crate) const APPROVAL_INDEX: &[u8] = b"mapproval_index";
/// The index layout the store is written in (absent: layout 1; `layout.rs`).
pub(crate) const LAYOUT_KEY: &[u8] = b"mlayout";

/// The last audit record's sequence and hash.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

/// The key of audit record `seq` in a backend that keeps the log's tail in its map.
pub(crate) fn audit_key(seq: u64) -> Vec<u8> {
    key(b'q', &[&be(seq)])
}

pub(crate) fn use_key(counter: &UseCounter) -> Vec<u8> {
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

fn index_approval(ops: &mut Ops, a: &ApprovalRecord) {
    if a.state == ApprovalState::Pending {
        for k in approval_keys(a) {
            ops.put(k, []);
        }
    }
}

fn unindex_approval(ops: &mut Ops, a: &ApprovalRecord) {
    for k in approval_keys(a) {
        ops.delete(k);
    }
}

/// The byte after the task in a tree index key: a root, or a child (then its parent).
/// A tag, not a sentinel parent id: a delegator chooses its link's id, any 16 bytes.
const ROOT_TAG: u8 = 0;
const CHILD_TAG: u8 = 1;
/// The lengths of a root's and a child's tree index keys.
const ROOT_KEY_LEN: usize = 34;
const CHILD_KEY_LEN: usize = 50;

/// A link's entry in the tree index: under its task, as a root or under its parent.
pub(crate) fn tree_key(task: &TaskId, parent: Option<&LinkId>, id: &LinkId) -> Vec<u8> {
    match parent {
        None => key(b'k', &[task.as_bytes(), &[ROOT_TAG], id.as_bytes()]),
        Some(p) => key(
            b'k',
            &[task.as_bytes(), &[CHILD_TAG], p.as_bytes(), id.as_bytes()],
        ),
    }
}

/// The link of a tree index key, root or child.
fn tree_link_id(k: &[u8]) -> Option<LinkId> {
    match (k.get(17), k.len()) {
        (Some(&ROOT_TAG), ROOT_KEY_LEN) => link_id_at(k, 18),
        (Some(&CHILD_TAG), CHILD_KEY_LEN) => link_id_at(k, 34),
        _ => None,
    }
}

fn link_id_at(k: &[u8], at: usize) -> Option<LinkId> {
    k.get(at..at + 16).and_then(LinkId::from_slice)
}

/// Whether a change writes state (anything but audit records).
pub(crate) fn writes_state(change: &Change) -> bool {
    !(change.agents.is_empty()
        && change.tasks.is_empty()
        && change.links.is_empty()
        && change.revocations.is_empty()
        && change.nonces.is_empty()
        && change.approvals.is_empty()
        && change.policy_hash.is_none()
        && change.policy_files.is_none()
        && change.coordinator_keys.is_none()
        && change.uses.is_empty())
}

/// Refuses a change that would leave no audit record.
pub(crate) fn check_audited(change: &Change) -> Result<()> {
    if change.audit.is_empty() {
        return Err(StoreError::Backend(
            "a change without an audit record is refused".into(),
        ));
    }
    Ok(())
}

/// Plans every write of `change` but its audit records into `ops`, reading the state it
/// replaces from `kv`; returns the epoch and revocations it assigned. Callers hold their
/// commit lock from here until `ops` are applied.
pub(crate) fn plan<K: Kv + ?Sized>(kv: &K, change: &Change, ops: &mut Ops) -> Result<Committed> {
    let mut committed = Committed::default();
    for a in &change.agents {
        ops.put(key(b'a', &[a.id.as_bytes()]), Value::to_value(a)?);
    }
    for t in &change.tasks {
        // The deadline index moves with the deadline (an approved task gets a new one).
        let old: Option<TaskRecord> = get(kv, &key(b't', &[t.id.as_bytes()]))?;
        if let Some(old) = old.filter(|o| o.deadline_ms != t.deadline_ms) {
            ops.delete(key(b'y', &[&be(old.deadline_ms), old.id.as_bytes()]));
        }
        ops.put(key(b'y', &[&be(t.deadline_ms), t.id.as_bytes()]), []);
        ops.put(key(b't', &[t.id.as_bytes()]), Value::to_value(t)?);
    }
    for a in &change.approvals {
        // An unreadable old record cannot stop its replacement (its index entries, if
        // any, are dropped when the expiry pass meets them).
        match get::<ApprovalRecord, _>(kv, &key(b'p', &[a.task.as_bytes()])) {
            Ok(Some(old)) => unindex_approval(ops, &old),
            Ok(None) => {}
            Err(StoreError::Corrupt { key, why }) => {
                tracing::warn!(key, why, "replacing an unreadable approval request");
            }
            Err(e) => return Err(e),
        }
        index_approval(ops, a);
        ops.put(key(b'p', &[a.task.as_bytes()]), Value::to_value(a)?);
    }
    for (counter, n) in &change.uses {
        ops.put(use_key(counter), n.to_be_bytes());
    }
    let ids: Vec<LinkId> = change.links.iter().map(|l| l.id).collect();
    if let Some(i) = links_exist(kv, &ids)?.iter().position(|known| *known) {
        return Err(StoreError::AlreadyExists {
            what: "link",
            id: ids[i].to_string(),
        });
    }
    for l in &change.links {
        let id = l.id.as_bytes();
        ops.put(key(b'l', &[id]), Value::to_value(l)?);
        ops.put(
            tree_key(&l.task, l.parent.as_ref(), &l.id),
            be(l.expires_at_ms),
        );
        ops.put(key(b'x', &[&be(l.expires_at_ms), id]), []);
        // Only the holder: the issuer of a delegation holds its parent, so the links an
        // agent issued are the children of those it holds (and a root's issuer, the
        // coordinator, is not an agent).
        ops.put(key(b'h', &[l.holder.as_bytes(), &[0], id]), []);
    }

    let mut seen = std::collections::HashSet::new();
    // Implied revocations (descendants of a link cut in the same change) are not checked
    // against earlier ones one by one: the caller passes links not yet revoked, and a
    // repeat is harmless (readers keep one entry per link).
    let (implied, cut): (Vec<_>, Vec<_>) = change
        .revocations
        .iter()
        .filter(|r| seen.insert(r.link))
        .partition(|r| r.implied);
    let mut fresh = Vec::with_capacity(cut.len());
    for r in cut {
        if !kv.contains(&key(b'r', &[r.link.as_bytes()]))? {
            fresh.push(r);
        }
    }
    if !fresh.is_empty() || !implied.is_empty() {
        let epoch = epoch(kv)? + 1;
        let mut by_task: std::collections::BTreeMap<TaskId, Vec<&crate::NewRevocation>> =
            std::collections::BTreeMap::new();
        for r in &implied {
            by_task.entry(r.task).or_default().push(r);
        }
        for (task, revocations) in by_task {
            // In parts that fit any backend's value limit (etcd: 1.5 MiB a request).
            for (i, part) in (0u32..).zip(revocations.chunks(IMPLIED_PER_VALUE)) {
                ops.put(
                    key(b'v', &[&be(epoch), task.as_bytes(), &i.to_be_bytes()]),
                    implied::encode(epoch, part)?,
                );
            }
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
            ops.put(key(b'r', &[r.link.as_bytes()]), Value::to_value(&rec)?);
            ops.put(key(b'e', &[&be(epoch), r.link.as_bytes()]), []);
            committed.revoked.push(r.link);
        }
        ops.put(EPOCH, be(epoch));
        committed.epoch = Some(epoch);
    }

    if let Some(hash) = &change.policy_hash {
        ops.put(POLICY, hash.as_bytes());
    }
    if let Some(files) = &change.policy_files {
        ops.put(POLICY_FILES, Value::to_value(files)?);
    }
    if let Some(keys) = &change.coordinator_keys {
        ops.put(COORDINATOR_KEYS, Value::to_value(keys)?);
    }
    for (nonce, expiry) in &change.nonces {
        ops.put(key(b'n', &[nonce]), be(*expiry));
    }
    Ok(committed)
}

/// Plans the head of the audit log a change that wrote state moves to; returns the value
/// written.
pub(crate) fn put_audit_head(ops: &mut Ops, seq: u64, hash: &str) -> Result<Vec<u8>> {
    let value = Value::to_value(&AuditHead {
        seq,
        hash: hash.to_owned(),
    })?;
    ops.put(AUDIT_HEAD, value.clone());
    Ok(value)
}

/// The audit head the map holds, if any change that wrote state recorded one.
pub(crate) fn audit_head<K: Kv + ?Sized>(kv: &K) -> Result<Option<AuditHead>> {
    get(kv, AUDIT_HEAD)
}

/// Plans the removal of expired state into `ops`: nonces past their expiry, implied
/// revocations whose last entry expired before `now_ms`; links that expired, and tasks
/// whose deadline passed (with their approval requests), before `history_before_ms`, and
/// the revocations that cut those links (kept as long as the link, so its history says
/// when its authority ended: the access review's exposure report reads it).
pub(crate) fn plan_gc<K: Kv + ?Sized>(
    kv: &K,
    now_ms: u64,
    history_before_ms: u64,
    ops: &mut Ops,
) -> Result<GcStats> {
    let mut stats = GcStats::default();
    // Links expired before the cutoff, through the expiry index, with every index entry.
    let mut expired = Vec::new();
    kv.scan(b"x", &key(b'x', &[&be(history_before_ms)]), &mut |k, _| {
        expired.push(k.to_vec());
        Ok(true)
    })?;
    for k in expired {
        ops.delete(k.clone());
        let Some(id) = link_id_at(&k, 9) else {
            continue;
        };
        let Some(l) = get::<LinkRecord, _>(kv, &key(b'l', &[id.as_bytes()]))? else {
            continue;
        };
        let raw = id.as_bytes();
        ops.delete(key(b'l', &[raw]));
        ops.delete(key(b'g', &[b"l", raw]));
        ops.delete(tree_key(&l.task, l.parent.as_ref(), &id));
        ops.delete(key(b'h', &[l.holder.as_bytes(), &[0], raw]));
        stats.links += 1;
    }
    // Tasks (and their approval requests) whose deadline passed before the cutoff: no link
    // of a task outlives its deadline.
    let mut ended = Vec::new();
    kv.scan(b"y", &key(b'y', &[&be(history_before_ms)]), &mut |k, _| {
        ended.push(k.to_vec());
        Ok(true)
    })?;
    for k in ended {
        ops.delete(k.clone());
        let Some(raw) = k.get(9..25) else { continue };
        ops.delete(key(b't', &[raw]));
        ops.delete(key(b'g', &[b"t", raw]));
        match get::<ApprovalRecord, _>(kv, &key(b'p', &[raw])) {
            Ok(Some(a)) => unindex_approval(ops, &a),
            Ok(None) => {}
            Err(StoreError::Corrupt { key, why }) => {
                tracing::warn!(key, why, "collecting an unreadable approval request");
            }
            Err(e) => return Err(e),
        }
        ops.delete(key(b'p', &[raw]));
        stats.tasks += 1;
    }
    scan_prefix(kv, b"r", &mut |k, v| {
        // One unreadable record must not stop every later collection.
        match RevocationRecord::from_value(k, v) {
            Ok(rec) if rec.expires_at_ms < history_before_ms.min(now_ms) => {
                ops.delete(k.to_vec());
                ops.delete(key(b'e', &[&be(rec.epoch), rec.link.as_bytes()]));
                stats.revocations += 1;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable revocation record"),
        }
        Ok(true)
    })?;
    // The implied revocations of a change go when the last of them expires.
    scan_prefix(kv, b"v", &mut |k, v| {
        match implied::max_expiry(k, v) {
            Ok(last) if last < now_ms => {
                stats.revocations += implied::decode(k, v).map_or(0, |r| r.len());
                ops.delete(k.to_vec());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "skipping unreadable implied revocations"),
        }
        Ok(true)
    })?;
    scan_prefix(kv, b"n", &mut |k, v| {
        if read_be(v) < now_ms {
            ops.delete(k.to_vec());
            stats.nonces += 1;
        }
        Ok(true)
    })?;
    Ok(stats)
}

/// Plans the approval indexes of a store written before them, if they are missing.
pub(crate) fn plan_approval_index<K: Kv + ?Sized>(kv: &K) -> Result<Option<Ops>> {
    if kv.contains(APPROVAL_INDEX)? {
        return Ok(None);
    }
    let mut ops = Ops::default();
    scan_prefix(kv, b"p", &mut |k, v| {
        match ApprovalRecord::from_value(k, v) {
            Ok(a) => index_approval(&mut ops, &a),
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable approval request"),
        }
        Ok(true)
    })?;
    ops.put(APPROVAL_INDEX, []);
    Ok(Some(ops))
}

/// A record.
pub(crate) fn get<T: Value, K: Kv + ?Sized>(kv: &K, k: &[u8]) -> Result<Option<T>> {
    match kv.get(k)? {
        Some(v) => T::from_value(k, v.as_ref()).map(Some),
        None => Ok(None),
    }
}

/// Every entry whose key starts with `prefix`.
pub(crate) fn scan_prefix<K: Kv + ?Sized>(kv: &K, prefix: &[u8], f: &mut Visit<'_>) -> Result<()> {
    kv.scan(prefix, &prefix_end(prefix), f)
}

/// The keys that start with `prefix`.
fn keys_with_prefix<K: Kv + ?Sized>(kv: &K, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    scan_prefix(kv, prefix, &mut |k, _| {
        out.push(k.to_vec());
        Ok(true)
    })?;
    Ok(out)
}

/// Records of table `table`, after key part `after` (exclusive), at most `limit`.
fn page<T: Value, K: Kv + ?Sized>(
    kv: &K,
    table: u8,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<T>> {
    let start = match after {
        // The smallest key above `after` in the table.
        Some(a) => {
            let mut s = key(table, &[a]);
            s.push(0);
            s
        }
        None => vec![table],
    };
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut failed = None;
    kv.scan(&start, &[table + 1], &mut |k, v| {
        match T::from_value(k, v) {
            Ok(r) => out.push(r),
            Err(e) => failed = Some(e),
        }
        Ok(failed.is_none() && out.len() < limit)
    })?;
    failed.map_or(Ok(out), Err)
}

pub(crate) fn agent<K: Kv + ?Sized>(kv: &K, id: &str) -> Result<Option<AgentRecord>> {
    get(kv, &key(b'a', &[id.as_bytes()]))
}

pub(crate) fn agents<K: Kv + ?Sized>(
    kv: &K,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<AgentRecord>> {
    page(kv, b'a', after.map(str::as_bytes), limit)
}

pub(crate) fn task<K: Kv + ?Sized>(kv: &K, id: &TaskId) -> Result<Option<TaskRecord>> {
    get(kv, &key(b't', &[id.as_bytes()]))
}

pub(crate) fn tasks<K: Kv + ?Sized>(
    kv: &K,
    after: Option<&TaskId>,
    limit: usize,
) -> Result<Vec<TaskRecord>> {
    page(kv, b't', after.map(|t| &t.as_bytes()[..]), limit)
}

pub(crate) fn approval<K: Kv + ?Sized>(kv: &K, task: &TaskId) -> Result<Option<ApprovalRecord>> {
    get(kv, &key(b'p', &[task.as_bytes()]))
}

pub(crate) fn approvals<K: Kv + ?Sized>(
    kv: &K,
    after: Option<&TaskId>,
    limit: usize,
) -> Result<Vec<ApprovalRecord>> {
    page(kv, b'p', after.map(|t| &t.as_bytes()[..]), limit)
}

pub(crate) fn uses<K: Kv + ?Sized>(kv: &K, counter: &UseCounter) -> Result<u32> {
    Ok(kv
        .get(&use_key(counter))?
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map_or(0, u32::from_be_bytes))
}

/// Pending approval requests due at `now_ms`, oldest first, at most `limit`; index entries
/// that point at nothing pending are planned for removal into `stale`.
pub(crate) fn approvals_due<K: Kv + ?Sized>(
    kv: &K,
    now_ms: u64,
    limit: usize,
    stale: &mut Ops,
) -> Result<Vec<TaskId>> {
    let mut keys = Vec::new();
    if limit > 0 {
        kv.scan(
            b"w",
            &key(b'w', &[&be(now_ms.saturating_add(1))]),
            &mut |k, _| {
                keys.push(k.to_vec());
                Ok(keys.len() < limit)
            },
        )?;
    }
    let mut out = Vec::new();
    // Entries whose request is gone, unreadable or no longer pending (a store written by
    // another version, a corrupt record) are dropped as they are met, so they cannot fill
    // every pass.
    for k in keys {
        let Some(t) = k.get(9..25).and_then(TaskId::from_slice) else {
            stale.delete(k);
            continue;
        };
        match approval(kv, &t) {
            Ok(Some(a)) if a.state == ApprovalState::Pending => out.push(t),
            Ok(Some(a)) => {
                unindex_approval(stale, &a);
                stale.delete(k);
            }
            Ok(None) | Err(StoreError::Corrupt { .. }) => stale.delete(k),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub(crate) fn pending_approvals_of<K: Kv + ?Sized>(
    kv: &K,
    requester: &str,
    now_ms: u64,
    cap: usize,
) -> Result<usize> {
    // Entries sort by expiry after the requester: count those after `now_ms`.
    let prefix = key(b'u', &[requester.as_bytes(), &[0]]);
    let start = key(
        b'u',
        &[requester.as_bytes(), &[0], &be(now_ms.saturating_add(1))],
    );
    let mut n = 0;
    if cap > 0 {
        kv.scan(&start, &prefix_end(&prefix), &mut |_, _| {
            n += 1;
            Ok(n < cap)
        })?;
    }
    Ok(n)
}

pub(crate) fn link<K: Kv + ?Sized>(kv: &K, id: &LinkId) -> Result<Option<LinkRecord>> {
    get(kv, &key(b'l', &[id.as_bytes()]))
}

pub(crate) fn links_exist<K: Kv + ?Sized>(kv: &K, ids: &[LinkId]) -> Result<Vec<bool>> {
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(b'l', &[id.as_bytes()])).collect();
    kv.contains_all(&keys)
}

pub(crate) fn children<K: Kv + ?Sized>(kv: &K, task: &TaskId, id: &LinkId) -> Result<Vec<LinkId>> {
    Ok(keys_with_prefix(kv, &children_prefix(task, id))?
        .iter()
        .filter_map(|k| tree_link_id(k))
        .collect())
}

pub(crate) fn children_with_expiry<K: Kv + ?Sized>(
    kv: &K,
    task: &TaskId,
    id: &LinkId,
) -> Result<Vec<Child>> {
    let mut out = Vec::new();
    scan_prefix(kv, &children_prefix(task, id), &mut |k, v| {
        out.extend(tree_entry(k, v).map(|(child, _, expiry)| (child, expiry)));
        Ok(true)
    })?;
    Ok(out)
}

/// The prefix of a link's children in the tree index.
pub(crate) fn children_prefix(task: &TaskId, id: &LinkId) -> Vec<u8> {
    key(b'k', &[task.as_bytes(), &[CHILD_TAG], id.as_bytes()])
}

/// The link, its parent and its expiry of a tree index entry.
pub(crate) fn tree_entry(k: &[u8], v: &[u8]) -> Option<TreeLink> {
    let id = tree_link_id(k)?;
    let parent = match k.get(17) {
        Some(&CHILD_TAG) => Some(link_id_at(k, 18)?),
        _ => None,
    };
    let expiry = u64::from_be_bytes(<[u8; 8]>::try_from(v).ok()?);
    Some((id, parent, expiry))
}

pub(crate) fn task_links<K: Kv + ?Sized>(kv: &K, task: &TaskId) -> Result<Vec<LinkRecord>> {
    keys_with_prefix(kv, &key(b'k', &[task.as_bytes()]))?
        .iter()
        .filter_map(|k| tree_link_id(k))
        .filter_map(|id| link(kv, &id).transpose())
        .collect()
}

/// Every link of a task with its parent and expiry, from the tree index alone.
pub(crate) fn task_tree<K: Kv + ?Sized>(kv: &K, task: &TaskId) -> Result<Vec<TreeLink>> {
    let mut out = Vec::new();
    scan_prefix(kv, &key(b'k', &[task.as_bytes()]), &mut |k, v| {
        out.extend(tree_entry(k, v));
        Ok(true)
    })?;
    Ok(out)
}

pub(crate) fn task_link_count<K: Kv + ?Sized>(kv: &K, task: &TaskId) -> Result<usize> {
    let mut n = 0;
    scan_prefix(kv, &key(b'k', &[task.as_bytes()]), &mut |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

pub(crate) fn task_roots<K: Kv + ?Sized>(kv: &K, task: &TaskId) -> Result<Vec<LinkId>> {
    Ok(
        keys_with_prefix(kv, &key(b'k', &[task.as_bytes(), &[ROOT_TAG]]))?
            .iter()
            .filter_map(|k| tree_link_id(k))
            .collect(),
    )
}

pub(crate) fn agent_links<K: Kv + ?Sized>(kv: &K, agent: &str) -> Result<Vec<LinkId>> {
    let prefix = key(b'h', &[agent.as_bytes(), &[0]]);
    Ok(keys_with_prefix(kv, &prefix)?
        .iter()
        .filter_map(|k| link_id_at(k, prefix.len()))
        .collect())
}

pub(crate) fn revocation<K: Kv + ?Sized>(kv: &K, id: &LinkId) -> Result<Option<RevocationRecord>> {
    get(kv, &key(b'r', &[id.as_bytes()]))
}

pub(crate) fn implied_revocations<K: Kv + ?Sized>(
    kv: &K,
    epoch: u64,
    task: &TaskId,
) -> Result<Vec<RevocationRecord>> {
    let mut out = Vec::new();
    scan_prefix(
        kv,
        &key(b'v', &[&be(epoch), task.as_bytes()]),
        &mut |k, v| {
            out.extend(implied::decode(k, v)?);
            Ok(true)
        },
    )?;
    Ok(out)
}

pub(crate) fn all_implied_revocations<K: Kv + ?Sized>(kv: &K) -> Result<Vec<RevocationRecord>> {
    let mut out = Vec::new();
    scan_prefix(kv, b"v", &mut |k, v| {
        out.extend(implied::decode(k, v)?);
        Ok(true)
    })?;
    Ok(out)
}

pub(crate) fn revocations_after<K: Kv + ?Sized>(
    kv: &K,
    epoch: u64,
) -> Result<Vec<RevocationRecord>> {
    let mut ids = Vec::new();
    kv.scan(
        &key(b'e', &[&be(epoch.saturating_add(1))]),
        b"f",
        &mut |k, _| {
            ids.extend(link_id_at(k, 9));
            Ok(true)
        },
    )?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // Revocations garbage-collected after expiry leave no record behind.
        out.extend(revocation(kv, &id)?);
    }
    Ok(out)
}

pub(crate) fn policy_hash<K: Kv + ?Sized>(kv: &K) -> Result<Option<String>> {
    Ok(kv
        .get(POLICY)?
        .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned()))
}

pub(crate) fn policy_files<K: Kv + ?Sized>(kv: &K) -> Result<Option<Vec<(String, String)>>> {
    get(kv, POLICY_FILES)
}

pub(crate) fn coordinator_keys<K: Kv + ?Sized>(kv: &K) -> Result<Option<CoordinatorKeys>> {
    get(kv, COORDINATOR_KEYS)
}

pub(crate) fn epoch<K: Kv + ?Sized>(kv: &K) -> Result<u64> {
    Ok(kv.get(EPOCH)?.map_or(0, |v| read_be(v.as_ref())))
}

pub(crate) fn nonce<K: Kv + ?Sized>(kv: &K, nonce: &[u8; 16]) -> Result<Option<u64>> {
    Ok(kv.get(&key(b'n', &[nonce]))?.map(|v| read_be(v.as_ref())))
}

/// Audit records kept in the map (`q`) with a sequence number above `after`, in order,
/// at most `limit`.
pub(crate) fn audit_records<K: Kv + ?Sized>(
    kv: &K,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut failed = None;
    kv.scan(&audit_key(after.saturating_add(1)), b"r", &mut |k, v| {
        match AuditRecord::from_value(k, v) {
            Ok(r) => out.push(r),
            Err(e) => failed = Some(e),
        }
        Ok(failed.is_none() && out.len() < limit)
    })?;
    failed.map_or(Ok(out), Err)
}

mod layout;
mod reads;
pub(crate) use layout::migrate;
pub(crate) use reads::store_reads;
