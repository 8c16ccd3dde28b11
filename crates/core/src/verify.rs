//! Offline chain and invocation verification.
//!
//! Checks run cheapest first and stop at the first failure:
//!
//! 1. size and shape (at decode: [`Chain::decode`], [`Invocation::decode`]);
//! 2. the root: issuer key in the trust bundle and active now;
//! 3. each later link against its parent: parent digest, break-glass, depth, window,
//!    attenuation, restrictions kept, seal present where required and by a trusted key;
//!    then this verifier's stance on break-glass and online-only chains;
//! 4. time: now inside every link's window, with the clock-skew allowance;
//! 5. revocation: no link id in the caller's revocation set;
//! 6. (invocations) audience, chain digest, issue time, the call matches what the tool is
//!    executing, and every link permits it;
//! 7. signatures, in chain order: every link signature and seal not already in the
//!    verified-link cache, the leaf holder key (a chain to a key that can sign nothing is
//!    refused), and the invocation signature, in one batch; a holder key that is not a
//!    usable point fails the signature it would check, after every signature before it;
//! 8. (invocations) the nonce is recorded as used; a nonce seen before is a replay.

use std::sync::{Arc, PoisonError, RwLock};

use crate::cache::{CacheHit, ChainCache, KeyCache, LinkCache, NonceCheck, ReplayCache};
use crate::capability::{Call, Capability, is_attenuation};
use crate::chain::Chain;
use crate::clock::Clock;
use crate::crypto::{PublicKey, SignatureBatch, SigningDomain};
use crate::id::{AgentId, Digest, LinkId, TaskId};
use crate::invocation::Invocation;
use crate::limits::Limits;
use crate::link::{Link, LinkKind};
use crate::reason::{Denial, Reason};
use crate::revocation::RevocationSet;
use crate::trust::{Lookup, TrustBundle};

/// How a verifier behaves. Defaults follow the product's published limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Shape limits (use the same for decoding).
    pub limits: Limits,
    /// Allowed clock difference between issuer and verifier, in milliseconds.
    pub clock_skew_ms: u64,
    /// How long after it was made an invocation proof is accepted, in milliseconds.
    pub invocation_window_ms: u64,
    /// Whether break-glass chains are accepted.
    pub accept_break_glass: bool,
    /// Longest break-glass window accepted, in milliseconds (the product caps break-glass
    /// at one hour; a longer one is refused even if its root verifies).
    pub max_break_glass_ms: u64,
    /// Whether this verifier is the online authority (the coordinator's `Authorize`).
    /// Offline verifiers refuse chains that require online authorisation.
    pub online: bool,
    /// Capacity of the cache of decoded chains, in chains of at most 4 KiB encoded
    /// (0 disables it). Used by [`Verifier::decode_chain_shared`].
    pub chain_cache_capacity: usize,
    /// Capacity of the verified-link cache, in links (0 disables it).
    pub link_cache_capacity: usize,
    /// Capacity of the cache of decompressed holder keys, in keys (0 disables it).
    pub key_cache_capacity: usize,
    /// Capacity of the replay cache, in nonces.
    pub replay_cache_capacity: usize,
}

impl Default for VerifierConfig {
    fn default() -> VerifierConfig {
        VerifierConfig {
            limits: Limits::default(),
            clock_skew_ms: 30_000,
            invocation_window_ms: 60_000,
            accept_break_glass: true,
            max_break_glass_ms: 3_600_000,
            online: false,
            chain_cache_capacity: 1024,
            link_cache_capacity: 16_384,
            key_cache_capacity: 16_384,
            replay_cache_capacity: 1 << 20,
        }
    }
}

/// A chain that passed verification, with what a tool needs to know about it.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedChain<'a> {
    chain: &'a Chain,
}

impl<'a> VerifiedChain<'a> {
    /// The verified chain.
    pub fn chain(&self) -> &'a Chain {
        self.chain
    }

    /// The task the chain belongs to.
    pub fn task(&self) -> TaskId {
        self.chain.task()
    }

    /// The current holder's key.
    pub fn holder(&self) -> &'a PublicKey {
        &self.chain.leaf().body().holder
    }

    /// The current holder's workload identity.
    pub fn holder_agent(&self) -> &'a AgentId {
        &self.chain.leaf().body().holder_agent
    }

    /// What the holder may do (the leaf's capabilities, each within every ancestor's).
    pub fn capabilities(&self) -> &'a [Capability] {
        &self.chain.leaf().body().capabilities
    }

    /// When the chain stops being valid: the earliest expiry of its links.
    pub fn expires_at_ms(&self) -> u64 {
        self.chain
            .links()
            .iter()
            .map(|l| l.body().expires_at_ms)
            .min()
            .unwrap_or(0)
    }

    /// Whether the root is a break-glass link.
    pub fn is_break_glass(&self) -> bool {
        self.chain.root().body().kind == LinkKind::BreakGlass
    }

    /// Whether invocations must be authorised online.
    pub fn requires_online(&self) -> bool {
        self.chain.leaf().body().require_online
    }

    /// Ids of every link, root first.
    pub fn link_ids(&self) -> impl Iterator<Item = LinkId> + 'a {
        self.chain.links().iter().map(Link::id)
    }

    /// Digest of the leaf link.
    pub fn leaf_digest(&self) -> &'a Digest {
        self.chain.leaf_digest()
    }
}

/// Checks `child` (at `index`) against its `parent`: everything about a delegation that
/// needs no keys or clock. With `allow_unsealed`, a missing seal is accepted (the
/// coordinator checks a link before it seals it).
pub(crate) fn check_child(
    parent: &Link,
    child: &Link,
    index: usize,
    allow_unsealed: bool,
) -> Result<(), Denial> {
    let (p, c) = (parent.body(), child.body());
    let deny = |reason, detail: &str| Err(Denial::at(reason, index, detail.to_owned()));
    if c.parent() != Some(parent.digest()) {
        return deny(
            Reason::ParentMismatch,
            "parent digest does not match the previous link",
        );
    }
    if p.kind == LinkKind::BreakGlass {
        return deny(
            Reason::BreakGlassDelegated,
            "a break-glass link cannot be delegated",
        );
    }
    if c.depth() != p.depth() + 1 {
        return deny(
            Reason::DepthMismatch,
            "depth is not the parent's depth plus one",
        );
    }
    if p.max_depth == 0 {
        return deny(
            Reason::DepthExceeded,
            "the parent allows no further delegation",
        );
    }
    if c.max_depth >= p.max_depth {
        return deny(
            Reason::DepthExceeded,
            "remaining depth must be below the parent's",
        );
    }
    if c.not_before_ms < p.not_before_ms || c.expires_at_ms > p.expires_at_ms {
        return deny(
            Reason::WindowWidened,
            "validity window is not inside the parent's",
        );
    }
    if (p.require_seal && !c.require_seal) || (p.require_online && !c.require_online) {
        return deny(
            Reason::ScopeWidened,
            "drops a seal or online requirement the parent imposes",
        );
    }
    if !is_attenuation(&c.capabilities, &p.capabilities) {
        return deny(
            Reason::ScopeWidened,
            "a capability is not within the parent's capabilities",
        );
    }
    if p.require_seal && child.seal().is_none() && !allow_unsealed {
        return deny(
            Reason::SealMissing,
            "the parent requires sealed delegations",
        );
    }
    Ok(())
}

/// Labels for the signatures of one verification pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sig {
    Link(usize),
    Seal(usize),
    Invocation,
}

/// Offline verifier for chains and invocation proofs.
///
/// Thread-safe: share one per tool. It keeps bounded caches of decoded chains, verified
/// link signatures and decompressed holder keys, and a bounded replay cache of invocation
/// nonces.
pub struct Verifier {
    trust: RwLock<Arc<TrustBundle>>,
    config: VerifierConfig,
    clock: Arc<dyn Clock>,
    chains: ChainCache,
    links: LinkCache,
    keys: KeyCache,
    nonces: ReplayCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("trust", &self.trust_bundle())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier trusting `trust`, configured by `config`, reading time from `clock`.
    pub fn new(trust: TrustBundle, config: VerifierConfig, clock: Arc<dyn Clock>) -> Verifier {
        Verifier {
            trust: RwLock::new(Arc::new(trust)),
            chains: ChainCache::new(config.chain_cache_capacity),
            links: LinkCache::new(config.link_cache_capacity),
            keys: KeyCache::new(config.key_cache_capacity),
            // A nonce is kept until its proof is stale: issued up to `skew` ahead, then
            // `window + skew` more.
            nonces: ReplayCache::new(
                config.replay_cache_capacity,
                config
                    .invocation_window_ms
                    .saturating_add(config.clock_skew_ms.saturating_mul(2))
                    / 8,
            ),
            config,
            clock,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Entries held by the verified-link cache and the replay cache (each bounded by its
    /// capacity in [`VerifierConfig`]).
    pub fn cache_sizes(&self) -> (usize, usize) {
        (self.links.len(), self.nonces.len())
    }

    /// Entries held by the cache of decompressed holder keys (bounded by
    /// [`VerifierConfig::key_cache_capacity`]).
    pub fn key_cache_size(&self) -> usize {
        self.keys.len()
    }

    /// Entries held by the cache of decoded chains (bounded by
    /// [`VerifierConfig::chain_cache_capacity`]).
    pub fn chain_cache_size(&self) -> usize {
        self.chains.len()
    }

    /// The trust bundle in force.
    pub fn trust_bundle(&self) -> Arc<TrustBundle> {
        Arc::clone(&self.trust.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the trust bundle (key rotation). Cached link signatures stay valid: the
    /// root key's trust is checked on every verification.
    pub fn set_trust_bundle(&self, trust: TrustBundle) {
        *self.trust.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(trust);
    }

    /// Decodes a chain with this verifier's limits.
    pub fn decode_chain(&self, bytes: &[u8]) -> Result<Chain, Denial> {
        Chain::decode(bytes, &self.config.limits)
    }

    /// [`Verifier::decode_chain`] through a bounded cache of chains decoded before (a
    /// worker presents the same chain with every call of its task): a hit is exactly what
    /// decoding again would give, and nothing about the chain's validity is cached.
    pub fn decode_chain_shared(&self, bytes: &[u8]) -> Result<Arc<Chain>, Denial> {
        self.chains
            .get_or_decode(bytes, |b| Chain::decode(b, &self.config.limits))
    }

    /// Decodes an invocation proof with this verifier's limits.
    pub fn decode_invocation(&self, bytes: &[u8]) -> Result<Invocation, Denial> {
        Invocation::decode(bytes, &self.config.limits)
    }

    /// Verifies a chain on its own (no invocation).
    pub fn verify_chain<'c>(
        &self,
        chain: &'c Chain,
        revoked: &dyn RevocationSet,
    ) -> Result<VerifiedChain<'c>, Denial> {
        let pass = self.check_chain(chain, revoked, self.clock.now_ms(), false)?;
        self.finish(chain, pass)?;
        Ok(VerifiedChain { chain })
    }

    /// Verifies a chain whose leaf was just submitted for sealing: like
    /// [`Verifier::verify_chain`], but the leaf may lack a seal. For the coordinator.
    pub fn verify_for_sealing<'c>(
        &self,
        chain: &'c Chain,
        revoked: &dyn RevocationSet,
    ) -> Result<VerifiedChain<'c>, Denial> {
        let pass = self.check_chain(chain, revoked, self.clock.now_ms(), true)?;
        self.finish(chain, pass)?;
        Ok(VerifiedChain { chain })
    }

    /// Verifies a chain and an invocation proof for the call a tool at `audience` is about
    /// to execute. On success the proof's nonce is spent.
    pub fn verify_invocation<'c>(
        &self,
        chain: &'c Chain,
        invocation: &Invocation,
        audience: &str,
        call: &Call,
        revoked: &dyn RevocationSet,
    ) -> Result<VerifiedChain<'c>, Denial> {
        let now = self.clock.now_ms();
        let (pass, valid_until) =
            self.check_invocation(chain, invocation, audience, call, revoked, now)?;
        self.finish(chain, pass)?;
        self.spend(chain, invocation, valid_until, now)?;
        Ok(VerifiedChain { chain })
    }

    /// [`Verifier::verify_invocation`] of several proofs (chain, proof, call) for the tool
    /// at `audience`, answered in order, each as it would be alone (a nonce spent by an
    /// earlier one is a replay in a later one). Every signature still to check, across all
    /// of them, goes into one batch; if that batch fails, each is checked on its own, so a
    /// bad one is named exactly as alone and costs the others nothing but time. The one
    /// difference from alone is the batch equation's (see `SignatureBatch`): a proof whose
    /// chain is cached is a batch of one alone, checked strictly, while here a signer who
    /// deliberately puts a torsion component in its own signature's `R` may pass. That
    /// gains nothing a correct signature by the same key would not.
    pub fn verify_invocations<'c>(
        &self,
        asks: &[(&'c Chain, &Invocation, &Call)],
        audience: &str,
        revoked: &dyn RevocationSet,
    ) -> Vec<Result<VerifiedChain<'c>, Denial>> {
        let now = self.clock.now_ms();
        let checked: Vec<_> = asks
            .iter()
            .map(|(chain, invocation, call)| {
                self.check_invocation(chain, invocation, audience, call, revoked, now)
            })
            .collect();
        // A pass with an unusable key is finished on its own: it has a denial to report.
        let mut all = SignatureBatch::new();
        for (pass, _) in checked.iter().flatten() {
            if pass.unusable_key.is_none() {
                all.extend(&pass.batch);
            }
        }
        let all_verified = all.len() > 1 && all.verify_together();
        asks.iter()
            .zip(checked)
            .map(|((chain, invocation, _), checked)| {
                let (pass, valid_until) = checked?;
                if all_verified && pass.unusable_key.is_none() {
                    self.remember(chain, pass.holders);
                } else {
                    self.finish(chain, pass)?;
                }
                self.spend(chain, invocation, valid_until, now)?;
                Ok(VerifiedChain { chain })
            })
            .collect()
    }

    /// Every check of an invocation but its signatures and nonce: the chain's pass with
    /// the proof's signature in its batch, and when the proof's nonce may be forgotten.
    fn check_invocation(
        &self,
        chain: &Chain,
        invocation: &Invocation,
        audience: &str,
        call: &Call,
        revoked: &dyn RevocationSet,
        now: u64,
    ) -> Result<(Pass, u64), Denial> {
        let mut pass = self.check_chain(chain, revoked, now, false)?;
        let body = invocation.body();
        let leaf = chain.len() - 1;
        if body.audience != audience {
            return Err(Denial::new(
                Reason::WrongAudience,
                format!("proof is for `{}`, not `{audience}`", body.audience),
            ));
        }
        if body.chain_digest != *chain.leaf_digest() {
            return Err(Denial::new(
                Reason::ChainMismatch,
                "proof was made for another chain",
            ));
        }
        let skew = self.config.clock_skew_ms;
        let window = self.config.invocation_window_ms;
        if body.issued_at_ms > now.saturating_add(skew) {
            return Err(Denial::new(
                Reason::InvocationStale,
                "proof is issued in the future",
            ));
        }
        let valid_until = body
            .issued_at_ms
            .saturating_add(window)
            .saturating_add(skew);
        if now > valid_until {
            return Err(Denial::new(
                Reason::InvocationStale,
                "proof is older than the invocation window",
            ));
        }
        if body.call != *call {
            return Err(Denial::new(
                Reason::InvocationMismatch,
                "proof is for a different action, resource or arguments than the call",
            ));
        }
        chain.check_permits(call)?;
        // After an unusable holder key nothing later in chain order is checked: that key
        // is the verdict unless a signature before it fails.
        if pass.unusable_key.is_none()
            && let Some(holder) = pass.usable_key(&self.keys, chain, leaf)
        {
            pass.batch.push(
                Sig::Invocation,
                &holder,
                SigningDomain::Invocation,
                invocation.body_bytes(),
                invocation.signature(),
            );
        }
        Ok((pass, valid_until))
    }

    /// Spends a verified proof's nonce.
    fn spend(
        &self,
        chain: &Chain,
        invocation: &Invocation,
        valid_until: u64,
        now: u64,
    ) -> Result<(), Denial> {
        let body = invocation.body();
        // Keyed by holder too: one holder cannot burn another holder's nonces.
        let nonce_key = (*chain.leaf().body().holder.as_bytes(), body.nonce);
        match self
            .nonces
            .check_and_insert(&nonce_key, valid_until.saturating_add(1), now)
        {
            NonceCheck::Fresh => Ok(()),
            NonceCheck::Replayed => {
                Err(Denial::new(Reason::Replayed, "proof nonce was used before"))
            }
            NonceCheck::Full => Err(Denial::new(
                Reason::ReplayCacheFull,
                "too many live invocations to check for replay",
            )),
        }
    }

    /// Steps 2 to 5 and the collection of signatures for step 7.
    fn check_chain(
        &self,
        chain: &Chain,
        revoked: &dyn RevocationSet,
        now: u64,
        allow_unsealed_leaf: bool,
    ) -> Result<Pass, Denial> {
        let links = chain.links();
        if links.len() > self.config.limits.max_links {
            return Err(Denial::new(
                Reason::TooManyLinks,
                format!(
                    "{} links, above the limit of {}",
                    links.len(),
                    self.config.limits.max_links
                ),
            ));
        }
        let trust = self.trust_bundle();
        let root_key = match trust.lookup(&chain.issuer(), now) {
            Lookup::Active(k) => k,
            Lookup::Inactive => {
                return Err(Denial::at(
                    Reason::RootKeyInactive,
                    0,
                    "root issuer key is trusted, but not at this time",
                ));
            }
            Lookup::Unknown => {
                return Err(Denial::at(
                    Reason::UntrustedRoot,
                    0,
                    "root issuer key is not trusted",
                ));
            }
        };

        let last = links.len() - 1;
        for (i, pair) in links.windows(2).enumerate() {
            let index = i + 1;
            check_child(
                &pair[0],
                &pair[1],
                index,
                allow_unsealed_leaf && index == last,
            )?;
            if let Some(seal) = pair[1].seal()
                && !matches!(trust.lookup(&seal.key, now), Lookup::Active(_))
            {
                return Err(Denial::at(
                    Reason::BadSeal,
                    index,
                    "seal key is not trusted at this time",
                ));
            }
        }
        let root = chain.root().body();
        if root.kind == LinkKind::BreakGlass {
            if !self.config.accept_break_glass {
                return Err(Denial::at(
                    Reason::BreakGlassRefused,
                    0,
                    "this verifier refuses break-glass access",
                ));
            }
            if root.expires_at_ms - root.not_before_ms > self.config.max_break_glass_ms {
                return Err(Denial::at(
                    Reason::BreakGlassRefused,
                    0,
                    "break-glass window is longer than this verifier accepts",
                ));
            }
        }
        if !self.config.online
            && let Some(i) = links.iter().position(|l| l.body().require_online)
        {
            return Err(Denial::at(
                Reason::OnlineRequired,
                i,
                "invocations under this chain must be authorised online",
            ));
        }

        chain.check_time(now, self.config.clock_skew_ms)?;

        for (i, link) in links.iter().enumerate() {
            if revoked.is_revoked(&link.id()) {
                return Err(Denial::at(
                    Reason::Revoked,
                    i,
                    format!("link {} is revoked", link.id()),
                ));
            }
        }

        let cached = self.links.lookup_all(links);
        let mut pass = Pass {
            batch: SignatureBatch::new(),
            holders: cached.iter().map(|c| c.holder).collect(),
            unusable_key: None,
        };
        for (i, link) in links.iter().enumerate() {
            let hit = cached[i].hit;
            if hit == CacheHit::Miss {
                let issuer = if i == 0 {
                    *root_key.verifying()
                } else {
                    match pass.usable_key(&self.keys, chain, i - 1) {
                        Some(k) => k,
                        // Nothing after this point in chain order can be reported first.
                        None => break,
                    }
                };
                pass.batch.push(
                    Sig::Link(i),
                    &issuer,
                    SigningDomain::Link,
                    link.body_bytes(),
                    link.signature(),
                );
            }
            if let Some(seal) = link.seal()
                && hit != CacheHit::SignatureAndSeal
            {
                // Step 3 refused a seal by a key not active now; refuse again rather than
                // skip it, should that ever change.
                let Lookup::Active(k) = trust.lookup(&seal.key, now) else {
                    return Err(Denial::at(
                        Reason::BadSeal,
                        i,
                        "seal key is not trusted at this time",
                    ));
                };
                pass.batch.push(
                    Sig::Seal(i),
                    k.verifying(),
                    SigningDomain::Seal,
                    link.digest().as_bytes(),
                    &seal.signature,
                );
            }
        }
        // The leaf holder key must be usable even when no invocation is checked now: a chain
        // to a small-order or invalid key is refused, and sealing one is never possible.
        if pass.unusable_key.is_none() {
            pass.usable_key(&self.keys, chain, last);
        }
        Ok(pass)
    }

    /// Step 7: verifies the batch and caches the links that passed. A holder key that is not
    /// a usable point stopped the collection of signatures at the first place it was
    /// needed; it is reported after every signature before that place, in chain order.
    fn finish(&self, chain: &Chain, pass: Pass) -> Result<(), Denial> {
        if pass.batch.is_empty() && pass.unusable_key.is_none() {
            return Ok(());
        }
        pass.batch.verify().map_err(|failed| match failed {
            Sig::Link(i) => Denial::at(Reason::BadSignature, i, "link signature does not verify"),
            Sig::Seal(i) => Denial::at(Reason::BadSeal, i, "seal signature does not verify"),
            Sig::Invocation => Denial::at(
                Reason::BadSignature,
                chain.len() - 1,
                "invocation is not signed by the leaf holder",
            ),
        })?;
        if let Some(denial) = pass.unusable_key {
            return Err(denial);
        }
        self.remember(chain, pass.holders);
        Ok(())
    }

    /// Caches the links of a chain whose signatures verified, with their holder keys.
    fn remember(&self, chain: &Chain, holders: Vec<Option<ed25519_dalek::VerifyingKey>>) {
        self.links.insert(
            chain
                .links()
                .iter()
                .zip(holders)
                .map(|(l, holder)| (*l.digest(), l.seal().copied(), holder)),
        );
    }
}

/// The state of one verification: signatures still to check, and holder keys decompressed
/// so far (from the cache or on demand).
struct Pass {
    batch: SignatureBatch<Sig>,
    holders: Vec<Option<ed25519_dalek::VerifyingKey>>,
    /// The first holder key found unusable (not a valid point, or of small order), as the
    /// denial to report once every signature before it has been checked.
    unusable_key: Option<Denial>,
}

impl Pass {
    /// The holder key of link `i`, decompressed once; `None` (and the denial recorded) when
    /// it is not a usable key.
    fn usable_key(
        &mut self,
        keys: &KeyCache,
        chain: &Chain,
        i: usize,
    ) -> Option<ed25519_dalek::VerifyingKey> {
        if let Some(k) = self.holders[i] {
            return Some(k);
        }
        match keys.get(&chain.links()[i].body().holder) {
            Ok(key) => {
                self.holders[i] = Some(key);
                Some(key)
            }
            Err(_) => {
                // Link `i`'s holder signs link `i + 1`, or the invocation at the leaf: that
                // is the signature that cannot verify.
                let (index, detail) = if i + 1 < chain.len() {
                    (
                        i + 1,
                        "signed by a holder key that is not a valid public key",
                    )
                } else {
                    (i, "the leaf holder key is not a valid public key")
                };
                if self.unusable_key.is_none() {
                    self.unusable_key = Some(Denial::at(Reason::BadSignature, index, detail));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod tests;
