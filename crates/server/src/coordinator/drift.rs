//! Policy reload and drift: a new policy set is checked against every live grant and
//! delegation; those it denies are revoked with their subtrees, in the same commit as the
//! reload's audit record.

use super::{Coordinator, RevokedLinks, corrupt_link, event, read, with_decision};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::policies::LoadedPolicy;
use crate::policies::{Decision, task_info};
use mandate_core::{LinkId, LinkKind, RevocationSet as _, TaskId};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, Target};
use mandate_store::{AuditAction, Verdict};
use mandate_store::{Change, LinkRecord, Severity, TaskRecord, TaskState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The previous hash of a store that never recorded a policy set.
const NONE_RECORDED: &str = "none recorded";

/// What a reload did.
#[derive(Clone, Debug)]
pub struct Reloaded {
    /// The set now in force.
    pub policy: Arc<LoadedPolicy>,
    /// Hash of the set it replaced.
    pub previous_hash: String,
    /// Live links decided again.
    pub reevaluated: usize,
    /// Links revoked by drift (with their subtrees).
    pub revoked: RevokedLinks,
    /// Agents whose registration the new set refuses (disabled, with their workers).
    pub refused_agents: usize,
}

/// What a new set denies of the live state.
struct Drift {
    /// Live links it denies, parents first.
    drifted: Vec<Drifted>,
    /// Live links decided.
    reevaluated: usize,
    /// Agents whose registration it refuses.
    refused: Vec<(mandate_store::AgentRecord, Decision)>,
}

/// A live link the new set denies, with why.
struct Drifted {
    link: LinkRecord,
    decision: Decision,
    why: String,
}

impl Coordinator {
    /// Installs the set made of `files` (name, Cedar text), or with none re-reads the
    /// policy directory. An invalid set is refused (and audited) and the old one stays. A
    /// valid one is installed, then checked against every live link without holding up
    /// other changes; the revocations of what it denies, the reload record and the set's
    /// files in the store are committed together. `caller` is `None` for a reload by
    /// signal.
    pub async fn reload_policy(
        &self,
        caller: Option<&Caller>,
        files: Vec<(String, String)>,
    ) -> Result<Reloaded, ApiError> {
        let actor = caller.map_or_else(|| "signal:SIGHUP".to_owned(), |c| c.agent.id.to_string());
        let now = self.now();
        // One reload at a time, so two (a signal and a call) install in the order they
        // read their files.
        let _reloading = self.reloading.lock().await;
        let read = if files.is_empty() {
            self.policies.read_again(now)
        } else {
            crate::policies::Policies::from_files(files, &actor, now)
        };
        let loaded = match read {
            Ok(l) => l,
            Err(err) => {
                let previous = self.policies.current();
                let mut e = event(&actor, AuditAction::PolicyReloadRefused, now);
                e.severity = Severity::High;
                e.set_verdict(Verdict::Deny);
                e.reason = err.message.chars().take(4000).collect();
                e.policy_hash = previous.set.hash().to_owned();
                self.audit_refusal(e, caller).await?;
                return Err(err);
            }
        };
        if let Some(c) = caller {
            self.current(c)?;
        }
        let new = Arc::new(loaded);
        // Installed first, under the writer lock: everything issued from here on is decided
        // by the new set (and a decision made under the old one that commits later is made
        // again, see `decide_again_if_reloaded`). Then every live link is decided again
        // without the lock, so mutations go on meanwhile (at a million live links the pass
        // takes tens of seconds), and the lock is taken again only to revoke what drifted
        // and record the set. Until then the store records the old set: a crash in between
        // makes the next start (or leader) run the pass again, and a failure puts the old
        // set back.
        let previous = {
            let _w = self.writer.lock().await;
            let previous = self.policies.current();
            self.policies.install(Arc::clone(&new));
            previous
        };
        let previous_hash = previous.set.hash().to_owned();
        // Tens of seconds of CPU at a million links: off the runtime's worker, so the calls
        // it would serve meanwhile move to another (where the runtime allows it).
        let pass = || self.drift_of(&new.set, now);
        let drifted = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => pass(),
            _ => tokio::task::block_in_place(pass),
        };
        let drift = match drifted {
            Ok(d) => d,
            Err(e) => {
                let _w = self.writer.lock().await;
                self.policies.install(previous);
                return Err(e);
            }
        };
        let guard = self.writer.lock().await;
        self.commit_switch(
            guard,
            new,
            previous_hash,
            &actor,
            caller,
            now,
            drift,
            Some(previous),
        )
        .await
    }

    /// At start: if the set loaded differs from the one last recorded in the store (the
    /// directory changed while the coordinator was down, a crash right after a reload, an
    /// upgrade), runs the same drift pass as a reload and records the set, so a policy
    /// change by restart revokes what the new set denies and is audited like a reload.
    pub async fn check_policy_at_start(&self) -> Result<(), ApiError> {
        let current = self.policies.current();
        let stored = self.store.policy_hash()?;
        if stored.as_deref() == Some(current.set.hash()) {
            return Ok(());
        }
        let guard = self.writer.lock().await;
        let previous = stored.unwrap_or_else(|| NONE_RECORDED.to_owned());
        let now = self.now();
        // Before serving: nobody waits on the lock.
        let drift = self.drift_of(&current.set, now)?;
        let r = self
            .commit_switch(guard, current, previous, "startup", None, now, drift, None)
            .await?;
        if !r.revoked.links.is_empty() {
            tracing::warn!(
                revoked = r.revoked.links.len(),
                "the policy set changed while the coordinator was down: live links it denies were revoked"
            );
        }
        Ok(())
    }

    /// What a set denies of the live state: every live link and every registration
    /// decided again under `set`. Reads the store without the writer lock; what changes
    /// meanwhile is either decided by `set` already (issued after it was installed) or
    /// taken again under the lock by [`Coordinator::commit_switch`].
    fn drift_of(&self, set: &mandate_policy::PolicySet, now: u64) -> Result<Drift, ApiError> {
        let (drifted, reevaluated) = self.reevaluate(set, now)?;
        let refused = self.registration_drift(set, now)?;
        Ok(Drift {
            drifted,
            reevaluated,
            refused,
        })
    }

    /// Under the writer lock held as `guard`: revokes what `drift` found (the links still
    /// live, with their subtrees as they are now) and disables the refused agents, with the
    /// reload's audit records and the set's hash and files, in one commit. If anything
    /// fails before that commit, `restore` (the set in force before) is installed again.
    #[expect(clippy::too_many_arguments, reason = "the parts of one switch")]
    async fn commit_switch(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        new: Arc<LoadedPolicy>,
        previous: String,
        actor: &str,
        caller: Option<&Caller>,
        now: u64,
        drift: Drift,
        restore: Option<Arc<LoadedPolicy>>,
    ) -> Result<Reloaded, ApiError> {
        let (reevaluated, refused_agents) = (drift.reevaluated, drift.refused.len());
        let committed = caller
            .map_or(Ok(()), |c| self.current(c).map(drop))
            .and_then(|()| self.plan_switch(&new, &previous, actor, now, drift))
            .and_then(|change| self.apply(change, caller));
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                if let Some(old) = restore {
                    self.policies.install(old);
                }
                return Err(e);
            }
        };
        drop(guard);
        self.durable().await?;
        Ok(Reloaded {
            policy: new,
            previous_hash: previous,
            reevaluated,
            refused_agents,
            revoked: RevokedLinks {
                links: committed.revoked,
                epoch: committed.epoch.unwrap_or(0),
            },
        })
    }

    /// The change that switches to `new`: what `drift` found still live revoked with its
    /// subtree as it is now, the refused agents disabled, the tasks this ends, the audit
    /// records, the set's hash and files.
    fn plan_switch(
        &self,
        new: &LoadedPolicy,
        previous: &str,
        actor: &str,
        now: u64,
        drift: Drift,
    ) -> Result<Change, ApiError> {
        let previous = previous.to_owned();
        let Drift {
            drifted,
            refused,
            reevaluated,
        } = drift;
        // Revoked meanwhile (by hand, or with an ancestor): nothing left to take.
        let drifted: Vec<Drifted> = {
            let revoked = read(&self.revoked);
            drifted
                .into_iter()
                .filter(|d| !revoked.is_revoked(&d.link.id))
                .collect()
        };
        let mut change = Change {
            policy_hash: Some(new.set.hash().to_owned()),
            policy_files: Some(new.set.sources().to_vec()),
            ..Change::default()
        };
        // The first set a store records is noted; every change of set is high severity.
        let first = previous == NONE_RECORDED;
        let mut e = event(
            actor,
            if first {
                AuditAction::PolicyLoaded
            } else {
                AuditAction::PolicyReloaded
            },
            now,
        );
        e.severity = if first {
            Severity::Notice
        } else {
            Severity::High
        };
        e.set_verdict(Verdict::Allow);
        e.policy_hash = new.set.hash().to_owned();
        e.policies = new.set.policies().into_iter().map(|p| p.0).collect();
        e.reason = format!("policy set {} replaced {}", new.set.hash(), previous);
        e.detail
            .insert("previous_policy_hash".into(), previous.clone());
        e.detail.insert("source".into(), new.source.clone());
        e.detail.insert("files".into(), new.set.files().join(","));
        e.detail
            .insert("reevaluated_links".into(), reevaluated.to_string());
        e.detail
            .insert("drifted_links".into(), drifted.len().to_string());
        change.audit.push(e);
        let mut taken: HashSet<LinkId> = HashSet::new();
        let mut ended: HashMap<TaskId, TaskRecord> = HashMap::new();
        for d in drifted {
            let reason = format!(
                "policy drift: {} (policy set {} replaced {})",
                d.why,
                new.set.hash(),
                previous
            );
            let (revocations, _) = self.cascade(&[d.link.id], &reason, now)?;
            let revocations: Vec<_> = revocations
                .into_iter()
                .filter(|r| taken.insert(r.link))
                .collect();
            if revocations.is_empty() {
                continue;
            }
            if let Some(mut task) = self.store.task(&d.link.task)?
                && task.root_link == Some(d.link.id)
                && task.state == TaskState::Active
            {
                task.state = TaskState::Revoked;
                task.ended_ms = now;
                task.end_reason = reason.clone();
                ended.insert(task.id, task);
            }
            let mut r = with_decision(
                event(actor, AuditAction::PolicyDriftRevoked, now),
                &d.decision,
            );
            r.set_verdict(Verdict::Deny);
            r.severity = Severity::High;
            r.task = Some(d.link.task);
            r.reason = reason;
            r.links = revocations.iter().map(|r| r.link.to_string()).collect();
            r.detail.insert("link".into(), d.link.id.to_string());
            r.detail.insert("holder".into(), d.link.holder.clone());
            r.detail
                .insert("previous_policy_hash".into(), previous.clone());
            change.audit.push(r);
            change.revocations.extend(revocations);
        }
        // Registrations policy admitted are decided again: an agent the new set would not
        // let its parent register is disabled, with the workers below it and every link
        // they hold or issued, in the same commit.
        if !refused.is_empty() {
            let decisions: Vec<_> = refused
                .iter()
                .map(|(a, d)| (a.id.to_string(), d.clone()))
                .collect();
            let (agents, roots) =
                self.disable_closure(refused.into_iter().map(|(a, _)| a).collect(), now)?;
            let reason = format!(
                "policy drift: the registration is no longer allowed (policy set {} replaced {})",
                new.set.hash(),
                previous
            );
            let (revocations, tasks) = self.cascade(&roots, &reason, now)?;
            let disabled: HashSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
            for t in tasks {
                if ended.contains_key(&t) {
                    continue;
                }
                if let Some(mut task) = self.store.task(&t)?
                    && disabled.contains(task.requester.as_str())
                    && !task.state.is_final()
                {
                    task.state = TaskState::Revoked;
                    task.ended_ms = now;
                    task.end_reason.clone_from(&reason);
                    ended.insert(task.id, task);
                }
            }
            let revocations: Vec<_> = revocations
                .into_iter()
                .filter(|r| taken.insert(r.link))
                .collect();
            for (id, d) in decisions {
                let mut e = with_decision(event(actor, AuditAction::AgentDisabled, now), &d);
                e.set_verdict(Verdict::Deny);
                e.severity = Severity::High;
                e.reason = format!("{reason}: {}", d.reason);
                e.detail.insert("agent".into(), id.clone());
                e.detail
                    .insert("previous_policy_hash".into(), previous.clone());
                change.audit.push(e);
            }
            // The reload record names every agent disabled, the workers below the refused
            // ones included.
            if let Some(first) = change.audit.first_mut() {
                first.detail.insert(
                    "disabled_agents".into(),
                    agents
                        .iter()
                        .map(|a| a.id.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            change.revocations.extend(revocations);
            change.agents = agents;
        }
        change.tasks = ended.into_values().collect();
        Ok(change)
    }

    /// Decides every live link of every active task again under `set`. Links below a
    /// denied one are not decided (the cascade takes them). Returns the denied links,
    /// parents first, and how many links were decided.
    fn reevaluate(
        &self,
        set: &mandate_policy::PolicySet,
        now: u64,
    ) -> Result<(Vec<Drifted>, usize), ApiError> {
        let limits = mandate_core::Limits::default();
        let revoked = read(&self.revoked).ids().collect::<HashSet<_>>();
        let mut out = Vec::new();
        let mut count = 0;
        let mut after: Option<TaskId> = None;
        loop {
            let tasks = self.store.tasks(after.as_ref(), 256)?;
            let Some(last) = tasks.last() else { break };
            after = Some(last.id);
            for task in tasks.iter().filter(|t| t.state == TaskState::Active) {
                let mut links = self.store.task_links(&task.id)?;
                // Parents first.
                let depth_of = |l: &LinkRecord| {
                    mandate_core::Link::decode(&l.encoded, &limits)
                        .map(|k| k.body().depth())
                        .unwrap_or(0)
                };
                // Cached: the key decodes the link, once each rather than per comparison.
                links.sort_by_cached_key(|l| (depth_of(l), l.created_ms));
                let mut denied: HashSet<LinkId> = HashSet::new();
                // Whether a link or one above it requires online checks.
                let mut online: HashMap<LinkId, bool> = HashMap::new();
                for rec in links {
                    if revoked.contains(&rec.id)
                        || rec.expires_at_ms <= now
                        || rec
                            .parent
                            .is_some_and(|p| denied.contains(&p) || revoked.contains(&p))
                    {
                        continue;
                    }
                    count += 1;
                    let above = rec
                        .parent
                        .is_some_and(|p| online.get(&p).copied().unwrap_or(false));
                    let (decision, why, own) =
                        self.decide_live(set, task, &rec, above, now, &limits)?;
                    online.insert(rec.id, own || above);
                    if let Some(why) = why {
                        denied.insert(rec.id);
                        out.push(Drifted {
                            link: rec,
                            decision,
                            why,
                        });
                    }
                }
            }
        }
        Ok((out, count))
    }

    /// The decision for one live link under `set`, why it is now refused (if it is), and
    /// whether the link itself requires online checks (`online_above`: one above it does).
    fn decide_live(
        &self,
        set: &mandate_policy::PolicySet,
        task: &TaskRecord,
        rec: &LinkRecord,
        online_above: bool,
        now: u64,
        limits: &mandate_core::Limits,
    ) -> Result<(Decision, Option<String>, bool), ApiError> {
        let link = mandate_core::Link::decode(&rec.encoded, limits).map_err(corrupt_link)?;
        let b = link.body();
        let ttl = b.expires_at_ms.saturating_sub(b.not_before_ms);
        let task_hex = task.id.to_string();
        // The root's principal is its holder (the requester); a delegation's is its issuer.
        let principal_id = if rec.parent.is_none() {
            rec.holder.as_str()
        } else {
            rec.issuer.as_str()
        };
        // The agents a decision may read include the principal: one read each.
        let agents = self.related(&[principal_id, &rec.holder])?;
        let Some(principal) = agents.iter().find(|a| a.id == principal_id).cloned() else {
            let why = format!("`{principal_id}` is not registered");
            let d = Decision::refused(why.clone(), set.hash());
            return Ok((d, Some(why), b.require_online));
        };
        let action = match (rec.parent.is_some(), b.kind) {
            (true, _) => Action::Delegate,
            (false, LinkKind::BreakGlass) => Action::BreakGlass,
            (false, _) => Action::RequestGrant,
        };
        let mut q = PolicyRequest::new(
            action,
            &principal,
            Target::Capabilities(&b.capabilities),
            now,
        );
        q.task = Some(task_info(task, &task_hex));
        q.agents = &agents;
        q.ttl_ms = ttl;
        q.depth = b.depth();
        q.max_depth = b.max_depth;
        q.require_online = b.require_online;
        if action == Action::Delegate {
            q.holder = Some(&rec.holder);
        }
        let ticket = task
            .intent_fields
            .get("ticket")
            .cloned()
            .unwrap_or_default();
        if action == Action::BreakGlass {
            // A break-glass task's intent is its reason, as decided at issue.
            q.reason = &task.intent;
            q.ticket = &ticket;
        }
        let d = set.decide(&q);
        let cap_ttl = d
            .obligations
            .max_ttl_ms
            .unwrap_or(self.config.max_ttl_ms)
            .min(self.config.max_ttl_ms);
        let cap_depth = Self::depth_cap(&d);
        let why = if !d.allowed {
            Some(d.reason.clone())
        } else if ttl > cap_ttl {
            Some(format!(
                "its lifetime of {ttl} ms is above the new maximum of {cap_ttl} ms"
            ))
        } else if action == Action::Delegate && b.depth() > cap_depth {
            Some(format!(
                "its depth {} is above the new maximum of {cap_depth}",
                b.depth()
            ))
        } else if action != Action::Delegate && b.max_depth > cap_depth {
            // The root would now allow fewer hops; delegations below it are bounded by the
            // root, not by the grant policy, so the root goes.
            Some(format!(
                "it allows {} delegation hops, above the new maximum of {cap_depth}",
                b.max_depth
            ))
        } else if d.obligations.require_online && !b.require_online && !online_above {
            Some("the new set requires online checks, which the chain does not".to_owned())
        } else {
            None
        };
        Ok((d, why, b.require_online))
    }
}
