//! Online authorisation: everything an offline verifier checks, against the live
//! revocation set, then the Cedar `Invoke` decision with the tool's context; audited.

use super::{Coordinator, event, read};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::policies::{Decision, check_signals, task_info};
use mandate_core::{Call, Chain, Denial, Invocation, LinkId, LinkKind, Reason, TaskId};
use mandate_policy::Request as PolicyRequest;
use mandate_policy::{Action, Target};
use mandate_store::Severity;
use mandate_store::{AuditAction, Verdict};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The outcome of `Authorize`.
#[derive(Clone, Debug, Default)]
pub struct AuthorizeOutcome {
    /// The token denial, if the chain or the call was refused before policy.
    pub denial: Option<Denial>,
    /// The Cedar `Invoke` decision, when the chain and call verified.
    pub policy: Option<Decision>,
    /// The chain's task, if it decoded.
    pub task: Option<TaskId>,
    /// The leaf holder, if it decoded.
    pub holder: Option<String>,
    /// Link ids, root first.
    pub links: Vec<LinkId>,
    /// Earliest expiry.
    pub expires_at_ms: u64,
    /// Revocation epoch at decision time.
    pub epoch: u64,
    /// The index of a use-limited link whose uses are used up (`USES_EXHAUSTED`).
    pub exhausted: Option<usize>,
}

impl AuthorizeOutcome {
    /// Whether the call may proceed: the chain verified, policy permits it and no link's
    /// uses are used up.
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
            && self.exhausted.is_none()
            && self.policy.as_ref().is_some_and(|d| d.allowed)
    }
}

/// Requests of a batch verified together under one read of the revocation set.
const VERIFY_CHUNK: usize = 32;

/// The stable reason of an `Authorize` refused because a link's uses are used up.
pub const USES_EXHAUSTED: &str = "USES_EXHAUSTED";

/// One `Authorize` of a batch: the tokens as sent and the call they are for.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizeAsk<'a> {
    /// The encoded chain.
    pub chain: &'a [u8],
    /// The encoded invocation proof.
    pub invocation: &'a [u8],
    /// The call the tool is about to execute.
    pub call: &'a Call,
    /// The tool's context for policy.
    pub context: &'a BTreeMap<String, String>,
    /// Refuse break-glass chains.
    pub refuse_break_glass: bool,
}

impl Coordinator {
    /// Online authorisation for the calling tool: everything an offline verifier checks,
    /// against live revocation state, then the Cedar `Invoke` decision with the tool's
    /// context. The decision is audited.
    pub async fn authorize(
        &self,
        caller: &Caller,
        chain: &[u8],
        invocation: &[u8],
        call: &Call,
        context: &BTreeMap<String, String>,
        refuse_break_glass: bool,
    ) -> Result<AuthorizeOutcome, ApiError> {
        let ask = AuthorizeAsk {
            chain,
            invocation,
            call,
            context,
            refuse_break_glass,
        };
        let mut outcomes = self.authorize_batch(caller, &[ask]).await?;
        outcomes.pop().ok_or_else(|| {
            ApiError::new(
                tonic::Code::Internal,
                ErrorReason::Internal,
                "a batch of one gave no answer",
            )
        })
    }

    /// [`Coordinator::authorize`] of several calls for the calling tool, answered in order,
    /// each decided and audited as alone; the signatures of all of them (proofs, links not
    /// yet verified) are checked in one batch. Fails whole only where a single call would
    /// fail (bad input, before anything is decided; the store refusing the audit records).
    pub async fn authorize_batch(
        &self,
        caller: &Caller,
        asks: &[AuthorizeAsk<'_>],
    ) -> Result<Vec<AuthorizeOutcome>, ApiError> {
        for ask in asks {
            check_signals(ask.context)?;
        }
        let now = self.now();
        let mut outcomes: Vec<AuthorizeOutcome> =
            asks.iter().map(|_| AuthorizeOutcome::default()).collect();
        let decoded: Vec<Result<(Arc<Chain>, Invocation), Denial>> = asks
            .iter()
            .zip(&mut outcomes)
            .map(|(ask, outcome)| self.decode_ask(ask, outcome))
            .collect();
        let mut results: Vec<Result<(u32, bool, bool), Denial>> = Vec::with_capacity(asks.len());
        for ((decoded, asks), outcomes) in decoded
            .chunks(VERIFY_CHUNK)
            .zip(asks.chunks(VERIFY_CHUNK))
            .zip(outcomes.chunks_mut(VERIFY_CHUNK))
        {
            // Read-locked a chunk at a time: a revocation waits for one chunk's
            // verification at most, not a whole batch's.
            let revoked = read(&self.revoked);
            let ready: Vec<(&Chain, &Invocation, &Call)> = decoded
                .iter()
                .zip(asks)
                .filter_map(|(d, ask)| d.as_ref().ok().map(|(c, i)| (&**c, i, ask.call)))
                .collect();
            let mut verified = self
                .verifier
                .verify_invocations(&ready, &caller.agent.id, &*revoked)
                .into_iter();
            results.extend(
                decoded
                    .iter()
                    .zip(asks)
                    .zip(outcomes)
                    .map(|((d, ask), outcome)| {
                        let (chain, _) = d.as_ref().map_err(Clone::clone)?;
                        outcome.epoch = revoked.epoch();
                        let v = verified.next().ok_or_else(|| {
                            Denial::new(Reason::Malformed, "no verification for this request")
                        })??;
                        outcome.expires_at_ms = v.expires_at_ms();
                        let break_glass = chain.root().body().kind == LinkKind::BreakGlass;
                        if break_glass && ask.refuse_break_glass {
                            return Err(Denial::at(
                                Reason::BreakGlassRefused,
                                0,
                                "this tool refuses break-glass access",
                            ));
                        }
                        let online = chain.links().iter().any(|l| l.body().require_online);
                        Ok((chain.leaf().body().depth(), break_glass, online))
                    }),
            );
        }
        let decisions = futures_util::future::join_all(
            asks.iter()
                .zip(outcomes)
                .zip(results)
                .map(|((ask, outcome), result)| self.conclude(caller, ask, outcome, result, now)),
        )
        .await;
        decisions.into_iter().collect()
    }

    /// Decodes a request's chain and proof, naming the chain's task, holder and links in
    /// `outcome` as soon as they are known.
    fn decode_ask(
        &self,
        ask: &AuthorizeAsk<'_>,
        outcome: &mut AuthorizeOutcome,
    ) -> Result<(Arc<Chain>, Invocation), Denial> {
        // A worker presents the same chain with every call: decoded once, then shared.
        let chain = self.verifier.decode_chain_shared(ask.chain)?;
        outcome.task = Some(chain.task());
        outcome.holder = Some(chain.leaf().body().holder_agent.as_str().to_owned());
        outcome.links = chain.links().iter().map(|l| l.id()).collect();
        let invocation = self.verifier.decode_invocation(ask.invocation)?;
        if invocation.body().issued_at_ms < self.started_ms {
            // Its nonce may have been used before the restart, when the replay cache
            // that would know it was in memory.
            return Err(Denial::new(
                Reason::Replayed,
                "the proof was made before the coordinator started; make a new one",
            ));
        }
        Ok((chain, invocation))
    }

    /// After the token checks (`result`: the leaf's depth, whether the chain is
    /// break-glass, whether it requires online checks): the `Invoke` decision, use limits
    /// and the audit record.
    async fn conclude(
        &self,
        caller: &Caller,
        ask: &AuthorizeAsk<'_>,
        mut outcome: AuthorizeOutcome,
        result: Result<(u32, bool, bool), Denial>,
        now: u64,
    ) -> Result<AuthorizeOutcome, ApiError> {
        let (call, context) = (ask.call, ask.context);
        let mut online = false;
        match result {
            Ok((depth, break_glass, needs_online)) => {
                let decision =
                    self.decide_invoke(caller, &outcome, call, context, depth, break_glass, now)?;
                outcome.policy = Some(decision);
                online = needs_online;
            }
            Err(d) => {
                if d.reason() == Reason::Malformed || outcome.task.is_none() {
                    tracing::debug!(reason = %d.reason(), "authorize: bad token");
                }
                outcome.denial = Some(d);
            }
        }
        // Use-limited links (which require online checks, so only such chains pay for the
        // lookup): counted under the writer lock, committed with the audit record.
        let limited = if outcome.allowed() && online {
            self.use_limits(&outcome.links)?
        } else {
            Vec::new()
        };
        let guard = if limited.is_empty() {
            None
        } else {
            Some(self.writer.lock().await)
        };
        let mut uses = Vec::new();
        for (index, counter, max) in &limited {
            let used = self.store.uses(counter)?;
            if used >= *max {
                outcome.exhausted = Some(*index);
                break;
            }
            uses.push((*counter, used + 1));
        }
        let mut e = event(&caller.agent.id, AuditAction::InvocationAuthorized, now);
        e.task = outcome.task;
        e.links = outcome.links.iter().map(ToString::to_string).collect();
        // Caller-supplied strings are bounded in the log.
        e.detail
            .insert("action".into(), call.action.chars().take(128).collect());
        e.detail
            .insert("resource".into(), call.resource.chars().take(512).collect());
        if let Some(h) = &outcome.holder {
            e.detail.insert("holder".into(), h.clone());
        }
        if let Some(d) = &outcome.policy {
            e.policies = d.policies.clone();
            e.policy_hash = d.policy_hash.clone();
        }
        let reason = match (&outcome.denial, &outcome.policy) {
            (Some(d), _) => d.reason().code(),
            (None, Some(_)) if outcome.exhausted.is_some() => USES_EXHAUSTED,
            (None, Some(d)) if d.allowed => "",
            (None, _) => "POLICY_DENIED",
        };
        self.metrics.decision(reason.is_empty(), reason);
        match (&outcome.denial, &outcome.policy) {
            (None, Some(_)) if outcome.exhausted.is_some() => {
                e.set_action(AuditAction::InvocationDenied);
                e.set_verdict(Verdict::Deny);
                e.reason = USES_EXHAUSTED.into();
                e.severity = Severity::Notice;
            }
            (None, Some(d)) if d.allowed => {
                e.set_verdict(Verdict::Allow);
                if !uses.is_empty() {
                    e.detail.insert(
                        "uses".into(),
                        uses.iter()
                            .map(|(_, n)| n.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    );
                }
            }
            (Some(d), _) => {
                e.set_action(AuditAction::InvocationDenied);
                e.set_verdict(Verdict::Deny);
                e.reason = d.reason().code().into();
                e.severity = Severity::Notice;
            }
            (None, policy) => {
                e.set_action(AuditAction::InvocationDenied);
                e.set_verdict(Verdict::Deny);
                e.reason = format!(
                    "POLICY_DENIED: {}",
                    policy
                        .as_ref()
                        .map(|d| d.reason.as_str())
                        .unwrap_or_default()
                );
                e.severity = Severity::Notice;
            }
        }
        match guard {
            // A counted use is durable before the call may proceed, with its record.
            Some(guard) if outcome.allowed() => {
                self.commit_and_wait(
                    guard,
                    mandate_store::Change {
                        uses,
                        audit: vec![e],
                        ..mandate_store::Change::default()
                    },
                    None,
                )
                .await?;
            }
            guard => {
                drop(guard);
                // Otherwise Authorize changes no durable state: its audit record is
                // committed with others in a batch (and made durable with the next flush),
                // not one commit per call.
                self.audit.record(e).await?;
            }
        }
        Ok(outcome)
    }

    /// The use-limited links of a chain: (index in the chain, its counter, its limit).
    fn use_limits(
        &self,
        links: &[LinkId],
    ) -> Result<Vec<(usize, mandate_store::UseCounter, u32)>, ApiError> {
        let mut out = Vec::new();
        for (i, id) in links.iter().enumerate() {
            if let Some(rec) = self.store.link(id)?
                && rec.max_uses > 0
            {
                let counter = match rec.parent {
                    None => mandate_store::UseCounter::Task(rec.task),
                    Some(_) => mandate_store::UseCounter::Link(rec.id),
                };
                out.push((i, counter, rec.max_uses));
            }
        }
        Ok(out)
    }

    /// The Cedar `Invoke` decision for a verified chain.
    #[expect(clippy::too_many_arguments, reason = "the parts of one call")]
    pub(super) fn decide_invoke(
        &self,
        caller: &Caller,
        outcome: &AuthorizeOutcome,
        call: &Call,
        context: &BTreeMap<String, String>,
        depth: u32,
        break_glass: bool,
        now: u64,
    ) -> Result<Decision, ApiError> {
        let (Some(task_id), Some(holder_id)) = (outcome.task, outcome.holder.as_deref()) else {
            return Err(ApiError::new(
                tonic::Code::Internal,
                ErrorReason::Internal,
                "a verified chain without task or holder",
            ));
        };
        let refused =
            |reason: String| Decision::refused(reason, self.policies.current().set.hash());
        // The agents a decision may read include the holder: one store read each, on
        // every online check.
        let agents = self.related(&[holder_id, &caller.agent.id])?;
        let Some(principal) = agents.iter().find(|a| a.id == holder_id).cloned() else {
            return Ok(refused(format!(
                "the holder `{holder_id}` is not registered"
            )));
        };
        let Some(task) = self.store.task(&task_id)? else {
            return Ok(refused(format!("task `{task_id}` is not registered")));
        };
        let task_hex = task_id.to_string();
        let mut q = PolicyRequest::new(
            Action::Invoke,
            &principal,
            Target::Call {
                operation: &call.action,
                resource: &call.resource,
            },
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.tool = Some(&caller.agent.id);
        q.depth = depth;
        q.break_glass = break_glass;
        q.signals = context;
        Ok(self.decide(&q))
    }
}

/// A decision a tool made offline, as it reports it (`ReportDecisions`).
#[derive(Clone, Debug, Default)]
pub struct OfflineDecision {
    /// The tool's id for it.
    pub id: String,
    /// When the tool decided, Unix milliseconds.
    pub time_ms: u64,
    /// Whether the call was allowed.
    pub allowed: bool,
    /// The stable reason code.
    pub reason: String,
    /// The call's action.
    pub action: String,
    /// The call's resource.
    pub resource: String,
    /// The chain's task, if it decoded.
    pub task: Option<TaskId>,
    /// The leaf holder, if the chain decoded.
    pub holder: String,
    /// Where at the tool (the gateway's upstream).
    pub place: String,
}

/// Most decisions in one report.
const MAX_REPORTED: usize = 1000;

impl Coordinator {
    /// Records decisions a tool made offline, once they are durable: one audit record
    /// each, with the tool as actor. Caller-supplied strings are bounded.
    pub async fn report_decisions(
        &self,
        caller: &Caller,
        decisions: Vec<OfflineDecision>,
    ) -> Result<usize, ApiError> {
        super::access::check(caller, super::access::Ask::ReportDecisions)?;
        if decisions.len() > MAX_REPORTED {
            return Err(ApiError::invalid(format!(
                "at most {MAX_REPORTED} decisions per report, got {}",
                decisions.len()
            )));
        }
        if decisions.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let bounded = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        let events: Vec<_> = decisions
            .iter()
            .map(|d| {
                let action = if d.allowed {
                    AuditAction::InvocationOfflineAllowed
                } else {
                    AuditAction::InvocationOfflineDenied
                };
                let mut e = event(&caller.agent.id, action, now);
                e.task = d.task;
                e.set_verdict(Verdict::of(d.allowed));
                e.reason = bounded(&d.reason, 128);
                if !d.allowed {
                    e.severity = Severity::Notice;
                }
                for (k, v, n) in [
                    ("decision_id", d.id.as_str(), 64),
                    ("action", d.action.as_str(), 128),
                    ("resource", d.resource.as_str(), 512),
                    ("holder", d.holder.as_str(), 256),
                    ("place", d.place.as_str(), 128),
                ] {
                    if !v.is_empty() {
                        e.detail.insert(k.into(), bounded(v, n));
                    }
                }
                e.detail
                    .insert("decided_at_ms".into(), d.time_ms.to_string());
                e
            })
            .collect();
        let n = events.len();
        let guard = self.writer.lock().await;
        let change = mandate_store::Change {
            audit: events,
            ..mandate_store::Change::default()
        };
        self.commit_and_wait(guard, change, Some(caller)).await?;
        Ok(n)
    }
}
