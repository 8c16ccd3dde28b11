//! Chains: the capability token, from the root link to the current holder.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message as _;

use crate::capability::Call;
use crate::crypto::{PublicKey, SigningKey};
use crate::error::Error;
use crate::id::{Digest, TaskId};
use crate::limits::Limits;
use crate::link::{Link, LinkKind, LinkSpec, Position};
use crate::reason::{Denial, Reason};
use crate::verify::check_child;
use crate::wire::{self, FORMAT_VERSION, pb};

/// Prefix of a chain's text form.
pub const CHAIN_TEXT_PREFIX: &str = "mandate1.";

/// A decoded, not yet verified chain.
///
/// Holding a `Chain` means only that the bytes are well formed: the root comes first and
/// every link passed the shape limits. Nothing about signatures, trust, time or
/// attenuation has been checked; use a [`Verifier`](crate::Verifier) for that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    links: Vec<Link>,
    // Copied from the root so that reading them needs no match on its position.
    task: TaskId,
    issuer: PublicKey,
}

impl Chain {
    /// Decodes a chain, checking size and shape limits before anything else.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Chain, Denial> {
        wire::check_size(bytes.len(), limits.max_token_bytes, "token")?;
        let (chain, canonical) = wire::decode_body::<pb::Chain>(bytes, "token")?;
        if chain.version != FORMAT_VERSION {
            return Err(Denial::new(
                Reason::UnsupportedVersion,
                format!("token format version {} is not supported", chain.version),
            ));
        }
        if chain.links.len() > limits.max_links {
            return Err(Denial::new(
                Reason::TooManyLinks,
                format!(
                    "{} links, above the limit of {}",
                    chain.links.len(),
                    limits.max_links
                ),
            ));
        }
        let links = chain
            .links
            .into_iter()
            .enumerate()
            .map(|(i, l)| Link::from_pb(l, limits).map_err(|d| d.with_link(i)))
            .collect::<Result<Vec<_>, _>>()?;
        // Unknown envelope fields could hide links (an unknown field number is skipped), so
        // the envelope must be canonical too.
        wire::require_canonical(canonical, "token")?;
        Chain::checked(links)
    }

    /// Positions: a root first, children after it.
    fn checked(links: Vec<Link>) -> Result<Chain, Denial> {
        let (issuer, task) = match links.first().map(|l| &l.body().position) {
            None => return Err(Denial::new(Reason::Malformed, "chain has no links")),
            Some(Position::Root { issuer, task }) => (*issuer, *task),
            Some(Position::Child { .. }) => {
                return Err(Denial::at(
                    Reason::ParentMismatch,
                    0,
                    "chain does not start with a root link",
                ));
            }
        };
        if let Some(i) = links
            .iter()
            .skip(1)
            .position(|l| matches!(l.body().position, Position::Root { .. }))
        {
            return Err(Denial::at(
                Reason::ParentMismatch,
                i + 1,
                "a root link appears below the root",
            ));
        }
        // A link id names one link: the revocation set, the delegation tree and the audit
        // log all key on it. Two links with one id would make revoking either revoke both,
        // and no coordinator issues it, so the chain is refused rather than interpreted.
        for (i, link) in links.iter().enumerate().skip(1) {
            if links[..i].iter().any(|earlier| earlier.id() == link.id()) {
                return Err(Denial::at(
                    Reason::Malformed,
                    i,
                    "two links of the chain share one link id",
                ));
            }
        }
        Ok(Chain {
            links,
            task,
            issuer,
        })
    }

    /// Builds a chain from already signed links, applying the same shape checks as
    /// [`Chain::decode`] with default limits.
    pub fn from_links(links: Vec<Link>) -> Result<Chain, Denial> {
        let encoded = pb::Chain {
            version: FORMAT_VERSION,
            links: links.iter().map(Link::to_pb).collect(),
        }
        .encode_to_vec();
        Chain::decode(&encoded, &Limits::default())
    }

    /// Issues a new root link for `task`, signed by a coordinator key.
    pub fn issue_root(
        coordinator: &SigningKey,
        task: TaskId,
        kind: LinkKind,
        spec: LinkSpec,
    ) -> Result<Chain, Error> {
        if kind == LinkKind::Delegation {
            return Err(Error::Invalid {
                what: "root link",
                why: "must be a grant or break-glass".into(),
            });
        }
        let body = spec.into_body(
            Position::Root {
                issuer: coordinator.public_key(),
                task,
            },
            kind,
        );
        Ok(Chain::from_links(vec![Link::sign(body, coordinator)])?)
    }

    /// Delegates from the current leaf: `holder` (the leaf holder's key) signs a new link
    /// for `spec`. Refuses anything a verifier would reject as a widening (scope, window,
    /// depth, break-glass), so mistakes surface here and not at the tool.
    pub fn delegate(&self, holder: &SigningKey, spec: LinkSpec) -> Result<Chain, Error> {
        let parent = self.leaf();
        if holder.public_key() != parent.body().holder {
            return Err(Error::Invalid {
                what: "delegation",
                why: "the signing key is not the leaf holder's key".into(),
            });
        }
        let depth = parent.body().depth().checked_add(1).ok_or(Error::Invalid {
            what: "delegation",
            why: "the parent is at the deepest possible depth".into(),
        })?;
        let body = spec.into_body(
            Position::Child {
                parent: *parent.digest(),
                depth,
            },
            LinkKind::Delegation,
        );
        let child = Link::sign(body, holder);
        let mut links = self.links.clone();
        links.push(child);
        let chain = Chain::from_links(links)?;
        // The new link cannot be sealed yet: only the coordinator seals, after this.
        check_child(parent, chain.leaf(), chain.len() - 1, true)?;
        Ok(chain)
    }

    /// Seals the leaf link with a coordinator key.
    pub fn seal_leaf(&mut self, coordinator: &SigningKey) {
        if self.links.len() > 1
            && let Some(leaf) = self.links.last_mut()
        {
            leaf.seal_with(coordinator);
        }
    }

    /// Sets the leaf's seal (made earlier with [`Seal::sign`](crate::Seal::sign) over
    /// the leaf digest).
    pub fn set_leaf_seal(&mut self, seal: crate::Seal) {
        if self.links.len() > 1
            && let Some(leaf) = self.links.last_mut()
        {
            leaf.set_seal(seal);
        }
    }

    /// The links, root first.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Always false: a chain has at least its root.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The root link.
    pub fn root(&self) -> &Link {
        &self.links[0]
    }

    /// The leaf link (the current holder's).
    pub fn leaf(&self) -> &Link {
        &self.links[self.links.len() - 1]
    }

    /// The task the chain belongs to (named by the root).
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// The coordinator key that signed the root.
    pub fn issuer(&self) -> PublicKey {
        self.issuer
    }

    /// Digest of the leaf link; invocation proofs name the chain by it.
    pub fn leaf_digest(&self) -> &Digest {
        self.leaf().digest()
    }

    /// Step 4 of verification on its own: every link's window holds `now_ms`, with
    /// `skew_ms` allowed either way. `NOT_YET_VALID` or `LINK_EXPIRED` at the first link
    /// from the root that fails.
    pub fn check_time(&self, now_ms: u64, skew_ms: u64) -> Result<(), Denial> {
        for (i, link) in self.links.iter().enumerate() {
            let b = link.body();
            if now_ms.saturating_add(skew_ms) < b.not_before_ms {
                return Err(Denial::at(Reason::NotYetValid, i, "link is not valid yet"));
            }
            if now_ms >= b.expires_at_ms.saturating_add(skew_ms) {
                return Err(Denial::at(Reason::LinkExpired, i, "link has expired"));
            }
        }
        Ok(())
    }

    /// Whether every link permits `call` (the last check of step 6): `NOT_PERMITTED` at
    /// the first link from the root none of whose capabilities permits it.
    pub fn check_permits(&self, call: &Call) -> Result<(), Denial> {
        match self
            .links
            .iter()
            .position(|l| !l.body().capabilities.iter().any(|c| c.permits(call)))
        {
            None => Ok(()),
            Some(i) => Err(Denial::at(
                Reason::NotPermitted,
                i,
                format!("`{}` on `{}` is not permitted", call.action, call.resource),
            )),
        }
    }

    /// The binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        pb::Chain {
            version: FORMAT_VERSION,
            links: self.links.iter().map(Link::to_pb).collect(),
        }
        .encode_to_vec()
    }

    /// The text form: `mandate1.` followed by unpadded base64url of the encoding.
    pub fn to_text(&self) -> String {
        format!(
            "{CHAIN_TEXT_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(self.encode())
        )
    }

    /// Parses the text form.
    pub fn from_text(text: &str, limits: &Limits) -> Result<Chain, Denial> {
        Chain::decode(
            &text_to_bytes(text, CHAIN_TEXT_PREFIX, limits.max_token_bytes)?,
            limits,
        )
    }
}

/// The characters a text form may be surrounded by: space, tab, line feed, carriage return.
const TEXT_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// Strips `prefix` and decodes unpadded base64url, refusing oversized input before decoding.
pub(crate) fn text_to_bytes(text: &str, prefix: &str, max_bytes: usize) -> Result<Vec<u8>, Denial> {
    // Surrounding ASCII whitespace (a token read from a file ends with a newline) is
    // ignored; nothing else is: no other whitespace, no padding, no inner line breaks.
    let body = text
        .trim_matches(TEXT_WHITESPACE)
        .strip_prefix(prefix)
        .ok_or_else(|| {
            Denial::new(
                Reason::Malformed,
                format!("text form must start with `{prefix}`"),
            )
        })?;
    // The limit is on the decoded bytes: `n` unpadded base64 characters decode to
    // exactly `3n / 4` (rounded down) bytes, so oversized text is refused before decoding.
    wire::check_size(body.len().saturating_mul(3) / 4, max_bytes, "token")?;
    URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| Denial::new(Reason::Malformed, "text form is not unpadded base64url"))
}
