//! Request signatures for the coordinator API: every call is signed by the caller's agent
//! key over the method, the caller's id, a timestamp, a nonce and the SHA-256 of the
//! request message exactly as sent (docs/PROTOCOL.md).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{PreparedKey, PublicKey, Signature, SigningDomain, SigningKey};
use crate::error::Error;
use crate::id::{Digest, random_bytes};

/// Metadata key carrying the caller's agent id.
pub const HEADER_AGENT: &str = "x-mandate-agent";
/// Metadata key carrying the request time, Unix milliseconds in decimal.
pub const HEADER_TIMESTAMP: &str = "x-mandate-timestamp";
/// Metadata key carrying the 16-byte nonce, unpadded base64url.
pub const HEADER_NONCE: &str = "x-mandate-nonce";
/// Metadata key carrying the 64-byte signature, unpadded base64url.
pub const HEADER_SIGNATURE: &str = "x-mandate-signature";

/// The signed parts of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuth {
    /// Caller's agent id.
    pub agent: String,
    /// Request time, Unix ms.
    pub timestamp_ms: u64,
    /// Single-use nonce.
    pub nonce: [u8; 16],
    /// Signature over [`request_payload`] in the request domain.
    pub signature: Signature,
}

/// The payload signed for a request (before the domain tag): five lines joined by `\n`:
/// the full method path, the agent id, the timestamp in decimal, the nonce in unpadded
/// base64url, and the lowercase hex SHA-256 of the request message bytes.
pub fn request_payload(
    method: &str,
    agent: &str,
    timestamp_ms: u64,
    nonce: &[u8; 16],
    message_sha256: &Digest,
) -> Vec<u8> {
    format!(
        "{method}\n{agent}\n{timestamp_ms}\n{}\n{message_sha256}",
        URL_SAFE_NO_PAD.encode(nonce)
    )
    .into_bytes()
}

impl RequestAuth {
    /// Signs a request for `method` with the message bytes as they will be sent.
    pub fn sign(
        key: &SigningKey,
        agent: &str,
        method: &str,
        message: &[u8],
        timestamp_ms: u64,
    ) -> Result<RequestAuth, Error> {
        let nonce = random_bytes::<16>()?;
        let payload = request_payload(method, agent, timestamp_ms, &nonce, &Digest::of(&[message]));
        Ok(RequestAuth {
            agent: agent.to_owned(),
            timestamp_ms,
            nonce,
            signature: key.sign(SigningDomain::Request, &payload),
        })
    }

    /// Checks the signature against `key` for `method` and the received message bytes.
    pub fn verify(&self, key: &PublicKey, method: &str, message: &[u8]) -> bool {
        let payload = request_payload(
            method,
            &self.agent,
            self.timestamp_ms,
            &self.nonce,
            &Digest::of(&[message]),
        );
        key.verify(SigningDomain::Request, &payload, &self.signature)
    }

    /// Like [`RequestAuth::verify`] with a key prepared once for many requests.
    pub fn verify_prepared(&self, key: &PreparedKey, method: &str, message: &[u8]) -> bool {
        let payload = request_payload(
            method,
            &self.agent,
            self.timestamp_ms,
            &self.nonce,
            &Digest::of(&[message]),
        );
        key.verify(SigningDomain::Request, &payload, &self.signature)
    }

    /// The four header values: agent, timestamp, nonce, signature.
    pub fn header_values(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_AGENT, self.agent.clone()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_NONCE, URL_SAFE_NO_PAD.encode(self.nonce)),
            (
                HEADER_SIGNATURE,
                URL_SAFE_NO_PAD.encode(self.signature.as_bytes()),
            ),
        ]
    }

    /// Parses the four header values; `None` if any is missing or malformed.
    pub fn from_header_values(
        agent: Option<&str>,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        signature: Option<&str>,
    ) -> Option<RequestAuth> {
        let nonce: [u8; 16] = URL_SAFE_NO_PAD.decode(nonce?).ok()?.try_into().ok()?;
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature?).ok()?)?;
        Some(RequestAuth {
            agent: agent?.to_owned(),
            timestamp_ms: timestamp?.parse().ok()?,
            nonce,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_verify_only_for_the_same_method_and_bytes() {
        let key = SigningKey::from_seed(&[3; 32]);
        let auth = RequestAuth::sign(
            &key,
            "spiffe://t/a",
            "/mandate.v1.TaskService/StartTask",
            b"msg",
            5,
        )
        .unwrap();
        assert!(auth.verify(
            &key.public_key(),
            "/mandate.v1.TaskService/StartTask",
            b"msg"
        ));
        assert!(!auth.verify(
            &key.public_key(),
            "/mandate.v1.TaskService/FailTask",
            b"msg"
        ));
        assert!(!auth.verify(
            &key.public_key(),
            "/mandate.v1.TaskService/StartTask",
            b"msh"
        ));
        assert!(!auth.verify(
            &SigningKey::from_seed(&[4; 32]).public_key(),
            "/mandate.v1.TaskService/StartTask",
            b"msg"
        ));
        let mut other = auth.clone();
        other.timestamp_ms += 1;
        assert!(!other.verify(
            &key.public_key(),
            "/mandate.v1.TaskService/StartTask",
            b"msg"
        ));
        let [a, t, n, s] = auth.header_values();
        let back = RequestAuth::from_header_values(Some(&a.1), Some(&t.1), Some(&n.1), Some(&s.1))
            .unwrap();
        assert_eq!(back, auth);
        assert!(
            RequestAuth::from_header_values(Some(&a.1), None, Some(&n.1), Some(&s.1)).is_none()
        );
        assert!(
            RequestAuth::from_header_values(Some(&a.1), Some("x"), Some(&n.1), Some(&s.1))
                .is_none()
        );
    }

    #[test]
    fn prepared_keys_verify_the_same_way() {
        let key = SigningKey::from_seed(&[6; 32]);
        let auth = RequestAuth::sign(&key, "spiffe://t/a", "/m", b"msg", 5).unwrap();
        let prepared = key.public_key().prepare().unwrap();
        assert_eq!(prepared.public_key(), key.public_key());
        assert!(auth.verify_prepared(&prepared, "/m", b"msg"));
        assert!(!auth.verify_prepared(&prepared, "/m", b"msh"));
        assert!(
            !auth.verify_prepared(
                &SigningKey::from_seed(&[7; 32])
                    .public_key()
                    .prepare()
                    .unwrap(),
                "/m",
                b"msg"
            )
        );
    }

    #[test]
    fn payload_format_is_stable() {
        let payload = request_payload("/m", "spiffe://t/a", 7, &[0; 16], &Digest::of(&[b""]));
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            "/m\nspiffe://t/a\n7\nAAAAAAAAAAAAAAAAAAAAAA\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
