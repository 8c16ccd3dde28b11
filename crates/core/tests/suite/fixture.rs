//! A deterministic world (keys, agents, chains) and the `Case` type shared by the
//! adversarial suite and the golden vectors.

use std::collections::HashSet;
use std::sync::Arc;

use mandate_core::*;

pub const NOW: u64 = 1_800_000_000_000;
pub const MINUTE: u64 = 60_000;
pub const AUDIENCE: &str = "files";

/// Seeds of the deterministic keys (test only: the vectors publish them).
pub const COORDINATOR: u8 = 200;
pub const RETIRED_COORDINATOR: u8 = 201;
pub const ROGUE_COORDINATOR: u8 = 202;
pub const PLANNER: u8 = 1;
pub const WORKER_A: u8 = 2;
pub const WORKER_B: u8 = 3;
pub const SUB_WORKER: u8 = 4;
pub const MALLORY: u8 = 66;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

pub fn agent(seed: u8) -> AgentId {
    let name = match seed {
        PLANNER => "planner",
        WORKER_A => "worker-a",
        WORKER_B => "worker-b",
        SUB_WORKER => "sub-worker",
        MALLORY => "mallory",
        _ => "other",
    };
    AgentId::new(format!("spiffe://acme.example/agent/{name}")).unwrap()
}

/// The trust bundle every case is verified with: the coordinator key, and a retired key
/// whose window closed a day before `NOW`.
pub fn trust() -> TrustBundle {
    TrustBundle::new()
        .with_key(key(COORDINATOR).public_key(), 0, u64::MAX)
        .unwrap()
        .with_key(
            key(RETIRED_COORDINATOR).public_key(),
            0,
            NOW - 24 * 60 * MINUTE,
        )
        .unwrap()
}

pub fn link_id(n: u8) -> LinkId {
    LinkId::from_bytes([n; 16])
}

pub fn task() -> TaskId {
    TaskId::from_bytes([0x7a; 16])
}

pub fn size_cap(resource: &str, actions: &[&str], max_size: i64) -> Capability {
    Capability::new(resource, actions.iter().copied())
        .unwrap()
        .with_constraint("size", Condition::range(0, max_size).unwrap())
}

pub fn spec(
    id: u8,
    holder: u8,
    caps: Vec<Capability>,
    window: (u64, u64),
    max_depth: u32,
) -> LinkSpec {
    let mut s = LinkSpec::new(
        key(holder).public_key(),
        agent(holder),
        caps,
        window.0,
        window.1,
    )
    .unwrap()
    .max_depth(max_depth);
    s.id = link_id(id);
    s
}

/// Options for building the standard chains.
#[derive(Clone, Copy, Default)]
pub struct Opts {
    pub sealed: bool,
    pub online: bool,
    pub break_glass: bool,
}

/// Root to the planner: `files/*` read/write, size ≤ 1 MiB, three more hops.
pub fn root(opts: Opts) -> Chain {
    root_signed_by(COORDINATOR, opts)
}

pub fn root_signed_by(coordinator: u8, opts: Opts) -> Chain {
    let kind = if opts.break_glass {
        LinkKind::BreakGlass
    } else {
        LinkKind::Grant
    };
    let s = spec(
        1,
        PLANNER,
        vec![size_cap("files/*", &["read", "write"], 1 << 20)],
        (NOW - MINUTE, NOW + 10 * MINUTE),
        if opts.break_glass { 0 } else { 3 },
    )
    .require_seal(opts.sealed)
    .require_online(opts.online);
    Chain::issue_root(&key(coordinator), task(), kind, s).unwrap()
}

/// The planner's delegation to worker A: `files/reports/*` read, size ≤ 64 KiB.
pub fn worker_a_spec(opts: Opts) -> LinkSpec {
    spec(
        2,
        WORKER_A,
        vec![size_cap("files/reports/*", &["read"], 65_536)],
        (NOW - MINUTE, NOW + 5 * MINUTE),
        1,
    )
    .require_seal(opts.sealed)
    .require_online(opts.online)
}

/// Worker A's delegation to the sub-worker: one file, read, size ≤ 4 KiB.
pub fn sub_worker_spec(opts: Opts) -> LinkSpec {
    spec(
        3,
        SUB_WORKER,
        vec![size_cap("files/reports/q3.pdf", &["read"], 4096)],
        (NOW - MINUTE, NOW + 2 * MINUTE),
        0,
    )
    .require_seal(opts.sealed)
    .require_online(opts.online)
}

/// root → planner → worker A → sub-worker, sealed at each hop when `opts.sealed`.
pub fn depth3(opts: Opts) -> Chain {
    let mut c = root(opts)
        .delegate(&key(PLANNER), worker_a_spec(opts))
        .unwrap();
    if opts.sealed {
        c.seal_leaf(&key(COORDINATOR));
    }
    let mut c = c.delegate(&key(WORKER_A), sub_worker_spec(opts)).unwrap();
    if opts.sealed {
        c.seal_leaf(&key(COORDINATOR));
    }
    c
}

pub fn read_call() -> Call {
    Call::new("read", "files/reports/q3.pdf").with_arg("size", 1024)
}

/// A proof by `signer` for `call` under `chain`, with a nonce derived from `nonce`.
pub fn invocation(
    signer: u8,
    chain: &Chain,
    call: Call,
    issued_at_ms: u64,
    nonce: u8,
) -> Invocation {
    Invocation::sign_body(
        &key(signer),
        InvocationBody {
            chain_digest: *chain.leaf_digest(),
            audience: AUDIENCE.into(),
            call,
            issued_at_ms,
            nonce: [nonce; NONCE_LEN],
        },
    )
}

/// Builds a chain from links without any check but shape (bypassing the builder's rules).
pub fn chain_of(links: Vec<Link>) -> Chain {
    Chain::from_links(links).unwrap()
}

/// Signs a child of `parent` with `signer`, starting from a copy of the parent body with
/// the depth and position filled in, then applying `edit`.
pub fn raw_child(
    parent: &Link,
    signer: u8,
    holder: u8,
    id: u8,
    edit: impl FnOnce(&mut LinkBody),
) -> Link {
    let p = parent.body();
    let mut body = LinkBody {
        id: link_id(id),
        position: Position::Child {
            parent: *parent.digest(),
            depth: p.depth() + 1,
        },
        holder: key(holder).public_key(),
        holder_agent: agent(holder),
        capabilities: p.capabilities.clone(),
        not_before_ms: p.not_before_ms,
        expires_at_ms: p.expires_at_ms,
        max_depth: p.max_depth.saturating_sub(1),
        kind: LinkKind::Delegation,
        require_seal: p.require_seal,
        require_online: p.require_online,
    };
    edit(&mut body);
    Link::sign(body, &key(signer))
}

/// Verifier settings a case needs beyond the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaseConfig {
    pub online: bool,
    pub refuse_break_glass: bool,
    pub max_token_bytes: Option<usize>,
    pub max_links: Option<usize>,
    pub max_capabilities: Option<usize>,
    pub replay_cache_capacity: Option<usize>,
}

impl CaseConfig {
    pub fn verifier_config(&self) -> VerifierConfig {
        let d = VerifierConfig::default();
        VerifierConfig {
            limits: Limits {
                max_token_bytes: self.max_token_bytes.unwrap_or(d.limits.max_token_bytes),
                max_links: self.max_links.unwrap_or(d.limits.max_links),
                max_capabilities: self.max_capabilities.unwrap_or(d.limits.max_capabilities),
                ..d.limits
            },
            online: self.online,
            accept_break_glass: !self.refuse_break_glass,
            replay_cache_capacity: self
                .replay_cache_capacity
                .unwrap_or(d.replay_cache_capacity),
            ..d
        }
    }
}

/// What a case must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Valid,
    Deny(Reason, Option<usize>),
}

/// One verification scenario: inputs as bytes, and the expected verdict.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub description: &'static str,
    pub chain: Vec<u8>,
    /// The chain's text form when it is not the plain one of `chain` (surrounding
    /// whitespace, stray characters): the case then parses this text.
    pub text: Option<String>,
    pub invocation: Option<Vec<u8>>,
    pub call: Option<Call>,
    pub revoked: Vec<LinkId>,
    pub now_ms: u64,
    pub config: CaseConfig,
    /// Verify twice; the expectation is for the second time.
    pub replay: bool,
    pub expect: Expect,
}

impl Case {
    pub fn chain(
        name: &'static str,
        description: &'static str,
        chain: Vec<u8>,
        expect: Expect,
    ) -> Case {
        Case {
            name,
            description,
            chain,
            text: None,
            invocation: None,
            call: None,
            revoked: Vec::new(),
            now_ms: NOW,
            config: CaseConfig::default(),
            replay: false,
            expect,
        }
    }

    pub fn with_invocation(mut self, invocation: &Invocation, call: Call) -> Case {
        self.invocation = Some(invocation.encode());
        self.call = Some(call);
        self
    }

    /// Runs the case on a fresh verifier.
    pub fn run(&self) -> Result<(), Denial> {
        let config = self.config.verifier_config();
        let verifier = Verifier::new(trust(), config, Arc::new(ManualClock::new(self.now_ms)));
        let revoked: HashSet<LinkId> = self.revoked.iter().copied().collect();
        let once = || -> Result<(), Denial> {
            let chain = match &self.text {
                Some(text) => Chain::from_text(text, &verifier.config().limits)?,
                None => verifier.decode_chain(&self.chain)?,
            };
            match (&self.invocation, &self.call) {
                (Some(inv), Some(call)) => {
                    let inv = verifier.decode_invocation(inv)?;
                    verifier.verify_invocation(&chain, &inv, AUDIENCE, call, &revoked)?;
                }
                _ => {
                    verifier.verify_chain(&chain, &revoked)?;
                }
            }
            Ok(())
        };
        if self.replay {
            once()?;
        }
        once()
    }

    /// Runs the case and checks the verdict.
    pub fn check(&self) {
        let got = match self.run() {
            Ok(()) => Expect::Valid,
            Err(d) => Expect::Deny(d.reason(), d.link_index()),
        };
        assert_eq!(
            got, self.expect,
            "case `{}`: {}",
            self.name, self.description
        );
    }
}
