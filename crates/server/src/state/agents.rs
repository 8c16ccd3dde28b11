//! Agent records read through a cache. Every signed request reads its caller's record,
//! and every `Authorize` the holder's, the tool's and their parents': a JSON decode and a
//! point decompression each when read from the store. Records change only through the
//! coordinator's commits, which call [`AgentCache::changed`], so a cached record is the
//! stored one.
//!
//! Bound: [`MAX_AGENTS`] records; when full, all are forgotten (active agents come back at
//! their next request, as with the auth layer's decompressed keys). Unknown ids are not
//! cached: a stream of made-up ids costs store reads, not memory.
//!
//! Writing agents any other way (through [`mandate_store::Store::commit`] directly, with
//! a coordinator running on the store) leaves their cached records stale: that is not
//! supported.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mandate_store::{AgentRecord, Store};

/// Most records kept.
pub(crate) const MAX_AGENTS: usize = 16_384;

/// Agent records by id, as stored.
pub(crate) struct AgentCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for AgentCache {
    fn default() -> AgentCache {
        AgentCache::with_capacity(MAX_AGENTS)
    }
}

#[derive(Default)]
struct Inner {
    /// Increases with every change of agents: a record read before a change is not cached
    /// after it.
    generation: u64,
    records: HashMap<String, Arc<AgentRecord>>,
}

impl AgentCache {
    /// A cache of at most `capacity` records.
    pub(crate) fn with_capacity(capacity: usize) -> AgentCache {
        AgentCache {
            inner: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// The record of `id`, from the cache or the store.
    pub(crate) fn get(
        &self,
        store: &dyn Store,
        id: &str,
    ) -> mandate_store::Result<Option<Arc<AgentRecord>>> {
        let generation = match self.cached(id) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        Ok(store
            .agent(id)?
            .map(|record| self.keep(generation, Arc::new(record))))
    }

    /// The cached record of `id`, or the generation to read the store under.
    fn cached(&self, id: &str) -> Result<Arc<AgentRecord>, u64> {
        let inner = self.lock();
        inner
            .records
            .get(id)
            .map(Arc::clone)
            .ok_or(inner.generation)
    }

    /// Caches a record read from the store under `generation`, unless agents changed
    /// since (the store may then hold another record).
    fn keep(&self, generation: u64, record: Arc<AgentRecord>) -> Arc<AgentRecord> {
        let mut inner = self.lock();
        if inner.generation == generation {
            if inner.records.len() >= self.capacity {
                inner.records.clear();
                inner.records.shrink_to_fit();
            }
            inner
                .records
                .insert(record.id.as_str().to_owned(), Arc::clone(&record));
        }
        record
    }

    /// Forgets the records of `ids`: called after a commit that wrote them (whether or not
    /// it succeeded: a failed commit may still have been applied). Reads under way are
    /// not kept either, whichever agent they read.
    pub(crate) fn changed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for id in ids {
            inner.records.remove(id);
        }
    }

    /// Records held.
    pub(crate) fn len(&self) -> usize {
        self.lock().records.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_store::{AgentStatus, AuditAction, AuditEvent, Change, SledStore};

    fn agent(id: &str, role: &str) -> AgentRecord {
        AgentRecord {
            id: id.parse().unwrap(),
            public_key: mandate_core::SigningKey::from_seed(&[3; 32]).public_key(),
            role: role.into(),
            owner: "team".into(),
            labels: Default::default(),
            parent: None,
            status: AgentStatus::Active,
            created_ms: 1,
            disabled_ms: 0,
            registered_by: "spiffe://t/admin".into(),
        }
    }

    fn write(store: &SledStore, a: AgentRecord) {
        store
            .commit(Change {
                agents: vec![a],
                audit: vec![AuditEvent::new(
                    "spiffe://t/admin",
                    AuditAction::AgentRegistered,
                    1,
                )],
                ..Change::default()
            })
            .unwrap();
    }

    #[test]
    fn a_record_is_read_once_and_forgotten_when_agents_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let cache = AgentCache::default();
        assert!(cache.get(&store, "spiffe://t/a").unwrap().is_none());
        assert_eq!(cache.len(), 0, "unknown ids are not cached");
        write(&store, agent("spiffe://t/a", "planner"));
        assert_eq!(
            cache.get(&store, "spiffe://t/a").unwrap().unwrap().role,
            "planner"
        );
        assert_eq!(cache.len(), 1);

        // Written behind the cache's back: the cached record is still served...
        write(&store, agent("spiffe://t/a", "worker"));
        assert_eq!(
            cache.get(&store, "spiffe://t/a").unwrap().unwrap().role,
            "planner"
        );
        // ...until the change is announced, as the coordinator's commits do; another
        // agent's record stays.
        write(&store, agent("spiffe://t/b", "planner"));
        cache.get(&store, "spiffe://t/b").unwrap();
        cache.changed(["spiffe://t/a"]);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get(&store, "spiffe://t/a").unwrap().unwrap().role,
            "worker"
        );
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        write(&store, agent("spiffe://t/a", "planner"));
        let cache = AgentCache::default();
        // A read that began before a change and ends after it: its record is returned
        // to its caller but not kept.
        let generation = cache.cached("spiffe://t/a").unwrap_err();
        let old = store.agent("spiffe://t/a").unwrap().unwrap();
        write(&store, agent("spiffe://t/a", "worker"));
        cache.changed(["spiffe://t/a"]);
        assert_eq!(cache.keep(generation, Arc::new(old)).role, "planner");
        assert_eq!(cache.len(), 0);
        assert_eq!(
            cache.get(&store, "spiffe://t/a").unwrap().unwrap().role,
            "worker"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let cache = AgentCache::with_capacity(4);
        for i in 0..10 {
            let id = format!("spiffe://t/a{i}");
            write(&store, agent(&id, "worker"));
            cache.get(&store, &id).unwrap().unwrap();
        }
        // Full at the fourth, emptied at the fifth and the ninth.
        assert_eq!(cache.len(), 2);
        assert!(cache.cached("spiffe://t/a9").is_ok());
    }
}
