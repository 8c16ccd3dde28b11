//! Grants that wait for a person (`@require_approval`), and break-glass access.
//!
//! A pending request keeps the exact request bytes and their hash: an approver quotes
//! the hash, so an approval can only ever issue what was reviewed. The approver is never
//! the requester nor one of its workers, and must be permitted by the `Approve` policy.
//! When approved, the grant is decided again under the policy in force (its obligations
//! still cap the lifetime) and issued to the requester.

use mandate_store::{AuditAction, Verdict};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::access::{self, Ask, sees_all_approvals};
use super::{
    Coordinator, Issued, TaskRequest, agent_key, check_request_size, corrupt_link, event,
    grant_request, stored_link, with_decision,
};
use crate::api::convert::capability_from_pb;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::{Decision, agent_info, check_signals, task_info};
use mandate_core::{AgentId, Capability, Chain, LinkKind, LinkSpec, TaskId};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, Target, TaskInfo};
use mandate_proto::v1 as pb;
use mandate_store::{
    AgentRecord, AgentStatus, AuditEvent, Change, Severity, TaskRecord, TaskState,
};
use mandate_store::{ApprovalRecord, ApprovalState};
use std::collections::BTreeMap;

/// What `start_task` returns.
#[derive(Clone, Debug)]
pub enum Started {
    /// The grant was issued.
    Granted(Issued),
    /// Policy requires approval: the task waits.
    Pending {
        /// The task, pending approval.
        task: TaskRecord,
        /// The request waiting for an approver.
        approval: ApprovalRecord,
        /// The decision that required approval.
        decision: Decision,
    },
}

/// Encodes a start request exactly (maps are ordered, so the bytes are deterministic).
fn encode_request(r: &TaskRequest) -> Vec<u8> {
    pb::StartTaskRequest {
        intent: Some(pb::Intent {
            text: r.intent.clone(),
            fields: r.intent_fields.clone(),
        }),
        capabilities: r.capabilities.iter().map(Capability::to_pb).collect(),
        ttl_ms: r.ttl_ms,
        max_depth: r.max_depth,
        require_online: r.require_online,
        signals: r.signals.clone(),
        max_uses: r.max_uses,
    }
    .encode_to_vec()
}

/// Decodes what [`encode_request`] stored.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<TaskRequest, ApiError> {
    let corrupt = |e: String| ApiError::new(tonic::Code::Internal, ErrorReason::CorruptApproval, e);
    let p = pb::StartTaskRequest::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let intent = p.intent.unwrap_or_default();
    Ok(TaskRequest {
        intent: intent.text,
        intent_fields: intent.fields,
        capabilities: p
            .capabilities
            .into_iter()
            .map(capability_from_pb)
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(e.message))?,
        ttl_ms: p.ttl_ms,
        max_depth: p.max_depth,
        require_online: p.require_online,
        signals: p.signals,
        max_uses: p.max_uses,
    })
}

/// The hash an approver quotes: the task, the requester and the exact request bytes.
fn request_hash(task: &TaskId, requester: &str, request: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"mandate-approval-v1\0");
    h.update(task.as_bytes());
    for part in [requester.as_bytes(), request] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Most approval requests one garbage collection pass expires.
const MAX_EXPIRED_PER_PASS: usize = 10_000;

impl Coordinator {
    /// Records a pending grant request; the caller holds the writer lock.
    #[expect(clippy::too_many_arguments, reason = "the parts of one request")]
    pub(super) async fn request_approval(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        caller: &Caller,
        task_id: TaskId,
        r: TaskRequest,
        decision: Decision,
        mut e: AuditEvent,
        now: u64,
    ) -> Result<Started, ApiError> {
        let limit = self.config.quotas.pending_approvals_per_agent;
        if self
            .store
            .pending_approvals_of(&caller.agent.id, now, limit)?
            >= limit
        {
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                ErrorReason::QuotaExceeded,
                format!(
                    "`{}` already has {limit} approval requests pending: wait for decisions or for them to expire",
                    caller.agent.id
                ),
            ));
        }
        let request = encode_request(&r);
        let hash = request_hash(&task_id, &caller.agent.id, &request);
        let expires = now.saturating_add(self.config.approval_ttl_ms);
        let task = TaskRecord {
            id: task_id,
            requester: caller.agent.id.to_string(),
            intent: r.intent,
            intent_fields: r.intent_fields,
            state: TaskState::PendingApproval,
            created_ms: now,
            deadline_ms: expires,
            ended_ms: 0,
            end_reason: String::new(),
            root_link: None,
        };
        let approval = ApprovalRecord {
            task: task_id,
            requester: caller.agent.id.to_string(),
            request,
            request_hash: hash.clone(),
            created_ms: now,
            expires_ms: expires,
            state: ApprovalState::Pending,
            decided_by: String::new(),
            decided_ms: 0,
            comment: String::new(),
            policies: decision.policies.clone(),
            policy_hash: decision.policy_hash.clone(),
        };
        e.set_action(AuditAction::ApprovalRequested);
        e.set_verdict(Verdict::Pending);
        e.severity = Severity::Notice;
        e.detail.insert("request_hash".into(), hash);
        e.detail.insert("expires_ms".into(), expires.to_string());
        self.commit_and_wait(
            guard,
            Change {
                tasks: vec![task.clone()],
                approvals: vec![approval.clone()],
                audit: vec![e],
                ..Change::default()
            },
            Some(caller),
        )
        .await?;
        self.approvals_changed.send_modify(|n| *n += 1);
        Ok(Started::Pending {
            task,
            approval,
            decision,
        })
    }

    /// Wakes when any approval request changes.
    pub fn watch_approvals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.approvals_changed.subscribe()
    }

    /// A request as stored, with its effective state (pending past expiry is expired).
    fn approval_now(&self, task: &TaskId) -> Result<ApprovalRecord, ApiError> {
        let mut a = self
            .store
            .approval(task)?
            .ok_or_else(|| ApiError::not_found("approval request", &task.to_string()))?;
        if a.state == ApprovalState::Pending && self.now() >= a.expires_ms {
            a.state = ApprovalState::Expired;
        }
        Ok(a)
    }

    /// One request with its task, and the chain once approved (for the requester and
    /// admins). Readable by the requester and by those who see all requests.
    pub fn approval(
        &self,
        caller: &Caller,
        task: &TaskId,
    ) -> Result<(ApprovalRecord, TaskRecord, Option<Chain>), ApiError> {
        let a = self.approval_now(task)?;
        let own = a.requester == caller.agent.id;
        access::check(
            caller,
            Ask::ReadApproval {
                requester: &a.requester,
            },
        )?;
        let mut t = self.task(task)?;
        if a.state == ApprovalState::Expired && t.state == TaskState::PendingApproval {
            t.state = TaskState::Expired;
        }
        let chain = match (a.state, t.root_link, own || caller.is_admin()) {
            (ApprovalState::Approved, Some(root), true) => {
                let rec = self
                    .store
                    .link(&root)?
                    .ok_or_else(|| ApiError::not_found("link", &root.to_string()))?;
                Some(Chain::from_links(vec![stored_link(&rec)?]).map_err(corrupt_link)?)
            }
            _ => None,
        };
        Ok((a, t, chain))
    }

    /// Requests in task id order after `after`, filtered by state; all of them for those
    /// who see all, else the caller's own.
    pub fn approvals(
        &self,
        caller: &Caller,
        state: Option<ApprovalState>,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<(Vec<ApprovalRecord>, Option<TaskId>), ApiError> {
        let now = self.now();
        let mut out = Vec::new();
        let mut cursor = after;
        loop {
            let batch = self.store.approvals(cursor.as_ref(), limit.max(64))?;
            if batch.is_empty() {
                return Ok((out, None));
            }
            for mut a in batch {
                cursor = Some(a.task);
                if a.state == ApprovalState::Pending && now >= a.expires_ms {
                    a.state = ApprovalState::Expired;
                }
                if (sees_all_approvals(caller.role()) || a.requester == caller.agent.id)
                    && state.is_none_or(|s| s == a.state)
                {
                    if out.len() == limit {
                        let next = out.last().map(|a: &ApprovalRecord| a.task);
                        return Ok((out, next));
                    }
                    out.push(a);
                }
            }
        }
    }

    /// The checks shared by approve and deny, under the writer lock: the request is
    /// pending and unexpired, the hash matches, the caller is not the requester nor one of
    /// its workers, and policy permits the caller to approve. Returns the request, the
    /// requester and the `Approve` decision.
    async fn check_approver(
        &self,
        caller: &Caller,
        task: &TaskId,
        hash: &str,
        verb: &str,
    ) -> Result<(ApprovalRecord, AgentRecord, Decision), ApiError> {
        self.current(caller)?;
        let a = self.approval_now(task)?;
        match a.state {
            ApprovalState::Pending => {}
            ApprovalState::Expired => {
                return Err(ApiError::precondition(
                    ErrorReason::ApprovalExpired,
                    format!("the request of task `{task}` expired unanswered"),
                ));
            }
            _ => {
                return Err(ApiError::precondition(
                    ErrorReason::ApprovalDecided,
                    format!("the request of task `{task}` was already decided"),
                ));
            }
        }
        // The task must still be waiting: an ended task is not brought back by an approval.
        if self.task(task)?.state != TaskState::PendingApproval {
            return Err(ApiError::precondition(
                ErrorReason::ApprovalDecided,
                format!("task `{task}` is no longer waiting for approval"),
            ));
        }
        if hash != a.request_hash {
            return Err(ApiError::precondition(
                ErrorReason::RequestHashMismatch,
                "the request hash does not match the pending request: review it again",
            ));
        }
        // Never the requester, nor an agent registered below it. A registration chain too
        // deep to walk is refused rather than assumed unrelated.
        let mut cursor = Some(caller.agent.clone());
        for hop in 0..=32 {
            let Some(agent) = cursor else { break };
            if hop == 32 {
                return Err(ApiError::forbidden(
                    "the approver's registration chain is too deep to check",
                )
                .with_reason(ErrorReason::SelfApproval));
            }
            if agent.id == a.requester {
                return Err(ApiError::forbidden(format!(
                    "the requester (or one of its workers) may not {verb} its own request"
                ))
                .with_reason(ErrorReason::SelfApproval));
            }
            cursor = match &agent.parent {
                Some(p) => self.store.agent(p)?,
                None => None,
            };
        }
        let requester = self
            .store
            .agent(&a.requester)?
            .filter(|r| r.status == AgentStatus::Active)
            .ok_or_else(|| {
                ApiError::precondition(
                    ErrorReason::AgentDisabled,
                    format!("the requester `{}` is disabled", a.requester),
                )
            })?;
        let t = self.task(task)?;
        let r = decode_request(&a.request)?;
        let task_hex = task.to_string();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id, &a.requester])?;
        let mut q = PolicyRequest::new(Action::Approve, &principal, Target::Task, self.now());
        q.task = Some(task_info(&t, &task_hex));
        q.agents = &agents;
        q.requester = Some(&a.requester);
        q.ttl_ms = r.ttl_ms;
        let d = self.decide(&q);
        Ok((a, requester, d))
    }

    /// Approves a pending request and issues its grant to the requester.
    pub async fn approve(
        &self,
        caller: &Caller,
        task: &TaskId,
        hash: &str,
        comment: &str,
    ) -> Result<(ApprovalRecord, Issued), ApiError> {
        let guard = self.writer.lock().await;
        let (mut a, requester, approve) =
            self.check_approver(caller, task, hash, "approve").await?;
        let now = self.now();
        if !approve.allowed {
            drop(guard);
            return Err(self.refuse_approver(caller, task, &approve).await);
        }
        // The grant itself is decided again, under the policy in force now.
        let r = decode_request(&a.request)?;
        let t = self.task(task)?;
        let task_hex = task.to_string();
        let principal = agent_info(&requester);
        let agents = self.related(&[&requester.id])?;
        let q = grant_request(&principal, &r, task_info(&t, &task_hex), &agents, now);
        let grant = self.decide(&q);
        a.decided_by = caller.agent.id.to_string();
        a.decided_ms = now;
        a.comment = comment.chars().take(1024).collect();
        if !grant.allowed {
            a.state = ApprovalState::Denied;
            let mut t = t;
            t.state = TaskState::Denied;
            t.ended_ms = now;
            t.end_reason = format!("approved, but policy now denies it: {}", grant.reason);
            let mut e = with_decision(
                event(&caller.agent.id, AuditAction::ApprovalDenied, now),
                &grant,
            );
            e.task = Some(*task);
            e.reason = t.end_reason.clone();
            self.commit_and_wait(
                guard,
                Change {
                    tasks: vec![t],
                    approvals: vec![a],
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
            self.approvals_changed.send_modify(|n| *n += 1);
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::PolicyDenied,
                format!("the policy in force now denies the grant: {}", grant.reason),
            ));
        }
        a.state = ApprovalState::Approved;
        let mut approved = with_decision(
            event(&caller.agent.id, AuditAction::ApprovalApproved, now),
            &approve,
        );
        approved.task = Some(*task);
        approved.severity = Severity::Notice;
        approved.reason = a.comment.clone();
        approved
            .detail
            .insert("request_hash".into(), a.request_hash.clone());
        approved
            .detail
            .insert("requester".into(), a.requester.clone());
        let mut issued_event = with_decision(
            event(&caller.agent.id, AuditAction::GrantIssued, now),
            &grant,
        );
        issued_event.task = Some(*task);
        issued_event
            .detail
            .insert("intent".into(), r.intent.clone());
        issued_event
            .detail
            .insert("approved_by".into(), caller.agent.id.to_string());
        let issued = self
            .issue_grant(
                guard,
                caller,
                *task,
                &r,
                grant,
                issued_event,
                now,
                Some((a.clone(), approved, requester)),
            )
            .await?;
        Ok((a, issued))
    }

    /// Denies a pending request.
    pub async fn deny(
        &self,
        caller: &Caller,
        task: &TaskId,
        hash: &str,
        comment: &str,
    ) -> Result<(ApprovalRecord, TaskRecord), ApiError> {
        let guard = self.writer.lock().await;
        let (mut a, _, approve) = self.check_approver(caller, task, hash, "deny").await?;
        if !approve.allowed {
            drop(guard);
            return Err(self.refuse_approver(caller, task, &approve).await);
        }
        let now = self.now();
        a.state = ApprovalState::Denied;
        a.decided_by = caller.agent.id.to_string();
        a.decided_ms = now;
        a.comment = comment.chars().take(1024).collect();
        let mut t = self.task(task)?;
        t.state = TaskState::Denied;
        t.ended_ms = now;
        t.end_reason = format!("denied by `{}`: {}", caller.agent.id, a.comment);
        let mut e = with_decision(
            event(&caller.agent.id, AuditAction::ApprovalDenied, now),
            &approve,
        );
        e.task = Some(*task);
        e.set_verdict(Verdict::Deny);
        e.reason = a.comment.clone();
        e.severity = Severity::Notice;
        e.detail
            .insert("request_hash".into(), a.request_hash.clone());
        e.detail.insert("requester".into(), a.requester.clone());
        self.commit_and_wait(
            guard,
            Change {
                tasks: vec![t.clone()],
                approvals: vec![a.clone()],
                audit: vec![e],
                ..Change::default()
            },
            Some(caller),
        )
        .await?;
        self.approvals_changed.send_modify(|n| *n += 1);
        Ok((a, t))
    }

    /// Audits an approver refused by policy and returns the error.
    async fn refuse_approver(&self, caller: &Caller, task: &TaskId, d: &Decision) -> ApiError {
        let mut e = with_decision(
            event(&caller.agent.id, AuditAction::ApprovalRefused, self.now()),
            d,
        );
        e.task = Some(*task);
        if let Err(err) = self.audit_refusal(e, Some(caller)).await {
            return err;
        }
        ApiError::new(
            tonic::Code::PermissionDenied,
            ErrorReason::PolicyDenied,
            format!("policy does not let you approve this request: {}", d.reason),
        )
    }

    /// Marks pending requests past their expiry as expired (and their tasks), with an
    /// audit record each. Called by the garbage collector; returns how many expired.
    pub async fn expire_approvals(&self) -> Result<usize, ApiError> {
        let now = self.now();
        // From the expiry index: the pass costs what is due, not every request ever made.
        // A pass takes at most MAX_EXPIRED_PER_PASS; the rest wait for the next one.
        let due = self.store.approvals_due(now, MAX_EXPIRED_PER_PASS)?;
        if due.is_empty() {
            return Ok(0);
        }
        let guard = self.writer.lock().await;
        let mut change = Change::default();
        for id in due {
            // Re-read under the lock: it may have been decided meanwhile. An unreadable
            // request must not stop the others from expiring.
            let mut a = match self.store.approval(&id) {
                Ok(Some(a)) => a,
                Ok(None) => continue,
                Err(mandate_store::StoreError::Corrupt { key, why }) => {
                    tracing::warn!(key, why, "skipping an unreadable approval request");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if a.state != ApprovalState::Pending {
                continue;
            }
            a.state = ApprovalState::Expired;
            a.decided_ms = now;
            if let Some(mut t) = self.store.task(&id)?
                && t.state == TaskState::PendingApproval
            {
                t.state = TaskState::Expired;
                t.ended_ms = now;
                t.end_reason = "the approval request expired unanswered".into();
                change.tasks.push(t);
            }
            let mut e = event(
                &self.config.coordinator_id,
                AuditAction::ApprovalExpired,
                now,
            );
            e.task = Some(id);
            e.set_verdict(Verdict::Deny);
            e.reason = "nobody decided before the request expired".into();
            e.severity = Severity::Notice;
            e.detail.insert("requester".into(), a.requester.clone());
            change.audit.push(e);
            change.approvals.push(a);
        }
        let n = change.approvals.len();
        if n > 0 {
            self.commit_and_wait(guard, change, None).await?;
            self.approvals_changed.send_modify(|c| *c += 1);
        }
        Ok(n)
    }

    /// Break-glass: time-boxed emergency access for a person, with a reason and a ticket.
    /// The root link is of kind break-glass (never delegable: verifiers refuse any link
    /// below it), capped at the server's limit whatever policy says, and audited at high
    /// severity whether granted or refused.
    pub async fn break_glass(
        &self,
        caller: &Caller,
        capabilities: Vec<Capability>,
        ttl_ms: u64,
        reason: &str,
        ticket: &str,
        signals: &BTreeMap<String, String>,
    ) -> Result<Issued, ApiError> {
        let now = self.now();
        let task_id = TaskId::random().map_err(|e| {
            ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string())
        })?;
        tracing::Span::current().record("task", tracing::field::display(&task_id));
        let mut e = event(&caller.agent.id, AuditAction::BreakGlassDenied, now);
        e.task = Some(task_id);
        e.severity = Severity::High;
        e.set_verdict(Verdict::Deny);
        e.reason = reason.chars().take(1024).collect();
        e.detail
            .insert("ticket".into(), ticket.chars().take(256).collect());
        e.detail
            .insert("requested_ttl_ms".into(), ttl_ms.to_string());
        // Every attempt is audited at high severity, malformed ones included.
        let invalid = if let Err(err) = check_signals(signals) {
            Some(err.message)
        } else if capabilities.is_empty() {
            Some("break-glass needs at least one capability".to_owned())
        } else if ttl_ms == 0 {
            Some("ttl_ms must be above 0".to_owned())
        } else if reason.trim().is_empty() || ticket.trim().is_empty() {
            Some("break-glass needs a reason and a ticket".to_owned())
        } else if reason.len() > 1024 || ticket.len() > 256 {
            Some("the reason is limited to 1024 bytes and the ticket to 256".to_owned())
        } else if let Err(err) = check_request_size(&capabilities, "", &BTreeMap::new()) {
            Some(err.message)
        } else {
            None
        };
        if let Some(why) = invalid {
            e.detail.insert("refusal".into(), why.clone());
            self.audit_refusal(e, Some(caller)).await?;
            return Err(ApiError::invalid(why));
        }
        if let Err(refusal) = access::check(caller, Ask::BreakGlass) {
            e.detail
                .insert("refusal".into(), "break-glass is for people only".into());
            self.audit_refusal(e, Some(caller)).await?;
            return Err(refusal);
        }
        let holder = agent_key(&caller.agent)?;
        let holder_agent =
            AgentId::new(caller.agent.id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let fields = BTreeMap::from([("ticket".to_owned(), ticket.to_owned())]);
        let task_hex = task_id.to_string();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id])?;
        let mut q = PolicyRequest::new(
            Action::BreakGlass,
            &principal,
            Target::Capabilities(&capabilities),
            now,
        );
        q.task = Some(TaskInfo {
            id: &task_hex,
            requester: &caller.agent.id,
            intent: reason,
            fields: &fields,
        });
        q.agents = &agents;
        q.ttl_ms = ttl_ms;
        q.reason = reason;
        q.ticket = ticket;
        q.signals = signals;
        let decision = self.decide(&q);
        let guard = self.writer.lock().await;
        self.current(caller)?;
        let decision = self.decide_again_if_reloaded(&q, decision);
        let mut e = with_decision(e, &decision);
        e.severity = Severity::High;
        if !decision.allowed || decision.obligations.require_approval {
            drop(guard);
            e.set_verdict(Verdict::Deny);
            self.audit_refusal(e, Some(caller)).await?;
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::PolicyDenied,
                if decision.allowed {
                    "break-glass cannot wait for an approval; fix the policy".to_owned()
                } else {
                    format!("policy denied break-glass: {}", decision.reason)
                },
            ));
        }
        let ttl = ttl_ms
            .min(self.ttl_cap(&decision))
            .min(self.config.max_break_glass_ms);
        let expires = now.saturating_add(ttl);
        let spec = LinkSpec::new(holder, holder_agent, capabilities, now, expires)
            .map_err(|e| {
                ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string())
            })?
            .max_depth(0)
            .require_seal(true)
            .require_online(decision.obligations.require_online);
        let chain = Chain::issue_root(&self.key, task_id, LinkKind::BreakGlass, spec)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let task = TaskRecord {
            id: task_id,
            requester: caller.agent.id.to_string(),
            intent: reason.to_owned(),
            intent_fields: fields,
            state: TaskState::Active,
            created_ms: now,
            deadline_ms: expires,
            ended_ms: 0,
            end_reason: String::new(),
            root_link: Some(chain.root().id()),
        };
        self.quota
            .take_live_link(&*self.store, &self.revoked, &caller.agent.id, now)?;
        e.set_action(AuditAction::BreakGlassGranted);
        e.links = vec![chain.root().id().to_string()];
        e.detail.insert("ttl_ms".into(), ttl.to_string());
        self.commit_root(guard, task, chain, e, decision, caller, now, 0)
            .await
    }
}
