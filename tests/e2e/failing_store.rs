//! A coordinator on a store whose writes or flushes fail on demand: for the tests that
//! prove nothing changes when the audit write fails, and that the feed waits for
//! durability.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mandate_core::{LinkId, TaskId};
use mandate_store::{Change, Committed, GcStats, SledStore, Store, StoreError};

use crate::harness::*;

/// A store whose commits fail on demand: the audit write cannot happen.
pub struct FailingStore {
    pub inner: SledStore,
    pub fail: AtomicBool,
    pub fail_flush: AtomicBool,
}

impl Store for FailingStore {
    fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(
                "injected: the audit log cannot be written".into(),
            ));
        }
        self.inner.commit(change)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected: the disk cannot sync".into()));
        }
        self.inner.flush()
    }
    fn agent(&self, id: &str) -> Result<Option<mandate_store::AgentRecord>, StoreError> {
        self.inner.agent(id)
    }
    fn agents(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<mandate_store::AgentRecord>, StoreError> {
        self.inner.agents(after, limit)
    }
    fn task(&self, id: &TaskId) -> Result<Option<mandate_store::TaskRecord>, StoreError> {
        self.inner.task(id)
    }
    fn tasks(
        &self,
        after: Option<&TaskId>,
        limit: usize,
    ) -> Result<Vec<mandate_store::TaskRecord>, StoreError> {
        self.inner.tasks(after, limit)
    }
    fn approval(&self, task: &TaskId) -> Result<Option<mandate_store::ApprovalRecord>, StoreError> {
        self.inner.approval(task)
    }
    fn approvals(
        &self,
        after: Option<&TaskId>,
        limit: usize,
    ) -> Result<Vec<mandate_store::ApprovalRecord>, StoreError> {
        self.inner.approvals(after, limit)
    }
    fn uses(&self, counter: &mandate_store::UseCounter) -> Result<u32, StoreError> {
        self.inner.uses(counter)
    }
    fn approvals_due(&self, now_ms: u64, limit: usize) -> Result<Vec<TaskId>, StoreError> {
        self.inner.approvals_due(now_ms, limit)
    }
    fn pending_approvals_of(
        &self,
        requester: &str,
        now_ms: u64,
        cap: usize,
    ) -> Result<usize, StoreError> {
        self.inner.pending_approvals_of(requester, now_ms, cap)
    }
    fn link(&self, id: &LinkId) -> Result<Option<mandate_store::LinkRecord>, StoreError> {
        self.inner.link(id)
    }
    fn task_tree(
        &self,
        task: &mandate_core::TaskId,
    ) -> Result<Vec<mandate_store::TreeLink>, StoreError> {
        self.inner.task_tree(task)
    }
    fn links_exist(&self, ids: &[LinkId]) -> Result<Vec<bool>, StoreError> {
        self.inner.links_exist(ids)
    }
    fn children(&self, task: &TaskId, id: &LinkId) -> Result<Vec<LinkId>, StoreError> {
        self.inner.children(task, id)
    }
    fn children_with_expiry(
        &self,
        task: &TaskId,
        id: &LinkId,
    ) -> Result<Vec<mandate_store::Child>, StoreError> {
        self.inner.children_with_expiry(task, id)
    }
    fn task_links(&self, task: &TaskId) -> Result<Vec<mandate_store::LinkRecord>, StoreError> {
        self.inner.task_links(task)
    }
    fn task_link_count(&self, task: &TaskId) -> Result<usize, StoreError> {
        self.inner.task_link_count(task)
    }
    fn task_roots(&self, task: &TaskId) -> Result<Vec<LinkId>, StoreError> {
        self.inner.task_roots(task)
    }
    fn agent_links(&self, agent: &str) -> Result<Vec<LinkId>, StoreError> {
        self.inner.agent_links(agent)
    }
    fn revocation(
        &self,
        id: &LinkId,
    ) -> Result<Option<mandate_store::RevocationRecord>, StoreError> {
        self.inner.revocation(id)
    }
    fn implied_revocations(
        &self,
        epoch: u64,
        task: &TaskId,
    ) -> Result<Vec<mandate_store::RevocationRecord>, StoreError> {
        self.inner.implied_revocations(epoch, task)
    }
    fn all_implied_revocations(&self) -> Result<Vec<mandate_store::RevocationRecord>, StoreError> {
        self.inner.all_implied_revocations()
    }
    fn revocations_after(
        &self,
        epoch: u64,
    ) -> Result<Vec<mandate_store::RevocationRecord>, StoreError> {
        self.inner.revocations_after(epoch)
    }
    fn policy_hash(&self) -> Result<Option<String>, StoreError> {
        self.inner.policy_hash()
    }
    fn policy_files(&self) -> Result<Option<Vec<(String, String)>>, StoreError> {
        self.inner.policy_files()
    }
    fn coordinator_keys(&self) -> Result<Option<mandate_store::CoordinatorKeys>, StoreError> {
        self.inner.coordinator_keys()
    }
    fn epoch(&self) -> Result<u64, StoreError> {
        self.inner.epoch()
    }
    fn nonce(&self, nonce: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        self.inner.nonce(nonce)
    }
    fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<mandate_store::AuditRecord>, StoreError> {
        self.inner.audit_after(after, limit)
    }
    fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.inner.audit_head()
    }
    fn gc(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats, StoreError> {
        self.inner.gc(now_ms, history_before_ms)
    }
}

/// A coordinator on a store whose writes or flushes can be made to fail.
pub async fn on_a_failing_store() -> (Harness, Arc<FailingStore>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let store = Arc::new(FailingStore {
        inner: SledStore::open(&dir.path().join("data/store")).unwrap(),
        fail: AtomicBool::new(false),
        fail_flush: AtomicBool::new(false),
    });
    let server = mandate_server::start_with_store(config(dir.path(), clock.clone()), store.clone())
        .await
        .unwrap();
    let channel = wait_healthy(server.local_addr).await;
    let admin_key = mandate_core::keyfile::load_signing_key(&server.admin_key_path).unwrap();
    let h = Harness {
        admin: mandate_sdk::Client::with_channel(
            channel.clone(),
            mandate_sdk::Signer::with_clock(
                server.admin_id.parse().unwrap(),
                admin_key,
                clock.clone(),
            ),
        ),
        server: Some(server),
        dir,
        clock,
        channel,
    };
    (h, store)
}
