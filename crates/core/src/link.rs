//! Links (one signed hop of authority) and coordinator seals.

use prost::Message as _;

use crate::capability::Capability;
use crate::crypto::{PublicKey, Signature, SigningDomain, SigningKey};
use crate::error::Error;
use crate::id::{AgentId, Digest, LinkId, TaskId};
use crate::limits::Limits;
use crate::reason::{Denial, Reason};
use crate::wire::{self, pb};

/// What a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Root link issued by the coordinator after a policy decision.
    Grant,
    /// Link issued by the holder of the previous link.
    Delegation,
    /// Root link for emergency access by a human principal. Never delegable.
    BreakGlass,
}

impl LinkKind {
    fn to_pb(self) -> pb::LinkKind {
        match self {
            LinkKind::Grant => pb::LinkKind::Grant,
            LinkKind::Delegation => pb::LinkKind::Delegation,
            LinkKind::BreakGlass => pb::LinkKind::BreakGlass,
        }
    }

    fn from_pb(value: i32) -> Result<LinkKind, Denial> {
        match pb::LinkKind::try_from(value) {
            Ok(pb::LinkKind::Grant) => Ok(LinkKind::Grant),
            Ok(pb::LinkKind::Delegation) => Ok(LinkKind::Delegation),
            Ok(pb::LinkKind::BreakGlass) => Ok(LinkKind::BreakGlass),
            Ok(pb::LinkKind::Unspecified) => {
                Err(Denial::new(Reason::Malformed, "link kind is unspecified"))
            }
            Err(_) => Err(Denial::new(
                Reason::UnknownValue,
                format!("unknown link kind {value}"),
            )),
        }
    }

    /// The name used in text output: `grant`, `delegation` or `break-glass`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Grant => "grant",
            LinkKind::Delegation => "delegation",
            LinkKind::BreakGlass => "break-glass",
        }
    }
}

/// Where a link sits: the root names its issuer and task; later links name their parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    /// The root link, signed by a coordinator key.
    Root {
        /// The coordinator key that signed the root.
        issuer: PublicKey,
        /// The task every link of the chain belongs to.
        task: TaskId,
    },
    /// A later link, signed by the holder of its parent.
    Child {
        /// Digest of the parent link.
        parent: Digest,
        /// Distance from the root (1 for the root's children).
        depth: u32,
    },
}

/// The signed content of a link.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkBody {
    /// Random 128-bit id: what revocation names.
    pub id: LinkId,
    /// Root or child, with what each carries.
    pub position: Position,
    /// The holder's public key.
    pub holder: PublicKey,
    /// The holder's workload identity.
    pub holder_agent: AgentId,
    /// What the holder may do (at least one).
    pub capabilities: Vec<Capability>,
    /// Start of validity, Unix milliseconds (inclusive).
    pub not_before_ms: u64,
    /// End of validity, Unix milliseconds (exclusive).
    pub expires_at_ms: u64,
    /// Delegation hops still allowed below this link.
    pub max_depth: u32,
    /// Grant, delegation or break-glass.
    pub kind: LinkKind,
    /// Every link below must carry a coordinator seal.
    pub require_seal: bool,
    /// Invocations must be authorised online.
    pub require_online: bool,
}

impl LinkBody {
    /// Distance from the root.
    pub fn depth(&self) -> u32 {
        match self.position {
            Position::Root { .. } => 0,
            Position::Child { depth, .. } => depth,
        }
    }

    /// The parent digest, `None` at the root.
    pub fn parent(&self) -> Option<&Digest> {
        match &self.position {
            Position::Root { .. } => None,
            Position::Child { parent, .. } => Some(parent),
        }
    }

    fn to_pb(&self) -> pb::LinkBody {
        let (parent_digest, issuer_key, task_id, depth) = match &self.position {
            Position::Root { issuer, task } => (
                Vec::new(),
                issuer.as_bytes().to_vec(),
                task.as_bytes().to_vec(),
                0,
            ),
            Position::Child { parent, depth } => {
                (parent.as_bytes().to_vec(), Vec::new(), Vec::new(), *depth)
            }
        };
        pb::LinkBody {
            id: self.id.as_bytes().to_vec(),
            parent_digest,
            issuer_key,
            holder_key: self.holder.as_bytes().to_vec(),
            holder_agent: self.holder_agent.as_str().to_owned(),
            task_id,
            capabilities: self
                .capabilities
                .iter()
                .map(wire::capability_to_pb)
                .collect(),
            not_before_ms: self.not_before_ms,
            expires_at_ms: self.expires_at_ms,
            depth,
            max_depth: self.max_depth,
            kind: self.kind.to_pb().into(),
            require_seal: self.require_seal,
            require_online: self.require_online,
        }
    }

    /// Checks the shape rules that need no keys, clock or parent: counts, lengths, known
    /// values, a sane window, and fields allowed at the link's position.
    fn from_pb(b: pb::LinkBody, limits: &Limits) -> Result<LinkBody, Denial> {
        let malformed = |d: &str| Denial::new(Reason::Malformed, d.to_owned());
        if b.capabilities.len() > limits.max_capabilities {
            return Err(Denial::new(
                Reason::LimitExceeded,
                format!(
                    "{} capabilities, above the limit of {}",
                    b.capabilities.len(),
                    limits.max_capabilities
                ),
            ));
        }
        if b.capabilities.is_empty() {
            return Err(malformed("link grants no capability"));
        }
        let kind = LinkKind::from_pb(b.kind)?;
        let position = if b.parent_digest.is_empty() {
            if b.depth != 0 {
                return Err(malformed("root link must have depth 0"));
            }
            if kind == LinkKind::Delegation {
                return Err(malformed("root link must be a grant or break-glass"));
            }
            Position::Root {
                issuer: wire::public_key(&b.issuer_key, "root issuer key")?,
                task: wire::task_id(&b.task_id)?,
            }
        } else {
            if !b.issuer_key.is_empty() || !b.task_id.is_empty() {
                return Err(malformed(
                    "only the root link carries an issuer key and a task id",
                ));
            }
            if kind != LinkKind::Delegation {
                return Err(malformed("a link below the root must be a delegation"));
            }
            if b.depth == 0 {
                return Err(malformed("a link below the root must have depth above 0"));
            }
            Position::Child {
                parent: wire::digest(&b.parent_digest, "parent digest")?,
                depth: b.depth,
            }
        };
        if b.not_before_ms >= b.expires_at_ms {
            return Err(malformed(
                "link window is empty: not_before is not before expires_at",
            ));
        }
        let capabilities = b
            .capabilities
            .into_iter()
            .map(|c| wire::capability_from_pb(c, limits))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LinkBody {
            id: wire::link_id(&b.id)?,
            position,
            holder: wire::public_key(&b.holder_key, "holder key")?,
            holder_agent: wire::agent_id(b.holder_agent)?,
            capabilities,
            not_before_ms: b.not_before_ms,
            expires_at_ms: b.expires_at_ms,
            max_depth: b.max_depth,
            kind,
            require_seal: b.require_seal,
            require_online: b.require_online,
        })
    }
}

/// A coordinator countersignature over a link digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Seal {
    /// The coordinator key that sealed.
    pub key: PublicKey,
    /// Signature over the link digest in the seal domain.
    pub signature: Signature,
}

impl Seal {
    /// Seals the link with digest `digest`.
    pub fn sign(coordinator: &SigningKey, digest: &Digest) -> Seal {
        Seal {
            key: coordinator.public_key(),
            signature: coordinator.sign(SigningDomain::Seal, digest.as_bytes()),
        }
    }
}

/// One signed hop of authority: the body, the exact bytes that were signed, the issuer's
/// signature and an optional coordinator seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    body: LinkBody,
    body_bytes: Vec<u8>,
    signature: Signature,
    seal: Option<Seal>,
    digest: Digest,
}

impl Link {
    /// Encodes and signs `body` with `issuer`. No rule is checked here: chains check their
    /// links (see [`Chain::delegate`](crate::Chain::delegate)) and verifiers check everything.
    pub fn sign(body: LinkBody, issuer: &SigningKey) -> Link {
        let body_bytes = body.to_pb().encode_to_vec();
        let signature = issuer.sign(SigningDomain::Link, &body_bytes);
        let digest = link_digest(&body_bytes, &signature);
        Link {
            body,
            body_bytes,
            signature,
            seal: None,
            digest,
        }
    }

    pub(crate) fn from_pb(link: pb::Link, limits: &Limits) -> Result<Link, Denial> {
        let signature = wire::signature(&link.signature, "link signature")?;
        let seal = link
            .seal
            .map(|s| {
                Ok::<_, Denial>(Seal {
                    key: wire::public_key(&s.key, "seal key")?,
                    signature: wire::signature(&s.signature, "seal signature")?,
                })
            })
            .transpose()?;
        let (body, canonical) = wire::decode_body::<pb::LinkBody>(&link.body, "link body")?;
        let body = LinkBody::from_pb(body, limits)?;
        wire::require_canonical(canonical, "link body")?;
        if seal.is_some() && matches!(body.position, Position::Root { .. }) {
            return Err(Denial::new(
                Reason::Malformed,
                "the root link cannot carry a seal",
            ));
        }
        let digest = link_digest(&link.body, &signature);
        Ok(Link {
            body,
            body_bytes: link.body,
            signature,
            seal,
            digest,
        })
    }

    pub(crate) fn to_pb(&self) -> pb::Link {
        pb::Link {
            body: self.body_bytes.clone(),
            signature: self.signature.as_bytes().to_vec(),
            seal: self.seal.map(|s| pb::Seal {
                key: s.key.as_bytes().to_vec(),
                signature: s.signature.as_bytes().to_vec(),
            }),
        }
    }

    /// The decoded body.
    pub fn body(&self) -> &LinkBody {
        &self.body
    }

    /// The exact signed bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The issuer's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The coordinator seal, if any.
    pub fn seal(&self) -> Option<&Seal> {
        self.seal.as_ref()
    }

    /// SHA-256 over the body bytes and the signature.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The link id (shorthand for `body().id`).
    pub fn id(&self) -> LinkId {
        self.body.id
    }

    /// Adds or replaces the coordinator seal.
    pub fn set_seal(&mut self, seal: Seal) {
        self.seal = Some(seal);
    }

    /// Seals this link with `coordinator`.
    pub fn seal_with(&mut self, coordinator: &SigningKey) {
        self.seal = Some(Seal::sign(coordinator, &self.digest));
    }

    /// Encodes this link alone (a `mandate.token.v1.Link`), seal included.
    pub fn encode(&self) -> Vec<u8> {
        self.to_pb().encode_to_vec()
    }

    /// Decodes one link encoded by [`Link::encode`], with the same shape checks as a link
    /// inside a chain.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Link, Denial> {
        let (link, canonical) = wire::decode_body::<pb::Link>(bytes, "link")?;
        let link = Link::from_pb(link, limits)?;
        wire::require_canonical(canonical, "link")?;
        Ok(link)
    }

    /// Encoded length of this link inside a chain, in bytes.
    pub fn encoded_len(&self) -> usize {
        self.to_pb().encoded_len()
    }
}

/// A link's digest: SHA-256(body || signature). The signature is always 64 bytes, so the
/// concatenation is unambiguous.
pub fn link_digest(body: &[u8], signature: &Signature) -> Digest {
    Digest::of(&[body, signature.as_bytes()])
}

/// What the issuer decides about a new link; the chain fills in id, position and kind
/// when it issues or delegates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSpec {
    /// The new link's id; random by default.
    pub id: LinkId,
    /// The holder's public key.
    pub holder: PublicKey,
    /// The holder's workload identity.
    pub holder_agent: AgentId,
    /// What the holder may do.
    pub capabilities: Vec<Capability>,
    /// Start of validity, Unix milliseconds.
    pub not_before_ms: u64,
    /// End of validity, Unix milliseconds.
    pub expires_at_ms: u64,
    /// Delegation hops allowed below the new link.
    pub max_depth: u32,
    /// Every link below must carry a coordinator seal.
    pub require_seal: bool,
    /// Invocations must be authorised online.
    pub require_online: bool,
}

impl LinkSpec {
    /// A spec with a fresh random id, no further delegation and no seal or online
    /// requirement.
    pub fn new(
        holder: PublicKey,
        holder_agent: AgentId,
        capabilities: Vec<Capability>,
        not_before_ms: u64,
        expires_at_ms: u64,
    ) -> Result<LinkSpec, Error> {
        Ok(LinkSpec {
            id: LinkId::random()?,
            holder,
            holder_agent,
            capabilities,
            not_before_ms,
            expires_at_ms,
            max_depth: 0,
            require_seal: false,
            require_online: false,
        })
    }

    /// Sets the number of delegation hops allowed below the new link.
    pub fn max_depth(mut self, max_depth: u32) -> LinkSpec {
        self.max_depth = max_depth;
        self
    }

    /// Requires every link below the new one to be sealed.
    pub fn require_seal(mut self, yes: bool) -> LinkSpec {
        self.require_seal = yes;
        self
    }

    /// Requires online authorisation of every invocation.
    pub fn require_online(mut self, yes: bool) -> LinkSpec {
        self.require_online = yes;
        self
    }

    pub(crate) fn into_body(self, position: Position, kind: LinkKind) -> LinkBody {
        LinkBody {
            id: self.id,
            position,
            holder: self.holder,
            holder_agent: self.holder_agent,
            capabilities: self.capabilities,
            not_before_ms: self.not_before_ms,
            expires_at_ms: self.expires_at_ms,
            max_depth: self.max_depth,
            kind,
            require_seal: self.require_seal,
            require_online: self.require_online,
        }
    }
}
