//! Mandate capability tokens: the wire format, attenuation and offline verification.
//!
//! A [`Chain`] is the token: a root [`Link`] signed by the coordinator, then links each
//! signed by the holder of the one before, each with equal or narrower authority. A holder
//! proves possession for one concrete [`Call`] with a signed [`Invocation`]. A tool checks
//! both with a [`Verifier`], offline, using only the coordinator's public keys
//! ([`TrustBundle`]) and a [`RevocationSet`] it follows.
//!
//! Verification failures are values: a [`Denial`] with a stable [`Reason`] code.
//!
//! ```
//! use std::sync::Arc;
//! use mandate_core::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = 1_800_000_000_000;
//! let coordinator = SigningKey::generate()?;
//! let planner = SigningKey::generate()?;
//! let worker = SigningKey::generate()?;
//!
//! // The coordinator grants the planner read/write on `docs/*` for five minutes.
//! let root = Chain::issue_root(
//!     &coordinator,
//!     TaskId::random()?,
//!     LinkKind::Grant,
//!     LinkSpec::new(
//!         planner.public_key(),
//!         "spiffe://example.org/planner".parse()?,
//!         vec![Capability::new("docs/*", ["read", "write"])?],
//!         now,
//!         now + 300_000,
//!     )?
//!     .max_depth(1),
//! )?;
//!
//! // The planner delegates read-only access to one folder to a worker.
//! let chain = root.delegate(
//!     &planner,
//!     LinkSpec::new(
//!         worker.public_key(),
//!         "spiffe://example.org/worker-1".parse()?,
//!         vec![Capability::new("docs/reports/*", ["read"])?],
//!         now,
//!         now + 60_000,
//!     )?,
//! )?;
//!
//! // The worker proves possession for one call; the tool verifies offline.
//! let call = Call::new("read", "docs/reports/q3.pdf");
//! let proof = Invocation::sign(&worker, &chain, "files", call.clone(), now)?;
//! let trust = TrustBundle::new().with_key(coordinator.public_key(), 0, u64::MAX)?;
//! let verifier = Verifier::new(trust, VerifierConfig::default(), Arc::new(ManualClock::new(now)));
//! let ok = verifier.verify_invocation(&chain, &proof, "files", &call, &NoRevocations)?;
//! assert_eq!(ok.holder(), &worker.public_key());
//!
//! // Writing is not delegated: denied with a stable reason.
//! let write = Call::new("write", "docs/reports/q3.pdf");
//! let proof = Invocation::sign(&worker, &chain, "files", write.clone(), now)?;
//! let denied = verifier
//!     .verify_invocation(&chain, &proof, "files", &write, &NoRevocations)
//!     .unwrap_err();
//! assert_eq!(denied.reason(), Reason::NotPermitted);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod cache;
mod capability;
mod chain;
mod clock;
mod crypto;
mod error;
mod feed;
mod fingerprint;
mod id;
mod invocation;
pub mod keyfile;
mod limits;
mod link;
mod reason;
mod request;
mod revocation;
mod trust;
mod verify;
mod window;
mod wire;

#[cfg(test)]
mod testkit;

// Keeps the README's example compiling.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub use capability::{
    Actions, Call, Capability, Condition, Constraint, ResourcePattern, Value, is_attenuation,
};
pub use chain::{CHAIN_TEXT_PREFIX, Chain};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crypto::{PreparedKey, PublicKey, Signature, SigningDomain, SigningKey};
pub use error::Error;
pub use feed::{FeedKind, FeedLinks, FeedStatement, trust_statement};
pub use fingerprint::{FingerprintHasher, FingerprintMap, Fingerprints};
pub use id::{AgentId, Digest, LinkId, MAX_AGENT_ID_LEN, TaskId};
pub use invocation::{INVOCATION_TEXT_PREFIX, Invocation, InvocationBody, NONCE_LEN};
pub use limits::Limits;
pub use link::{Link, LinkBody, LinkKind, LinkSpec, Position, Seal, link_digest};
pub use reason::{Denial, Reason};
pub use request::{
    HEADER_AGENT, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, RequestAuth, request_payload,
};
pub use revocation::{NoRevocations, RevocationEntry, RevocationList, RevocationSet};
pub use trust::{TrustBundle, TrustedKey};
pub use verify::{VerifiedChain, Verifier, VerifierConfig};
pub use window::NonceWindow;
pub use wire::{FORMAT_VERSION, pb};
