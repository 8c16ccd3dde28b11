//! A store of each backend for the conformance suite, with raw access to its map.

use mandate_etcd::test_cluster::EtcdCluster;

use crate::{EtcdConfig, EtcdStore, SledStore, Store};

/// A store under test and the map beneath it.
pub(crate) trait Fixture {
    /// The store.
    fn store(&self) -> &dyn Store;
    /// Closes the store and opens it again on the same state.
    fn reopen(&mut self);
    /// Writes a key of the map directly (after making the store's changes durable).
    fn raw_put(&self, k: &[u8], v: &[u8]);
    /// Reads a key of the map directly.
    fn raw_get(&self, k: &[u8]) -> Option<Vec<u8>>;
    /// Removes a key of the map directly.
    fn raw_delete(&self, k: &[u8]);
    /// The keys of the map that start with `prefix`.
    fn raw_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>>;
}

/// sled in a temporary directory.
pub(crate) struct SledFixture {
    dir: tempfile::TempDir,
    store: Option<SledStore>,
}

impl SledFixture {
    pub(crate) fn new() -> SledFixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        SledFixture {
            dir,
            store: Some(store),
        }
    }

    fn sled(&self) -> &SledStore {
        self.store.as_ref().unwrap()
    }
}

impl Fixture for SledFixture {
    fn store(&self) -> &dyn Store {
        self.sled()
    }

    fn reopen(&mut self) {
        self.store = None;
        // sled's threads may hold the directory's lock a moment after the store is gone.
        self.store = Some(crate::sled_store::open_when_unlocked(
            self.dir.path(),
            crate::AuditSealing::default(),
        ));
    }

    fn raw_put(&self, k: &[u8], v: &[u8]) {
        self.sled().db().insert(k, v).unwrap();
    }

    fn raw_get(&self, k: &[u8]) -> Option<Vec<u8>> {
        self.sled().db().get(k).unwrap().map(|v| v.to_vec())
    }

    fn raw_delete(&self, k: &[u8]) {
        self.sled().db().remove(k).unwrap();
    }

    fn raw_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.sled()
            .db()
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.unwrap().to_vec())
            .collect()
    }
}

/// etcd: a one-member cluster on loopback, started for the test and killed after it.
pub(crate) struct EtcdFixture {
    // Dropped before the cluster.
    pub(crate) store: Option<EtcdStore>,
    pub(crate) config: EtcdConfig,
    pub(crate) cluster: EtcdCluster,
}

impl EtcdFixture {
    pub(crate) fn new() -> EtcdFixture {
        EtcdFixture::with_members(1)
    }

    pub(crate) fn with_members(n: usize) -> EtcdFixture {
        EtcdFixture::with_config(n, |_| {})
    }

    /// A cluster of `n` members and a store opened with `edit` applied to its settings.
    pub(crate) fn with_config(n: usize, edit: impl FnOnce(&mut EtcdConfig)) -> EtcdFixture {
        let cluster = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(EtcdCluster::start(n))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut config = EtcdConfig::new(cluster.endpoints());
        config.prefix = "conformance/".into();
        // Failure tests wait for calls to time out.
        config.timeout = std::time::Duration::from_secs(2);
        edit(&mut config);
        let store = EtcdStore::open(config.clone()).unwrap();
        EtcdFixture {
            store: Some(store),
            config,
            cluster,
        }
    }

    /// Opens the store again (after the test took and dropped it).
    pub(crate) fn reopen_store(&mut self) {
        self.store = None;
        self.store = Some(EtcdStore::open(self.config.clone()).unwrap());
    }

    fn etcd(&self) -> &EtcdStore {
        let s = self.store.as_ref().unwrap();
        s.flush().unwrap();
        s
    }
}

impl Fixture for EtcdFixture {
    fn store(&self) -> &dyn Store {
        self.store.as_ref().unwrap()
    }

    fn reopen(&mut self) {
        self.reopen_store();
    }

    fn raw_put(&self, k: &[u8], v: &[u8]) {
        self.etcd().raw_write(k, Some(v)).unwrap();
    }

    fn raw_get(&self, k: &[u8]) -> Option<Vec<u8>> {
        self.etcd().raw_get(k).unwrap()
    }

    fn raw_delete(&self, k: &[u8]) {
        self.etcd().raw_write(k, None).unwrap();
    }

    fn raw_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.etcd().raw_keys(prefix).unwrap()
    }
}
