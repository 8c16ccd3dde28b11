//! `AuditService`: query, follow, verify and export the hash-chained audit log. Admins and
//! agents with role `auditor` only.

use std::pin::Pin;

use mandate_proto::v1 as pb;
use mandate_proto::v1::audit_service_server::AuditService;
use mandate_store::{AuditFilter, AuditRecord, Severity};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Api;
use super::convert::parse_task_id;
use crate::auth::Caller;
use crate::coordinator::access::{self, Ask};
use crate::error::{ApiError, ErrorReason};

fn auditor<T>(req: &Request<T>) -> Result<Caller, Status> {
    let caller = super::caller(req)?;
    access::check(&caller, Ask::ReadAuditLog)?;
    Ok(caller)
}

fn severity_to_pb(s: Severity) -> pb::AuditSeverity {
    match s {
        Severity::Info => pb::AuditSeverity::Info,
        Severity::Notice => pb::AuditSeverity::Notice,
        Severity::High => pb::AuditSeverity::High,
    }
}

fn filter_from_pb(f: Option<pb::AuditFilter>) -> Result<AuditFilter, ApiError> {
    let f = f.unwrap_or_default();
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    Ok(AuditFilter {
        task: nonempty(f.task_id).map(|t| parse_task_id(&t)).transpose()?,
        agent: nonempty(f.agent_id),
        link: nonempty(f.link_id),
        action_prefix: nonempty(f.action_prefix),
        since_ms: f.since_ms,
        until_ms: (f.until_ms > 0).then_some(f.until_ms),
        min_severity: match pb::AuditSeverity::try_from(f.min_severity)
            .map_err(|_| ApiError::invalid(format!("unknown severity {}", f.min_severity)))?
        {
            pb::AuditSeverity::Unspecified => None,
            pb::AuditSeverity::Info => Some(Severity::Info),
            pb::AuditSeverity::Notice => Some(Severity::Notice),
            pb::AuditSeverity::High => Some(Severity::High),
        },
    })
}

pub(crate) fn record_to_pb(r: &AuditRecord) -> pb::AuditRecord {
    let e = &r.event;
    pb::AuditRecord {
        seq: r.seq,
        time_ms: e.time_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        task_id: e.task.map(|t| t.to_string()).unwrap_or_default(),
        link_ids: e.links.clone(),
        decision: e.decision.clone(),
        reason: e.reason.clone(),
        policy_ids: e.policies.clone(),
        policy_hash: e.policy_hash.clone(),
        severity: severity_to_pb(e.severity).into(),
        detail: e.detail.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<pb::WatchAuditLogResponse, Status>> + Send>>;
type ExportStream = Pin<Box<dyn Stream<Item = Result<pb::ExportAuditLogResponse, Status>> + Send>>;

const MAX_PAGE: usize = 1000;

#[tonic::async_trait]
impl AuditService for Api {
    async fn query_audit_log(
        &self,
        req: Request<pb::QueryAuditLogRequest>,
    ) -> Result<Response<pb::QueryAuditLogResponse>, Status> {
        auditor(&req)?;
        let r = req.into_inner();
        let filter = filter_from_pb(r.filter)?;
        let after: u64 = if r.page_token.is_empty() {
            0
        } else {
            r.page_token
                .parse()
                .map_err(|_| ApiError::invalid("page_token is not one this service issued"))?
        };
        let size = match r.page_size {
            0 => 100,
            n => (n as usize).min(MAX_PAGE),
        };
        let head_seq = self.coordinator.audit_head_seq()?;
        let (records, more) = self.coordinator.query_audit(&filter, after, size)?;
        let next = if more {
            records
                .last()
                .map(|r| r.seq.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::QueryAuditLogResponse {
            records: records.iter().map(record_to_pb).collect(),
            next_page_token: next,
            head_seq,
        }))
    }

    type WatchAuditLogStream = RecordStream;

    async fn watch_audit_log(
        &self,
        req: Request<pb::WatchAuditLogRequest>,
    ) -> Result<Response<RecordStream>, Status> {
        let watcher = auditor(&req)?.agent.id;
        let slot = self.streams.take(&watcher)?;
        let r = req.into_inner();
        let filter = filter_from_pb(r.filter)?;
        let coordinator = std::sync::Arc::clone(&self.coordinator);
        let mut stop = self.stop.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let _slot = slot;
            // Subscribe first, then read: a record written in between wakes us.
            let mut head = coordinator.watch_audit();
            let mut cursor = r.after_seq;
            loop {
                // The stream lasts only as long as the watcher may read the log.
                if !coordinator.may_still_read_audit(&watcher) {
                    let _ = tx
                        .send(Err(ApiError::forbidden(
                            "the watcher is no longer allowed to read the audit log",
                        )
                        .into_status()))
                        .await;
                    return;
                }
                loop {
                    let batch = match coordinator.audit_after(cursor, 256) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(e.into_status())).await;
                            return;
                        }
                    };
                    let Some(last) = batch.last().map(|r| r.seq) else {
                        break;
                    };
                    for rec in batch.iter().filter(|r| filter.matches(r)) {
                        let msg = pb::WatchAuditLogResponse {
                            record: Some(record_to_pb(rec)),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    cursor = last;
                }
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = stop.changed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn prune_audit_log(
        &self,
        req: Request<pb::PruneAuditLogRequest>,
    ) -> Result<Response<pb::PruneAuditLogResponse>, Status> {
        let caller = super::caller(&req)?;
        access::check(&caller, Ask::PruneAuditLog)?;
        let r = req.into_inner();
        let done = self
            .coordinator
            .prune_audit(
                caller.agent.id.as_str(),
                r.before,
                r.through,
                &r.archived_to,
                r.dry_run,
            )
            .await?;
        Ok(Response::new(match done {
            None => pb::PruneAuditLogResponse::default(),
            Some((plan, record)) => pb::PruneAuditLogResponse {
                prunable: true,
                first_removed: plan.first,
                last_removed: plan.last,
                last_removed_hash: plan.last_hash,
                segments: u32::try_from(plan.segments).unwrap_or(u32::MAX),
                record,
            },
        }))
    }

    async fn checkpoint_audit_log(
        &self,
        req: Request<pb::CheckpointAuditLogRequest>,
    ) -> Result<Response<pb::CheckpointAuditLogResponse>, Status> {
        auditor(&req)?;
        let cp = self.coordinator.checkpoint_audit().await?;
        let (key, signature) = cp.key_and_signature().map_err(|e| {
            ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string()).into_status()
        })?;
        Ok(Response::new(pb::CheckpointAuditLogResponse {
            seq: cp.seq,
            coordinator_key: key.to_vec(),
            signature: signature.to_vec(),
            hash: cp.hash,
            time_ms: cp.time_ms,
        }))
    }

    async fn verify_audit_log(
        &self,
        req: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        auditor(&req)?;
        let r = req.into_inner();
        let v = self.coordinator.verify_audit(r.from_seq, r.to_seq).await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            intact: v.intact(),
            checked: v.checked,
            first_broken_seq: v.broken.as_ref().map(|b| b.0).unwrap_or_default(),
            problem: v.broken.map(|b| b.1).unwrap_or_default(),
            head_seq: v.head_seq,
            head_hash: v.head_hash,
        }))
    }

    type ExportAuditLogStream = ExportStream;

    async fn export_audit_log(
        &self,
        req: Request<pb::ExportAuditLogRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        auditor(&req)?;
        let r = req.into_inner();
        let filter = filter_from_pb(r.filter)?;
        let coordinator = std::sync::Arc::clone(&self.coordinator);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut cursor = r.after_seq;
            loop {
                let batch = match coordinator.audit_after(cursor, 512) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e.into_status())).await;
                        return;
                    }
                };
                let Some(last) = batch.last().map(|r| r.seq) else {
                    return;
                };
                cursor = last;
                let mut chunk = Vec::new();
                for rec in batch.iter().filter(|r| filter.matches(r)) {
                    match mandate_store::json_line(rec) {
                        Ok(line) => {
                            chunk.extend_from_slice(line.as_bytes());
                            chunk.push(b'\n');
                        }
                        Err(e) => {
                            let _ = tx
                                .send(Err(ApiError::new(
                                    tonic::Code::Internal,
                                    ErrorReason::Internal,
                                    e.to_string(),
                                )
                                .into_status()))
                                .await;
                            return;
                        }
                    }
                }
                if !chunk.is_empty()
                    && tx
                        .send(Ok(pb::ExportAuditLogResponse { jsonl: chunk }))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
