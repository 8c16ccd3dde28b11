//! Admitting delegations in groups.
//!
//! A delegation is checked (signatures, policy) and sealed before the writer lock; what
//! must hold at commit time is checked under it. Every sled batch costs a log buffer
//! write and a wake-up of all of sled's I/O threads, so delegations are admitted in
//! groups: each request queues its delegation and takes the writer lock, and whoever holds
//! the lock admits every queued delegation, one after the other, and commits all those it
//! accepts (and the audit records of those policy refuses) as one change. A delegation
//! admitted later in a group sees the links accepted before it, exactly as if each had
//! committed alone.

use mandate_store::{AuditAction, Verdict};
use std::collections::HashMap;

use mandate_core::{Chain, Digest, LinkId, Seal};
use mandate_store::{AgentStatus, AuditEvent, Change, Severity, TaskState};
use tokio::sync::oneshot;

use super::{Coordinator, Issued, lock, read};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::Decision;

/// A delegation checked and sealed outside the writer lock, with where to answer.
pub(super) struct Pending {
    pub(super) delegation: Delegation,
    pub(super) reply: oneshot::Sender<Admitted>,
}

/// A delegation checked and sealed outside the writer lock.
pub(super) struct Delegation {
    pub(super) caller: Caller,
    pub(super) chain: Chain,
    pub(super) seal: Seal,
    pub(super) decision: Decision,
    pub(super) event: AuditEvent,
    pub(super) holder_id: String,
    pub(super) ttl: u64,
    pub(super) depth: u32,
    pub(super) now: u64,
    pub(super) max_uses: u32,
}

/// The delegations one holder of the writer lock admits. If the holder's call is
/// cancelled before it admits them (the client went away), they go back to the queue,
/// where their own callers, each waiting for the lock, find them.
pub(super) struct Group<'a> {
    queue: &'a std::sync::Mutex<Vec<Pending>>,
    jobs: Vec<Pending>,
}

impl<'a> Group<'a> {
    /// Takes every queued delegation.
    pub(super) fn take(queue: &'a std::sync::Mutex<Vec<Pending>>) -> Group<'a> {
        let jobs = std::mem::take(&mut *lock(queue));
        Group { queue, jobs }
    }

    /// Takes the delegations queued since; whether there were any.
    pub(super) fn take_more(&mut self) -> bool {
        let more = std::mem::take(&mut *lock(self.queue));
        let any = !more.is_empty();
        self.jobs.extend(more);
        any
    }

    pub(super) fn len(&self) -> usize {
        self.jobs.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The delegations, to admit now.
    pub(super) fn into_jobs(mut self) -> Vec<Pending> {
        std::mem::take(&mut self.jobs)
    }
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if !self.jobs.is_empty() {
            lock(self.queue).append(&mut self.jobs);
        }
    }
}

/// How admission went for one delegation.
#[derive(Debug)]
pub(super) enum Admitted {
    /// Accepted and committed: answer once durable.
    Issued(Box<Issued>),
    /// Refused by policy, the refusal committed to the audit log: answer once durable.
    Refused(ApiError),
    /// Refused with nothing committed.
    Failed(ApiError),
    /// The policy set changed since the decision: check again from the start.
    Reloaded,
}

/// One delegation's part of the group's change.
enum Outcome {
    Accepted(Box<Issued>, mandate_store::LinkRecord, AuditEvent),
    Refused(ApiError, AuditEvent),
}

impl Coordinator {
    /// Admits every queued delegation (called with the writer lock held): checks each
    /// against the store and the links accepted before it in the group, commits what was
    /// accepted or refused by policy as one change, and answers each.
    pub(super) fn admit_delegations(&self, group: Vec<Pending>) {
        tracing::debug!(delegations = group.len(), "admitting a group");
        // Whether each new link is already registered, for the whole group in one pass (one
        // round trip on a networked store).
        let children: Vec<LinkId> = group
            .iter()
            .filter_map(|p| p.delegation.chain.links().last().map(|l| l.id()))
            .collect();
        let registered: std::collections::HashSet<LinkId> = match self.store.links_exist(&children)
        {
            Ok(known) => children
                .into_iter()
                .zip(known)
                .filter_map(|(id, known)| known.then_some(id))
                .collect(),
            Err(e) => {
                let e = ApiError::from(e);
                for p in group {
                    let _ = p.reply.send(Admitted::Failed(e.clone()));
                }
                return;
            }
        };
        let mut staged: HashMap<LinkId, Digest> = HashMap::new();
        let mut change = Change::default();
        let mut answers = Vec::with_capacity(group.len());
        for Pending { delegation, reply } in group {
            // Its caller went away (the request was cancelled) before admission: nobody
            // would learn of the link, so it is not registered.
            if reply.is_closed() {
                continue;
            }
            let nonce = (delegation.caller.nonce, delegation.caller.nonce_expires_ms);
            let admitted = match self.admit_delegation(delegation, &staged, &registered) {
                Ok(None) => Admitted::Reloaded,
                Ok(Some(Outcome::Accepted(issued, record, event))) => {
                    staged.insert(record.id, record.digest);
                    change.links.push(record);
                    change.audit.push(event);
                    change.nonces.push(nonce);
                    Admitted::Issued(issued)
                }
                Ok(Some(Outcome::Refused(e, event))) => {
                    change.audit.push(event);
                    change.nonces.push(nonce);
                    Admitted::Refused(e)
                }
                Err(e) => Admitted::Failed(e),
            };
            answers.push((reply, admitted));
        }
        if !change.audit.is_empty()
            && let Err(e) = self.apply(change, None)
        {
            for (reply, admitted) in answers {
                let _ = reply.send(match admitted {
                    Admitted::Issued(_) | Admitted::Refused(_) => Admitted::Failed(e.clone()),
                    other => other,
                });
            }
            return;
        }
        for (reply, admitted) in answers {
            let _ = reply.send(admitted);
        }
    }

    /// The lock-held checks of one delegation. `None` when the policy set changed since its
    /// decision.
    fn admit_delegation(
        &self,
        p: Delegation,
        staged: &HashMap<LinkId, Digest>,
        registered: &std::collections::HashSet<LinkId>,
    ) -> Result<Option<Outcome>, ApiError> {
        if self.policies.current().set.hash() != p.decision.policy_hash {
            return Ok(None);
        }
        self.current(&p.caller)?;
        // Read the new holder again under the lock (through the cache, which every commit
        // writing agents, all under this lock, updates): an agent disabled meanwhile gets
        // nothing.
        if self
            .agent_record(&p.holder_id)?
            .is_none_or(|a| a.status != AgentStatus::Active)
        {
            return Err(ApiError::precondition(
                ErrorReason::AgentDisabled,
                format!("the new holder `{}` is disabled", p.holder_id),
            ));
        }
        let mut chain = p.chain;
        let task = self.task(&chain.task())?;
        // The time under the lock: a delegation may have waited for it.
        let now = self.now().max(p.now);
        if task.state != TaskState::Active || now >= task.deadline_ms {
            return Err(ApiError::precondition(
                ErrorReason::TaskNotActive,
                format!("task `{}` is not active", task.id),
            ));
        }
        let n = chain.len();
        let (parent, child) = (chain.links()[n - 2].id(), &chain.links()[n - 1]);
        // Every link above the new one must be the registered link (same digest), in the
        // store or accepted earlier in this group.
        for l in &chain.links()[..n - 1] {
            let registered = match staged.get(&l.id()) {
                Some(digest) => Some(*digest),
                None => self.store.link(&l.id())?.map(|r| r.digest),
            };
            if registered != Some(*l.digest()) {
                return Err(ApiError::precondition(
                    ErrorReason::UnregisteredLink,
                    format!(
                        "link `{}` of the chain is not registered with this coordinator",
                        l.id()
                    ),
                ));
            }
        }
        if staged.contains_key(&child.id()) || registered.contains(&child.id()) {
            return Err(ApiError::new(
                tonic::Code::AlreadyExists,
                ErrorReason::AlreadyExists,
                format!("link `{}` is already registered", child.id()),
            ));
        }
        {
            let revoked = read(&self.revoked);
            self.verifier
                .verify_for_sealing(&chain, &*revoked)
                .map_err(|d| ApiError::denied(&d))?;
        }
        let decision = &p.decision;
        let online = chain.links().iter().any(|l| l.body().require_online);
        let refusal = if !decision.allowed {
            Some(format!("policy denied the delegation: {}", decision.reason))
        } else if p.ttl > self.ttl_cap(decision) || p.depth > Self::depth_cap(decision) {
            Some(format!(
                "delegation exceeds the policy bounds ({} ms, depth {}; asked {} ms, depth {})",
                self.ttl_cap(decision),
                Self::depth_cap(decision),
                p.ttl,
                p.depth
            ))
        } else if decision.obligations.require_approval {
            Some(
                "policy requires approval, which applies to grants only: ask for a grant instead"
                    .to_owned(),
            )
        } else if decision.obligations.require_online && !online {
            Some("policy requires online checks: set require_online on the new link".to_owned())
        } else {
            None
        };
        if let Some(why) = refusal {
            let mut denied = p.event.clone();
            denied.set_action(AuditAction::DelegationDenied);
            denied.set_verdict(Verdict::Deny);
            denied.reason = why.clone();
            denied.severity = Severity::Notice;
            return Ok(Some(Outcome::Refused(
                ApiError::new(
                    tonic::Code::PermissionDenied,
                    ErrorReason::PolicyDenied,
                    why,
                ),
                denied,
            )));
        }
        // Quota last, so a refused delegation does not use any.
        self.quota.take_delegation(
            &*self.store,
            &self.revoked,
            &p.caller.agent.id,
            &parent,
            &chain.task(),
            now,
        )?;
        chain.set_leaf_seal(p.seal);
        let record = self.link_record(&chain, n - 1, &p.caller.agent.id, now, p.max_uses);
        Ok(Some(Outcome::Accepted(
            Box::new(Issued {
                task,
                chain,
                decision: p.decision,
            }),
            record,
            p.event,
        )))
    }
}
