//! Bounded caches a verifier keeps: verified link signatures and seen invocation nonces.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::id::Digest;
use crate::invocation::NONCE_LEN;
use crate::link::{Link, Seal};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave either cache in a state that accepts
    // more than it should: entries are inserted only after verification succeeded.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the link cache knows about one link.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CacheHit {
    /// Nothing: verify the link signature and any seal.
    Miss,
    /// The link signature verified before; verify the seal (it differs or is new).
    Signature,
    /// The link signature and this exact seal verified before.
    SignatureAndSeal,
}

/// What the cache holds for one link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cached {
    pub(crate) hit: CacheHit,
    /// The link's holder key, already decompressed and checked, if known.
    pub(crate) holder: Option<ed25519_dalek::VerifyingKey>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    // The seal (key and signature) that verified with the link, if any.
    seal: Option<Seal>,
    holder: Option<ed25519_dalek::VerifyingKey>,
}

/// Digests of links whose signatures (and seals) verified, bounded, first in first out,
/// with each link's decompressed holder key (decompressing a point costs about 5 µs, an
/// eighth of a signature check).
///
/// A link digest covers the body and the signature, and the body names the parent by
/// digest, so the issuer key is fixed by the digest: a hit proves the same signature
/// verified under the same key. Only signature work is skipped; structure, trust windows,
/// time and revocation are checked on every verification.
#[derive(Debug)]
pub(crate) struct LinkCache {
    inner: Mutex<LinkCacheInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct LinkCacheInner {
    map: HashMap<Digest, Entry>,
    order: VecDeque<Digest>,
}

impl LinkCache {
    pub(crate) fn new(capacity: usize) -> LinkCache {
        LinkCache {
            inner: Mutex::new(LinkCacheInner::default()),
            capacity,
        }
    }

    /// Looks every link up under one lock.
    pub(crate) fn lookup_all(&self, links: &[Link]) -> Vec<Cached> {
        let miss = Cached {
            hit: CacheHit::Miss,
            holder: None,
        };
        if self.capacity == 0 {
            return vec![miss; links.len()];
        }
        let inner = lock(&self.inner);
        links
            .iter()
            .map(|link| match inner.map.get(link.digest()) {
                None => miss,
                Some(entry) => Cached {
                    hit: match (link.seal(), entry.seal) {
                        (None, _) => CacheHit::SignatureAndSeal,
                        // The whole seal must match: a cached signature relabelled with
                        // another trusted key proves nothing about that key.
                        (Some(s), Some(cached)) if *s == cached => CacheHit::SignatureAndSeal,
                        (Some(_), _) => CacheHit::Signature,
                    },
                    holder: entry.holder,
                },
            })
            .collect()
    }

    /// Records links whose signature, and seal when given, verified, with their holder
    /// keys when known.
    pub(crate) fn insert(
        &self,
        verified: impl Iterator<Item = (Digest, Option<Seal>, Option<ed25519_dalek::VerifyingKey>)>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        for (digest, seal, holder) in verified {
            if let Some(entry) = inner.map.get_mut(&digest) {
                entry.seal = seal.or(entry.seal);
                entry.holder = holder.or(entry.holder);
                continue;
            }
            while inner.map.len() >= self.capacity {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&old);
            }
            inner.map.insert(digest, Entry { seal, holder });
            inner.order.push_back(digest);
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }
}

/// Outcome of recording a nonce.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NonceCheck {
    /// First use; recorded.
    Fresh,
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of live nonces; nothing was recorded.
    Full,
}

/// Nonces seen within the invocation window, bounded, keyed by holder key and nonce (so
/// one holder cannot burn another's nonces).
///
/// A nonce is remembered until its proof can no longer pass the staleness check, so a
/// replay is caught for as long as it could otherwise succeed. When the cache is full of
/// live nonces it refuses new invocations rather than forget one (fail closed); a full
/// sweep for expired entries behind the head runs at most once a second.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    inner: Mutex<ReplayInner>,
    capacity: usize,
    /// Entries are fingerprints of (holder key, nonce): 16 bytes each instead of 56
    /// (`crate::fingerprint` says why that is safe).
    fingerprints: crate::Fingerprints,
}

/// Holder key and nonce.
pub(crate) type NonceKey = ([u8; 32], [u8; NONCE_LEN]);

#[derive(Debug, Default)]
struct ReplayInner {
    expiry: crate::FingerprintMap<u64>,
    // Insertion order; expiries are nearly monotonic, so popping from the front while the
    // head has expired frees space without scanning.
    order: VecDeque<(u64, u64)>,
    last_sweep_ms: u64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(ReplayInner::default()),
            capacity,
            fingerprints: crate::Fingerprints::default(),
        }
    }

    /// Records `nonce` as used until `expires_at_ms`, atomically with the check.
    pub(crate) fn check_and_insert(
        &self,
        nonce: &NonceKey,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> NonceCheck {
        let nonce = &self.fingerprints.of(&[&nonce.0, &nonce.1]);
        let mut inner = lock(&self.inner);
        if let Some(&exp) = inner.expiry.get(nonce)
            && exp > now_ms
        {
            return NonceCheck::Replayed;
        }
        while let Some(&(old, exp)) = inner.order.front() {
            if exp > now_ms {
                break;
            }
            inner.order.pop_front();
            if inner.expiry.get(&old) == Some(&exp) {
                inner.expiry.remove(&old);
            }
        }
        // After a burst the tables keep their peak allocation: give it back once they are
        // mostly empty (rarely, so the cost is amortised).
        if inner.expiry.capacity() > 4 * inner.expiry.len() + 4096 {
            let keep = 2 * inner.expiry.len();
            inner.expiry.shrink_to(keep);
            inner.order.shrink_to(keep);
        }
        if inner.expiry.len() >= self.capacity && now_ms >= inner.last_sweep_ms.saturating_add(1000)
        {
            // The head has not expired but something behind it may have.
            inner.last_sweep_ms = now_ms;
            inner.expiry.retain(|_, exp| *exp > now_ms);
            let ReplayInner { expiry, order, .. } = &mut *inner;
            order.retain(|(n, e)| expiry.get(n) == Some(e));
        }
        if inner.expiry.len() >= self.capacity {
            return NonceCheck::Full;
        }
        inner.expiry.insert(*nonce, expires_at_ms);
        inner.order.push_back((*nonce, expires_at_ms));
        NonceCheck::Fresh
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).expiry.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> NonceKey {
        ([0; 32], [n; NONCE_LEN])
    }

    #[test]
    fn the_same_nonce_under_another_holder_is_not_a_replay() {
        let c = ReplayCache::new(10);
        assert_eq!(
            c.check_and_insert(&([1; 32], [5; NONCE_LEN]), 100, 0),
            NonceCheck::Fresh
        );
        assert_eq!(
            c.check_and_insert(&([2; 32], [5; NONCE_LEN]), 100, 0),
            NonceCheck::Fresh
        );
        assert_eq!(
            c.check_and_insert(&([1; 32], [5; NONCE_LEN]), 100, 0),
            NonceCheck::Replayed
        );
    }

    #[test]
    fn replay_cache_catches_reuse_until_expiry() {
        let c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert(&k(1), 100, 0), NonceCheck::Fresh);
        assert_eq!(c.check_and_insert(&k(1), 100, 50), NonceCheck::Replayed);
        // After expiry the old entry is gone (and the staleness check rejects the proof).
        assert_eq!(c.check_and_insert(&k(1), 200, 100), NonceCheck::Fresh);
    }

    #[test]
    fn replay_cache_refuses_when_full_of_live_nonces_and_recovers_after_expiry() {
        let c = ReplayCache::new(3);
        for i in 0..3u8 {
            assert_eq!(c.check_and_insert(&k(i), 100, 0), NonceCheck::Fresh);
        }
        assert_eq!(c.check_and_insert(&k(9), 100, 0), NonceCheck::Full);
        // Nothing was forgotten to make room.
        assert_eq!(c.check_and_insert(&k(0), 100, 0), NonceCheck::Replayed);
        assert_eq!(c.check_and_insert(&k(9), 300, 100), NonceCheck::Fresh);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn replay_cache_sweeps_expired_entries_behind_a_live_head_at_most_once_a_second() {
        let c = ReplayCache::new(2);
        assert_eq!(c.check_and_insert(&k(1), 5000, 0), NonceCheck::Fresh);
        assert_eq!(c.check_and_insert(&k(2), 10, 0), NonceCheck::Fresh);
        // Full, the head is live, and a sweep ran less than a second ago (at 0): refused.
        assert_eq!(c.check_and_insert(&k(3), 5000, 20), NonceCheck::Full);
        // A second later the sweep finds the expired entry behind the head.
        assert_eq!(c.check_and_insert(&k(3), 5000, 1020), NonceCheck::Fresh);
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert(&k(1), 5000, 1020), NonceCheck::Replayed);
    }
}
