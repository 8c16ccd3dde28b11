//! Invocation proofs: the holder's signature over one concrete tool call.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use crate::capability::Call;
use crate::chain::{Chain, text_to_bytes};
use crate::crypto::{Signature, SigningDomain, SigningKey};
use crate::error::Error;
use crate::id::{Digest, random_bytes};
use crate::limits::Limits;
use crate::reason::{Denial, Reason};
use crate::wire::{self, pb};

/// Prefix of an invocation proof's text form.
pub const INVOCATION_TEXT_PREFIX: &str = "mandate-inv1.";

/// Length of an invocation nonce, in bytes.
pub const NONCE_LEN: usize = 16;

/// The signed content of an invocation proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvocationBody {
    /// Digest of the leaf link of the chain the proof is for.
    pub chain_digest: Digest,
    /// The tool that may accept the proof.
    pub audience: String,
    /// The call.
    pub call: Call,
    /// When the proof was made, Unix milliseconds.
    pub issued_at_ms: u64,
    /// Random, single use within the invocation window.
    pub nonce: [u8; NONCE_LEN],
}

impl InvocationBody {
    fn to_pb(&self) -> pb::InvocationBody {
        pb::InvocationBody {
            chain_digest: self.chain_digest.as_bytes().to_vec(),
            audience: self.audience.clone(),
            action: self.call.action.clone(),
            resource: self.call.resource.clone(),
            args: wire::args_to_pb(&self.call),
            issued_at_ms: self.issued_at_ms,
            nonce: self.nonce.to_vec(),
        }
    }
}

/// A signed invocation proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    body: InvocationBody,
    body_bytes: Vec<u8>,
    signature: Signature,
}

impl Invocation {
    /// The holder of `chain`'s leaf signs a proof for `call` at `audience`, made at
    /// `issued_at_ms`, with a fresh random nonce.
    pub fn sign(
        holder: &SigningKey,
        chain: &Chain,
        audience: &str,
        call: Call,
        issued_at_ms: u64,
    ) -> Result<Invocation, Error> {
        Ok(Invocation::sign_body(
            holder,
            InvocationBody {
                chain_digest: *chain.leaf_digest(),
                audience: audience.to_owned(),
                call,
                issued_at_ms,
                nonce: random_bytes()?,
            },
        ))
    }

    /// Signs an explicit body (deterministic: for test vectors).
    pub fn sign_body(holder: &SigningKey, body: InvocationBody) -> Invocation {
        let body_bytes = body.to_pb().encode_to_vec();
        let signature = holder.sign(SigningDomain::Invocation, &body_bytes);
        Invocation {
            body,
            body_bytes,
            signature,
        }
    }

    /// Decodes a proof, checking size and shape limits.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Invocation, Denial> {
        wire::check_size(bytes.len(), limits.max_invocation_bytes, "invocation")?;
        let (inv, envelope_canonical) = wire::decode_body::<pb::Invocation>(bytes, "invocation")?;
        wire::require_canonical(envelope_canonical, "invocation")?;
        let signature = wire::signature(&inv.signature, "invocation signature")?;
        let (b, canonical) = wire::decode_body::<pb::InvocationBody>(&inv.body, "invocation body")?;
        let nonce = wire::fixed::<NONCE_LEN>(&b.nonce, "invocation nonce")?;
        let chain_digest = wire::digest(&b.chain_digest, "invocation chain digest")?;
        if b.audience.is_empty() || b.audience.len() > limits.max_string_bytes {
            return Err(Denial::new(
                Reason::Malformed,
                "invocation audience must be non-empty and within the string limit",
            ));
        }
        let call = wire::call_from_pb(b.action, b.resource, b.args, limits)?;
        wire::require_canonical(canonical, "invocation body")?;
        Ok(Invocation {
            body: InvocationBody {
                chain_digest,
                audience: b.audience,
                call,
                issued_at_ms: b.issued_at_ms,
                nonce,
            },
            body_bytes: inv.body,
            signature,
        })
    }

    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        pb::Invocation {
            body: self.body_bytes.clone(),
            signature: self.signature.as_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// The text form: `mandate-inv1.` followed by unpadded base64url of the encoding.
    pub fn to_text(&self) -> String {
        format!(
            "{INVOCATION_TEXT_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(self.encode())
        )
    }

    /// Parses the text form.
    pub fn from_text(text: &str, limits: &Limits) -> Result<Invocation, Denial> {
        Invocation::decode(
            &text_to_bytes(text, INVOCATION_TEXT_PREFIX, limits.max_invocation_bytes)?,
            limits,
        )
    }

    /// The decoded body.
    pub fn body(&self) -> &InvocationBody {
        &self.body
    }

    /// The exact signed bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The holder's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}
