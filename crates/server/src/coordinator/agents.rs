//! Agents: registration (by an admin, or by an agent for its own workers) and disabling,
//! which revokes every link the agent and the workers below it hold or issued.

use super::access::{self, Ask, Role};
use super::{Coordinator, RevokedLinks, event, with_decision};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::agent_info;
use mandate_core::{AgentId, PublicKey};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, AgentInfo, Target};
use mandate_store::AuditAction;
use mandate_store::{AgentRecord, AgentStatus, Change, Severity, TaskState};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// A registration request.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// Agent id.
    pub agent_id: String,
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// Role.
    pub role: String,
    /// Owner.
    pub owner: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Parent agent id, or empty.
    pub parent: String,
}

impl Coordinator {
    /// `first`, and every active worker registered below them transitively, marked
    /// disabled at `now` (`first` in front, in order), with every link they hold: the roots
    /// of the cascade that goes with disabling them, which reaches every link they issued
    /// (a delegation's issuer holds its parent).
    pub(super) fn disable_closure(
        &self,
        first: Vec<AgentRecord>,
        now: u64,
    ) -> Result<(Vec<AgentRecord>, Vec<mandate_core::LinkId>), ApiError> {
        let mut children: HashMap<AgentId, Vec<AgentRecord>> = HashMap::new();
        self.each_agent(|a| {
            if let Some(p) = a.parent.clone() {
                children.entry(p).or_default().push(a);
            }
            Ok(())
        })?;
        let mut seen: HashSet<AgentId> = first.iter().map(|a| a.id.clone()).collect();
        let mut queue: VecDeque<AgentId> = first.iter().map(|a| a.id.clone()).collect();
        let mut agents = first;
        while let Some(next) = queue.pop_front() {
            for child in children.remove(&next).unwrap_or_default() {
                queue.push_back(child.id.clone());
                if child.status == AgentStatus::Active && seen.insert(child.id.clone()) {
                    agents.push(child);
                }
            }
        }
        let mut roots = Vec::new();
        for a in &mut agents {
            a.status = AgentStatus::Disabled;
            a.disabled_ms = now;
            roots.extend(self.store.agent_links(&a.id)?);
        }
        Ok((agents, roots))
    }

    /// Decides again, under `set`, the registration of every active agent that policy
    /// admitted (one registered by a non-admin: its parent). Returns those the set now
    /// refuses, with the decision. Agents an admin registered were never policy's to
    /// decide and are not decided now.
    pub(super) fn registration_drift(
        &self,
        set: &mandate_policy::PolicySet,
        now: u64,
    ) -> Result<Vec<(AgentRecord, crate::policies::Decision)>, ApiError> {
        let mut out = Vec::new();
        let mut registrars: HashMap<String, Option<AgentRecord>> = HashMap::new();
        self.each_agent(|a| {
            if a.status != AgentStatus::Active {
                return Ok(());
            }
            let registrar = match registrars.get(&a.registered_by) {
                Some(r) => r.clone(),
                None => {
                    let r = self.store.agent(&a.registered_by)?;
                    registrars.insert(a.registered_by.clone(), r.clone());
                    r
                }
            };
            // Registered by an admin (or at bootstrap): not a policy decision.
            let Some(registrar) = registrar.filter(|r| Role::of(&r.role) != Role::Admin) else {
                return Ok(());
            };
            let principal = agent_info(&registrar);
            let agents = self.related(&[&registrar.id])?;
            let target = agent_info(&a);
            let mut q = PolicyRequest::new(
                Action::RegisterAgent,
                &principal,
                Target::Agent(&target),
                now,
            );
            q.agents = &agents;
            let d = set.decide(&q);
            if !d.allowed {
                out.push((a, d));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` on every agent, in id order, a page at a time.
    pub(super) fn each_agent(
        &self,
        mut f: impl FnMut(AgentRecord) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.store.agents(after.as_deref(), 1024)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.id.to_string());
            for a in page {
                f(a)?;
            }
        }
    }

    /// Registers an agent (admin, or an active agent registering its own worker).
    pub async fn register_agent(
        &self,
        caller: &Caller,
        r: Registration,
    ) -> Result<AgentRecord, ApiError> {
        let id = AgentId::new(r.agent_id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let key: [u8; 32] = r
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::invalid("public_key must be 32 bytes"))?;
        let public_key =
            PublicKey::from_bytes(&key).map_err(|e| ApiError::invalid(e.to_string()))?;
        let parent = (!r.parent.is_empty())
            .then(|| AgentId::new(r.parent.clone()))
            .transpose()
            .map_err(|e| ApiError::invalid(format!("parent_agent_id: {e}")))?;
        if id.as_str() == self.config.coordinator_id {
            return Err(ApiError::forbidden(format!(
                "`{id}` is reserved for the coordinator"
            )));
        }
        // An agent of another trust domain would be issued authority by this coordinator
        // under a name another authority controls: only where the operator federated it.
        let coordinator = AgentId::new(self.config.coordinator_id.clone()).ok();
        let own = coordinator.as_ref().map_or("", AgentId::trust_domain);
        if id.trust_domain() != own
            && !self
                .config
                .federated_trust_domains
                .iter()
                .any(|d| d == id.trust_domain())
        {
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::ForeignTrustDomain,
                format!(
                    "trust domain `{}` is neither this coordinator's (`{own}`) nor federated (--federated-trust-domain)",
                    id.trust_domain()
                ),
            ));
        }
        if !caller.is_admin() {
            let caller_id = AgentId::new(caller.agent.id.clone())
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            access::check(
                caller,
                Ask::RegisterAgent {
                    parent: parent.as_deref(),
                },
            )?;
            if id.trust_domain() != caller_id.trust_domain() {
                return Err(ApiError::forbidden(
                    "a worker must be in its parent's trust domain",
                ));
            }
            access::check(caller, Ask::AssignRole { role: &r.role })?;
            // Policy may rest on owner and labels: a worker cannot claim what its parent
            // does not have. The owner is inherited; every label must be the parent's.
            if !(r.owner.is_empty() || r.owner == caller.agent.owner) {
                return Err(ApiError::forbidden(
                    "a worker's owner is its parent's: leave owner empty or give the parent's",
                ));
            }
            if let Some((k, _)) = r
                .labels
                .iter()
                .find(|(k, v)| caller.agent.labels.get(*k) != Some(*v))
            {
                return Err(ApiError::forbidden(format!(
                    "label `{k}` is not one of the parent's: a worker carries only labels its parent has"
                )));
            }
        }
        let owner = if caller.is_admin() || !r.owner.is_empty() {
            r.owner.clone()
        } else {
            caller.agent.owner.clone()
        };
        let role = if r.role.is_empty() {
            Role::Worker.as_str().to_owned()
        } else {
            r.role
        };
        // Admins register anyone; others also need a policy permit.
        let asked = (!caller.is_admin()).then(|| {
            (
                AgentInfo {
                    id: id.as_str().to_owned(),
                    role: role.clone(),
                    owner: owner.clone(),
                    labels: r.labels.clone(),
                    parent: parent.as_ref().map(ToString::to_string),
                },
                agent_info(&caller.agent),
            )
        });
        let agents = match &asked {
            Some(_) => self.related(&[&caller.agent.id])?,
            None => Vec::new(),
        };
        let query = |now| {
            asked.as_ref().map(|(new_agent, principal)| {
                let mut q = PolicyRequest::new(
                    Action::RegisterAgent,
                    principal,
                    Target::Agent(new_agent),
                    now,
                );
                q.agents = &agents;
                q
            })
        };
        let decision = match query(self.now()) {
            None => None,
            Some(q) => {
                let d = self.decide(&q);
                if !d.allowed {
                    let mut e = with_decision(
                        event(
                            &caller.agent.id,
                            AuditAction::AgentRegistrationDenied,
                            self.now(),
                        ),
                        &d,
                    );
                    e.detail.insert("agent".into(), id.as_str().to_owned());
                    self.audit_refusal(e, Some(caller)).await?;
                    return Err(ApiError::new(
                        tonic::Code::PermissionDenied,
                        ErrorReason::PolicyDenied,
                        format!("policy denied the registration: {}", d.reason),
                    ));
                }
                Some(d)
            }
        };
        let _w = self.writer.lock().await;
        self.current(caller)?;
        // A reload between the decision and the lock: decide again under the set in force
        // (the reload's drift pass could not see this agent yet).
        let decision = match (decision, query(self.now())) {
            (Some(d), Some(q)) => {
                let again = self.decide_again_if_reloaded(&q, d);
                if !again.allowed {
                    return Err(ApiError::new(
                        tonic::Code::PermissionDenied,
                        ErrorReason::PolicyDenied,
                        format!("policy denied the registration: {}", again.reason),
                    ));
                }
                Some(again)
            }
            (d, _) => d,
        };
        if self.store.agent(id.as_str())?.is_some() {
            return Err(ApiError::new(
                tonic::Code::AlreadyExists,
                ErrorReason::AlreadyExists,
                format!("agent `{id}` is already registered"),
            ));
        }
        if let Some(p) = &parent
            && self.store.agent(p)?.is_none()
        {
            return Err(ApiError::not_found("parent agent", p));
        }
        let now = self.now();
        let record = AgentRecord {
            id: id.clone(),
            public_key,
            role: role.clone(),
            owner,
            labels: r.labels,
            parent,
            status: AgentStatus::Active,
            created_ms: now,
            disabled_ms: 0,
            registered_by: caller.agent.id.to_string(),
        };
        let mut e = event(&caller.agent.id, AuditAction::AgentRegistered, now);
        if let Some(d) = &decision {
            e = with_decision(e, d);
        }
        e.detail.insert("agent".into(), record.id.to_string());
        e.detail.insert("role".into(), role);
        self.commit_and_wait(
            _w,
            Change {
                agents: vec![record.clone()],
                audit: vec![e],
                ..Change::default()
            },
            Some(caller),
        )
        .await?;
        Ok(record)
    }

    /// The caller as stored now (under the writer lock): a caller disabled while its
    /// request waited is refused.
    pub(super) fn current(&self, caller: &Caller) -> Result<AgentRecord, ApiError> {
        match self.store.agent(&caller.agent.id)? {
            Some(a) if a.status == AgentStatus::Active => Ok(a),
            _ => Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::AgentDisabled,
                format!("agent `{}` is disabled", caller.agent.id),
            )),
        }
    }

    /// Reads an agent.
    pub fn agent(&self, id: &str) -> Result<AgentRecord, ApiError> {
        self.store
            .agent(id)?
            .ok_or_else(|| ApiError::not_found("agent", id))
    }

    /// Disables an agent and revokes every link it holds or issued, with their subtrees.
    pub async fn disable_agent(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<(AgentRecord, RevokedLinks), ApiError> {
        let _w = self.writer.lock().await;
        let mut agent = self.agent(id)?;
        access::check(
            caller,
            Ask::DisableAgent {
                parent: agent.parent.as_deref(),
            },
        )?;
        if agent.status == AgentStatus::Disabled {
            return Ok((agent, RevokedLinks::default()));
        }
        let now = self.now();
        self.current(caller)?;
        let (agents, roots) = self.disable_closure(vec![agent], now)?;
        agent = agents[0].clone();
        let disabled: HashSet<AgentId> = agents.iter().map(|a| a.id.clone()).collect();
        let (revocations, tasks) =
            self.cascade(&roots, &format!("agent `{id}` disabled: {reason}"), now)?;
        let mut task_records = Vec::new();
        for t in tasks {
            if let Some(mut task) = self.store.task(&t)?
                && disabled.contains(task.requester.as_str())
                && !task.state.is_final()
            {
                task.state = TaskState::Revoked;
                task.ended_ms = now;
                task.end_reason = format!("requester disabled: {reason}");
                task_records.push(task);
            }
        }
        let mut e = event(&caller.agent.id, AuditAction::AgentDisabled, now);
        e.severity = Severity::High;
        e.reason = reason.to_owned();
        e.links = revocations.iter().map(|r| r.link.to_string()).collect();
        e.detail.insert("agent".into(), id.to_owned());
        if agents.len() > 1 {
            e.detail.insert(
                "also_disabled".into(),
                agents[1..]
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let committed = self
            .commit_and_wait(
                _w,
                Change {
                    agents,
                    tasks: task_records,
                    revocations,
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
        Ok((
            agent,
            RevokedLinks {
                links: committed.revoked,
                epoch: committed.epoch.unwrap_or(0),
            },
        ))
    }
}
