//! Garbage collection of expired state, through the expiry indexes (`tables::plan_gc`).

use std::sync::PoisonError;

use super::SledStore;
use crate::kv::Ops;
use crate::{GcStats, Result, tables};

impl SledStore {
    /// [`crate::Store::gc`]: expired revocations, nonces and implied revocations; links and tasks
    /// (with their index entries and approval requests) past the history cutoff.
    pub(super) fn collect(&self, now_ms: u64, history_before_ms: u64) -> Result<GcStats> {
        let _guard = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut ops = Ops::default();
        let stats = tables::plan_gc(&self.db, now_ms, history_before_ms, &mut ops)?;
        self.db.apply(ops)?;
        Ok(stats)
    }
}
