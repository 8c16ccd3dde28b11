//! The trust bundle: coordinator keys a verifier accepts, each with a validity window.

use crate::crypto::PublicKey;
use crate::error::Error;

/// One trusted coordinator key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    key: PublicKey,
    verifying: ed25519_dalek::VerifyingKey,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl TrustedKey {
    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Start of the window in which the key is trusted, Unix milliseconds (inclusive).
    pub fn not_before_ms(&self) -> u64 {
        self.not_before_ms
    }

    /// End of the window in which the key is trusted, Unix milliseconds (exclusive).
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms
    }

    /// Whether the key is trusted at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.not_before_ms <= now_ms && now_ms < self.not_after_ms
    }

    pub(crate) fn verifying(&self) -> &ed25519_dalek::VerifyingKey {
        &self.verifying
    }
}

/// The coordinator keys a verifier trusts. Several keys may be trusted at once, so a
/// coordinator can rotate: publish the new key, start signing with it, retire the old one
/// when its last chain has expired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustBundle {
    keys: Vec<TrustedKey>,
}

/// Outcome of looking a key up in the bundle at some time.
pub(crate) enum Lookup<'a> {
    Active(&'a TrustedKey),
    Inactive,
    Unknown,
}

impl TrustBundle {
    /// An empty bundle (trusts nothing).
    pub fn new() -> TrustBundle {
        TrustBundle::default()
    }

    /// Trusts `key` from `not_before_ms` (inclusive) to `not_after_ms` (exclusive).
    pub fn add(
        &mut self,
        key: PublicKey,
        not_before_ms: u64,
        not_after_ms: u64,
    ) -> Result<(), Error> {
        if not_before_ms >= not_after_ms {
            return Err(Error::Invalid {
                what: "trusted key window",
                why: "not_before must be before not_after".into(),
            });
        }
        let verifying = key.verifying_key()?;
        self.keys.push(TrustedKey {
            key,
            verifying,
            not_before_ms,
            not_after_ms,
        });
        Ok(())
    }

    /// Builder form of [`TrustBundle::add`].
    pub fn with_key(
        mut self,
        key: PublicKey,
        not_before_ms: u64,
        not_after_ms: u64,
    ) -> Result<TrustBundle, Error> {
        self.add(key, not_before_ms, not_after_ms)?;
        Ok(self)
    }

    /// Every trusted key with its window.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    pub(crate) fn lookup(&self, key: &PublicKey, now_ms: u64) -> Lookup<'_> {
        let mut known = false;
        for k in self.keys.iter().filter(|k| k.key == *key) {
            if k.is_active(now_ms) {
                return Lookup::Active(k);
            }
            known = true;
        }
        if known {
            Lookup::Inactive
        } else {
            Lookup::Unknown
        }
    }
}
