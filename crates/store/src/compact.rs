//! The binary encoding of the records a store holds one per link, task or cut: links,
//! tasks and revocations. They are most of a store (a million live links are a million
//! link records), so they are stored compactly: ids and digests as raw bytes, numbers as
//! LEB128 varints, strings and byte strings length-prefixed, after a one-byte tag that
//! names the record and its layout. A tag is never `{`, so records written as JSON
//! before (every store up to this encoding) are still read: a task is rewritten in the
//! new encoding when it changes, links and revocations (never rewritten) stay JSON until
//! collected. Versions before this encoding cannot read what it writes (see
//! docs/DEPLOYMENT.md, "Upgrading"). The other records (agents, approvals, keys, the
//! policy files) are few and stay JSON.
//!
//! Decoding is strict, so that one record has one encoding: an unknown tag, a truncated
//! field, a number not in its shortest form, intent fields out of order, a bad UTF-8
//! string, a flag other than 0 or 1, or bytes left over are reported as corruption, never
//! read past.

use std::collections::BTreeMap;

use mandate_core::{Digest, LinkId, TaskId};

use crate::records::{LinkRecord, RevocationRecord, TaskRecord, TaskState};
use crate::{Result, StoreError};

/// Tag of a [`LinkRecord`], layout 1.
const LINK_V1: u8 = 0xb1;
/// Tag of a [`TaskRecord`], layout 1.
const TASK_V1: u8 = 0xb2;
/// Tag of a [`RevocationRecord`], layout 1.
const REVOCATION_V1: u8 = 0xb3;

/// A record that a table holds: how it is written and read back.
pub(crate) trait Value: Sized {
    /// The stored bytes.
    fn to_value(&self) -> Result<Vec<u8>>;
    /// The record from the bytes stored at `k`.
    fn from_value(k: &[u8], v: &[u8]) -> Result<Self>;
}

/// Records stored as JSON.
macro_rules! json_value {
    ($($ty:ty),* $(,)?) => {$(
        impl Value for $ty {
            fn to_value(&self) -> Result<Vec<u8>> {
                crate::kv::encode(self)
            }
            fn from_value(k: &[u8], v: &[u8]) -> Result<Self> {
                crate::kv::decode(k, v)
            }
        }
    )*};
}
json_value!(
    crate::records::AgentRecord,
    crate::records::ApprovalRecord,
    crate::records::AuditRecord,
    crate::records::CoordinatorKeys,
    crate::tables::AuditHead,
    Vec<(String, String)>,
);

/// Records stored in the binary encoding, still read from JSON where written before it.
macro_rules! binary_value {
    ($ty:ty, $write:ident, $read:ident) => {
        impl Value for $ty {
            fn to_value(&self) -> Result<Vec<u8>> {
                let mut w = Writer::default();
                $write(self, &mut w);
                Ok(w.0)
            }
            fn from_value(k: &[u8], v: &[u8]) -> Result<Self> {
                if v.first() == Some(&b'{') {
                    return crate::kv::decode(k, v);
                }
                let mut r = Reader { key: k, rest: v };
                let record = $read(&mut r)?;
                r.end()?;
                Ok(record)
            }
        }
    };
}
binary_value!(LinkRecord, write_link, read_link);
binary_value!(TaskRecord, write_task, read_task);
binary_value!(RevocationRecord, write_revocation, read_revocation);

fn write_link(l: &LinkRecord, w: &mut Writer) {
    w.byte(LINK_V1);
    w.raw(l.id.as_bytes());
    w.raw(l.task.as_bytes());
    w.opt(l.parent.as_ref().map(|p| &p.as_bytes()[..]));
    w.raw(l.digest.as_bytes());
    w.uint(l.expires_at_ms);
    w.uint(l.created_ms);
    w.uint(u64::from(l.max_uses));
    w.bytes(l.holder.as_bytes());
    w.bytes(l.issuer.as_bytes());
    w.bytes(&l.encoded);
}

fn read_link(r: &mut Reader<'_>) -> Result<LinkRecord> {
    r.tag(LINK_V1, "a link")?;
    Ok(LinkRecord {
        id: r.link_id()?,
        task: r.task_id()?,
        parent: r.opt_link_id()?,
        digest: Digest::from_slice(r.take(32)?).ok_or_else(|| r.corrupt("digest"))?,
        expires_at_ms: r.uint()?,
        created_ms: r.uint()?,
        max_uses: u32::try_from(r.uint()?).map_err(|_| r.corrupt("use limit"))?,
        holder: r.string()?,
        issuer: r.string()?,
        encoded: r.bytes()?.to_vec(),
    })
}

fn write_task(t: &TaskRecord, w: &mut Writer) {
    w.byte(TASK_V1);
    w.raw(t.id.as_bytes());
    w.bytes(t.requester.as_bytes());
    w.bytes(t.intent.as_bytes());
    w.uint(t.intent_fields.len() as u64);
    for (name, value) in &t.intent_fields {
        w.bytes(name.as_bytes());
        w.bytes(value.as_bytes());
    }
    w.byte(task_state_code(t.state));
    w.uint(t.created_ms);
    w.uint(t.deadline_ms);
    w.uint(t.ended_ms);
    w.bytes(t.end_reason.as_bytes());
    w.opt(t.root_link.as_ref().map(|l| &l.as_bytes()[..]));
}

fn read_task(r: &mut Reader<'_>) -> Result<TaskRecord> {
    r.tag(TASK_V1, "a task")?;
    let id = r.task_id()?;
    let requester = r.string()?;
    let intent = r.string()?;
    let n = r.uint()?;
    let mut intent_fields = BTreeMap::new();
    for _ in 0..n {
        let name = r.string()?;
        // Written in order, each once: anything else was not written by `write_task`.
        if intent_fields
            .last_key_value()
            .is_some_and(|(last, _): (&String, _)| *last >= name)
        {
            return Err(r.corrupt("intent field (out of order or repeated)"));
        }
        intent_fields.insert(name, r.string()?);
    }
    let state = task_state(r.byte()?).ok_or_else(|| r.corrupt("task state"))?;
    Ok(TaskRecord {
        id,
        requester,
        intent,
        intent_fields,
        state,
        created_ms: r.uint()?,
        deadline_ms: r.uint()?,
        ended_ms: r.uint()?,
        end_reason: r.string()?,
        root_link: r.opt_link_id()?,
    })
}

fn write_revocation(v: &RevocationRecord, w: &mut Writer) {
    w.byte(REVOCATION_V1);
    w.raw(v.link.as_bytes());
    w.raw(v.task.as_bytes());
    w.uint(v.epoch);
    w.uint(v.expires_at_ms);
    w.bytes(v.reason.as_bytes());
    w.uint(v.time_ms);
    w.byte(u8::from(v.implied));
}

fn read_revocation(r: &mut Reader<'_>) -> Result<RevocationRecord> {
    r.tag(REVOCATION_V1, "a revocation")?;
    Ok(RevocationRecord {
        link: r.link_id()?,
        task: r.task_id()?,
        epoch: r.uint()?,
        expires_at_ms: r.uint()?,
        reason: r.string()?,
        time_ms: r.uint()?,
        implied: match r.byte()? {
            0 => false,
            1 => true,
            _ => return Err(r.corrupt("implied flag")),
        },
    })
}

/// The stored code of a task state (never renumbered).
fn task_state_code(s: TaskState) -> u8 {
    match s {
        TaskState::PendingApproval => 0,
        TaskState::Active => 1,
        TaskState::Completed => 2,
        TaskState::Failed => 3,
        TaskState::Revoked => 4,
        TaskState::Expired => 5,
        TaskState::Denied => 6,
    }
}

fn task_state(code: u8) -> Option<TaskState> {
    Some(match code {
        0 => TaskState::PendingApproval,
        1 => TaskState::Active,
        2 => TaskState::Completed,
        3 => TaskState::Failed,
        4 => TaskState::Revoked,
        5 => TaskState::Expired,
        6 => TaskState::Denied,
        _ => return None,
    })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// LEB128: seven bits a byte, low first.
    fn uint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.raw(b);
    }
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.byte(1);
                self.raw(b);
            }
            None => self.byte(0),
        }
    }
}

struct Reader<'a> {
    key: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(self.key).into_owned(),
            why: format!("binary record: bad or truncated {what}"),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.corrupt("field"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn tag(&mut self, tag: u8, what: &str) -> Result<()> {
        if self.byte()? == tag {
            Ok(())
        } else {
            Err(self.corrupt(&format!("tag (not {what})")))
        }
    }
    fn uint(&mut self) -> Result<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            // The tenth byte may carry only the top bit.
            if shift == 63 && part > 1 {
                return Err(self.corrupt("number"));
            }
            n |= part << shift;
            if b & 0x80 == 0 {
                // The shortest form only: a last byte of zero after others is padding.
                if b == 0 && shift > 0 {
                    return Err(self.corrupt("number (not in its shortest form)"));
                }
                return Ok(n);
            }
        }
        Err(self.corrupt("number"))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.uint()?).map_err(|_| self.corrupt("length"))?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("string"))
    }
    fn link_id(&mut self) -> Result<LinkId> {
        LinkId::from_slice(self.take(16)?).ok_or_else(|| self.corrupt("link id"))
    }
    fn task_id(&mut self) -> Result<TaskId> {
        TaskId::from_slice(self.take(16)?).ok_or_else(|| self.corrupt("task id"))
    }
    fn opt_link_id(&mut self) -> Result<Option<LinkId>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.link_id().map(Some),
            _ => Err(self.corrupt("optional link id")),
        }
    }
    fn end(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("record (bytes left over)"))
        }
    }
}

#[cfg(test)]
mod tests;
