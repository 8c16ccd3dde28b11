//! The quota ledger: per-agent issuance rates and live-link counts, and per-link and
//! per-task link counts, kept in memory and rebuilt from the store on first use.
//!
//! Every `take_*` runs under the coordinator's writer lock, so the counts match the store.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};

use mandate_core::{LinkId, RevocationList, RevocationSet as _, TaskId};
use mandate_store::Store;

use crate::error::{ApiError, ErrorReason};

/// Limits that keep one runaway agent from starving the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Most links registered directly below one link.
    pub children_per_link: usize,
    /// Most links in one task.
    pub links_per_task: usize,
    /// Delegations one agent may register per second (sustained; bursts up to the same).
    pub delegations_per_agent_per_second: u32,
    /// Most live (unexpired, unrevoked) links one agent may have created: the roots it
    /// was granted (tasks, renewals, break-glass) and the delegations it issued. Counted
    /// against the creator, so nobody can use up another agent's quota by delegating to it.
    pub live_links_per_agent: usize,
    /// Most approval requests one agent may have pending at once.
    pub pending_approvals_per_agent: usize,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            children_per_link: 10_000,
            links_per_task: 100_000,
            delegations_per_agent_per_second: 1_000,
            live_links_per_agent: 10_000,
            pending_approvals_per_agent: 100,
        }
    }
}

/// A token bucket: tokens left, and when they were counted (Unix ms).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Counts {
    buckets: HashMap<String, Bucket>,
    children: HashMap<LinkId, usize>,
    task_links: HashMap<TaskId, usize>,
    /// Live links each agent created (roots granted to it, delegations it issued):
    /// counted from the store on first use, then kept up to date by issuance; recounted
    /// after every collection pass (revocations and expiry only lower the true count, so
    /// in between the check errs on the strict side).
    held: HashMap<String, usize>,
}

/// The ledger. See the module documentation.
#[derive(Debug)]
pub(crate) struct QuotaLedger {
    quotas: Quotas,
    counts: Mutex<Counts>,
}

fn exceeded(what: String) -> ApiError {
    ApiError::new(
        tonic::Code::ResourceExhausted,
        ErrorReason::QuotaExceeded,
        what,
    )
}

impl QuotaLedger {
    pub(crate) fn new(quotas: Quotas) -> QuotaLedger {
        QuotaLedger {
            quotas,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks and takes one delegation's worth of quota: the agent's rate and live links,
    /// the parent's children, the task's links.
    pub(crate) fn take_delegation(
        &self,
        store: &dyn Store,
        revoked: &RwLock<RevocationList>,
        agent: &str,
        parent: &LinkId,
        task: &TaskId,
        now: u64,
    ) -> Result<(), ApiError> {
        let q = self.quotas;
        let mut counts = self.counts();
        let held = self.held(&mut counts, store, revoked, agent, now)?;
        let children = match counts.children.get(parent) {
            Some(n) => *n,
            None => store.children(task, parent)?.len(),
        };
        if children >= q.children_per_link {
            return Err(exceeded(format!(
                "link `{parent}` already has {children} delegations (limit {})",
                q.children_per_link
            )));
        }
        let links = match counts.task_links.get(task) {
            Some(n) => *n,
            None => store.task_link_count(task)?,
        };
        if links >= q.links_per_task {
            return Err(exceeded(format!(
                "task `{task}` already has {links} links (limit {})",
                q.links_per_task
            )));
        }
        let rate = f64::from(q.delegations_per_agent_per_second.max(1));
        let bucket = counts.buckets.get(agent).copied().unwrap_or(Bucket {
            tokens: rate,
            at_ms: now,
        });
        let tokens =
            (bucket.tokens + (now.saturating_sub(bucket.at_ms) as f64) * rate / 1000.0).min(rate);
        if tokens < 1.0 {
            return Err(exceeded(format!(
                "agent `{agent}` is delegating faster than {} per second; slow down",
                q.delegations_per_agent_per_second
            )));
        }
        counts.buckets.insert(
            agent.to_owned(),
            Bucket {
                tokens: tokens - 1.0,
                at_ms: now,
            },
        );
        counts.children.insert(*parent, children + 1);
        counts.task_links.insert(*task, links + 1);
        counts.held.insert(agent.to_owned(), held + 1);
        Ok(())
    }

    /// Checks and takes one live link for `agent` (a root granted to it).
    pub(crate) fn take_live_link(
        &self,
        store: &dyn Store,
        revoked: &RwLock<RevocationList>,
        agent: &str,
        now: u64,
    ) -> Result<(), ApiError> {
        let mut counts = self.counts();
        let n = self.held(&mut counts, store, revoked, agent, now)?;
        counts.held.insert(agent.to_owned(), n + 1);
        Ok(())
    }

    /// Forgets counts a collection pass may have changed, and what is cheap to read
    /// again, so the ledger holds what the last minute touched rather than everything
    /// since start: live links always (some were revoked or expired), children and task
    /// links (recounted from the store's indexes on next use), and rate buckets that have
    /// refilled (a full bucket is the same as none).
    pub(crate) fn reset(&self, now: u64) {
        let mut counts = self.counts();
        counts.held = HashMap::new();
        counts.children = HashMap::new();
        counts.task_links = HashMap::new();
        counts
            .buckets
            .retain(|_, b| now.saturating_sub(b.at_ms) < 1_000);
        counts.buckets.shrink_to_fit();
    }

    /// Entries held: rate buckets, child counts, task link counts, live-link counts.
    pub(crate) fn sizes(&self) -> [usize; 4] {
        let c = self.counts();
        [
            c.buckets.len(),
            c.children.len(),
            c.task_links.len(),
            c.held.len(),
        ]
    }

    /// Live links `agent` created (roots granted to it, delegations it issued), refused
    /// at the quota. The count is cached even when it refuses, so retries do not rescan
    /// the store.
    fn held(
        &self,
        counts: &mut Counts,
        store: &dyn Store,
        revoked: &RwLock<RevocationList>,
        agent: &str,
        now: u64,
    ) -> Result<usize, ApiError> {
        let n = match counts.held.get(agent) {
            Some(n) => *n,
            None => {
                let revoked = revoked.read().unwrap_or_else(PoisonError::into_inner);
                let live = |id: &LinkId, expires_at_ms: u64| {
                    expires_at_ms > now && !revoked.is_revoked(id)
                };
                // The roots granted to it, and the delegations it issued: the children of
                // the links it holds (an issuer holds the parent). A dead link has no
                // live children.
                let mut n = 0;
                let mut parents = Vec::new();
                for id in store.agent_links(agent)? {
                    if let Some(l) = store.link(&id)?
                        && l.holder == agent
                        && live(&id, l.expires_at_ms)
                    {
                        n += usize::from(l.parent.is_none());
                        parents.push((l.task, id));
                    }
                }
                for children in store.children_with_expiry_of(&parents)? {
                    n += children.iter().filter(|(c, e)| live(c, *e)).count();
                }
                counts.held.insert(agent.to_owned(), n);
                n
            }
        };
        let limit = self.quotas.live_links_per_agent;
        if n >= limit {
            return Err(exceeded(format!(
                "agent `{agent}` already has {n} live links it was granted or issued (limit {limit})"
            )));
        }
        Ok(n)
    }
}
