//! Reading the audit log: filters, paged queries and integrity verification, over any
//! [`Store`].

use mandate_core::TaskId;

use crate::records::{AuditAction, AuditEvent, AuditRecord, Severity, audit_hash};
use crate::{AuditCheckpoint, AuditPrune, Result, Store};

/// The hash the first record's `prev_hash` holds.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Which audit records to return. `Default` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this task.
    pub task: Option<TaskId>,
    /// Only records where this agent acted or is named (`agent` or `holder` detail).
    pub agent: Option<String>,
    /// Only records naming this link (hex).
    pub link: Option<String>,
    /// Only actions starting with this.
    pub action_prefix: Option<String>,
    /// Only records at or after this time (Unix ms).
    pub since_ms: u64,
    /// Only records before this time (Unix ms).
    pub until_ms: Option<u64>,
    /// Only records of at least this severity.
    pub min_severity: Option<Severity>,
}

impl AuditFilter {
    /// Whether `r` matches.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let e = &r.event;
        self.task.is_none_or(|t| e.task == Some(t))
            && self.agent.as_ref().is_none_or(|a| {
                e.actor == *a
                    || e.detail.get("agent") == Some(a)
                    || e.detail.get("holder") == Some(a)
            })
            && self.link.as_ref().is_none_or(|l| e.links.contains(l))
            && self
                .action_prefix
                .as_ref()
                .is_none_or(|p| e.action.starts_with(p.as_str()))
            && e.time_ms >= self.since_ms
            && self.until_ms.is_none_or(|u| e.time_ms < u)
            && self.min_severity.is_none_or(|s| e.severity >= s)
    }
}

/// Records after `after_seq` matching `filter`, at most `limit`, and whether more records
/// remain after the last one returned.
pub fn query_audit(
    store: &dyn Store,
    filter: &AuditFilter,
    after_seq: u64,
    limit: usize,
) -> Result<(Vec<AuditRecord>, bool)> {
    let mut out = Vec::new();
    let mut cursor = after_seq;
    loop {
        let batch = store.audit_after(cursor, 1024)?;
        let Some(last) = batch.last() else {
            return Ok((out, false));
        };
        cursor = last.seq;
        for r in batch {
            if filter.matches(&r) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(r);
            }
        }
    }
}

/// The outcome of checking the hash chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    /// Records checked.
    pub checked: u64,
    /// The first broken record and what is wrong with it, if any.
    pub broken: Option<(u64, String)>,
    /// The head of the log as the store records it.
    pub head_seq: u64,
    /// Hash of the head record.
    pub head_hash: String,
}

impl AuditVerification {
    /// Whether the checked range is intact.
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks records one at a time, in order: sequence continuity, each record's link to the
/// one before and its hash. The live log ([`verify_audit`]) and exported files
/// (`mandate audit verify --export`) are checked by the same rules.
#[derive(Clone, Debug)]
pub struct ChainCheck {
    expected: u64,
    prev: String,
}

impl ChainCheck {
    /// Starts at record `from`, whose `prev_hash` must be `prev_hash` (the genesis hash for
    /// record 1).
    pub fn new(from: u64, prev_hash: String) -> ChainCheck {
        ChainCheck {
            expected: from.max(1),
            prev: prev_hash,
        }
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> u64 {
        self.expected
    }

    /// The hash of the last record accepted (or the starting `prev_hash`).
    pub fn last_hash(&self) -> &str {
        &self.prev
    }

    /// Accepts the next record, or says which record is broken and why.
    pub fn push(&mut self, r: &AuditRecord) -> std::result::Result<(), (u64, String)> {
        // Continuity first: a gap must be reported, not skipped.
        if r.seq != self.expected {
            return Err((self.expected, "record is missing".into()));
        }
        if r.prev_hash != self.prev {
            return Err((r.seq, "does not link to the previous record".into()));
        }
        if audit_hash(r.seq, &r.event, &r.prev_hash) != r.hash {
            return Err((r.seq, "content does not match its hash (edited)".into()));
        }
        self.prev.clone_from(&r.hash);
        self.expected += 1;
        Ok(())
    }
}

/// Recomputes the hash chain from `from` to `to` (inclusive; 0 means the head) and checks
/// sequence continuity, each record's hash and its link to the previous one. When the
/// range reaches the head, also checks the store's head marker (a truncated log fails).
pub fn verify_audit(store: &dyn Store, from: u64, to: u64) -> Result<AuditVerification> {
    let (head_seq, head_hash) = store.audit_head()?;
    // After a prune the log begins later, anchored on the hash of the last record removed
    // (which the `audit.pruned` record, signed, states).
    let (start, start_hash) = store.audit_start()?;
    let from = from.max(start + 1);
    let to = if to == 0 { head_seq } else { to.min(head_seq) };
    let mut v = AuditVerification {
        checked: 0,
        broken: None,
        head_seq,
        head_hash: head_hash.clone(),
    };
    let prev = if from == start + 1 {
        start_hash
    } else {
        match store.audit_after(from - 2, 1)?.into_iter().next() {
            Some(r) if r.seq == from - 1 => r.hash,
            _ => {
                v.broken = Some((from - 1, "record is missing".into()));
                return Ok(v);
            }
        }
    };
    let mut check = ChainCheck::new(from, prev);
    while check.next_seq() <= to {
        let batch = store.audit_after(check.next_seq() - 1, 1024)?;
        if batch.is_empty() {
            v.broken = Some((check.next_seq(), "record is missing (log truncated)".into()));
            return Ok(v);
        }
        for r in batch {
            if r.seq > to && r.seq == check.next_seq() {
                break;
            }
            if let Err(broken) = check.push(&r) {
                v.broken = Some(broken);
                return Ok(v);
            }
            v.checked += 1;
        }
    }
    let prev = check.last_hash().to_owned();
    if to == head_seq && head_seq > 0 && prev != head_hash {
        v.broken = Some((
            head_seq,
            "the head marker does not match the last record".into(),
        ));
    }
    Ok(v)
}

/// The `audit.pruned` record of `prune` (severity high): what goes, where it was archived
/// (`archived_to`, empty when it was not), and `checkpoint`, the coordinator's signature
/// over the last removed record, which the log is anchored on afterwards.
pub fn pruned_event(
    actor: impl Into<String>,
    prune: &AuditPrune,
    checkpoint: &AuditCheckpoint,
    archived_to: &str,
) -> AuditEvent {
    let mut e = AuditEvent::new(actor, AuditAction::AuditPruned, checkpoint.time_ms);
    e.severity = Severity::High;
    e.reason = format!(
        "records {}-{} removed past their retention",
        prune.first, prune.last
    );
    for (k, v) in [
        ("first_removed", prune.first.to_string()),
        ("last_removed", prune.last.to_string()),
        ("last_removed_hash", prune.last_hash.clone()),
        ("segments", prune.segments.to_string()),
        ("archived_to", archived_to.to_owned()),
        ("time_ms", checkpoint.time_ms.to_string()),
        ("coordinator_key", checkpoint.coordinator_key.clone()),
        ("signature", checkpoint.signature.clone()),
    ] {
        e.detail.insert(k.into(), v);
    }
    e
}
