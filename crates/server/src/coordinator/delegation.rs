//! Delegation: a link signed by the holder of its parent, checked against the tree, the
//! token rules and policy, then admitted with others in one commit (see `admission`) and
//! sealed.

use super::admission;
use super::{Coordinator, Issued, agent_key, event, lock, read, with_decision};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::{agent_info, check_signals, task_info};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, Target};
use mandate_store::{AgentStatus, Severity};
use mandate_store::{AuditAction, Verdict};
use std::collections::BTreeMap;

impl Coordinator {
    /// Registers and seals a delegation submitted by the holder of its parent.
    pub async fn delegate(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
        max_uses: u32,
    ) -> Result<Issued, ApiError> {
        check_signals(signals)?;
        match self
            .delegate_checked(caller, chain_bytes, signals, max_uses)
            .await
        {
            Ok(issued) => Ok(issued),
            // Policy refusals are audited where they are decided; a failing store cannot
            // take another record.
            Err(e)
                if e.reason == ErrorReason::PolicyDenied
                    || e.reason == ErrorReason::StoreUnavailable =>
            {
                Err(e)
            }
            Err(e) => {
                let now = self.now();
                let mut record = event(&caller.agent.id, AuditAction::DelegationDenied, now);
                record.set_verdict(Verdict::Deny);
                record.reason = e.reason.as_str().to_owned();
                record.severity = Severity::Notice;
                record
                    .detail
                    .insert("message".into(), e.message.chars().take(200).collect());
                if let Ok(chain) = self.verifier.decode_chain(chain_bytes) {
                    record.task = Some(chain.task());
                    record.links = chain
                        .links()
                        .iter()
                        .rev()
                        .take(2)
                        .map(|l| l.id().to_string())
                        .collect();
                }
                self.audit_refusal(record, None).await?;
                Err(e)
            }
        }
    }

    pub(super) async fn delegate_checked(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
        max_uses: u32,
    ) -> Result<Issued, ApiError> {
        // A reload between the decision and admission means deciding again under the new
        // set; reloads are rare, so this loops at most a few times.
        loop {
            if let Some(issued) = self
                .delegate_once(caller, chain_bytes, signals, max_uses)
                .await?
            {
                return Ok(issued);
            }
        }
    }

    /// One attempt: `None` when the policy set changed before admission.
    pub(super) async fn delegate_once(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
        max_uses: u32,
    ) -> Result<Option<Issued>, ApiError> {
        let chain = self
            .verifier
            .decode_chain(chain_bytes)
            .map_err(|d| ApiError::denied(&d))?;
        if chain.len() < 2 {
            return Err(ApiError::invalid(
                "the chain must end with the new delegation link",
            ));
        }
        // Uses are counted online: offline verifiers must not accept the link.
        if max_uses > 0 && !chain.links().iter().any(|l| l.body().require_online) {
            return Err(ApiError::invalid(
                "a use-limited link must require online authorisation (it, or a link above it, sets require_online)",
            ));
        }
        let n = chain.len();
        let (parent, child) = (&chain.links()[n - 2], &chain.links()[n - 1]);
        let caller_key = agent_key(&caller.agent)?;
        if parent.body().holder != caller_key
            || parent.body().holder_agent.as_str() != caller.agent.id
        {
            return Err(ApiError::forbidden(
                "only the holder of the parent link may delegate from it",
            ));
        }
        let holder_id = child.body().holder_agent.as_str().to_owned();
        let holder = self.agent_record(&holder_id)?.ok_or_else(|| {
            ApiError::precondition(
                ErrorReason::UnknownAgent,
                format!("the new holder `{holder_id}` is not registered"),
            )
        })?;
        if holder.status != AgentStatus::Active {
            return Err(ApiError::precondition(
                ErrorReason::AgentDisabled,
                format!("the new holder `{holder_id}` is disabled"),
            ));
        }
        if agent_key(&holder)? != child.body().holder {
            return Err(ApiError::precondition(
                ErrorReason::HolderKeyMismatch,
                format!("the new link's holder key is not the registered key of `{holder_id}`"),
            ));
        }
        let depth = child.body().depth();
        let ttl = child
            .body()
            .expires_at_ms
            .saturating_sub(child.body().not_before_ms);
        let now = self.now();
        let task = self.task(&chain.task())?;
        let task_hex = task.id.to_string();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id, &holder_id])?;
        let mut q = PolicyRequest::new(
            Action::Delegate,
            &principal,
            Target::Capabilities(&child.body().capabilities),
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.holder = Some(&holder_id);
        q.ttl_ms = ttl;
        q.depth = depth;
        q.max_depth = child.body().max_depth;
        q.signals = signals;
        let decision = self.decide(&q);
        let mut e = with_decision(
            event(&caller.agent.id, AuditAction::DelegationSealed, now),
            &decision,
        );
        e.task = Some(chain.task());
        e.links = vec![child.id().to_string(), parent.id().to_string()];
        e.detail.insert("holder".into(), holder_id.clone());
        // The signature work happens before the writer lock: verifying caches every link,
        // so the check repeated under the lock (for revocations that landed meanwhile) is
        // cheap. The seal is made here too and discarded if the lock-held checks refuse.
        {
            let revoked = read(&self.revoked);
            self.verifier
                .verify_for_sealing(&chain, &*revoked)
                .map_err(|d| ApiError::denied(&d))?;
        }
        let seal = mandate_core::Seal::sign(&self.key, chain.leaf().digest());
        // Queue it, then take the writer lock: whoever holds it admits every queued
        // delegation as one commit (`admission.rs`), so by the time this call holds the
        // lock, its delegation has been admitted by it or by an earlier holder.
        let (reply, admitted) = tokio::sync::oneshot::channel();
        lock(&self.delegations).push(admission::Pending {
            delegation: admission::Delegation {
                caller: caller.clone(),
                chain,
                seal,
                decision,
                event: e,
                holder_id,
                ttl,
                depth,
                now,
                max_uses,
            },
            reply,
        });
        {
            let _w = self.writer.lock().await;
            let mut group = admission::Group::take(&self.delegations);
            // Let delegations still being checked join, while more keep arriving.
            while !group.is_empty() && group.len() < 256 {
                tokio::task::yield_now().await;
                if !group.take_more() {
                    break;
                }
            }
            if !group.is_empty() {
                self.admit_delegations(group.into_jobs());
            }
        }
        match admitted.await {
            Ok(admission::Admitted::Issued(issued)) => {
                self.durable().await?;
                Ok(Some(*issued))
            }
            Ok(admission::Admitted::Refused(e)) => {
                self.durable().await?;
                Err(e)
            }
            Ok(admission::Admitted::Failed(e)) => Err(e),
            Ok(admission::Admitted::Reloaded) => Ok(None),
            Err(_) => Err(ApiError::new(
                tonic::Code::Internal,
                ErrorReason::Internal,
                "a queued delegation was never admitted",
            )),
        }
    }
}
