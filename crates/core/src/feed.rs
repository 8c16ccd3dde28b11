//! Signed revocation feed messages (`mandate/v1/revocations`, docs/PROTOCOL.md): what a
//! coordinator signs for each snapshot, batch, heartbeat and trust update of
//! `WatchRevocations`, and the check a follower makes before applying one. A message whose
//! signature does not verify is treated as silence: the follower's staleness bound then
//! fails closed.
//!
//! The statement is fixed-width and big-endian:
//!
//! ```text
//! kind (1: snapshot, 2: batch, 3: heartbeat, 4: trust) | previous_epoch u64 | epoch u64 |
//! time_ms u64 | count u32 | SHA-256 of the items
//! ```
//!
//! where the items are, in message order, each `link id (16) | expires_at_ms u64 |
//! epoch u64` (links), or for a trust update (whose `epoch` is the bundle's version and
//! `previous_epoch` 0) each `public key (32) | not_before_ms u64 | not_after_ms u64`. It
//! is signed in the `mandate/v1/revocations` domain.

use sha2::{Digest as _, Sha256};

use crate::crypto::{Signature, SigningDomain, SigningKey};
use crate::id::LinkId;
use crate::trust::TrustBundle;

/// What a feed message does to the follower's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    /// Replace the set.
    Snapshot,
    /// Add to the set, on top of `previous_epoch`.
    Batch,
    /// Nothing changed up to `time_ms`.
    Heartbeat,
    /// Replace the trust bundle with the keys it carries (`epoch`: the bundle's version).
    Trust,
}

impl FeedKind {
    fn byte(self) -> u8 {
        match self {
            FeedKind::Snapshot => 1,
            FeedKind::Batch => 2,
            FeedKind::Heartbeat => 3,
            FeedKind::Trust => 4,
        }
    }
}

/// One feed message's signed content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedStatement {
    /// What it does.
    pub kind: FeedKind,
    /// Batches: the epoch the batch applies on top of (0 for snapshots; the epoch itself
    /// for heartbeats).
    pub previous_epoch: u64,
    /// The epoch after applying it.
    pub epoch: u64,
    /// The coordinator's time when it was made, Unix ms.
    pub time_ms: u64,
    /// How many links it carries.
    pub count: u32,
    /// SHA-256 of the links (see the module documentation).
    pub links_digest: [u8; 32],
}

/// Hashes the links of a feed message as the statement covers them.
#[derive(Clone, Debug, Default)]
pub struct FeedLinks {
    hash: Sha256,
    count: u32,
}

impl FeedLinks {
    /// No links yet.
    pub fn new() -> FeedLinks {
        FeedLinks::default()
    }

    /// Adds the next link, in message order.
    pub fn push(&mut self, link: &LinkId, expires_at_ms: u64, epoch: u64) {
        self.hash.update(link.as_bytes());
        self.hash.update(expires_at_ms.to_be_bytes());
        self.hash.update(epoch.to_be_bytes());
        self.count = self.count.saturating_add(1);
    }

    /// The statement for these links.
    pub fn statement(
        self,
        kind: FeedKind,
        previous_epoch: u64,
        epoch: u64,
        time_ms: u64,
    ) -> FeedStatement {
        FeedStatement {
            kind,
            previous_epoch,
            epoch,
            time_ms,
            count: self.count,
            links_digest: self.hash.finalize().into(),
        }
    }
}

/// The statement of a trust update announcing `bundle` (its keys in order) as version
/// `version`, made at `time_ms`.
pub fn trust_statement(bundle: &TrustBundle, version: u64, time_ms: u64) -> FeedStatement {
    let mut hash = Sha256::new();
    let mut count = 0u32;
    for k in bundle.keys() {
        hash.update(k.key().as_bytes());
        hash.update(k.not_before_ms().to_be_bytes());
        hash.update(k.not_after_ms().to_be_bytes());
        count = count.saturating_add(1);
    }
    FeedStatement {
        kind: FeedKind::Trust,
        previous_epoch: 0,
        epoch: version,
        time_ms,
        count,
        links_digest: hash.finalize().into(),
    }
}

impl FeedStatement {
    /// The bytes signed (before the domain prefix).
    pub fn bytes(&self) -> [u8; 61] {
        let mut out = [0u8; 61];
        out[0] = self.kind.byte();
        out[1..9].copy_from_slice(&self.previous_epoch.to_be_bytes());
        out[9..17].copy_from_slice(&self.epoch.to_be_bytes());
        out[17..25].copy_from_slice(&self.time_ms.to_be_bytes());
        out[25..29].copy_from_slice(&self.count.to_be_bytes());
        out[29..61].copy_from_slice(&self.links_digest);
        out
    }

    /// Signs the statement with the coordinator's key.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        key.sign(SigningDomain::RevocationList, &self.bytes())
    }

    /// Whether `signature` is a trusted coordinator key's over this statement, with the key
    /// trusted both at the statement's time and now (a key past its window cannot sign
    /// back-dated statements).
    pub fn verify(&self, trust: &TrustBundle, signature: &[u8], now_ms: u64) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        let message = SigningDomain::RevocationList.message(&self.bytes());
        trust
            .keys()
            .iter()
            .filter(|k| k.is_active(self.time_ms) && k.is_active(now_ms))
            .any(|k| k.verifying().verify_strict(&message, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(kind: FeedKind, links: &[(LinkId, u64, u64)], time_ms: u64) -> FeedStatement {
        let mut l = FeedLinks::new();
        for (id, exp, epoch) in links {
            l.push(id, *exp, *epoch);
        }
        l.statement(kind, 4, 5, time_ms)
    }

    #[test]
    fn a_signed_statement_verifies_only_as_signed() -> Result<(), crate::Error> {
        let key = SigningKey::generate()?;
        let other = SigningKey::generate()?;
        let trust = TrustBundle::new().with_key(key.public_key(), 0, 10_000)?;
        let a = LinkId::from_bytes([1; 16]);
        let b = LinkId::from_bytes([2; 16]);
        let s = statement(FeedKind::Batch, &[(a, 100, 5), (b, 200, 5)], 1_000);
        let sig = s.sign(&key);
        assert!(s.verify(&trust, sig.as_bytes(), 1_000));
        // Any change to what was signed, another key, or a key not trusted at that time.
        for changed in [
            statement(FeedKind::Snapshot, &[(a, 100, 5), (b, 200, 5)], 1_000),
            statement(FeedKind::Batch, &[(b, 200, 5), (a, 100, 5)], 1_000),
            statement(FeedKind::Batch, &[(a, 100, 5)], 1_000),
            statement(FeedKind::Batch, &[(a, 101, 5), (b, 200, 5)], 1_000),
            statement(FeedKind::Batch, &[(a, 100, 5), (b, 200, 5)], 1_001),
            FeedStatement {
                previous_epoch: 3,
                ..s.clone()
            },
            FeedStatement {
                epoch: 6,
                ..s.clone()
            },
        ] {
            assert!(
                !changed.verify(&trust, sig.as_bytes(), 1_000),
                "{changed:?}"
            );
        }
        assert!(!s.verify(&trust, s.sign(&other).as_bytes(), 1_000));
        // Signed in the key's window, presented after it.
        assert!(!s.verify(&trust, sig.as_bytes(), 10_000));
        assert!(!s.verify(&trust, &[], 1_000));
        let late = statement(FeedKind::Batch, &[(a, 100, 5), (b, 200, 5)], 10_000);
        assert!(!late.verify(&trust, late.sign(&key).as_bytes(), 1_000));
        Ok(())
    }

    #[test]
    fn a_trust_update_covers_every_key_and_window() -> Result<(), crate::Error> {
        let key = SigningKey::generate()?;
        let other = SigningKey::generate()?;
        let trust = TrustBundle::new().with_key(key.public_key(), 0, u64::MAX)?;
        let bundle = trust.clone().with_key(other.public_key(), 0, 5_000)?;
        let s = trust_statement(&bundle, 3, 1_000);
        assert_eq!(
            (s.kind, s.previous_epoch, s.epoch, s.count),
            (FeedKind::Trust, 0, 3, 2)
        );
        let sig = s.sign(&key);
        assert!(s.verify(&trust, sig.as_bytes(), 1_000));
        // Another window, another order, a key left out, another version or time.
        let later = trust.clone().with_key(other.public_key(), 0, 5_001)?;
        let swapped = TrustBundle::new()
            .with_key(other.public_key(), 0, 5_000)?
            .with_key(key.public_key(), 0, u64::MAX)?;
        for changed in [
            trust_statement(&later, 3, 1_000),
            trust_statement(&swapped, 3, 1_000),
            trust_statement(&trust, 3, 1_000),
            trust_statement(&bundle, 4, 1_000),
            trust_statement(&bundle, 3, 1_001),
        ] {
            assert!(
                !changed.verify(&trust, sig.as_bytes(), 1_000),
                "{changed:?}"
            );
        }
        // Only a key the follower already trusts can announce keys.
        assert!(!s.verify(&trust, s.sign(&other).as_bytes(), 1_000));
        Ok(())
    }
}
