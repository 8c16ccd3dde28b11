//! Reading the audit log: filters, paged queries and integrity verification, over any
//! [`Store`].

use mandate_core::TaskId;

use crate::records::{AuditRecord, Severity, audit_hash};
use crate::{Result, Store};

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

/// Recomputes the hash chain from `from` to `to` (inclusive; 0 means the head) and checks
/// sequence continuity, each record's hash and its link to the previous one. When the
/// range reaches the head, also checks the store's head marker (a truncated log fails).
pub fn verify_audit(store: &dyn Store, from: u64, to: u64) -> Result<AuditVerification> {
    let (head_seq, head_hash) = store.audit_head()?;
    let from = from.max(1);
    let to = if to == 0 { head_seq } else { to.min(head_seq) };
    let mut v = AuditVerification {
        checked: 0,
        broken: None,
        head_seq,
        head_hash: head_hash.clone(),
    };
    let mut prev = if from == 1 {
        GENESIS_HASH.to_owned()
    } else {
        match store.audit_after(from - 2, 1)?.into_iter().next() {
            Some(r) if r.seq == from - 1 => r.hash,
            _ => {
                v.broken = Some((from - 1, "record is missing".into()));
                return Ok(v);
            }
        }
    };
    let mut expected = from;
    while expected <= to {
        let batch = store.audit_after(expected - 1, 1024)?;
        if batch.is_empty() {
            v.broken = Some((expected, "record is missing (log truncated)".into()));
            return Ok(v);
        }
        for r in batch {
            // Continuity first: a gap inside the range must be reported, not skipped.
            if r.seq != expected {
                v.broken = Some((expected, "record is missing".into()));
                return Ok(v);
            }
            if r.seq > to {
                break;
            }
            if r.prev_hash != prev {
                v.broken = Some((r.seq, "does not link to the previous record".into()));
                return Ok(v);
            }
            if audit_hash(r.seq, &r.event, &r.prev_hash) != r.hash {
                v.broken = Some((r.seq, "content does not match its hash (edited)".into()));
                return Ok(v);
            }
            v.checked += 1;
            prev = r.hash;
            expected += 1;
        }
    }
    if to == head_seq && head_seq > 0 && prev != head_hash {
        v.broken = Some((
            head_seq,
            "the head marker does not match the last record".into(),
        ));
    }
    Ok(v)
}
