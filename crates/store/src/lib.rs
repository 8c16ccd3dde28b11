//! Mandate's state: agents, tasks, the delegation tree, revocations with a monotonically
//! increasing epoch, request nonces, and the hash-chained audit log.
//!
//! [`Store`] is the boundary; [`SledStore`] is the embedded implementation. No sled type
//! crosses the trait, so a replicated backend can replace it.
//!
//! Every state change goes through [`Store::commit`] as one [`Change`]: its records,
//! revocations, nonces and audit events are applied atomically, or not at all. A commit is
//! visible at once and durable after the next [`Store::flush`]; the server acknowledges a
//! change only after a flush that covers it (and groups concurrent changes into one flush).

#![forbid(unsafe_code)]

mod audit;
mod checkpoint;
mod compact;
#[cfg(test)]
mod conformance;
mod etcd_store;
mod implied;
mod journal;
mod kv;
mod records;
mod segments;
mod sled_store;
mod tables;
#[cfg(feature = "tamper")]
pub mod tamper;

use mandate_core::{LinkId, TaskId};

pub use audit::{
    AuditFilter, AuditVerification, ChainCheck, GENESIS_HASH, pruned_event, query_audit,
    verify_audit,
};
pub use checkpoint::{AuditCheckpoint, CHECKPOINT_FORMAT, CheckpointError};
pub use etcd_store::{EtcdConfig, EtcdLeadership, EtcdStore};
pub use records::{
    AgentRecord, AgentStatus, ApprovalRecord, ApprovalState, AuditAction, AuditEvent, AuditRecord,
    CoordinatorKeyRecord, CoordinatorKeys, LinkRecord, NewRevocation, RevocationRecord, Severity,
    TaskRecord, TaskState, Verdict, audit_hash, json_line,
};
pub use sled_store::{AuditSealing, DEFAULT_CACHE_BYTES, DEFAULT_REWRITE_FLOOR, SledStore};

/// A failed store operation. The change it belonged to did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O error, corruption, disk full).
    #[error("storage failure: {0}")]
    Backend(String),
    /// A stored record does not decode.
    #[error("stored record `{key}` is corrupt: {why}")]
    Corrupt {
        /// The record's key, printable.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A record to insert already exists.
    #[error("{what} `{id}` already exists")]
    AlreadyExists {
        /// What kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Another writer changed the state this change was decided on (a shared, networked
    /// store guards each commit on the audit head). Nothing was written; the caller may
    /// decide again and retry. The embedded store, with one writer, never returns it.
    #[error("another writer committed first: {0}")]
    Conflict(String),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A child in the delegation tree and its expiry.
pub type Child = (LinkId, u64);

/// A link of a task's tree: its id, its parent (`None` for a root) and its expiry.
pub type TreeLink = (LinkId, Option<LinkId>, u64);

/// What the uses of a use-limited link are counted against: a task's roots share one
/// counter (a renewal is the same grant, not fresh uses), a delegation has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UseCounter {
    /// Every root link of a task.
    Task(TaskId),
    /// One delegated link.
    Link(LinkId),
}

/// One atomic state change: records to write, links to revoke, nonces to remember, and the
/// audit events that describe it. Applied entirely or not at all.
#[derive(Clone, Debug, Default)]
pub struct Change {
    /// Agents to insert or replace.
    pub agents: Vec<AgentRecord>,
    /// Tasks to insert or replace.
    pub tasks: Vec<TaskRecord>,
    /// Links to insert (with their tree and holder/issuer indexes). Must not exist yet.
    pub links: Vec<LinkRecord>,
    /// Links to revoke. Already revoked ones are skipped. All get one new epoch.
    pub revocations: Vec<NewRevocation>,
    /// Request nonces to remember until their expiry (Unix ms).
    pub nonces: Vec<([u8; 16], u64)>,
    /// Approval requests to insert or replace.
    pub approvals: Vec<ApprovalRecord>,
    /// The hash of the policy set now in force, to record (set by reloads).
    pub policy_hash: Option<String>,
    /// The files of that set, (name, Cedar text), to record with its hash: what another
    /// coordinator of the service loads when it is elected.
    pub policy_files: Option<Vec<(String, String)>>,
    /// The coordinator keys of the service, to record in place of the set before (its
    /// version higher).
    pub coordinator_keys: Option<CoordinatorKeys>,
    /// What happened, for the audit log. A change with no audit event is refused.
    pub audit: Vec<AuditEvent>,
    /// Use counters of use-limited links to set: (counter, uses so far).
    pub uses: Vec<(UseCounter, u32)>,
}

/// What a commit assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// The revocation epoch of the change, if it revoked anything.
    pub epoch: Option<u64>,
    /// Links the change actually revoked (skipping ones already revoked).
    pub revoked: Vec<LinkId>,
    /// Sequence numbers of the audit records written.
    pub audit_seqs: Vec<u64>,
}

/// What pruning the audit log removes: whole sealed segments at its start
/// ([`Store::audit_prunable`], [`Store::prune_audit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPrune {
    /// The first record removed (the log's first record before the prune).
    pub first: u64,
    /// The last record removed: the last of a sealed segment.
    pub last: u64,
    /// That record's hash: the log is anchored on it afterwards.
    pub last_hash: String,
    /// How many sealed segments go.
    pub segments: usize,
}

impl AuditPrune {
    /// The refusal of a prune through a record that does not end a sealed segment.
    pub(crate) fn not_a_segment_end(through: u64) -> StoreError {
        StoreError::Backend(format!(
            "record {through} does not end a sealed segment: only whole segments are pruned"
        ))
    }
}

/// Counts from a garbage collection pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Expired revocations removed.
    pub revocations: usize,
    /// Expired nonces removed.
    pub nonces: usize,
    /// Links removed (expired before the history cutoff), with their index entries.
    pub links: usize,
    /// Tasks removed (deadline before the history cutoff), with their approval requests.
    pub tasks: usize,
}

/// Bytes a store keeps on this machine's disk, by part (`None`: the part is not on this
/// machine, as with etcd, whose members report their own size).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// The live state: sled's files. It grows with sled's amplification as well as with
    /// live state (BENCHMARKS.md, "Soak"); `mandate compact-store` gives that back.
    pub state: Option<u64>,
    /// The audit log: sealed segments and the journal.
    pub audit: Option<u64>,
}

/// Mandate's state. Implementations must make [`Store::commit`] atomic and
/// [`Store::flush`] durable (everything committed before it survives a crash).
///
/// # The contract a backend keeps
///
/// The embedded backend (sled) is one process writing one local tree; a networked backend
/// (etcd, with several coordinators) must keep the same contract without sled's luxuries:
///
/// - **Atomic for every reader, whatever the size.** A [`Change`] can hold 100,000
///   revocations (a cascade) or a whole drift pass. A backend whose transactions are
///   bounded (etcd: 128 operations, 1.5 MiB) may split it, but readers of this trait, in
///   this process or another, must see all of it or none: stage what no reader can see
///   yet (records under a staging key, implied revocations, index entries), then publish
///   in one final transaction the parts that make the change visible (the new epoch with
///   the cut revocations, and the audit records). A crash between the two leaves staged
///   data that the next start discards or completes; it never leaves half a change
///   visible.
/// - **One history.** Epochs and audit sequence numbers are assigned by the store inside
///   the commit, each exactly once, in order. A shared backend guards the final
///   transaction on the audit head it read, and returns [`StoreError::Conflict`] when
///   another writer moved it: the audit hash chain never forks, and the caller decides
///   again.
/// - **No open iterators.** Every listing is a bounded page (`after` exclusive, `limit`)
///   or a complete answer for one key (a task's links, a link's children); callers never
///   hold a cursor across calls, and nothing depends on an order a method does not
///   promise.
/// - **Durable before answered.** [`Store::flush`] covers every commit that returned
///   before it was called.
pub trait Store: Send + Sync + 'static {
    /// Applies `change` atomically: every record, index, revocation, nonce and audit record,
    /// or none of them.
    fn commit(&self, change: Change) -> Result<Committed>;
    /// Makes every change committed so far durable.
    fn flush(&self) -> Result<()>;

    /// One agent.
    fn agent(&self, id: &str) -> Result<Option<AgentRecord>>;
    /// Agents in id order, after `after` (exclusive).
    fn agents(&self, after: Option<&str>, limit: usize) -> Result<Vec<AgentRecord>>;
    /// One task.
    fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>>;
    /// Tasks in id order, after `after` (exclusive).
    fn tasks(&self, after: Option<&TaskId>, limit: usize) -> Result<Vec<TaskRecord>>;
    /// The approval request of a task.
    fn approval(&self, task: &TaskId) -> Result<Option<ApprovalRecord>>;
    /// Approval requests in task id order, after `after` (exclusive).
    fn approvals(&self, after: Option<&TaskId>, limit: usize) -> Result<Vec<ApprovalRecord>>;
    /// Pending approval requests whose expiry is at or before `now_ms`, oldest expiry first,
    /// at most `limit`: from an expiry index, never a pass over every request.
    fn approvals_due(&self, now_ms: u64, limit: usize) -> Result<Vec<TaskId>>;
    /// How many approval requests of `requester` are pending and not past their expiry at
    /// `now_ms`, from an index (at most `cap` are counted).
    fn pending_approvals_of(&self, requester: &str, now_ms: u64, cap: usize) -> Result<usize>;
    /// One link.
    fn link(&self, id: &LinkId) -> Result<Option<LinkRecord>>;
    /// Whether each of `ids` is a stored link, answered together (a networked backend
    /// asks once for all of them).
    fn links_exist(&self, ids: &[LinkId]) -> Result<Vec<bool>>;
    /// Direct children of a link of `task` in the delegation tree (a child belongs to its
    /// parent's task).
    fn children(&self, task: &TaskId, id: &LinkId) -> Result<Vec<LinkId>>;
    /// Direct children of a link of `task` with their expiry, read from the tree index
    /// alone (no link record is read).
    fn children_with_expiry(&self, task: &TaskId, id: &LinkId) -> Result<Vec<Child>>;
    /// [`Store::children_with_expiry`] of each of `links` (task, link), answered together
    /// (a networked backend asks once for many; a cascade walks a tree level by level).
    fn children_with_expiry_of(&self, links: &[(TaskId, LinkId)]) -> Result<Vec<Vec<Child>>> {
        links
            .iter()
            .map(|(task, id)| self.children_with_expiry(task, id))
            .collect()
    }
    /// Every link of a task, in no particular order.
    fn task_links(&self, task: &TaskId) -> Result<Vec<LinkRecord>>;
    /// Every link of a task with its parent (`None` for a root) and expiry, from the tree
    /// index alone, in no particular order: the whole tree in one read.
    fn task_tree(&self, task: &TaskId) -> Result<Vec<TreeLink>>;
    /// How many links a task has, from the index alone.
    fn task_link_count(&self, task: &TaskId) -> Result<usize>;
    /// The root links of a task (its first grant and every renewal), from the index alone.
    fn task_roots(&self, task: &TaskId) -> Result<Vec<LinkId>>;
    /// Ids of every link an agent holds (the links it issued are their children).
    fn agent_links(&self, agent: &str) -> Result<Vec<LinkId>>;
    /// The revocation of a link cut by a change (not implied), if revoked.
    fn revocation(&self, id: &LinkId) -> Result<Option<RevocationRecord>>;
    /// The implied revocations (see [`NewRevocation::implied`]) of the change at `epoch` in
    /// `task`: they are stored together, not one record per link.
    fn implied_revocations(&self, epoch: u64, task: &TaskId) -> Result<Vec<RevocationRecord>>;
    /// Every implied revocation still stored.
    fn all_implied_revocations(&self) -> Result<Vec<RevocationRecord>>;
    /// Revocations of cut links (not implied) with an epoch above `epoch`, in epoch order.
    fn revocations_after(&self, epoch: u64) -> Result<Vec<RevocationRecord>>;
    /// How many allowed uses a use-limited link (or task root) has had.
    fn uses(&self, counter: &UseCounter) -> Result<u32>;
    /// The hash of the policy set last recorded by a commit, if any.
    fn policy_hash(&self) -> Result<Option<String>>;
    /// The files of the policy set last recorded with its files, if any.
    fn policy_files(&self) -> Result<Option<Vec<(String, String)>>>;
    /// The coordinator keys last recorded, if any.
    fn coordinator_keys(&self) -> Result<Option<CoordinatorKeys>>;
    /// The current revocation epoch (0 before the first revocation).
    fn epoch(&self) -> Result<u64>;
    /// When a remembered request nonce expires, if it is remembered.
    fn nonce(&self, nonce: &[u8; 16]) -> Result<Option<u64>>;
    /// Audit records with a sequence number above `after`, in order, at most `limit`.
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Sequence number and hash of the last audit record (0 and the genesis hash when
    /// the log is empty).
    fn audit_head(&self) -> Result<(u64, String)>;
    /// Removes nonces past their expiry and implied revocations whose links all expired
    /// before `now_ms`; and links that expired, and tasks whose deadline passed, before
    /// `history_before_ms` (the audit log keeps their history), with the revocations that
    /// cut those links.
    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats>;
    /// What the store keeps on this machine's disk, for the metrics (none by default).
    fn disk_usage(&self) -> Result<DiskUsage> {
        Ok(DiskUsage::default())
    }
    /// Where the log begins: the sequence number and hash of the last record removed by a
    /// prune (0 and the genesis hash when none was).
    fn audit_start(&self) -> Result<(u64, String)> {
        Ok((0, GENESIS_HASH.to_owned()))
    }
    /// What a prune of the sealed segments that end before record `before` would remove
    /// (`None`: no sealed segment ends before it).
    fn audit_prunable(&self, _before: u64) -> Result<Option<AuditPrune>> {
        Ok(None)
    }
    /// Removes the sealed segments through record `through` (which must end one: only
    /// whole segments go) and commits `change`, which holds the `audit.pruned` record of
    /// what goes. The record is durable before anything is removed (or, where the backend
    /// can, in the same atomic change); afterwards the log begins at `through + 1`,
    /// anchored on its hash ([`Store::audit_start`]).
    fn prune_audit(&self, through: u64, _change: Change) -> Result<Committed> {
        Err(StoreError::Backend(format!(
            "this store keeps no sealed segments: nothing through record {through} can be pruned"
        )))
    }
}
