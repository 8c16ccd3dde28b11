//! Deterministic fixtures for unit tests.

use std::sync::Arc;

use crate::*;

pub(crate) const NOW: u64 = 1_800_000_000_000;
pub(crate) const MINUTE: u64 = 60_000;

pub(crate) fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

pub(crate) fn coordinator() -> SigningKey {
    key(200)
}

pub(crate) fn agent(n: u8) -> AgentId {
    AgentId::new(format!("spiffe://example.org/agent-{n}")).unwrap()
}

pub(crate) fn cap(resource: &str, actions: &[&str]) -> Capability {
    Capability::new(resource, actions.iter().copied()).unwrap()
}

pub(crate) fn spec(holder: u8, caps: Vec<Capability>, max_depth: u32) -> LinkSpec {
    let mut s = LinkSpec::new(
        key(holder).public_key(),
        agent(holder),
        caps,
        NOW - MINUTE,
        NOW + 10 * MINUTE,
    )
    .unwrap()
    .max_depth(max_depth);
    s.id = LinkId::from_bytes([holder; 16]);
    s
}

pub(crate) fn root_with(spec: LinkSpec, kind: LinkKind) -> Chain {
    Chain::issue_root(&coordinator(), TaskId::from_bytes([7; 16]), kind, spec).unwrap()
}

/// A chain of `depth` links: holder keys 1, 2, ..., each narrowing `files/*`.
pub(crate) fn chain(depth: usize) -> Chain {
    let mut c = root_with(
        spec(1, vec![cap("files/*", &["read", "write"])], 15),
        LinkKind::Grant,
    );
    for i in 1..depth {
        let holder = u8::try_from(i + 1).unwrap();
        let s = spec(
            holder,
            vec![cap("files/*", &["read"])],
            15 - u32::try_from(i).unwrap(),
        );
        c = c.delegate(&key(holder - 1), s).unwrap();
    }
    c
}

pub(crate) fn trust() -> TrustBundle {
    TrustBundle::new()
        .with_key(coordinator().public_key(), 0, u64::MAX)
        .unwrap()
}

pub(crate) fn verifier_with(config: VerifierConfig) -> (Verifier, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    (Verifier::new(trust(), config, clock.clone()), clock)
}

pub(crate) fn verifier() -> (Verifier, Arc<ManualClock>) {
    verifier_with(VerifierConfig::default())
}

/// Signs a child link from raw parts, bypassing the builder's checks.
pub(crate) fn raw_child(
    parent: &Link,
    signer: &SigningKey,
    edit: impl FnOnce(&mut LinkBody),
) -> Link {
    let mut body = LinkBody {
        id: LinkId::from_bytes([99; 16]),
        position: Position::Child {
            parent: *parent.digest(),
            depth: parent.body().depth() + 1,
        },
        holder: key(99).public_key(),
        holder_agent: agent(99),
        capabilities: parent.body().capabilities.clone(),
        not_before_ms: parent.body().not_before_ms,
        expires_at_ms: parent.body().expires_at_ms,
        max_depth: parent.body().max_depth.saturating_sub(1),
        kind: LinkKind::Delegation,
        require_seal: parent.body().require_seal,
        require_online: parent.body().require_online,
    };
    edit(&mut body);
    Link::sign(body, signer)
}

/// `chain` plus `link`, shape-checked like a decoded chain.
pub(crate) fn extend(chain: &Chain, link: Link) -> Result<Chain, Denial> {
    let mut links = chain.links().to_vec();
    links.push(link);
    Chain::from_links(links)
}

/// `chain(1)` extended by a delegation to the identity point, a small-order key no one
/// needs a private key to "sign" for.
pub(crate) fn small_order_leaf() -> Chain {
    let c = chain(1);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = raw_child(c.root(), &key(1), |b| {
        b.holder = PublicKey::from_token_bytes(identity);
        b.max_depth = 0;
    });
    extend(&c, weak).unwrap()
}
