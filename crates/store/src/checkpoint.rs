//! Audit checkpoints: the coordinator's signature over (sequence, hash of that record,
//! time). Kept somewhere the coordinator cannot write, a checkpoint detects a log that was
//! truncated or rewritten together with its head (docs/AUDIT.md, "Checkpoints").
//!
//! The signed statement, in the `mandate/v1/audit-checkpoint` domain, is 48 bytes:
//! `seq` (u64, big-endian) | the record's hash (32 bytes) | `time_ms` (u64, big-endian).

use mandate_core::{PublicKey, Signature, SigningDomain, SigningKey};
use serde::{Deserialize, Serialize};

/// The `format` of a checkpoint file.
pub const CHECKPOINT_FORMAT: &str = "mandate-audit-checkpoint/v1";

/// A signed checkpoint, as `mandate audit checkpoint` writes it (one JSON object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The sequence number of the last record it covers (0: the empty log).
    pub seq: u64,
    /// That record's hash, hex (64 zeros for the empty log).
    pub hash: String,
    /// When the coordinator signed it, Unix ms.
    pub time_ms: u64,
    /// The coordinator key that signed it, hex.
    pub coordinator_key: String,
    /// The signature, hex.
    pub signature: String,
}

/// Why a checkpoint is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A field does not parse.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The signature is not the named key's over the statement.
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
}

use crate::records::hex::encode as hex;

fn unhex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], CheckpointError> {
    crate::records::hex::decode_array(s).ok_or(CheckpointError::Malformed(what))
}

fn statement(seq: u64, hash: &[u8; 32], time_ms: u64) -> [u8; 48] {
    let mut out = [0u8; 48];
    out[..8].copy_from_slice(&seq.to_be_bytes());
    out[8..40].copy_from_slice(hash);
    out[40..].copy_from_slice(&time_ms.to_be_bytes());
    out
}

impl AuditCheckpoint {
    /// Signs a checkpoint of record `seq` whose hash is `hash` (hex).
    pub fn sign(
        key: &SigningKey,
        seq: u64,
        hash: &str,
        time_ms: u64,
    ) -> Result<AuditCheckpoint, CheckpointError> {
        let raw = unhex::<32>(hash, "hash")?;
        let signature = key.sign(
            SigningDomain::AuditCheckpoint,
            &statement(seq, &raw, time_ms),
        );
        Ok(AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            seq,
            hash: hash.to_owned(),
            time_ms,
            coordinator_key: hex(key.public_key().as_bytes()),
            signature: hex(signature.as_bytes()),
        })
    }

    /// A checkpoint from its wire form (`CheckpointAuditLogResponse`).
    pub fn from_parts(
        seq: u64,
        hash: String,
        time_ms: u64,
        coordinator_key: &[u8],
        signature: &[u8],
    ) -> AuditCheckpoint {
        AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            seq,
            hash,
            time_ms,
            coordinator_key: hex(coordinator_key),
            signature: hex(signature),
        }
    }

    /// The signing key's and the signature's bytes (the wire form).
    pub fn key_and_signature(&self) -> Result<([u8; 32], [u8; 64]), CheckpointError> {
        Ok((
            unhex::<32>(&self.coordinator_key, "coordinator_key")?,
            unhex::<64>(&self.signature, "signature")?,
        ))
    }

    /// Checks the signature against the key the checkpoint names and returns that key (the
    /// caller decides whether it trusts it).
    pub fn verify(&self) -> Result<PublicKey, CheckpointError> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Malformed("format"));
        }
        let key = PublicKey::from_bytes(&unhex::<32>(&self.coordinator_key, "coordinator_key")?)
            .map_err(|_| CheckpointError::Malformed("coordinator_key"))?;
        let signature = Signature::from_bytes(unhex::<64>(&self.signature, "signature")?);
        let raw = unhex::<32>(&self.hash, "hash")?;
        if !key.verify(
            SigningDomain::AuditCheckpoint,
            &statement(self.seq, &raw, self.time_ms),
            &signature,
        ) {
            return Err(CheckpointError::BadSignature);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_as_signed() -> Result<(), Box<dyn std::error::Error>> {
        let key = SigningKey::generate()?;
        let hash = "ab".repeat(32);
        let cp = AuditCheckpoint::sign(&key, 42, &hash, 1_000)?;
        assert_eq!(cp.verify()?, key.public_key());
        let text = serde_json::to_string(&cp)?;
        assert_eq!(serde_json::from_str::<AuditCheckpoint>(&text)?, cp);
        for changed in [
            AuditCheckpoint {
                seq: 41,
                ..cp.clone()
            },
            AuditCheckpoint {
                hash: "ac".repeat(32),
                ..cp.clone()
            },
            AuditCheckpoint {
                time_ms: 1_001,
                ..cp.clone()
            },
            AuditCheckpoint {
                coordinator_key: hex(SigningKey::generate()?.public_key().as_bytes()),
                ..cp.clone()
            },
        ] {
            assert_eq!(changed.verify(), Err(CheckpointError::BadSignature));
        }
        assert!(matches!(
            AuditCheckpoint {
                signature: "zz".into(),
                ..cp.clone()
            }
            .verify(),
            Err(CheckpointError::Malformed("signature"))
        ));
        assert!(
            serde_json::from_str::<AuditCheckpoint>(&text.replace("\"seq\"", "\"sequence\""))
                .is_err()
        );
        Ok(())
    }
}
