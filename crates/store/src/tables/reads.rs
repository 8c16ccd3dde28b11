//! `store_reads!`: the read methods of the `Store` trait, written once for every backend.

/// The read methods of [`crate::Store`] over the tables in `self.$kv`, for a backend's
/// `impl Store` (everything but commits, flushes, the audit log, approvals due and GC,
/// which write).
macro_rules! store_reads {
    ($($kv:ident).+) => {
        fn agent(&self, id: &str) -> $crate::Result<Option<$crate::AgentRecord>> {
            $crate::tables::agent(&self.$($kv).+, id)
        }
        fn agents(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> $crate::Result<Vec<$crate::AgentRecord>> {
            $crate::tables::agents(&self.$($kv).+, after, limit)
        }
        fn task(&self, id: &mandate_core::TaskId) -> $crate::Result<Option<$crate::TaskRecord>> {
            $crate::tables::task(&self.$($kv).+, id)
        }
        fn tasks(
            &self,
            after: Option<&mandate_core::TaskId>,
            limit: usize,
        ) -> $crate::Result<Vec<$crate::TaskRecord>> {
            $crate::tables::tasks(&self.$($kv).+, after, limit)
        }
        fn approval(
            &self,
            task: &mandate_core::TaskId,
        ) -> $crate::Result<Option<$crate::ApprovalRecord>> {
            $crate::tables::approval(&self.$($kv).+, task)
        }
        fn approvals(
            &self,
            after: Option<&mandate_core::TaskId>,
            limit: usize,
        ) -> $crate::Result<Vec<$crate::ApprovalRecord>> {
            $crate::tables::approvals(&self.$($kv).+, after, limit)
        }
        fn pending_approvals_of(
            &self,
            requester: &str,
            now_ms: u64,
            cap: usize,
        ) -> $crate::Result<usize> {
            $crate::tables::pending_approvals_of(&self.$($kv).+, requester, now_ms, cap)
        }
        fn link(&self, id: &mandate_core::LinkId) -> $crate::Result<Option<$crate::LinkRecord>> {
            $crate::tables::link(&self.$($kv).+, id)
        }
        fn links_exist(&self, ids: &[mandate_core::LinkId]) -> $crate::Result<Vec<bool>> {
            $crate::tables::links_exist(&self.$($kv).+, ids)
        }
        fn children(
            &self,
            task: &mandate_core::TaskId,
            id: &mandate_core::LinkId,
        ) -> $crate::Result<Vec<mandate_core::LinkId>> {
            $crate::tables::children(&self.$($kv).+, task, id)
        }
        fn children_with_expiry(
            &self,
            task: &mandate_core::TaskId,
            id: &mandate_core::LinkId,
        ) -> $crate::Result<Vec<$crate::Child>> {
            $crate::tables::children_with_expiry(&self.$($kv).+, task, id)
        }
        fn task_links(
            &self,
            task: &mandate_core::TaskId,
        ) -> $crate::Result<Vec<$crate::LinkRecord>> {
            $crate::tables::task_links(&self.$($kv).+, task)
        }
        fn task_tree(
            &self,
            task: &mandate_core::TaskId,
        ) -> $crate::Result<Vec<$crate::TreeLink>> {
            $crate::tables::task_tree(&self.$($kv).+, task)
        }
        fn task_link_count(&self, task: &mandate_core::TaskId) -> $crate::Result<usize> {
            $crate::tables::task_link_count(&self.$($kv).+, task)
        }
        fn task_roots(
            &self,
            task: &mandate_core::TaskId,
        ) -> $crate::Result<Vec<mandate_core::LinkId>> {
            $crate::tables::task_roots(&self.$($kv).+, task)
        }
        fn agent_links(&self, agent: &str) -> $crate::Result<Vec<mandate_core::LinkId>> {
            $crate::tables::agent_links(&self.$($kv).+, agent)
        }
        fn revocation(
            &self,
            id: &mandate_core::LinkId,
        ) -> $crate::Result<Option<$crate::RevocationRecord>> {
            $crate::tables::revocation(&self.$($kv).+, id)
        }
        fn implied_revocations(
            &self,
            epoch: u64,
            task: &mandate_core::TaskId,
        ) -> $crate::Result<Vec<$crate::RevocationRecord>> {
            $crate::tables::implied_revocations(&self.$($kv).+, epoch, task)
        }
        fn all_implied_revocations(&self) -> $crate::Result<Vec<$crate::RevocationRecord>> {
            $crate::tables::all_implied_revocations(&self.$($kv).+)
        }
        fn revocations_after(&self, epoch: u64) -> $crate::Result<Vec<$crate::RevocationRecord>> {
            $crate::tables::revocations_after(&self.$($kv).+, epoch)
        }
        fn uses(&self, counter: &$crate::UseCounter) -> $crate::Result<u32> {
            $crate::tables::uses(&self.$($kv).+, counter)
        }
        fn policy_hash(&self) -> $crate::Result<Option<String>> {
            $crate::tables::policy_hash(&self.$($kv).+)
        }
        fn policy_files(&self) -> $crate::Result<Option<Vec<(String, String)>>> {
            $crate::tables::policy_files(&self.$($kv).+)
        }
        fn coordinator_keys(&self) -> $crate::Result<Option<$crate::CoordinatorKeys>> {
            $crate::tables::coordinator_keys(&self.$($kv).+)
        }
        fn epoch(&self) -> $crate::Result<u64> {
            $crate::tables::epoch(&self.$($kv).+)
        }
        fn nonce(&self, nonce: &[u8; 16]) -> $crate::Result<Option<u64>> {
            $crate::tables::nonce(&self.$($kv).+, nonce)
        }
    };
}
pub(crate) use store_reads;
