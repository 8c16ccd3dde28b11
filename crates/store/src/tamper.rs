//! Edits a closed store's audit log the way an attacker with write access to its files
//! would, so tests can show what verification and checkpoints catch. Behind the `tamper`
//! feature: no production build has it.

use std::path::Path;

use crate::records::AuditRecord;
use crate::{Result, StoreError};

/// Applies `edit` to record `seq` of the journal of the store in `store_dir` (not open
/// anywhere). `rehash`: recompute that record's hash and every later one's, and move the
/// head the store keeps with them, so the chain and the head agree again (a consistent
/// rewrite); otherwise the record changes and its stored hash does not.
pub fn edit_record(
    store_dir: &Path,
    seq: u64,
    rehash: bool,
    edit: impl FnOnce(&mut AuditRecord),
) -> Result<()> {
    let path = store_dir.join("audit-segments").join(crate::journal::FILE);
    let bytes = std::fs::read(&path).map_err(|e| StoreError::Backend(e.to_string()))?;
    let parsed = crate::journal::parse(&bytes, &path, false)?;
    let mut records: Vec<(AuditRecord, bool)> =
        parsed.records.into_iter().zip(parsed.stateful).collect();
    let at = records
        .iter()
        .position(|(r, _)| r.seq == seq)
        .ok_or_else(|| StoreError::Backend(format!("record {seq} is not in the journal")))?;
    edit(&mut records[at].0);
    if rehash {
        for i in at..records.len() {
            if i > at {
                records[i].0.prev_hash = records[i - 1].0.hash.clone();
            }
            let r = &mut records[i].0;
            r.hash = crate::audit_hash(r.seq, &r.event, &r.prev_hash);
        }
        let db = crate::sled_store::open_closed(store_dir)?;
        if let Some(raw) = db
            .get(b"maudit")
            .map_err(|e| StoreError::Backend(e.to_string()))?
        {
            let head: serde_json::Value =
                serde_json::from_slice(&raw).map_err(|e| StoreError::Backend(e.to_string()))?;
            let head_seq = head["seq"].as_u64().unwrap_or(0);
            if let Some((r, _)) = records.iter().find(|(r, _)| r.seq == head_seq) {
                let new = serde_json::json!({ "seq": head_seq, "hash": r.hash });
                db.insert(b"maudit", serde_json::to_vec(&new).unwrap_or_default())
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                db.flush().map_err(|e| StoreError::Backend(e.to_string()))?;
            }
        }
    }
    crate::journal::rewrite(&path, &parsed.first_prev, &records)
}
