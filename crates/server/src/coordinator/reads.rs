//! Reads that change nothing: agent and task listings, and the audit log (query, follow,
//! verify, export). Who may read what is `access`; these only read.

use mandate_core::TaskId;
use mandate_store::{
    AgentRecord, AgentStatus, AuditFilter, AuditRecord, AuditVerification, TaskRecord,
};

use super::Coordinator;
use super::access::Role;
use crate::error::ApiError;

impl Coordinator {
    /// Agents in id order, after `after`.
    pub fn list_agents(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, ApiError> {
        Ok(self.store.agents(after, limit)?)
    }

    /// Tasks in id order, after `after`.
    pub fn tasks_after(
        &self,
        after: Option<&TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, ApiError> {
        Ok(self.store.tasks(after, limit)?)
    }

    /// The sequence number of the newest audit record.
    pub fn audit_head_seq(&self) -> Result<u64, ApiError> {
        Ok(self.store.audit_head()?.0)
    }

    /// Audit records matching `filter` after sequence `after`, at most `limit`, and whether
    /// more follow.
    pub fn query_audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, bool), ApiError> {
        Ok(mandate_store::query_audit(
            &*self.store,
            filter,
            after,
            limit,
        )?)
    }

    /// Up to `limit` audit records after sequence `after`.
    pub fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, ApiError> {
        Ok(self.store.audit_after(after, limit)?)
    }

    /// Recomputes the audit log's hash chain over `from..=to` (0: the whole log).
    pub async fn verify_audit(&self, from: u64, to: u64) -> Result<AuditVerification, ApiError> {
        let store = std::sync::Arc::clone(&self.store);
        super::blocking(move || mandate_store::verify_audit(&*store, from, to))
            .await?
            .map_err(ApiError::from)
    }

    /// Whether `agent` may still read the audit log (a follower's stream ends when not):
    /// active, and a role that reads everything.
    pub fn may_still_read_audit(&self, agent: &str) -> bool {
        self.store.agent(agent).ok().flatten().is_some_and(|a| {
            a.status == AgentStatus::Active && Role::of(&a.role).reads_everything()
        })
    }
}

impl Coordinator {
    /// Counts what is live now, for the sampled metrics: agents by status, active tasks,
    /// their live links and the longest remaining lifetime, pending approvals. A pass over
    /// the store (pages of 1,000), run off the async threads.
    pub(crate) fn sample_live(&self) -> Result<crate::metrics::LiveSample, ApiError> {
        use mandate_core::RevocationSet as _;
        use mandate_store::{ApprovalState, TaskState};
        let now = self.now();
        let mut s = crate::metrics::LiveSample::default();
        self.each_agent(|a| {
            match a.status {
                AgentStatus::Active => s.agents_active += 1,
                AgentStatus::Disabled => s.agents_disabled += 1,
            }
            Ok(())
        })?;
        let mut after: Option<TaskId> = None;
        loop {
            let page = self.store.tasks(after.as_ref(), 1000)?;
            for t in page.iter().filter(|t| t.state == TaskState::Active) {
                s.tasks_active += 1;
                let revoked = super::read(&self.revoked);
                for l in self.store.task_links(&t.id)? {
                    if l.expires_at_ms > now && !revoked.is_revoked(&l.id) {
                        s.links_live += 1;
                        s.longest_remaining_ms = s.longest_remaining_ms.max(l.expires_at_ms - now);
                    }
                }
            }
            match page.last() {
                Some(t) if page.len() == 1000 => after = Some(t.id),
                _ => break,
            }
        }
        let mut after: Option<TaskId> = None;
        loop {
            let page = self.store.approvals(after.as_ref(), 1000)?;
            s.approvals_pending += page
                .iter()
                .filter(|a| a.state == ApprovalState::Pending)
                .count() as i64;
            match page.last() {
                Some(a) if page.len() == 1000 => after = Some(a.task),
                _ => break,
            }
        }
        s.revocations_live = i64::try_from(super::read(&self.revoked).len()).unwrap_or(i64::MAX);
        s.epoch = self.feed.published();
        // A store that cannot size its files leaves the other gauges to be sampled.
        s.disk = self.store.disk_usage().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sizing the store on disk for metrics failed");
            mandate_store::DiskUsage::default()
        });
        Ok(s)
    }
}

impl Coordinator {
    /// Entry counts of the coordinator's bounded in-memory structures, for the metrics.
    pub(crate) fn memory_sizes(&self) -> Vec<(&'static str, usize)> {
        let [buckets, children, task_links, held] = self.quota.sizes();
        let (verified_links, invocation_nonces) = self.verifier.cache_sizes();
        vec![
            ("quota_rate_buckets", buckets),
            ("quota_child_counts", children),
            ("quota_task_link_counts", task_links),
            ("quota_live_link_counts", held),
            ("revocations", super::read(&self.revoked).len()),
            ("pending_delegations", super::lock(&self.delegations).len()),
            ("verified_links", verified_links),
            ("invocation_nonces", invocation_nonces),
            ("verifier_keys", self.verifier.key_cache_size()),
            ("decoded_chains", self.verifier.chain_cache_size()),
            ("agent_records", self.agents.len()),
        ]
    }
}
