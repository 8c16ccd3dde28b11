//! Audit checkpoints: the coordinator's signature over the durable head of the log, on
//! demand (`CheckpointAuditLog`) and at an interval (an `audit.checkpoint` record, so log
//! shippers carry a copy away from the coordinator).

use mandate_store::{AuditAction, AuditCheckpoint, Change};

use super::{Coordinator, event};
use crate::error::{ApiError, ErrorReason};

impl Coordinator {
    /// Signs a checkpoint of the newest durable record.
    pub async fn checkpoint_audit(&self) -> Result<AuditCheckpoint, ApiError> {
        // The head first, then wait for durability: everything up to it is then on disk.
        let (seq, hash) = self.store.audit_head()?;
        self.durable().await?;
        AuditCheckpoint::sign(&self.key, seq, &hash, self.now())
            .map_err(|e| ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string()))
    }

    /// Writes an `audit.checkpoint` record holding a checkpoint of the record before it,
    /// unless nothing was written since the last one. Returns the checkpoint written.
    pub async fn record_checkpoint(&self) -> Result<Option<AuditCheckpoint>, ApiError> {
        let guard = self.writer.lock().await;
        let head = self.store.audit_head()?.0;
        let last = self
            .store
            .audit_after(head.saturating_sub(1), 1)?
            .into_iter()
            .next();
        if last.is_some_and(|r| r.event.action == AuditAction::AuditCheckpoint.as_str()) {
            return Ok(None);
        }
        let cp = self.checkpoint_audit().await?;
        let mut e = event(
            &self.config.coordinator_id,
            AuditAction::AuditCheckpoint,
            cp.time_ms,
        );
        e.reason = "periodic checkpoint".into();
        for (k, v) in [
            ("seq", cp.seq.to_string()),
            ("hash", cp.hash.clone()),
            ("time_ms", cp.time_ms.to_string()),
            ("coordinator_key", cp.coordinator_key.clone()),
            ("signature", cp.signature.clone()),
        ] {
            e.detail.insert(k.into(), v);
        }
        self.commit_and_wait(
            guard,
            Change {
                audit: vec![e],
                ..Change::default()
            },
            None,
        )
        .await?;
        Ok(Some(cp))
    }
}
