//! The coordinator's signing key and its rotation.
//!
//! The data directory holds the active key (`coordinator.key`) and the keys it replaced
//! (`retired-keys.json`: public keys only, each trusted until every link it sealed has
//! expired). The trust bundle the coordinator publishes is the active key plus the retired
//! keys still in their window. `mandate rotate-key` (with the coordinator stopped) makes a
//! new key and retires the old one.

use std::path::Path;

use mandate_core::{PublicKey, SigningKey, keyfile};
use serde::{Deserialize, Serialize};

use crate::StartError;

/// The file of retired keys in the data directory.
pub const RETIRED_KEYS_FILE: &str = "retired-keys.json";

/// A key the coordinator no longer signs with, still trusted for what it signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKey {
    /// The public key (base64url, as `mandate serve` prints it).
    pub public_key: String,
    /// When it was retired, Unix ms.
    pub retired_ms: u64,
    /// Until when verifiers trust it (exclusive), Unix ms: the retirement plus the
    /// longest link lifetime plus the clock skew.
    pub trusted_until_ms: u64,
}

impl RetiredKey {
    /// The key.
    pub fn key(&self) -> Result<PublicKey, StartError> {
        use base64::Engine as _;
        let bad = || StartError::RetiredKeys(format!("`{}` is not a public key", self.public_key));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.public_key)
            .map_err(|_| bad())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        PublicKey::from_bytes(&arr).map_err(|_| bad())
    }
}

/// The retired keys of a data directory (none when the file does not exist).
pub fn retired_keys(data_dir: &Path) -> Result<Vec<RetiredKey>, StartError> {
    let path = data_dir.join(RETIRED_KEYS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StartError::RetiredKeys(format!("`{}`: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StartError::RetiredKeys(format!(
            "`{}`: {e}",
            path.display()
        ))),
    }
}

/// What a rotation did.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The new active key.
    pub new_key: PublicKey,
    /// The key it replaced, now retired.
    pub retired: RetiredKey,
}

/// Replaces the active coordinator key of a stopped coordinator's data directory: the old
/// key's public half is kept as retired and trusted for `trust_old_for_ms` more (at least
/// the longest link lifetime plus the clock skew, so every link it sealed still verifies),
/// the new key is written in its place. Refuses while a coordinator has the store open.
pub fn rotate_coordinator_key(
    data_dir: &Path,
    trust_old_for_ms: u64,
    now_ms: u64,
) -> Result<Rotation, StartError> {
    let key_path = data_dir.join("coordinator.key");
    if !key_path.exists() {
        return Err(StartError::RetiredKeys(format!(
            "`{}` does not exist: is this a data directory?",
            key_path.display()
        )));
    }
    // A running coordinator holds the data directory's lock, whatever its store:
    // rotating under it would leave it signing with a key the files no longer name. Held
    // until the rotation is done, so none starts meanwhile.
    let _lock = match crate::lock_data_dir(data_dir) {
        Err(StartError::DataDirInUse(_)) => {
            return Err(StartError::RetiredKeys(
                "a coordinator runs on this data directory: stop the coordinator before rotating its key"
                    .into(),
            ));
        }
        other => other?,
    };
    let old = keyfile::load_signing_key(&key_path)?;
    let mut retired = retired_keys(data_dir)?;
    retired.retain(|r| r.trusted_until_ms > now_ms);
    let entry = RetiredKey {
        public_key: old.public_key().to_string(),
        retired_ms: now_ms,
        trusted_until_ms: now_ms.saturating_add(trust_old_for_ms),
    };
    retired.push(entry.clone());
    let new = SigningKey::generate()?;
    // The retired list first: a crash between the two writes leaves the old key active
    // and also listed as retired, which is harmless; the reverse would lose it.
    let list = data_dir.join(format!("{RETIRED_KEYS_FILE}.tmp"));
    std::fs::write(
        &list,
        serde_json::to_vec_pretty(&retired).map_err(|e| StartError::RetiredKeys(e.to_string()))?,
    )
    .map_err(|source| StartError::DataDir {
        path: list.clone(),
        source,
    })?;
    std::fs::rename(&list, data_dir.join(RETIRED_KEYS_FILE)).map_err(|source| {
        StartError::DataDir {
            path: list.clone(),
            source,
        }
    })?;
    let staged = data_dir.join("coordinator.key.new");
    let _ = std::fs::remove_file(&staged);
    keyfile::save_signing_key(&new, &staged)?;
    std::fs::rename(&staged, &key_path).map_err(|source| StartError::DataDir {
        path: key_path.clone(),
        source,
    })?;
    Ok(Rotation {
        new_key: new.public_key(),
        retired: entry,
    })
}
