//! Tasks and their grants: starting a task (policy decides: grant, deny or approval),
//! issuing and renewing its root link, ending it (which revokes its whole tree).

use super::access::{self, Ask};
use super::{
    Coordinator, Issued, RevokedLinks, Started, agent_key, event, stored_link, with_decision,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::{Decision, agent_info, check_signals, task_info};
use mandate_core::{AgentId, Capability, Chain, LinkKind, LinkSpec, TaskId};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, AgentInfo, Target, TaskInfo};
use mandate_store::{AgentRecord, AuditEvent, Change, LinkRecord, TaskRecord, TaskState};
use mandate_store::{AuditAction, Verdict};
use std::collections::BTreeMap;

/// A start-task request.
#[derive(Clone, Debug, Default)]
pub struct TaskRequest {
    /// Intent text.
    pub intent: String,
    /// Intent fields.
    pub intent_fields: BTreeMap<String, String>,
    /// Requested capabilities.
    pub capabilities: Vec<Capability>,
    /// Requested lifetime, ms.
    pub ttl_ms: u64,
    /// Requested delegation depth.
    pub max_depth: u32,
    /// Require online authorisation.
    pub require_online: bool,
    /// Caller-supplied signals for policy.
    pub signals: BTreeMap<String, String>,
    /// Most allowed `Authorize` uses of the task's roots together (0: no limit).
    pub max_uses: u32,
}

/// Refuses requests larger than any link may carry before policy is asked: the decision
/// runs one Cedar evaluation per (resource, action) pair, and the intent is stored.
pub(crate) fn check_request_size(
    capabilities: &[Capability],
    intent: &str,
    fields: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let limits = mandate_core::Limits::default();
    if capabilities.len() > limits.max_capabilities {
        return Err(ApiError::invalid(format!(
            "at most {} capabilities per link, got {}",
            limits.max_capabilities,
            capabilities.len()
        )));
    }
    for c in capabilities {
        let actions = c.actions.to_strings().len();
        if actions > limits.max_actions || c.constraints.len() > limits.max_constraints {
            return Err(ApiError::invalid(format!(
                "a capability has at most {} actions and {} constraints",
                limits.max_actions, limits.max_constraints
            )));
        }
    }
    if intent.len() > 4096
        || fields.len() > 32
        || fields.iter().any(|(k, v)| k.len() > 64 || v.len() > 1024)
    {
        return Err(ApiError::invalid(
            "the intent is limited to 4096 bytes and 32 fields (names up to 64 bytes, values up to 1024)",
        ));
    }
    Ok(())
}

/// The `RequestGrant` question for a start request (at start, and again on approval).
pub(super) fn grant_request<'a>(
    principal: &'a AgentInfo,
    r: &'a TaskRequest,
    task: TaskInfo<'a>,
    agents: &'a [AgentInfo],
    now: u64,
) -> PolicyRequest<'a> {
    let mut q = PolicyRequest::new(
        Action::RequestGrant,
        principal,
        Target::Capabilities(&r.capabilities),
        now,
    );
    q.task = Some(task);
    q.agents = agents;
    q.ttl_ms = r.ttl_ms;
    q.max_depth = r.max_depth;
    q.require_online = r.require_online;
    q.signals = &r.signals;
    q
}

impl Coordinator {
    /// Starts a task: policy decides; on grant, issues a sealed-subtree root to the caller;
    /// when policy requires approval, records a pending request instead.
    pub async fn start_task(&self, caller: &Caller, r: TaskRequest) -> Result<Started, ApiError> {
        if r.capabilities.is_empty() {
            return Err(ApiError::invalid("a task needs at least one capability"));
        }
        if r.ttl_ms == 0 {
            return Err(ApiError::invalid("ttl_ms must be above 0"));
        }
        check_signals(&r.signals)?;
        check_request_size(&r.capabilities, &r.intent, &r.intent_fields)?;
        agent_key(&caller.agent)?;
        let now = self.now();
        let task_id = TaskId::random().map_err(|e| {
            ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string())
        })?;
        let task_hex = task_id.to_string();
        tracing::Span::current().record("task", task_hex.as_str());
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id])?;
        let task = TaskInfo {
            id: &task_hex,
            requester: &caller.agent.id,
            intent: &r.intent,
            fields: &r.intent_fields,
        };
        let q = grant_request(&principal, &r, task, &agents, now);
        let decision = self.decide(&q);
        let guard = self.writer.lock().await;
        self.current(caller)?;
        let decision = self.decide_again_if_reloaded(&q, decision);
        let mut e = with_decision(
            event(&caller.agent.id, AuditAction::GrantDenied, now),
            &decision,
        );
        e.task = Some(task_id);
        e.detail.insert("intent".into(), r.intent.clone());
        if !decision.allowed {
            drop(guard);
            self.audit_refusal(e, Some(caller)).await?;
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::PolicyDenied,
                format!("policy denied the grant: {}", decision.reason),
            ));
        }
        if decision.obligations.require_approval {
            return self
                .request_approval(guard, caller, task_id, r, decision, e, now)
                .await;
        }
        let issued = self
            .issue_grant(guard, caller, task_id, &r, decision, e, now, None)
            .await?;
        Ok(Started::Granted(issued))
    }

    /// Issues the root link of a task whose grant is decided (at start, or on approval)
    /// and commits it with `extra` records; the caller holds the writer lock.
    #[expect(clippy::too_many_arguments, reason = "the parts of one issuance")]
    pub(super) async fn issue_grant(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        caller: &Caller,
        task_id: TaskId,
        r: &TaskRequest,
        decision: Decision,
        mut e: AuditEvent,
        now: u64,
        approval: Option<(mandate_store::ApprovalRecord, AuditEvent, AgentRecord)>,
    ) -> Result<Issued, ApiError> {
        // The holder is the requester (the caller, or the requester of an approved task).
        let requester = match &approval {
            Some((_, _, requester)) => requester.clone(),
            None => caller.agent.clone(),
        };
        let holder = agent_key(&requester)?;
        let holder_agent =
            AgentId::new(requester.id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let ttl = r.ttl_ms.min(self.ttl_cap(&decision));
        let deadline = now.saturating_add(ttl);
        let spec = LinkSpec::new(holder, holder_agent, r.capabilities.clone(), now, deadline)
            .map_err(|e| {
                ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string())
            })?
            .max_depth(r.max_depth.min(Self::depth_cap(&decision)))
            .require_seal(true)
            .require_online(
                r.require_online || decision.obligations.require_online || r.max_uses > 0,
            );
        let chain = Chain::issue_root(&self.key, task_id, LinkKind::Grant, spec)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let root = chain.root();
        let task = TaskRecord {
            id: task_id,
            requester: requester.id.to_string(),
            intent: r.intent.clone(),
            intent_fields: r.intent_fields.clone(),
            state: TaskState::Active,
            created_ms: now,
            deadline_ms: deadline,
            ended_ms: 0,
            end_reason: String::new(),
            root_link: Some(root.id()),
        };
        e.set_action(AuditAction::GrantIssued);
        e.links = vec![root.id().to_string()];
        e.detail.insert("ttl_ms".into(), ttl.to_string());
        let mut change = Change {
            tasks: vec![task.clone()],
            links: vec![self.link_record(&chain, 0, &self.config.coordinator_id, now, r.max_uses)],
            audit: Vec::new(),
            ..Change::default()
        };
        self.quota
            .take_live_link(&*self.store, &self.revoked, &requester.id, now)?;
        let approved = approval.is_some();
        if let Some((record, approved_event, _)) = approval {
            change.approvals.push(record);
            change.audit.push(approved_event);
        }
        change.audit.push(e);
        self.commit_and_wait(guard, change, Some(caller)).await?;
        if approved {
            self.approvals_changed.send_modify(|n| *n += 1);
        }
        Ok(Issued {
            task,
            chain,
            decision,
        })
    }

    /// Records a task (new or with a new root) with its root link and audit event, and
    /// hands back what was issued: the tail of `start_task` and `renew`.
    #[expect(clippy::too_many_arguments, reason = "the parts of one issuance")]
    pub(super) async fn commit_root(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        task: TaskRecord,
        chain: Chain,
        audit: AuditEvent,
        decision: Decision,
        caller: &Caller,
        now: u64,
        max_uses: u32,
    ) -> Result<Issued, ApiError> {
        let change = Change {
            tasks: vec![task.clone()],
            links: vec![self.link_record(&chain, 0, &self.config.coordinator_id, now, max_uses)],
            audit: vec![audit],
            ..Change::default()
        };
        self.commit_and_wait(guard, change, Some(caller)).await?;
        Ok(Issued {
            task,
            chain,
            decision,
        })
    }

    pub(super) fn link_record(
        &self,
        chain: &Chain,
        index: usize,
        issuer: &str,
        now: u64,
        max_uses: u32,
    ) -> LinkRecord {
        let link = &chain.links()[index];
        LinkRecord {
            id: link.id(),
            task: chain.task(),
            parent: index.checked_sub(1).map(|p| chain.links()[p].id()),
            digest: *link.digest(),
            holder: link.body().holder_agent.as_str().to_owned(),
            issuer: issuer.to_owned(),
            encoded: link.encode(),
            expires_at_ms: link.body().expires_at_ms,
            created_ms: now,
            max_uses,
        }
    }

    /// Reads a task.
    pub fn task(&self, id: &TaskId) -> Result<TaskRecord, ApiError> {
        self.store
            .task(id)?
            .ok_or_else(|| ApiError::not_found("task", &id.to_string()))
    }

    /// Ends a task (completed or failed) and revokes its whole tree.
    pub async fn end_task(
        &self,
        caller: &Caller,
        id: &TaskId,
        state: TaskState,
        reason: &str,
    ) -> Result<(TaskRecord, RevokedLinks), ApiError> {
        let _w = self.writer.lock().await;
        self.current(caller)?;
        let mut task = self.task(id)?;
        access::check(
            caller,
            Ask::EndTask {
                requester: &task.requester,
            },
        )?;
        if task.state.is_final() {
            return Err(ApiError::precondition(
                ErrorReason::TaskEnded,
                format!("task `{id}` has already ended"),
            ));
        }
        let now = self.now();
        let roots = self.store.task_roots(id)?;
        let what = if state == TaskState::Completed {
            "completed"
        } else {
            "failed"
        };
        let (revocations, _) = self.cascade(&roots, &format!("task {what}: {reason}"), now)?;
        // A task still waiting for approval takes its request with it: no later approval
        // may bring it back.
        let mut approvals = Vec::new();
        if task.state == TaskState::PendingApproval
            && let Some(mut a) = self.store.approval(id)?
            && a.state == mandate_store::ApprovalState::Pending
        {
            a.state = mandate_store::ApprovalState::Denied;
            a.decided_by = caller.agent.id.to_string();
            a.decided_ms = now;
            a.comment = format!("task {what} before a decision: {reason}");
            approvals.push(a);
        }
        task.state = state;
        task.ended_ms = now;
        task.end_reason = reason.to_owned();
        let action = if state == TaskState::Completed {
            AuditAction::TaskCompleted
        } else {
            AuditAction::TaskFailed
        };
        let mut e = event(&caller.agent.id, action, now);
        e.task = Some(*id);
        e.reason = reason.to_owned();
        e.links = revocations.iter().map(|r| r.link.to_string()).collect();
        e.detail
            .insert("revoked".into(), revocations.len().to_string());
        let committed = self
            .commit_and_wait(
                _w,
                Change {
                    tasks: vec![task.clone()],
                    revocations,
                    approvals,
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
        self.approvals_changed.send_modify(|n| *n += 1);
        Ok((
            task,
            RevokedLinks {
                links: committed.revoked,
                epoch: committed.epoch.unwrap_or(0),
            },
        ))
    }

    /// Issues a fresh root link for a task after a new decision; never past the deadline.
    pub async fn renew(
        &self,
        caller: &Caller,
        id: &TaskId,
        ttl_ms: u64,
        signals: &BTreeMap<String, String>,
    ) -> Result<Issued, ApiError> {
        check_signals(signals)?;
        let task = self.task(id)?;
        access::check(
            caller,
            Ask::Renew {
                requester: &task.requester,
            },
        )?;
        let now = self.now();
        if task.state != TaskState::Active || now >= task.deadline_ms {
            return Err(ApiError::precondition(
                ErrorReason::TaskNotActive,
                format!("task `{id}` is not active"),
            ));
        }
        let current = task
            .root_link
            .map(|l| self.store.link(&l))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                ApiError::precondition(ErrorReason::TaskNotActive, "the task has no root link")
            })?;
        let root = stored_link(&current)?;
        let b = root.body();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id])?;
        let task_hex = id.to_string();
        let mut q = PolicyRequest::new(
            Action::Renew,
            &principal,
            Target::Capabilities(&b.capabilities),
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.ttl_ms = ttl_ms.max(1);
        q.max_depth = b.max_depth;
        q.require_online = b.require_online;
        q.signals = signals;
        let decision = self.decide(&q);
        let refuse = |decision: &Decision| {
            let mut e = with_decision(
                event(&caller.agent.id, AuditAction::GrantRenewalDenied, now),
                decision,
            );
            e.task = Some(*id);
            e.set_verdict(Verdict::Deny);
            e
        };
        if !decision.allowed || decision.obligations.require_approval {
            return self
                .refuse_renewal(refuse(&decision), &decision, caller)
                .await;
        }
        let mut e = with_decision(
            event(&caller.agent.id, AuditAction::GrantRenewed, now),
            &decision,
        );
        e.task = Some(*id);
        let expires = now
            .saturating_add(ttl_ms.max(1).min(self.ttl_cap(&decision)))
            .min(task.deadline_ms);
        let spec = LinkSpec::new(
            b.holder,
            b.holder_agent.clone(),
            b.capabilities.clone(),
            now,
            expires,
        )
        .map_err(|e| ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string()))?
        .max_depth(b.max_depth.min(Self::depth_cap(&decision)))
        .require_seal(true)
        .require_online(b.require_online || decision.obligations.require_online);
        let chain = Chain::issue_root(&self.key, *id, b.kind, spec)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let _w = self.writer.lock().await;
        self.current(caller)?;
        let again = self.decide_again_if_reloaded(&q, decision.clone());
        if again != decision {
            drop(_w);
            // The set changed between the decision and the lock: decide afresh.
            return Box::pin(self.renew(caller, id, ttl_ms, signals)).await;
        }
        let mut task = self.task(id)?;
        if task.state != TaskState::Active {
            return Err(ApiError::precondition(
                ErrorReason::TaskNotActive,
                format!("task `{id}` is not active"),
            ));
        }
        // Earlier roots stay valid until they expire: each renewal is one more live link.
        self.quota
            .take_live_link(&*self.store, &self.revoked, &caller.agent.id, now)?;
        task.root_link = Some(chain.root().id());
        e.links = vec![chain.root().id().to_string(), current.id.to_string()];
        // A renewal is the same grant: its root counts uses against the task's limit.
        self.commit_root(_w, task, chain, e, decision, caller, now, current.max_uses)
            .await
    }

    pub(super) async fn refuse_renewal(
        &self,
        e: AuditEvent,
        decision: &Decision,
        caller: &Caller,
    ) -> Result<Issued, ApiError> {
        self.audit_refusal(e, Some(caller)).await?;
        Err(ApiError::new(
            tonic::Code::PermissionDenied,
            ErrorReason::PolicyDenied,
            if decision.allowed {
                "policy requires approval for this grant: start a new task to request it".to_owned()
            } else {
                format!("policy denied the renewal: {}", decision.reason)
            },
        ))
    }
}
