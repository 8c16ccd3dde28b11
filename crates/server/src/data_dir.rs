//! The data directory: created with its mode, its lock held while a coordinator runs, the
//! store opened in it (or on etcd), the keys it holds, and the admin agent registered at
//! the first start.

use std::path::Path;

use mandate_core::{AgentId, PublicKey, SigningKey, keyfile};
use mandate_store::{AgentRecord, AgentStatus, AuditAction, AuditEvent, Change, Severity, Store};

use crate::StartError;

/// Opens the store `config` names: sled in the data directory, or etcd.
pub(crate) async fn open_store(
    config: &crate::Config,
) -> Result<std::sync::Arc<dyn Store>, StartError> {
    Ok(match &config.store {
        crate::StoreChoice::Sled => {
            let store = mandate_store::SledStore::open_with(
                &config.data_dir.join("store"),
                config.store_cache_bytes,
                config.audit_sealing,
            )?;
            store.rewrite_above(config.store_rewrite_bytes);
            std::sync::Arc::new(store)
        }
        crate::StoreChoice::Etcd(etcd) => {
            let mut etcd = (**etcd).clone();
            etcd.cache_bytes = config.store_cache_bytes;
            etcd.records_per_segment = config.audit_sealing.records_per_segment;
            std::sync::Arc::new(
                tokio::task::spawn_blocking(move || mandate_store::EtcdStore::open(etcd))
                    .await
                    .map_err(|e| mandate_store::StoreError::Backend(e.to_string()))??,
            )
        }
    })
}

pub(crate) fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), mandate_core::Error> {
    if path.exists() {
        return Ok((keyfile::load_signing_key(path)?, false));
    }
    let key = SigningKey::generate()?;
    keyfile::save_signing_key(&key, path)?;
    Ok((key, true))
}

/// The lock file a running coordinator holds in its data directory, whatever its store:
/// offline tools (`mandate rotate-key`) take it to know no coordinator runs there.
pub const LOCK_FILE: &str = "coordinator.lock";

/// Takes the data directory's lock (an advisory lock on [`LOCK_FILE`], released when the
/// file is dropped or the process dies). [`StartError::DataDirInUse`] when it is held.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StartError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::DataDir { path, source }),
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Registers the admin agent on first start.
pub(crate) fn bootstrap_admin(
    store: &dyn Store,
    admin_id: &str,
    key: &PublicKey,
    now: u64,
) -> Result<(), mandate_store::StoreError> {
    if store.agent(admin_id)?.is_some() {
        return Ok(());
    }
    let mut detail = std::collections::BTreeMap::new();
    detail.insert("agent".to_owned(), admin_id.to_owned());
    store.commit(Change {
        agents: vec![AgentRecord {
            id: AgentId::new(admin_id)
                .map_err(|e| mandate_store::StoreError::Backend(e.to_string()))?,
            public_key: *key,
            role: "admin".into(),
            owner: "bootstrap".into(),
            labels: Default::default(),
            parent: None,
            status: AgentStatus::Active,
            created_ms: now,
            disabled_ms: 0,
            registered_by: "bootstrap".into(),
        }],
        audit: vec![AuditEvent {
            reason: "first start: admin created".into(),
            severity: Severity::High,
            detail,
            ..AuditEvent::new("bootstrap", AuditAction::AgentRegistered, now)
        }],
        ..Change::default()
    })?;
    store.flush()
}
