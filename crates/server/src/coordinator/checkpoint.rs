//! Audit checkpoints: the coordinator's signature over the durable head of the log, on
//! demand (`CheckpointAuditLog`) and at an interval (an `audit.checkpoint` record, so log
//! shippers carry a copy away from the coordinator); and retention (`PruneAuditLog`),
//! whose record of what goes carries such a signature over the last record removed.

use std::sync::Arc;

use mandate_store::{AuditAction, AuditCheckpoint, AuditPrune, Change, pruned_event};

use super::{Coordinator, blocking, event};
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

/// The longest `archived_to` a prune records.
const MAX_ARCHIVED_TO: usize = 1024;

impl Coordinator {
    /// Removes the sealed audit segments that end before record `before`, after an
    /// `audit.pruned` record by `actor` saying what goes (with a checkpoint of the last
    /// removed record) and where it was archived. With `through` (not 0), only if the last
    /// record removed is exactly that one. Returns what goes and the record's sequence
    /// number (0 on a `dry_run`); `None` when no sealed segment ends before `before`.
    pub async fn prune_audit(
        &self,
        actor: &str,
        before: u64,
        through: u64,
        archived_to: &str,
        dry_run: bool,
    ) -> Result<Option<(AuditPrune, u64)>, ApiError> {
        if before < 2 {
            return Err(ApiError::invalid(
                "`before` must be at least 2: records before it are removed",
            ));
        }
        if archived_to.len() > MAX_ARCHIVED_TO {
            return Err(ApiError::invalid(format!(
                "`archived_to` is longer than {MAX_ARCHIVED_TO} bytes"
            )));
        }
        // Under the writer lock: no seal or other change moves the log meanwhile.
        let guard = self.writer.lock().await;
        let store = Arc::clone(&self.store);
        let Some(plan) = blocking(move || store.audit_prunable(before)).await?? else {
            return Ok(None);
        };
        if through != 0 && plan.last != through {
            return Err(ApiError::precondition(
                ErrorReason::PruneRangeChanged,
                format!(
                    "the sealed segments before record {before} end at record {}, not {through}",
                    plan.last
                ),
            ));
        }
        if dry_run {
            return Ok(Some((plan, 0)));
        }
        let cp = AuditCheckpoint::sign(&self.key, plan.last, &plan.last_hash, self.now()).map_err(
            |e| ApiError::new(tonic::Code::Internal, ErrorReason::BadKey, e.to_string()),
        )?;
        let change = Change {
            audit: vec![pruned_event(actor, &plan, &cp, archived_to)],
            ..Change::default()
        };
        let (store, last) = (Arc::clone(&self.store), plan.last);
        let started = std::time::Instant::now();
        let committed = blocking(move || store.prune_audit(last, change)).await??;
        self.metrics.committed(
            std::iter::once(AuditAction::AuditPruned.as_str()),
            started.elapsed(),
        );
        if let Some(&seq) = committed.audit_seqs.last() {
            self.audit.committed(seq);
        }
        drop(guard);
        self.durable().await?;
        tracing::warn!(
            first = plan.first,
            last = plan.last,
            segments = plan.segments,
            actor,
            "audit records pruned"
        );
        Ok(Some((
            plan,
            committed.audit_seqs.first().copied().unwrap_or(0),
        )))
    }
}
