//! Bounded caches a verifier keeps: decoded chains, verified link signatures, decompressed
//! holder keys and seen invocation nonces.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::window::NonceWindow;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::chain::Chain;
use crate::crypto::PublicKey;
use crate::id::Digest;
use crate::invocation::NONCE_LEN;
use crate::link::{Link, Seal};
use crate::reason::Denial;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave either cache in a state that accepts
    // more than it should: entries are inserted only after verification succeeded.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Holder keys decompressed and checked, by their 32-byte encoding, bounded (emptied when
/// full). Agents outlive chains, so a chain seen for the first time is mostly signed by keys
/// seen before, and decompressing a point costs about 4.4 µs. Decompression is a function
/// of the bytes alone, so a hit is exactly what decompressing again would give; only keys
/// that decompressed and passed the small-order check are kept.
#[derive(Debug)]
pub(crate) struct KeyCache {
    map: Mutex<HashMap<[u8; 32], ed25519_dalek::VerifyingKey>>,
    capacity: usize,
}

impl KeyCache {
    pub(crate) fn new(capacity: usize) -> KeyCache {
        KeyCache {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The checked key of `key`, from the cache or decompressed now.
    pub(crate) fn get(
        &self,
        key: &PublicKey,
    ) -> Result<ed25519_dalek::VerifyingKey, crate::error::Error> {
        if self.capacity == 0 {
            return key.verifying_key();
        }
        if let Some(k) = lock(&self.map).get(key.as_bytes()) {
            return Ok(*k);
        }
        let k = key.verifying_key()?;
        let mut map = lock(&self.map);
        if map.len() >= self.capacity {
            *map = HashMap::new();
        }
        map.insert(*key.as_bytes(), k);
        Ok(k)
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
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

/// Largest encoded chain the chain cache keeps (a depth-3 chain is about 1 KB); larger ones
/// are decoded on every use.
pub(crate) const MAX_CACHED_CHAIN_BYTES: usize = 4096;

/// Chains decoded before, by their encoding, bounded, first in first out. A worker presents
/// the same chain with every call of its task, and decoding it (the protobuf, every link's
/// fields checked, every link's digest hashed) cost a tenth of an online decision.
///
/// Decoding is a function of the bytes and the verifier's limits, which are fixed for the
/// verifier, so a hit is exactly what decoding again would give: nothing about a chain's
/// validity is cached here (signatures, trust, time and revocation are checked on every
/// verification). Only chains that decoded are kept, each of at most
/// [`MAX_CACHED_CHAIN_BYTES`]: at most `capacity` × 4 KiB of encodings and their decoded
/// forms.
#[derive(Debug)]
pub(crate) struct ChainCache {
    inner: Mutex<ChainCacheInner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct ChainCacheInner {
    map: HashMap<Arc<[u8]>, Arc<Chain>>,
    order: VecDeque<Arc<[u8]>>,
}

impl ChainCache {
    pub(crate) fn new(capacity: usize) -> ChainCache {
        ChainCache {
            inner: Mutex::new(ChainCacheInner::default()),
            capacity,
        }
    }

    /// The chain `bytes` encode, from the cache or by `decode` (whose refusal is returned
    /// and not cached).
    pub(crate) fn get_or_decode(
        &self,
        bytes: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<Chain, Denial>,
    ) -> Result<Arc<Chain>, Denial> {
        if self.capacity == 0 || bytes.len() > MAX_CACHED_CHAIN_BYTES {
            return decode(bytes).map(Arc::new);
        }
        if let Some(chain) = lock(&self.inner).map.get(bytes) {
            return Ok(Arc::clone(chain));
        }
        let chain = Arc::new(decode(bytes)?);
        let mut inner = lock(&self.inner);
        if !inner.map.contains_key(bytes) {
            while inner.map.len() >= self.capacity {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&old);
            }
            let key: Arc<[u8]> = Arc::from(bytes);
            inner.order.push_back(Arc::clone(&key));
            inner.map.insert(key, Arc::clone(&chain));
        }
        Ok(chain)
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
/// sweep for expired entries behind a live one runs at most once a second. Entries are
/// kept in generations ([`NonceWindow`]): about 15 bytes a nonce.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    inner: Mutex<NonceWindow>,
    capacity: usize,
    /// Entries are fingerprints of (holder key, nonce): 16 bytes each instead of 56
    /// (`crate::fingerprint` says why that is safe).
    fingerprints: crate::Fingerprints,
}

/// Holder key and nonce.
pub(crate) type NonceKey = ([u8; 32], [u8; NONCE_LEN]);

impl ReplayCache {
    /// A cache of at most `capacity` nonces, in generations of `span_ms` (an eighth of
    /// the longest time a nonce is kept is a good span: [`NonceWindow::new`]).
    pub(crate) fn new(capacity: usize, span_ms: u64) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(NonceWindow::new(span_ms)),
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
        let nonce = self.fingerprints.of(&[&nonce.0, &nonce.1]);
        let mut window = lock(&self.inner);
        window.expire(now_ms);
        if window.seen(nonce, now_ms) {
            return NonceCheck::Replayed;
        }
        // Full: something behind the oldest live generation's head may have expired.
        if window.len() >= self.capacity {
            window.sweep(now_ms);
        }
        if window.len() >= self.capacity {
            return NonceCheck::Full;
        }
        window.insert(nonce, expires_at_ms, now_ms);
        NonceCheck::Fresh
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> NonceKey {
        ([0; 32], [n; NONCE_LEN])
    }

    #[test]
    fn the_key_cache_answers_as_decompression_does_and_stays_bounded() {
        let cache = KeyCache::new(2);
        let keys: Vec<PublicKey> = (1..=5u8)
            .map(|i| crate::SigningKey::from_seed(&[i; 32]).public_key())
            .collect();
        for key in keys.iter().chain(&keys) {
            assert_eq!(cache.get(key).unwrap(), key.verifying_key().unwrap());
            assert!(cache.len() <= 2);
        }
        // A small-order key is refused every time and never kept.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey::from_token_bytes(identity);
        let before = cache.len();
        assert!(cache.get(&weak).is_err());
        assert!(cache.get(&weak).is_err());
        assert_eq!(cache.len(), before);
        let off = KeyCache::new(0);
        assert_eq!(off.get(&keys[0]).unwrap(), keys[0].verifying_key().unwrap());
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn the_same_nonce_under_another_holder_is_not_a_replay() {
        let c = ReplayCache::new(10, 1000);
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
        let c = ReplayCache::new(10, 1000);
        assert_eq!(c.check_and_insert(&k(1), 100, 0), NonceCheck::Fresh);
        assert_eq!(c.check_and_insert(&k(1), 100, 50), NonceCheck::Replayed);
        // After expiry the old entry is gone (and the staleness check rejects the proof).
        assert_eq!(c.check_and_insert(&k(1), 200, 100), NonceCheck::Fresh);
    }

    #[test]
    fn replay_cache_refuses_when_full_of_live_nonces_and_recovers_after_expiry() {
        let c = ReplayCache::new(3, 1000);
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
    fn replay_cache_sweeps_expired_entries_behind_a_live_one_at_most_once_a_second() {
        let c = ReplayCache::new(2, 1000);
        assert_eq!(c.check_and_insert(&k(1), 5000, 0), NonceCheck::Fresh);
        assert_eq!(c.check_and_insert(&k(2), 10, 0), NonceCheck::Fresh);
        // Full; a sweep finds the expired entry behind the live one.
        assert_eq!(c.check_and_insert(&k(3), 30, 20), NonceCheck::Fresh);
        // Full again, with k(3) expired, but a sweep ran less than a second ago: refused.
        assert_eq!(c.check_and_insert(&k(4), 5000, 40), NonceCheck::Full);
        // A second later the sweep runs again.
        assert_eq!(c.check_and_insert(&k(4), 5000, 1020), NonceCheck::Fresh);
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert(&k(1), 5000, 1020), NonceCheck::Replayed);
    }
}
