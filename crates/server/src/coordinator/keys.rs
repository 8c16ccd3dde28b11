//! The service's coordinator keys: each instance signs with its own key, and the trust
//! bundle is the set of keys recorded in the store (`CoordinatorKeys`), with a version that
//! grows with every change. A change is committed with its audit record like any other,
//! then installed here (the verifier's bundle) and announced to feed followers that asked
//! for trust updates, signed by this coordinator's key, which they already trust: that is
//! how a key added through today's leader is known to every verifier before its instance
//! ever leads.

use std::sync::Arc;

use mandate_core::{PublicKey, TrustBundle};
use mandate_store::{
    AuditAction, Change, CoordinatorKeyRecord, CoordinatorKeys, Severity, Verdict,
};

use super::{Coordinator, event};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};

/// The instance name of a coordinator that runs alone.
const SINGLE: &str = "coordinator";

/// The bundle verifiers should trust at `now_ms`: the keys whose window has not ended.
pub(crate) fn bundle(keys: &CoordinatorKeys, now_ms: u64) -> TrustBundle {
    let mut bundle = TrustBundle::new();
    for k in keys.trusted(now_ms) {
        // A key recorded in the store was checked when it was added: one that no longer
        // parses is left out (trusting less), and said.
        if let Err(e) = bundle.add(k.public_key, 0, k.trusted_until_ms) {
            tracing::error!(key = %k.public_key, error = %e, "a stored coordinator key is unusable");
        }
    }
    bundle
}

/// The keys a coordinator serves before the store has any: its own, and the keys it
/// retired (`mandate rotate-key`) still in their window.
pub(crate) fn initial(
    own: PublicKey,
    instance: &str,
    retired: &[(PublicKey, u64)],
    now_ms: u64,
) -> CoordinatorKeys {
    let mut keys: Vec<CoordinatorKeyRecord> = retired
        .iter()
        .filter(|(k, _)| *k != own)
        .map(|(k, until)| CoordinatorKeyRecord {
            public_key: *k,
            instance: instance.to_owned(),
            added_ms: now_ms,
            retired_ms: Some(now_ms),
            trusted_until_ms: *until,
        })
        .collect();
    keys.push(CoordinatorKeyRecord {
        public_key: own,
        instance: instance.to_owned(),
        added_ms: now_ms,
        retired_ms: None,
        trusted_until_ms: u64::MAX,
    });
    CoordinatorKeys { version: 1, keys }
}

fn key_event(
    actor: &str,
    action: AuditAction,
    key: &CoordinatorKeyRecord,
    version: u64,
    reason: String,
    now: u64,
) -> mandate_store::AuditEvent {
    let mut e = event(actor, action, now);
    e.severity = Severity::High;
    e.set_verdict(Verdict::Allow);
    e.reason = reason;
    e.detail
        .insert("public_key".into(), key.public_key.to_string());
    e.detail.insert("instance".into(), key.instance.clone());
    e.detail
        .insert("trusted_until_ms".into(), key.trusted_until_ms.to_string());
    e.detail.insert("keys_version".into(), version.to_string());
    e
}

impl Coordinator {
    /// The coordinator keys in force (what the trust bundle is made of) and their version.
    pub fn coordinator_keys(&self) -> Arc<CoordinatorKeys> {
        Arc::clone(&self.keys.borrow())
    }

    /// Wakes on every change of the coordinator keys.
    pub(crate) fn watch_keys(&self) -> tokio::sync::watch::Receiver<Arc<CoordinatorKeys>> {
        self.keys.subscribe()
    }

    /// Installs `keys` if they are newer than the ones in force: the verifier's bundle,
    /// then every follower that asked for trust updates.
    fn install_keys(&self, keys: CoordinatorKeys) {
        let now = self.now();
        self.keys.send_if_modified(|current| {
            if keys.version <= current.version {
                return false;
            }
            self.verifier.set_trust_bundle(bundle(&keys, now));
            *current = Arc::new(keys);
            true
        });
    }

    /// At start: this coordinator may only sign with an active key of the service. A store
    /// without keys records this coordinator's (and those it retired). A coordinator
    /// running alone with a key the store does not have (after `mandate rotate-key`)
    /// records it and retires the keys its data directory lists as retired. One of several
    /// (`instance` set) whose key is not active refuses to lead: its key must first be
    /// added through the running service, so that every verifier knows it before it
    /// signs anything.
    pub async fn check_keys_at_start(&self) -> Result<(), ApiError> {
        let now = self.now();
        let own = self.key.public_key();
        let instance = self.config.instance.as_deref();
        let guard = self.writer.lock().await;
        let stored = self.store.coordinator_keys()?;
        let mut retiring = Vec::new();
        let (next, added) = match stored {
            Some(keys) if keys.is_active(&own) => {
                drop(guard);
                self.install_keys(keys);
                return Ok(());
            }
            None => {
                let keys = initial(
                    own,
                    instance.unwrap_or(SINGLE),
                    &self.config.retired_keys,
                    now,
                );
                let added = keys.keys.last().cloned();
                (keys, added)
            }
            Some(keys) => {
                let retired = keys.get(&own).is_some();
                if let Some(instance) = instance {
                    let why = if retired {
                        "was retired"
                    } else {
                        "is not one of the service's keys"
                    };
                    return Err(ApiError::precondition(
                        if retired {
                            ErrorReason::KeyRetired
                        } else {
                            ErrorReason::NotFound
                        },
                        format!(
                            "this coordinator's key {own} {why}: it cannot lead (verifiers would not trust what it signs). Add a key through the running service first (`mandate coordinator-keys add KEY --instance {instance}`; `mandate keygen` makes one for the data directory's coordinator.key)"
                        ),
                    ));
                }
                if retired {
                    return Err(ApiError::precondition(
                        ErrorReason::KeyRetired,
                        format!(
                            "this coordinator's key {own} was retired: rotate it (`mandate rotate-key`)"
                        ),
                    ));
                }
                // Alone, after `mandate rotate-key`: the new key joins, the keys the data
                // directory lists as retired are retired with their windows.
                let mut next = keys.clone();
                next.version = next.version.saturating_add(1);
                for k in &mut next.keys {
                    if let Some((_, until)) = self
                        .config
                        .retired_keys
                        .iter()
                        .find(|(r, _)| *r == k.public_key)
                        && k.retired_ms.is_none()
                    {
                        k.retired_ms = Some(now);
                        k.trusted_until_ms = *until;
                        retiring.push(k.clone());
                    }
                }
                let record = CoordinatorKeyRecord {
                    public_key: own,
                    instance: SINGLE.to_owned(),
                    added_ms: now,
                    retired_ms: None,
                    trusted_until_ms: u64::MAX,
                };
                next.keys.push(record.clone());
                (next, Some(record))
            }
        };
        let mut change = Change {
            coordinator_keys: Some(next.clone()),
            ..Change::default()
        };
        if let Some(record) = &added {
            let mut e = key_event(
                "startup",
                AuditAction::CoordinatorKeyAdded,
                record,
                next.version,
                "the coordinator started with a key the store did not have".into(),
                now,
            );
            // The first key a store records is noted; every later change is high severity.
            if next.version == 1 {
                e.severity = Severity::Notice;
            }
            change.audit.push(e);
        }
        for record in &retiring {
            change.audit.push(key_event(
                "startup",
                AuditAction::CoordinatorKeyRetired,
                record,
                next.version,
                "the coordinator's data directory lists this key as retired (mandate rotate-key)"
                    .into(),
                now,
            ));
        }
        self.commit_and_wait(guard, change, None).await?;
        self.install_keys(next);
        Ok(())
    }

    /// Adds `key` to the service's coordinator keys, for `instance`. Returns the new
    /// version (the current one when the key is already active).
    pub async fn add_coordinator_key(
        &self,
        caller: &Caller,
        key: PublicKey,
        instance: String,
    ) -> Result<u64, ApiError> {
        key.prepare().map_err(|_| {
            ApiError::invalid("public_key is not a usable Ed25519 public key".to_owned())
        })?;
        let now = self.now();
        let guard = self.writer.lock().await;
        self.current(caller)?;
        let keys = self.store.coordinator_keys()?.unwrap_or_default();
        match keys.get(&key) {
            Some(k) if k.retired_ms.is_some() => {
                return Err(ApiError::precondition(
                    ErrorReason::KeyRetired,
                    format!(
                        "coordinator key {key} was retired: a retired key never comes back (generate a new one with `mandate keygen`)"
                    ),
                ));
            }
            Some(_) => return Ok(keys.version),
            None => {}
        }
        let record = CoordinatorKeyRecord {
            public_key: key,
            instance,
            added_ms: now,
            retired_ms: None,
            trusted_until_ms: u64::MAX,
        };
        let mut next = keys;
        next.version = next.version.saturating_add(1);
        next.keys.push(record.clone());
        let change = Change {
            coordinator_keys: Some(next.clone()),
            audit: vec![key_event(
                caller.agent.id.as_str(),
                AuditAction::CoordinatorKeyAdded,
                &record,
                next.version,
                "a coordinator key was added".into(),
                now,
            )],
            ..Change::default()
        };
        self.commit_and_wait(guard, change, Some(caller)).await?;
        let version = next.version;
        self.install_keys(next);
        Ok(version)
    }

    /// Retires `key`: no instance leads with it any more, verifiers trust it for
    /// `trust_for_ms` more (a retired key's window only ever shortens). Returns the new
    /// version and the end of its window.
    pub async fn retire_coordinator_key(
        &self,
        caller: &Caller,
        key: PublicKey,
        trust_for_ms: u64,
    ) -> Result<(u64, u64), ApiError> {
        if key == self.key.public_key() {
            return Err(ApiError::precondition(
                ErrorReason::KeyInUse,
                format!(
                    "coordinator key {key} is the one the leading coordinator signs with: stop that instance (another one leads with its own key), then retire it"
                ),
            ));
        }
        let now = self.now();
        let guard = self.writer.lock().await;
        self.current(caller)?;
        let mut next = self.store.coordinator_keys()?.unwrap_or_default();
        let until = now.saturating_add(trust_for_ms);
        let Some(record) = next.keys.iter_mut().find(|k| k.public_key == key) else {
            return Err(ApiError::not_found("coordinator key", &key.to_string()));
        };
        if record.retired_ms.is_some() && record.trusted_until_ms <= until {
            return Ok((next.version, record.trusted_until_ms));
        }
        record.retired_ms.get_or_insert(now);
        record.trusted_until_ms = until;
        let record = record.clone();
        next.version = next.version.saturating_add(1);
        let change = Change {
            coordinator_keys: Some(next.clone()),
            audit: vec![key_event(
                caller.agent.id.as_str(),
                AuditAction::CoordinatorKeyRetired,
                &record,
                next.version,
                "a coordinator key was retired".into(),
                now,
            )],
            ..Change::default()
        };
        self.commit_and_wait(guard, change, Some(caller)).await?;
        let version = next.version;
        self.install_keys(next);
        Ok((version, until))
    }
}
