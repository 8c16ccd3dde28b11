//! Ed25519 keys, domain-separated signatures and batch verification.
//!
//! Every signature in Mandate is over `tag || 0x00 || payload`, where the tag names what is
//! signed ([`SigningDomain`]). A signature made for one purpose can never be replayed as
//! another.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::id::{random_bytes, write_hex};

/// What a signature is for. Each domain has its own fixed ASCII tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningDomain {
    /// A link body, signed by its issuer.
    Link,
    /// A coordinator seal over a link digest.
    Seal,
    /// An invocation body, signed by the leaf holder.
    Invocation,
    /// A coordinator API request, signed by the calling agent.
    Request,
    /// A revocation feed message, signed by the coordinator.
    RevocationList,
    /// An audit log checkpoint (sequence, head hash, time), signed by the coordinator.
    AuditCheckpoint,
}

impl SigningDomain {
    /// The ASCII tag that starts every message signed in this domain.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            SigningDomain::Link => b"mandate/v1/link",
            SigningDomain::Seal => b"mandate/v1/seal",
            SigningDomain::Invocation => b"mandate/v1/invocation",
            SigningDomain::Request => b"mandate/v1/request",
            SigningDomain::RevocationList => b"mandate/v1/revocations",
            SigningDomain::AuditCheckpoint => b"mandate/v1/audit-checkpoint",
        }
    }

    /// The exact message signed for `payload`: tag, one zero byte, payload.
    pub fn message(self, payload: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut m = Vec::with_capacity(tag.len() + 1 + payload.len());
        m.extend_from_slice(tag);
        m.push(0);
        m.extend_from_slice(payload);
        m
    }
}

/// An Ed25519 private key. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<SigningKey, Error> {
        let seed = Zeroizing::new(random_bytes::<32>()?);
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from a 32-byte seed. Deterministic: for tests and test vectors.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `payload` in `domain`.
    pub fn sign(&self, domain: SigningDomain, payload: &[u8]) -> Signature {
        Signature(self.0.sign(&domain.message(payload)).to_bytes())
    }

    /// PKCS#8 v1 PEM encoding, seed only (what `openssl genpkey -algorithm ed25519` writes
    /// and what OpenSSL, Python's `cryptography` and Go read; the v2 form with the public
    /// key attached is refused by some of them).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let seed = Zeroizing::new(self.0.to_bytes());
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: *seed,
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map_err(|_| Error::Invalid {
            what: "private key",
            why: "cannot be encoded as PKCS#8".into(),
        })
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Option<SigningKey> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .ok()
            .map(SigningKey)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(public: {}, secret: <redacted>)",
            self.public_key()
        )
    }
}

/// An Ed25519 public key, kept as its 32-byte encoding.
///
/// Keys parsed from user input with [`PublicKey::from_bytes`] or [`PublicKey::from_text`]
/// are checked at once. Keys read from a token are checked when they are first used to
/// verify a signature (decompressing a point costs a few microseconds, and a cached chain
/// never needs most of its keys): an invalid or small-order key makes every signature
/// under it fail.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses a 32-byte encoding, rejecting invalid and small-order (weak) points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, Error> {
        let key = PublicKey(*bytes);
        key.verifying_key()?;
        Ok(key)
    }

    /// Wraps bytes read from a token; validity is checked on first use.
    pub(crate) fn from_token_bytes(bytes: [u8; 32]) -> PublicKey {
        PublicKey(bytes)
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the text form: unpadded base64url of the 32 bytes.
    pub fn from_text(s: &str) -> Result<PublicKey, Error> {
        let raw = URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|_| Error::InvalidKey("not unpadded base64url"))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| Error::InvalidKey("not 32 bytes"))?;
        PublicKey::from_bytes(&bytes)
    }

    /// Checks `signature` over `payload` in `domain`, strictly (RFC 8032 with small-order
    /// and non-canonical encodings rejected).
    pub fn verify(&self, domain: SigningDomain, payload: &[u8], signature: &Signature) -> bool {
        let Ok(key) = self.verifying_key() else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(&domain.message(payload), &sig).is_ok()
    }

    /// Decompresses and checks the key once, for callers that verify many signatures
    /// under it (decompression costs about a tenth of a signature check).
    pub fn prepare(&self) -> Result<PreparedKey, Error> {
        Ok(PreparedKey(self.verifying_key()?))
    }

    /// Decompresses the point, rejecting invalid and small-order encodings.
    pub(crate) fn verifying_key(&self) -> Result<ed25519_dalek::VerifyingKey, Error> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| Error::InvalidKey("not a valid curve point"))?;
        if key.is_weak() {
            return Err(Error::InvalidKey("small-order point"));
        }
        Ok(key)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A public key already decompressed and checked (see [`PublicKey::prepare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreparedKey(ed25519_dalek::VerifyingKey);

impl PreparedKey {
    /// Checks `signature` over `payload` in `domain`, strictly.
    pub fn verify(&self, domain: SigningDomain, payload: &[u8], signature: &Signature) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(&domain.message(payload), &sig).is_ok()
    }

    /// The key's 32-byte encoding.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.to_bytes())
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub(crate) [u8; 64]);

impl Signature {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 64]) -> Signature {
        Signature(bytes)
    }

    /// Reads exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Signature> {
        bytes.try_into().ok().map(Signature)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(")?;
        write_hex(f, &self.0[..8])?;
        f.write_str("…)")
    }
}

/// Signatures collected for one verification pass.
///
/// [`SignatureBatch::verify`] checks all of them with one multiscalar multiplication; if an
/// `R` fails the pre-check below or the batch fails, it checks each one strictly, in the
/// order pushed, and names the first bad one.
///
/// Before the batch runs, every `R` must be a canonical encoding of a point not of small
/// order, and every key has been checked to be of large order when decompressed (see
/// [`PublicKey`]): the two conditions `verify_strict` adds to the verification equation.
/// With them, the batch accepts every signature strict verification accepts and never
/// accepts a forgery. The one difference: the batch equation is checked without the
/// cofactor and its coefficients are derived from the inputs, so the holder of a private
/// key can deliberately build a signature whose `R` carries a torsion component, which the
/// batch accepts (after a few tries) while strict verification rejects it. That gains the
/// signer nothing it could not get by signing correctly, but such a link may verify here
/// and not in a strict implementation (or here, alone, where a batch of one is checked
/// strictly). Honest signers never produce one.
#[derive(Default)]
pub(crate) struct SignatureBatch<T> {
    messages: Vec<Vec<u8>>,
    signatures: Vec<ed25519_dalek::Signature>,
    keys: Vec<ed25519_dalek::VerifyingKey>,
    labels: Vec<T>,
}

impl<T: Copy> SignatureBatch<T> {
    pub(crate) fn new() -> SignatureBatch<T> {
        SignatureBatch {
            messages: Vec::new(),
            signatures: Vec::new(),
            keys: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        label: T,
        key: &ed25519_dalek::VerifyingKey,
        domain: SigningDomain,
        payload: &[u8],
        signature: &Signature,
    ) {
        self.messages.push(domain.message(payload));
        self.signatures
            .push(ed25519_dalek::Signature::from_bytes(&signature.0));
        self.keys.push(*key);
        self.labels.push(label);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Adds every signature of `other`, with its label.
    pub(crate) fn extend(&mut self, other: &SignatureBatch<T>) {
        self.messages.extend(other.messages.iter().cloned());
        self.signatures.extend(other.signatures.iter().copied());
        self.keys.extend(other.keys.iter().copied());
        self.labels.extend(other.labels.iter().copied());
    }

    /// Whether every signature passes the pre-check and the batch equation together (the
    /// acceptance of [`SignatureBatch::verify`] for a batch of two or more); `false` says
    /// only that some signature does not, not which.
    pub(crate) fn verify_together(&self) -> bool {
        if !self.signatures.iter().all(r_is_canonical_large_order) {
            return false;
        }
        let messages: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&messages, &self.signatures, &self.keys).is_ok()
    }

    /// `Ok` if every signature verifies strictly; otherwise the label of the first that
    /// does not.
    pub(crate) fn verify(&self) -> Result<(), T> {
        match self.labels.len() {
            0 => return Ok(()),
            1 => return self.verify_one(0),
            _ => {}
        }
        if self.verify_together() {
            return Ok(());
        }
        // Something is wrong: check one by one, in the order pushed, so the reported
        // failure is the first in that order (the documented one), whatever its kind.
        (0..self.labels.len()).try_for_each(|i| self.verify_one(i))
    }

    fn verify_one(&self, i: usize) -> Result<(), T> {
        self.keys[i]
            .verify_strict(&self.messages[i], &self.signatures[i])
            .map_err(|_| self.labels[i])
    }
}

/// The part of `verify_strict` that the batch equation does not cover, checked on the bytes
/// (no point decompression): `y` must be below the field prime, and the encoding must not be
/// one of the small-order points'.
fn r_is_canonical_large_order(sig: &ed25519_dalek::Signature) -> bool {
    let r = sig.r_bytes();
    // y >= p = 2^255 - 19 only for 0x7fff…ff(ed..ff) once the sign bit is cleared.
    let non_canonical = r[31] & 0x7f == 0x7f && r[1..31].iter().all(|&b| b == 0xff) && r[0] >= 0xed;
    !non_canonical && !small_order_encodings().contains(r)
}

/// Every encoding (both sign bits) of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .flat_map(|p| {
                let e = p.compress().to_bytes();
                let mut flipped = e;
                flipped[31] ^= 0x80;
                [e, flipped]
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SigningKey::from_seed(&[7; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"));
        let pem = key.to_pkcs8_pem().unwrap();
        let secret_b64 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert!(!shown.contains(&secret_b64));
        assert!(!shown.contains(&"07".repeat(8)));
        assert!(!shown.contains(pem.lines().nth(1).unwrap()));
    }

    #[test]
    fn pem_round_trips() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // v1, seed only: the DER is exactly 48 bytes (as `openssl genpkey` writes).
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(b64.len(), 64);
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(SigningKey::from_pkcs8_pem("not a key").is_none());
    }

    #[test]
    fn signatures_are_domain_separated() {
        let key = SigningKey::from_seed(&[1; 32]);
        let pk = key.public_key();
        let sig = key.sign(SigningDomain::Link, b"payload");
        assert!(pk.verify(SigningDomain::Link, b"payload", &sig));
        assert!(!pk.verify(SigningDomain::Invocation, b"payload", &sig));
        assert!(!pk.verify(SigningDomain::Link, b"payloae", &sig));
        let other = SigningKey::from_seed(&[2; 32]).public_key();
        assert!(!other.verify(SigningDomain::Link, b"payload", &sig));
    }

    #[test]
    fn domain_tags_are_distinct_and_not_prefixes_of_each_other() {
        let all = [
            SigningDomain::Link,
            SigningDomain::Seal,
            SigningDomain::Invocation,
            SigningDomain::Request,
            SigningDomain::RevocationList,
            SigningDomain::AuditCheckpoint,
        ];
        for a in all {
            for b in all {
                if a != b {
                    assert!(!a.message(b"").starts_with(&b.message(b"")));
                }
            }
        }
        assert_eq!(SigningDomain::Seal.message(b"x"), b"mandate/v1/seal\0x");
    }

    #[test]
    fn weak_and_invalid_public_keys_are_rejected() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(Error::InvalidKey(_))
        ));
        // A y coordinate with no point on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(PublicKey::from_bytes(&bad).is_err());
        let good = SigningKey::from_seed(&[3; 32]).public_key();
        assert_eq!(PublicKey::from_text(&good.to_string()).unwrap(), good);
        assert!(PublicKey::from_text("AAAA").is_err());
    }

    #[test]
    fn batch_names_the_first_bad_signature() {
        let keys: Vec<SigningKey> = (0..4u8).map(|i| SigningKey::from_seed(&[i; 32])).collect();
        let mut batch = SignatureBatch::new();
        for (i, k) in keys.iter().enumerate() {
            let msg = [i as u8; 10];
            let sig = k.sign(SigningDomain::Link, &msg);
            batch.push(
                i,
                &k.public_key().verifying_key().unwrap(),
                SigningDomain::Link,
                &msg,
                &sig,
            );
        }
        assert_eq!(batch.verify(), Ok(()));

        let mut bad = SignatureBatch::new();
        for (i, k) in keys.iter().enumerate() {
            let msg = [i as u8; 10];
            let mut sig = k.sign(SigningDomain::Link, &msg);
            if i == 2 {
                sig.0[40] ^= 1;
            }
            bad.push(
                i,
                &k.public_key().verifying_key().unwrap(),
                SigningDomain::Link,
                &msg,
                &sig,
            );
        }
        assert_eq!(bad.verify(), Err(2));
    }

    #[test]
    fn r_checks_match_point_arithmetic() {
        let k = SigningKey::from_seed(&[4; 32]);
        let good = ed25519_dalek::Signature::from_bytes(&k.sign(SigningDomain::Link, b"m").0);
        assert!(r_is_canonical_large_order(&good));
        for enc in small_order_encodings() {
            let point = curve25519_dalek::edwards::CompressedEdwardsY(*enc).decompress();
            assert!(point.is_none_or(|p| p.is_small_order()));
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(enc);
            assert!(!r_is_canonical_large_order(
                &ed25519_dalek::Signature::from_bytes(&bytes)
            ));
        }
        // y = p (non-canonical zero) and y = p + 18, with either sign bit.
        for (low, sign) in [(0xed, 0), (0xff, 0), (0xed, 0x80)] {
            let mut bytes = [0xffu8; 64];
            bytes[0] = low;
            bytes[31] = 0x7f | sign;
            assert!(!r_is_canonical_large_order(
                &ed25519_dalek::Signature::from_bytes(&bytes)
            ));
        }
    }

    #[test]
    fn batch_rejects_small_order_r_like_strict_verification() {
        let k = SigningKey::from_seed(&[9; 32]);
        let good = k.sign(SigningDomain::Link, b"m");
        // Replace R with the identity encoding: never strictly valid.
        let mut sig = good;
        sig.0[..32].copy_from_slice(&{
            let mut id = [0u8; 32];
            id[0] = 1;
            id
        });
        let mut batch = SignatureBatch::new();
        batch.push(
            0,
            &k.public_key().verifying_key().unwrap(),
            SigningDomain::Link,
            b"m",
            &good,
        );
        batch.push(
            1,
            &k.public_key().verifying_key().unwrap(),
            SigningDomain::Link,
            b"m",
            &sig,
        );
        assert_eq!(batch.verify(), Err(1));
        assert!(!k.public_key().verify(SigningDomain::Link, b"m", &sig));
    }
}
