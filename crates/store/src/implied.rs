//! The implied revocations of one change in one task, stored under `v` + epoch + task id +
//! part (up to 16,384 a value; one value without the part in stores written before).
//!
//! A cascade revokes every live descendant of the links it cuts. Written one record (and
//! one epoch index key) each, 100,000 descendants cost 200,000 sled inserts, several
//! seconds. They are only ever read all together (at start, into the coordinator's
//! revocation set) or with the change that made them (a task's tree view), so they are
//! kept as one compact binary value per change and task:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (2) |
//! | 8 | the latest expiry of any entry (big endian): the collector reads only this |
//! | 8 | epoch |
//! | 4 | number of distinct reasons, then each as a 4-byte length and UTF-8 |
//! | 4 | number of entries, then each: link id (16), task id (16), expiry (8), time (8), reason index (4) |

use mandate_core::{LinkId, TaskId};

use crate::{NewRevocation, Result, RevocationRecord, StoreError};

const VERSION: u8 = 2;
const ENTRY: usize = 16 + 16 + 8 + 8 + 4;

/// Encodes the implied revocations of the change at `epoch`.
pub(crate) fn encode(epoch: u64, revocations: &[&NewRevocation]) -> Result<Vec<u8>> {
    let mut reasons: Vec<&str> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut entries = Vec::with_capacity(revocations.len() * ENTRY);
    let mut max_expiry = 0u64;
    for r in revocations {
        let n = match index.get(r.reason.as_str()) {
            Some(n) => *n,
            None => {
                let n = u32::try_from(reasons.len())
                    .map_err(|_| StoreError::Backend("too many reasons in one change".into()))?;
                reasons.push(&r.reason);
                index.insert(r.reason.as_str(), n);
                n
            }
        };
        max_expiry = max_expiry.max(r.expires_at_ms);
        entries.extend_from_slice(r.link.as_bytes());
        entries.extend_from_slice(r.task.as_bytes());
        entries.extend_from_slice(&r.expires_at_ms.to_be_bytes());
        entries.extend_from_slice(&r.time_ms.to_be_bytes());
        entries.extend_from_slice(&n.to_be_bytes());
    }
    let count = u32::try_from(revocations.len())
        .map_err(|_| StoreError::Backend("too many revocations in one change".into()))?;
    let mut out = Vec::with_capacity(1 + 8 + 8 + 2 + 4 + entries.len() + 64);
    out.push(VERSION);
    out.extend_from_slice(&max_expiry.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    let n_reasons = u32::try_from(reasons.len())
        .map_err(|_| StoreError::Backend("too many reasons in one change".into()))?;
    out.extend_from_slice(&n_reasons.to_be_bytes());
    for reason in reasons {
        let len = u32::try_from(reason.len())
            .map_err(|_| StoreError::Backend("a revocation reason is too long".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
    }
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&entries);
    Ok(out)
}

/// The latest expiry of any entry, read from the header alone.
pub(crate) fn max_expiry(key: &[u8], v: &[u8]) -> Result<u64> {
    let mut r = Reader::new(key, v);
    r.version()?;
    r.u64()
}

/// Decodes every entry as a revocation record (marked implied), checking them against the
/// key's epoch and task.
pub(crate) fn decode(key: &[u8], v: &[u8]) -> Result<Vec<RevocationRecord>> {
    let mut r = Reader::new(key, v);
    let (key_epoch, key_task) = match (key.get(1..9), key.get(9..25).and_then(TaskId::from_slice)) {
        // Epoch and task, then the part (absent in stores written before values were split).
        (Some(e), Some(t)) if key.len() == 25 || key.len() == 29 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(e);
            (u64::from_be_bytes(a), t)
        }
        _ => return Err(r.corrupt("the key is not an epoch and a task")),
    };
    r.version()?;
    let _max_expiry = r.u64()?;
    let epoch = r.u64()?;
    if epoch != key_epoch {
        return Err(r.corrupt("the epoch does not match the key"));
    }
    let n_reasons = r.u32()?;
    // Each reason takes at least its 4-byte length: a count beyond that is a lie.
    if n_reasons as usize > r.rest() / 4 {
        return Err(r.corrupt("more reasons than bytes"));
    }
    let reasons = (0..n_reasons)
        .map(|_| {
            let len = r.u32()? as usize;
            let bytes = r.take(len)?;
            String::from_utf8(bytes.to_vec()).map_err(|_| r.corrupt("a reason is not UTF-8"))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = r.u32()? as usize;
    if r.rest()
        != count
            .checked_mul(ENTRY)
            .ok_or_else(|| r.corrupt("bad count"))?
    {
        return Err(r.corrupt("the entries do not match their count"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let link = LinkId::from_slice(r.take(16)?).ok_or_else(|| r.corrupt("link id"))?;
        let task = TaskId::from_slice(r.take(16)?).ok_or_else(|| r.corrupt("task id"))?;
        if task != key_task {
            return Err(r.corrupt("an entry of another task"));
        }
        let expires_at_ms = r.u64()?;
        let time_ms = r.u64()?;
        let reason = reasons
            .get(r.u32()? as usize)
            .ok_or_else(|| r.corrupt("a reason index is out of range"))?
            .clone();
        out.push(RevocationRecord {
            link,
            task,
            epoch,
            expires_at_ms,
            reason,
            time_ms,
            implied: true,
        });
    }
    Ok(out)
}

struct Reader<'a> {
    key: &'a [u8],
    v: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(key: &'a [u8], v: &'a [u8]) -> Reader<'a> {
        Reader { key, v, at: 0 }
    }

    fn corrupt(&self, why: &str) -> StoreError {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(self.key).into_owned(),
            why: format!("implied revocations: {why}"),
        }
    }

    fn rest(&self) -> usize {
        self.v.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.v.len())
            .ok_or_else(|| self.corrupt("truncated"))?;
        let out = &self.v[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn version(&mut self) -> Result<()> {
        match self.take(1)? {
            [VERSION] => Ok(()),
            _ => Err(self.corrupt("unknown format version")),
        }
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}
