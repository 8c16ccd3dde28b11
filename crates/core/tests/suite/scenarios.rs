//! Every verification scenario, valid and adversarial, each with its expected verdict.
//!
//! The adversarial tests run these one by one; the golden vectors are these, serialized.

use mandate_core::*;

use crate::fixture::*;
use crate::protowriter::{self as pw, LinkParts};

fn deny(reason: Reason, link: Option<usize>) -> Expect {
    Expect::Deny(reason, link)
}

fn plain() -> Opts {
    Opts::default()
}

fn sealed() -> Opts {
    Opts {
        sealed: true,
        ..Opts::default()
    }
}

// ---- Valid ----

pub fn valid_root() -> Case {
    Case::chain(
        "valid_root",
        "a root grant alone verifies",
        root(plain()).encode(),
        Expect::Valid,
    )
}

pub fn valid_depth3() -> Case {
    Case::chain(
        "valid_depth3",
        "root → planner → worker A → sub-worker, each narrower, verifies",
        depth3(plain()).encode(),
        Expect::Valid,
    )
}

pub fn valid_depth3_sealed() -> Case {
    Case::chain(
        "valid_depth3_sealed",
        "a chain whose root requires seals, with every delegation sealed, verifies",
        depth3(sealed()).encode(),
        Expect::Valid,
    )
}

pub fn valid_invocation() -> Case {
    let c = depth3(plain());
    let inv = invocation(SUB_WORKER, &c, read_call(), NOW, 1);
    Case::chain(
        "valid_invocation",
        "the sub-worker's proof for a call within every link verifies",
        c.encode(),
        Expect::Valid,
    )
    .with_invocation(&inv, read_call())
}

pub fn valid_invocation_at_window_edge() -> Case {
    let c = depth3(plain());
    let inv = invocation(SUB_WORKER, &c, read_call(), NOW - 90_000, 2);
    Case::chain(
        "valid_invocation_at_window_edge",
        "a proof exactly 60 s window + 30 s skew old still verifies",
        c.encode(),
        Expect::Valid,
    )
    .with_invocation(&inv, read_call())
}

pub fn valid_break_glass() -> Case {
    let opts = Opts {
        break_glass: true,
        ..Opts::default()
    };
    Case::chain(
        "valid_break_glass",
        "a break-glass root verifies where break-glass is accepted",
        root(opts).encode(),
        Expect::Valid,
    )
}

pub fn valid_online_chain_online_verifier() -> Case {
    let opts = Opts {
        online: true,
        ..Opts::default()
    };
    let mut case = Case::chain(
        "valid_online_chain_online_verifier",
        "an online-only chain verifies at the online authority",
        depth3(opts).encode(),
        Expect::Valid,
    );
    case.config.online = true;
    case
}

// ---- Size, shape and version (step 1) ----

pub fn oversized_token() -> Case {
    let mut case = Case::chain(
        "oversized_token",
        "a token above the size limit is refused before parsing",
        depth3(plain()).encode(),
        deny(Reason::TokenTooLarge, None),
    );
    case.config.max_token_bytes = Some(256);
    case
}

pub fn too_many_links() -> Case {
    let s = spec(
        1,
        PLANNER,
        vec![size_cap("files/*", &["read"], 100)],
        (NOW - MINUTE, NOW + MINUTE),
        16,
    );
    let mut c = Chain::issue_root(&key(COORDINATOR), task(), LinkKind::Grant, s).unwrap();
    let mut holder = PLANNER;
    for i in 0..15u8 {
        let next = 10 + i;
        let s = spec(
            20 + i,
            next,
            vec![size_cap("files/*", &["read"], 100)],
            (NOW - MINUTE, NOW + MINUTE),
            15 - u32::from(i),
        );
        c = c.delegate(&key(holder), s).unwrap();
        holder = next;
    }
    // The builder refuses a 17th link, so sign it by hand.
    let extra = raw_child(c.leaf(), holder, MALLORY, 40, |b| b.max_depth = 0);
    let mut parts = pw::parts(&c);
    parts.push(part(&extra));
    assert_eq!(parts.len(), 17);
    Case::chain(
        "too_many_links",
        "a 17-link chain exceeds the 16-link depth limit",
        pw::chain_envelope(1, &parts),
        deny(Reason::TooManyLinks, None),
    )
}

pub fn too_many_capabilities() -> Case {
    let s = spec(
        1,
        PLANNER,
        vec![
            size_cap("files/a", &["read"], 1),
            size_cap("files/b", &["read"], 1),
        ],
        (NOW - MINUTE, NOW + MINUTE),
        0,
    );
    let c = Chain::issue_root(&key(COORDINATOR), task(), LinkKind::Grant, s).unwrap();
    let mut case = Case::chain(
        "too_many_capabilities",
        "a link with more capabilities than the limit is refused",
        c.encode(),
        deny(Reason::LimitExceeded, Some(0)),
    );
    case.config.max_capabilities = Some(1);
    case
}

pub fn unknown_version() -> Case {
    let c = depth3(plain());
    Case::chain(
        "unknown_version",
        "a chain envelope with format version 2 is refused",
        pw::chain_envelope(2, &pw::parts(&c)),
        deny(Reason::UnsupportedVersion, None),
    )
}

pub fn garbage() -> Case {
    Case::chain(
        "garbage",
        "bytes that are not a chain are malformed",
        b"\xff\xff\xff\xff not a token".to_vec(),
        deny(Reason::Malformed, None),
    )
}

pub fn signature_stripped() -> Case {
    let c = depth3(plain());
    let mut parts = pw::parts(&c);
    parts[2].signature = &[];
    Case::chain(
        "signature_stripped",
        "a link with its signature removed is malformed",
        pw::chain_envelope(1, &parts),
        deny(Reason::Malformed, Some(2)),
    )
}

pub fn hand_root(kind: u64, capabilities: Vec<pw::Msg>) -> Vec<u8> {
    let body = pw::RootBody {
        id: [1; 16],
        issuer_key: *key(COORDINATOR).public_key().as_bytes(),
        holder_key: *key(PLANNER).public_key().as_bytes(),
        holder_agent: agent(PLANNER).as_str(),
        task_id: *task().as_bytes(),
        capabilities,
        not_before_ms: NOW - MINUTE,
        expires_at_ms: NOW + 10 * MINUTE,
        max_depth: 3,
        kind,
    }
    .encode();
    let sig = key(COORDINATOR).sign(SigningDomain::Link, &body);
    pw::single_link_chain(1, &body, sig.as_bytes())
}

pub fn unknown_link_kind() -> Case {
    Case::chain(
        "unknown_link_kind",
        "a correctly signed root whose kind is an enum value this version does not know",
        hand_root(9, vec![pw::capability("files/*", &["read"], &[])]),
        deny(Reason::UnknownValue, Some(0)),
    )
}

pub fn unknown_constraint_kind() -> Case {
    // Constraint { arg: "size", <field 9: varint 1> }: a kind from a future version.
    let constraint = pw::Msg::default().bytes(1, b"size").uint(9, 1);
    Case::chain(
        "unknown_constraint_kind",
        "a correctly signed root with a constraint kind this version does not know",
        hand_root(1, vec![pw::capability("files/*", &["read"], &[constraint])]),
        deny(Reason::UnknownConstraint, Some(0)),
    )
}

pub fn unknown_body_field() -> Case {
    let c = root(plain());
    let mut body = c.root().body_bytes().to_vec();
    body.extend_from_slice(&pw::Msg::default().uint(15, 1).0);
    let sig = key(COORDINATOR).sign(SigningDomain::Link, &body);
    Case::chain(
        "unknown_body_field",
        "a correctly signed body with a field this version does not know is refused",
        pw::single_link_chain(1, &body, sig.as_bytes()),
        deny(Reason::Malformed, Some(0)),
    )
}

// ---- The root (step 2) ----

pub fn untrusted_root() -> Case {
    Case::chain(
        "untrusted_root",
        "a chain minted by a key outside the trust bundle",
        root_signed_by(ROGUE_COORDINATOR, plain()).encode(),
        deny(Reason::UntrustedRoot, Some(0)),
    )
}

pub fn root_key_outside_window() -> Case {
    Case::chain(
        "root_key_outside_window",
        "a chain signed by a coordinator key whose trust window has closed",
        root_signed_by(RETIRED_COORDINATOR, plain()).encode(),
        deny(Reason::RootKeyInactive, Some(0)),
    )
}

// ---- Links against their parents (step 3) ----

pub fn links_reordered() -> Case {
    let c = depth3(plain());
    let l = c.links();
    Case::chain(
        "links_reordered",
        "the delegations of a valid chain swapped: link 1's parent digest, depth and \
         window are all wrong, and the first check of step 3, the parent digest, is reported",
        pw::chain_envelope(1, &[pw::parts(&c).remove(0), part(&l[2]), part(&l[1])]),
        deny(Reason::ParentMismatch, Some(1)),
    )
}

pub fn part(l: &Link) -> LinkParts<'_> {
    LinkParts {
        body: l.body_bytes(),
        signature: l.signature().as_bytes(),
        seal: l
            .seal()
            .map(|s| (&s.key.as_bytes()[..], &s.signature.as_bytes()[..])),
    }
}

pub fn root_dropped() -> Case {
    let c = depth3(plain());
    let l = c.links();
    Case::chain(
        "root_dropped",
        "a chain that starts below the root",
        pw::chain_envelope(1, &[part(&l[1]), part(&l[2])]),
        deny(Reason::ParentMismatch, Some(0)),
    )
}

pub fn link_spliced() -> Case {
    // Worker A holds two chains from the same planner: a narrow one for this task, and a
    // wide one from another grant. It splices the wide link under this task's root.
    let narrow = root(plain())
        .delegate(&key(PLANNER), worker_a_spec(plain()))
        .unwrap();
    let other_root = Chain::issue_root(
        &key(COORDINATOR),
        TaskId::from_bytes([0x7b; 16]),
        LinkKind::Grant,
        spec(
            11,
            PLANNER,
            vec![size_cap("files/*", &["read", "write"], 1 << 20)],
            (NOW - MINUTE, NOW + 10 * MINUTE),
            3,
        ),
    )
    .unwrap();
    let wide = other_root
        .delegate(
            &key(PLANNER),
            spec(
                12,
                WORKER_A,
                vec![size_cap("files/*", &["read", "write"], 1 << 20)],
                (NOW - MINUTE, NOW + 5 * MINUTE),
                1,
            ),
        )
        .unwrap();
    let spliced = pw::chain_envelope(1, &[part(narrow.root()), part(wide.leaf())]);
    Case::chain(
        "link_spliced",
        "a link of the same holder from another chain spliced under this root",
        spliced,
        deny(Reason::ParentMismatch, Some(1)),
    )
}

pub fn depth_mismatch() -> Case {
    let r = root(plain());
    let child = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| {
        b.position = Position::Child {
            parent: *r.root().digest(),
            depth: 2,
        };
    });
    Case::chain(
        "depth_mismatch",
        "a child whose depth is not its parent's plus one",
        chain_of(vec![r.root().clone(), child]).encode(),
        deny(Reason::DepthMismatch, Some(1)),
    )
}

pub fn depth_overflow() -> Case {
    let c = depth3(plain());
    let extra = raw_child(c.leaf(), SUB_WORKER, MALLORY, 4, |b| b.max_depth = 0);
    let mut links = c.links().to_vec();
    links.push(extra);
    Case::chain(
        "depth_overflow",
        "the sub-worker, whose link allows no further hops, delegates anyway",
        chain_of(links).encode(),
        deny(Reason::DepthExceeded, Some(3)),
    )
}

pub fn depth_not_lowered() -> Case {
    let r = root(plain());
    let child = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| b.max_depth = 3);
    Case::chain(
        "depth_not_lowered",
        "a child keeping its parent's remaining depth",
        chain_of(vec![r.root().clone(), child]).encode(),
        deny(Reason::DepthExceeded, Some(1)),
    )
}

pub fn expiry_after_parent() -> Case {
    let r = root(plain());
    let child = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| {
        b.expires_at_ms = NOW + 11 * MINUTE
    });
    Case::chain(
        "expiry_after_parent",
        "a delegation that expires after its parent",
        chain_of(vec![r.root().clone(), child]).encode(),
        deny(Reason::WindowWidened, Some(1)),
    )
}

fn widened(name: &'static str, description: &'static str, caps: Vec<Capability>) -> Case {
    let c = root(plain())
        .delegate(&key(PLANNER), worker_a_spec(plain()))
        .unwrap();
    let child = raw_child(c.leaf(), WORKER_A, SUB_WORKER, 3, |b| {
        b.capabilities = caps;
        b.max_depth = 0;
    });
    let mut links = c.links().to_vec();
    links.push(child);
    Case::chain(
        name,
        description,
        chain_of(links).encode(),
        deny(Reason::ScopeWidened, Some(2)),
    )
}

pub fn widened_resource() -> Case {
    widened(
        "widened_resource",
        "worker A (files/reports/*) delegates files/*",
        vec![size_cap("files/*", &["read"], 4096)],
    )
}

pub fn widened_action() -> Case {
    widened(
        "widened_action",
        "worker A (read) delegates read and write",
        vec![size_cap("files/reports/q3.pdf", &["read", "write"], 4096)],
    )
}

pub fn widened_constraint() -> Case {
    widened(
        "widened_constraint",
        "worker A (size ≤ 64 KiB) delegates size ≤ 1 MiB",
        vec![size_cap("files/reports/q3.pdf", &["read"], 1 << 20)],
    )
}

pub fn dropped_constraint() -> Case {
    widened(
        "dropped_constraint",
        "worker A delegates without the size constraint it is bound by",
        vec![Capability::new("files/reports/q3.pdf", ["read"]).unwrap()],
    )
}

pub fn break_glass_delegated() -> Case {
    let opts = Opts {
        break_glass: true,
        ..Opts::default()
    };
    let r = root(opts);
    let child = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| b.max_depth = 0);
    Case::chain(
        "break_glass_delegated",
        "the holder of a break-glass link (which allows no further hops) delegates it: the \
         break-glass check comes before the depth checks in step 3",
        chain_of(vec![r.root().clone(), child]).encode(),
        deny(Reason::BreakGlassDelegated, Some(1)),
    )
}

pub fn unsealed_under_sealing_root() -> Case {
    let c = root(sealed())
        .delegate(&key(PLANNER), worker_a_spec(sealed()))
        .unwrap();
    Case::chain(
        "unsealed_under_sealing_root",
        "a delegation never registered with the coordinator, under a root that requires seals",
        c.encode(),
        deny(Reason::SealMissing, Some(1)),
    )
}

pub fn seal_by_untrusted_key() -> Case {
    let mut c = root(sealed())
        .delegate(&key(PLANNER), worker_a_spec(sealed()))
        .unwrap();
    c.seal_leaf(&key(MALLORY));
    Case::chain(
        "seal_by_untrusted_key",
        "a delegation sealed by a key outside the trust bundle",
        c.encode(),
        deny(Reason::BadSeal, Some(1)),
    )
}

pub fn seal_forged() -> Case {
    let c = depth3(sealed());
    let l = c.links();
    let other = Seal::sign(&key(COORDINATOR), l[1].digest());
    let mut parts = pw::parts(&c);
    // Link 2 carries the seal made for link 1.
    parts[2].seal = Some((other.key.as_bytes(), other.signature.as_bytes()));
    Case::chain(
        "seal_forged",
        "a seal moved from another link",
        pw::chain_envelope(1, &parts),
        deny(Reason::BadSeal, Some(2)),
    )
}

pub fn online_required() -> Case {
    let opts = Opts {
        online: true,
        ..Opts::default()
    };
    Case::chain(
        "online_required",
        "an online-only chain at an offline verifier",
        depth3(opts).encode(),
        deny(Reason::OnlineRequired, Some(0)),
    )
}

pub fn break_glass_refused() -> Case {
    let opts = Opts {
        break_glass: true,
        ..Opts::default()
    };
    let mut case = Case::chain(
        "break_glass_refused",
        "a break-glass root at a tool configured to refuse break-glass",
        root(opts).encode(),
        deny(Reason::BreakGlassRefused, Some(0)),
    );
    case.config.refuse_break_glass = true;
    case
}

// ---- Time (step 4) and revocation (step 5) ----

pub fn not_yet_valid() -> Case {
    let mut case = Case::chain(
        "not_yet_valid",
        "verified 1 ms before the root's window opens, allowing 30 s skew",
        depth3(plain()).encode(),
        deny(Reason::NotYetValid, Some(0)),
    );
    case.now_ms = NOW - MINUTE - 30_001;
    case
}

pub fn leaf_expired() -> Case {
    let mut case = Case::chain(
        "leaf_expired",
        "the sub-worker's two-minute link has expired (plus skew) while its parents have not",
        depth3(plain()).encode(),
        deny(Reason::LinkExpired, Some(2)),
    );
    case.now_ms = NOW + 2 * MINUTE + 30_000;
    case
}

pub fn revoked_ancestor() -> Case {
    let mut case = Case::chain(
        "revoked_ancestor",
        "worker A's link is revoked: the sub-worker's chain dies with it",
        depth3(plain()).encode(),
        deny(Reason::Revoked, Some(1)),
    );
    case.revoked = vec![link_id(2)];
    case
}

// ---- Signatures (step 7) ----

pub fn signature_replaced() -> Case {
    let c = depth3(plain());
    let mut parts = pw::parts(&c);
    // The leaf carries a valid signature by its issuer, over another body.
    let other = key(WORKER_A).sign(SigningDomain::Link, b"something else");
    parts[2].signature = other.as_bytes();
    Case::chain(
        "signature_replaced",
        "the leaf's signature replaced by another signature of the same issuer",
        pw::chain_envelope(1, &parts),
        deny(Reason::BadSignature, Some(2)),
    )
}

pub fn leaf_body_tampered() -> Case {
    let c = depth3(plain());
    let mut body = c.leaf().body_bytes().to_vec();
    // Turn `files/reports/q3.pdf` into `files/reports/q4.pdf`: still valid protobuf.
    let at = body.windows(2).position(|w| w == b"q3").unwrap();
    body[at + 1] = b'4';
    let mut parts = pw::parts(&c);
    parts[2].body = &body;
    Case::chain(
        "leaf_body_tampered",
        "the leaf's resource edited after signing",
        pw::chain_envelope(1, &parts),
        deny(Reason::BadSignature, Some(2)),
    )
}

pub fn link_signed_by_non_holder() -> Case {
    let c = root(plain())
        .delegate(&key(PLANNER), worker_a_spec(plain()))
        .unwrap();
    let child = raw_child(c.leaf(), MALLORY, SUB_WORKER, 3, |b| {
        b.capabilities = vec![size_cap("files/reports/q3.pdf", &["read"], 4096)];
        b.max_depth = 0;
    });
    let mut links = c.links().to_vec();
    links.push(child);
    Case::chain(
        "link_signed_by_non_holder",
        "mallory signs a delegation below worker A's link",
        chain_of(links).encode(),
        deny(Reason::BadSignature, Some(2)),
    )
}

// ---- Invocations (steps 6 to 8) ----

fn inv_case(
    name: &'static str,
    description: &'static str,
    inv: &Invocation,
    call: Call,
    expect: Expect,
) -> Case {
    Case::chain(name, description, depth3(plain()).encode(), expect).with_invocation(inv, call)
}

pub fn wrong_audience() -> Case {
    let c = depth3(plain());
    let inv = Invocation::sign_body(
        &key(SUB_WORKER),
        InvocationBody {
            chain_digest: *c.leaf_digest(),
            audience: "db".into(),
            call: read_call(),
            issued_at_ms: NOW,
            nonce: [3; NONCE_LEN],
        },
    );
    inv_case(
        "wrong_audience",
        "a proof made for the `db` tool presented to `files`",
        &inv,
        read_call(),
        deny(Reason::WrongAudience, None),
    )
}

pub fn chain_mismatch() -> Case {
    let other = depth3(sealed());
    let inv = invocation(SUB_WORKER, &other, read_call(), NOW, 4);
    inv_case(
        "chain_mismatch",
        "a proof bound to another chain of the same holder",
        &inv,
        read_call(),
        deny(Reason::ChainMismatch, None),
    )
}

pub fn stale_invocation() -> Case {
    let c = depth3(plain());
    inv_case(
        "stale_invocation",
        "a proof 90.001 s old (60 s window + 30 s skew)",
        &invocation(SUB_WORKER, &c, read_call(), NOW - 90_001, 5),
        read_call(),
        deny(Reason::InvocationStale, None),
    )
}

pub fn future_invocation() -> Case {
    let c = depth3(plain());
    inv_case(
        "future_invocation",
        "a proof issued more than the skew allowance in the future",
        &invocation(SUB_WORKER, &c, read_call(), NOW + 30_001, 6),
        read_call(),
        deny(Reason::InvocationStale, None),
    )
}

pub fn replayed_nonce() -> Case {
    let c = depth3(plain());
    let mut case = inv_case(
        "replayed_nonce",
        "the same proof presented twice: the second is a replay",
        &invocation(SUB_WORKER, &c, read_call(), NOW, 7),
        read_call(),
        deny(Reason::Replayed, None),
    );
    case.replay = true;
    case
}

pub fn replay_cache_full() -> Case {
    let c = depth3(plain());
    let mut case = inv_case(
        "replay_cache_full",
        "a verifier with no room to remember nonces refuses rather than risk a replay",
        &invocation(SUB_WORKER, &c, read_call(), NOW, 8),
        read_call(),
        deny(Reason::ReplayCacheFull, None),
    );
    case.config.replay_cache_capacity = Some(0);
    case
}

pub fn invocation_mismatch() -> Case {
    let c = depth3(plain());
    let bigger = Call::new("read", "files/reports/q3.pdf").with_arg("size", 2048);
    inv_case(
        "invocation_mismatch",
        "a proof for size 1024 presented for a call with size 2048",
        &invocation(SUB_WORKER, &c, read_call(), NOW, 9),
        bigger,
        deny(Reason::InvocationMismatch, None),
    )
}

pub fn action_not_permitted() -> Case {
    let c = depth3(plain());
    let write = Call::new("write", "files/reports/q3.pdf").with_arg("size", 10);
    inv_case(
        "action_not_permitted",
        "the sub-worker asks to write; worker A's link grants only read",
        &invocation(SUB_WORKER, &c, write.clone(), NOW, 10),
        write,
        deny(Reason::NotPermitted, Some(1)),
    )
}

pub fn argument_not_permitted() -> Case {
    let c = depth3(plain());
    let big = Call::new("read", "files/reports/q3.pdf").with_arg("size", 8192);
    inv_case(
        "argument_not_permitted",
        "a size above the sub-worker's 4 KiB constraint",
        &invocation(SUB_WORKER, &c, big.clone(), NOW, 11),
        big,
        deny(Reason::NotPermitted, Some(2)),
    )
}

pub fn missing_argument() -> Case {
    let c = depth3(plain());
    let bare = Call::new("read", "files/reports/q3.pdf");
    inv_case(
        "missing_argument",
        "a call without the constrained `size` argument",
        &invocation(SUB_WORKER, &c, bare.clone(), NOW, 12),
        bare,
        deny(Reason::NotPermitted, Some(0)),
    )
}

pub fn invocation_by_non_holder() -> Case {
    let c = depth3(plain());
    inv_case(
        "invocation_by_non_holder",
        "worker A (an ancestor, not the leaf holder) signs a proof under the sub-worker's chain",
        &invocation(WORKER_A, &c, read_call(), NOW, 13),
        read_call(),
        deny(Reason::BadSignature, Some(2)),
    )
}

pub fn stolen_chain() -> Case {
    let c = depth3(plain());
    inv_case(
        "stolen_chain",
        "mallory presents a stolen chain with a proof signed by her own key",
        &invocation(MALLORY, &c, read_call(), NOW, 14),
        read_call(),
        deny(Reason::BadSignature, Some(2)),
    )
}

/// Every scenario, in a stable order.
pub fn all() -> Vec<Case> {
    vec![
        valid_root(),
        valid_depth3(),
        valid_depth3_sealed(),
        valid_invocation(),
        valid_invocation_at_window_edge(),
        valid_break_glass(),
        valid_online_chain_online_verifier(),
        oversized_token(),
        too_many_links(),
        too_many_capabilities(),
        unknown_version(),
        garbage(),
        signature_stripped(),
        unknown_link_kind(),
        unknown_constraint_kind(),
        unknown_body_field(),
        untrusted_root(),
        root_key_outside_window(),
        links_reordered(),
        root_dropped(),
        link_spliced(),
        depth_mismatch(),
        depth_overflow(),
        depth_not_lowered(),
        expiry_after_parent(),
        widened_resource(),
        widened_action(),
        widened_constraint(),
        dropped_constraint(),
        break_glass_delegated(),
        unsealed_under_sealing_root(),
        seal_by_untrusted_key(),
        seal_forged(),
        online_required(),
        break_glass_refused(),
        not_yet_valid(),
        leaf_expired(),
        revoked_ancestor(),
        signature_replaced(),
        leaf_body_tampered(),
        link_signed_by_non_holder(),
        wrong_audience(),
        chain_mismatch(),
        stale_invocation(),
        future_invocation(),
        replayed_nonce(),
        replay_cache_full(),
        invocation_mismatch(),
        action_not_permitted(),
        argument_not_permitted(),
        missing_argument(),
        invocation_by_non_holder(),
        stolen_chain(),
    ]
    .into_iter()
    .chain(crate::precision::all())
    .collect()
}
