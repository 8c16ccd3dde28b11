//! Compact keys for replay caches: a nonce (with whatever scopes it) is remembered as a
//! 64-bit keyed hash instead of its bytes. A replay always has the same fingerprint, so it
//! is always caught; two different nonces share one with probability about n / 2^64 for n
//! remembered, and then the second is refused as a replay (fail closed, never open). The
//! hash key is random per process, so nobody can choose nonces that collide with another's.
//! A million remembered nonces cost about 32 MB as bytes and 16 B each here.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Makes fingerprints with a key chosen at random when it is created.
#[derive(Debug, Default, Clone)]
pub struct Fingerprints(RandomState);

impl Fingerprints {
    /// The fingerprint of the concatenation of `parts` (each length-prefixed).
    pub fn of(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.0.build_hasher();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }
}

/// Passes a fingerprint through as its own hash: it is one already.
#[derive(Debug, Default, Clone, Copy)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for fingerprint keys; anything else still hashes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by fingerprints.
pub type FingerprintMap<V> = HashMap<u64, V, BuildHasherDefault<FingerprintHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_per_key_and_differ_across_keys_and_inputs() {
        let f = Fingerprints::default();
        assert_eq!(f.of(&[b"a", b"bc"]), f.of(&[b"a", b"bc"]));
        // Length prefixes keep the parts apart.
        assert_ne!(f.of(&[b"a", b"bc"]), f.of(&[b"ab", b"c"]));
        assert_ne!(f.of(&[b"nonce"]), Fingerprints::default().of(&[b"nonce"]));
        let mut m = FingerprintMap::default();
        m.insert(f.of(&[b"x"]), 1u64);
        assert_eq!(m.get(&f.of(&[b"x"])), Some(&1));
    }
}
