//! Vectors that pin the rules of docs/TOKEN.md a second implementation could read two ways:
//! what makes a root, the attenuation table cell by cell, the order of the checks inside
//! step 1 and within a step, the link index each reason reports, unusable holder keys,
//! malformed proofs, text forms, the size limit, duplicate link ids, trust windows and how a
//! proof's call is compared with the tool's.

use mandate_core::*;

use crate::fixture::*;
use crate::protowriter::{self as pw, LinkParts, Msg};
use crate::scenarios::{hand_root, part};

fn deny(reason: Reason, link: Option<usize>) -> Expect {
    Expect::Deny(reason, link)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Encodes links as a chain without any check (the builder refuses what these vectors need).
fn envelope(links: &[Link]) -> Vec<u8> {
    pw::chain_envelope(1, &links.iter().map(part).collect::<Vec<_>>())
}

fn plain_root() -> Chain {
    root(Opts::default())
}

// ---- What makes a root ----

fn root_shape() -> Vec<Case> {
    let caps = vec![pw::capability("files/*", &["read"], &[])];
    let r = plain_root();
    let renewal = Chain::issue_root(
        &key(COORDINATOR),
        task(),
        LinkKind::Grant,
        spec(
            9,
            PLANNER,
            vec![Capability::new("files/*", ["read"]).unwrap()],
            (NOW - MINUTE, NOW + 5 * MINUTE),
            1,
        ),
    )
    .unwrap();
    let grant_kind_child = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| {
        b.kind = LinkKind::Grant;
    });
    vec![
        Case::chain(
            "root_shaped_delegation",
            "a link with a root's shape (no parent digest, an issuer key and a task id, depth 0) \
             whose kind is DELEGATION: a link is a root because its parent digest is empty, and a \
             root must be a grant or break-glass",
            hand_root(2, caps),
            deny(Reason::Malformed, Some(0)),
        ),
        Case::chain(
            "grant_below_root",
            "a second, well-formed root of the same task placed at index 1: every link is well \
             formed, but a root appears below the root",
            envelope(&[r.root().clone(), renewal.root().clone()]),
            deny(Reason::ParentMismatch, Some(1)),
        ),
        Case::chain(
            "child_shaped_grant",
            "a link below the root (it has a parent digest) whose kind is GRANT: links below the \
             root must be delegations",
            envelope(&[r.root().clone(), grant_kind_child]),
            deny(Reason::Malformed, Some(1)),
        ),
    ]
}

// ---- The attenuation table, cell by cell ----

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Text(s) => format!("text {s:?}"),
        Value::Int(i) => format!("int {i}"),
    }
}

fn show(c: &Option<Condition>) -> String {
    match c {
        None => "no constraint".into(),
        Some(Condition::Exact(v)) => format!("exact {}", show_value(v)),
        Some(Condition::OneOf(vs)) => format!(
            "one-of [{}]",
            vs.iter().map(show_value).collect::<Vec<_>>().join(", ")
        ),
        Some(Condition::Prefix(p)) => format!("prefix {p:?}"),
        Some(Condition::Range { min, max }) => format!("range [{min}, {max}]"),
    }
}

fn x_cap(c: &Option<Condition>) -> Capability {
    let cap = Capability::new("files/*", ["read"]).unwrap();
    match c {
        Some(c) => cap.with_constraint("x", c.clone()),
        None => cap,
    }
}

/// Root (`files/*` read, argument `x` constrained by `parent`) → a child identical but for
/// `x`'s constraint, `child`.
fn pair_chain(parent: &Option<Condition>, child: &Option<Condition>) -> Vec<u8> {
    let r = Chain::issue_root(
        &key(COORDINATOR),
        task(),
        LinkKind::Grant,
        spec(
            1,
            PLANNER,
            vec![x_cap(parent)],
            (NOW - MINUTE, NOW + 10 * MINUTE),
            3,
        ),
    )
    .unwrap();
    let c = raw_child(r.root(), PLANNER, WORKER_A, 2, |b| {
        b.capabilities = vec![x_cap(child)];
    });
    envelope(&[r.root().clone(), c])
}

/// One cell of the attenuation table: parent name and constraint, child name and
/// constraint, whether the child is within the parent.
type Cell = (
    &'static str,
    Option<Condition>,
    &'static str,
    Option<Condition>,
    bool,
);

fn attenuation() -> Vec<Case> {
    use Condition::{Exact, OneOf, Prefix, Range};
    let one23 = || Some(OneOf(vec![int(1), int(2), int(3)]));
    let r110 = || Some(Range { min: 1, max: 10 });
    let cells: Vec<Cell> = vec![
        ("absent", None, "absent", None, true),
        ("absent", None, "exact", Some(Exact(int(5))), true),
        ("absent", None, "prefix", Some(Prefix("a".into())), true),
        (
            "exact",
            Some(Exact(int(5))),
            "exact_equal",
            Some(Exact(int(5))),
            true,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "exact_other",
            Some(Exact(int(6))),
            false,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "exact_text_same_digits",
            Some(Exact(text("5"))),
            false,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "one_of_same",
            Some(OneOf(vec![int(5)])),
            true,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "one_of_more",
            Some(OneOf(vec![int(5), int(6)])),
            false,
        ),
        (
            "exact",
            Some(Exact(text("a"))),
            "prefix",
            Some(Prefix("a".into())),
            false,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "range_point",
            Some(Range { min: 5, max: 5 }),
            true,
        ),
        (
            "exact",
            Some(Exact(int(5))),
            "range_wider",
            Some(Range { min: 5, max: 6 }),
            false,
        ),
        (
            "exact_text",
            Some(Exact(text("5"))),
            "range_point",
            Some(Range { min: 5, max: 5 }),
            false,
        ),
        ("exact", Some(Exact(int(5))), "absent", None, false),
        ("one_of", one23(), "exact_member", Some(Exact(int(2))), true),
        ("one_of", one23(), "exact_other", Some(Exact(int(4))), false),
        (
            "one_of",
            one23(),
            "one_of_subset",
            Some(OneOf(vec![int(1), int(3)])),
            true,
        ),
        (
            "one_of",
            one23(),
            "one_of_unsorted_repeated",
            Some(OneOf(vec![int(3), int(1), int(1)])),
            true,
        ),
        (
            "one_of",
            one23(),
            "one_of_superset",
            Some(OneOf(vec![int(1), int(4)])),
            false,
        ),
        (
            "one_of_text",
            Some(OneOf(vec![text("a"), text("ab")])),
            "prefix",
            Some(Prefix("a".into())),
            false,
        ),
        (
            "one_of",
            one23(),
            "range_covered",
            Some(Range { min: 1, max: 3 }),
            true,
        ),
        (
            "one_of",
            one23(),
            "range_beyond",
            Some(Range { min: 1, max: 4 }),
            false,
        ),
        ("one_of", one23(), "absent", None, false),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "exact_text",
            Some(Exact(text("docs/a"))),
            true,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "exact_text_outside",
            Some(Exact(text("doc"))),
            false,
        ),
        (
            "prefix",
            Some(Prefix("1".into())),
            "exact_int",
            Some(Exact(int(1))),
            false,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "one_of_inside",
            Some(OneOf(vec![text("docs/a"), text("docs/b")])),
            true,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "one_of_partly_outside",
            Some(OneOf(vec![text("docs/a"), text("tmp/b")])),
            false,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "prefix_longer",
            Some(Prefix("docs/q3/".into())),
            true,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "prefix_equal",
            Some(Prefix("docs/".into())),
            true,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "prefix_shorter",
            Some(Prefix("doc".into())),
            false,
        ),
        (
            "prefix",
            Some(Prefix("1".into())),
            "range",
            Some(Range { min: 1, max: 1 }),
            false,
        ),
        (
            "prefix",
            Some(Prefix("docs/".into())),
            "absent",
            None,
            false,
        ),
        ("range", r110(), "exact_inside", Some(Exact(int(10))), true),
        (
            "range",
            r110(),
            "exact_outside",
            Some(Exact(int(11))),
            false,
        ),
        ("range", r110(), "exact_text", Some(Exact(text("5"))), false),
        (
            "range",
            r110(),
            "one_of_inside",
            Some(OneOf(vec![int(1), int(10)])),
            true,
        ),
        (
            "range",
            r110(),
            "one_of_with_text",
            Some(OneOf(vec![int(1), text("2")])),
            false,
        ),
        ("range", r110(), "prefix", Some(Prefix("1".into())), false),
        (
            "range",
            r110(),
            "range_narrower",
            Some(Range { min: 2, max: 10 }),
            true,
        ),
        (
            "range",
            r110(),
            "range_wider",
            Some(Range { min: 0, max: 10 }),
            false,
        ),
        ("range", r110(), "absent", None, false),
    ];
    let mut cases: Vec<Case> = cells
        .into_iter()
        .map(|(pname, parent, cname, child, within)| {
            let verdict = if within {
                "within: the chain verifies"
            } else {
                "not within: SCOPE_WIDENED"
            };
            Case::chain(
                leak(format!("attenuate_{pname}_to_{cname}")),
                leak(format!(
                    "parent constrains `x` by {}, child by {}: {verdict}",
                    show(&parent),
                    show(&child)
                )),
                pair_chain(&parent, &child),
                if within {
                    Expect::Valid
                } else {
                    deny(Reason::ScopeWidened, Some(1))
                },
            )
        })
        .collect();
    // Conditions that are not conditions: refused at decode, whatever the parent.
    cases.push(Case::chain(
        "one_of_empty",
        "a one-of constraint with no values admits nothing and is refused as malformed",
        pair_chain(&Some(Exact(int(5))), &Some(OneOf(Vec::new()))),
        deny(Reason::Malformed, Some(1)),
    ));
    cases.push(Case::chain(
        "range_min_above_max",
        "a range whose minimum is above its maximum is refused as malformed",
        pair_chain(&r110(), &Some(Range { min: 6, max: 5 })),
        deny(Reason::Malformed, Some(1)),
    ));
    cases
}

// ---- The order of the checks ----

fn order() -> Vec<Case> {
    let c = depth3(Opts::default());
    let l = c.links();
    let mut stripped = pw::parts(&c);
    stripped[1].signature = &[];
    let mut with_envelope_field = pw::chain_envelope(1, &stripped);
    with_envelope_field.extend_from_slice(&Msg::default().uint(9, 1).0);
    let mut unknown_envelope_field = c.encode();
    unknown_envelope_field.extend_from_slice(&Msg::default().uint(9, 1).0);
    let rootless_and_broken = {
        let mut p = vec![part(&l[1]), part(&l[2])];
        p[1].signature = &[];
        pw::chain_envelope(1, &p)
    };
    let mut v2 = pw::parts(&c);
    v2[0].signature = &[];

    // Link 1 signed by the wrong key (a canonical signature that does not verify), and
    // below it link 2 with a non-canonical `R`: chain order reports link 1.
    let by_mallory = Link::sign(l[1].body().clone(), &key(MALLORY));
    let below = raw_child(&by_mallory, WORKER_A, SUB_WORKER, 3, |b| {
        b.capabilities = vec![size_cap("files/reports/q3.pdf", &["read"], 4096)];
        b.max_depth = 0;
    });
    let mut non_canonical = *below.signature().as_bytes();
    non_canonical[..32].copy_from_slice(&[0xff; 32]);
    let mut two_bad = vec![part(&l[0]), part(&by_mallory), part(&below)];
    two_bad[2].signature = &non_canonical;

    let mut revoked_two = Case::chain(
        "revoked_first_in_chain_order",
        "the root and the leaf are both revoked: the first revoked link from the root is named",
        c.encode(),
        deny(Reason::Revoked, Some(0)),
    );
    revoked_two.revoked = vec![link_id(3), link_id(1)];

    vec![
        Case::chain(
            "version_before_link_defects",
            "format version 2 with a malformed link: the version is checked before any link",
            pw::chain_envelope(2, &v2),
            deny(Reason::UnsupportedVersion, None),
        ),
        Case::chain(
            "unknown_envelope_field",
            "a valid chain with a field the envelope does not define: malformed, no link index",
            unknown_envelope_field,
            deny(Reason::Malformed, None),
        ),
        Case::chain(
            "link_defect_before_envelope_field",
            "a link without a signature in an envelope with an unknown field: links are checked \
             before the envelope's canonical encoding, so the link is named",
            with_envelope_field,
            deny(Reason::Malformed, Some(1)),
        ),
        Case::chain(
            "link_shape_before_position",
            "a chain that starts below the root and whose second link has no signature: every \
             link's shape is checked before the positions of roots",
            rootless_and_broken,
            deny(Reason::Malformed, Some(1)),
        ),
        Case::chain(
            "bad_signature_first_in_chain_order",
            "link 1 signed by the wrong key and link 2 with a non-canonical signature: the first \
             failing signature in chain order is named, whatever its kind",
            pw::chain_envelope(1, &two_bad),
            deny(Reason::BadSignature, Some(1)),
        ),
        revoked_two,
    ]
}

// ---- Holder keys that are not usable points ----

/// An encoding that is not a point of the curve.
fn not_a_point() -> [u8; 32] {
    (2u8..)
        .map(|n| {
            let mut b = [0u8; 32];
            b[0] = n;
            b
        })
        .find(|b| PublicKey::from_bytes(b).is_err())
        .unwrap()
}

/// The identity point: a valid encoding of a point of small order.
const SMALL_ORDER: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
};

/// `link` with its holder key's bytes replaced by `holder`, re-signed by `signer`.
fn with_holder_bytes(link: &Link, holder: &[u8; 32], signer: u8) -> (Vec<u8>, Signature) {
    let old = link.body().holder.as_bytes();
    let mut body = link.body_bytes().to_vec();
    let at = body.windows(32).position(|w| w == old).unwrap();
    body[at..at + 32].copy_from_slice(holder);
    let sig = key(signer).sign(SigningDomain::Link, &body);
    (body, sig)
}

fn holder_keys() -> Vec<Case> {
    let c = root(Opts::default())
        .delegate(&key(PLANNER), worker_a_spec(Opts::default()))
        .unwrap();
    let (leaf_small, leaf_small_sig) = with_holder_bytes(c.leaf(), &SMALL_ORDER, PLANNER);
    let (leaf_bad, leaf_bad_sig) = with_holder_bytes(c.leaf(), &not_a_point(), PLANNER);
    let leaf_chain = |body: &[u8], sig: &Signature| {
        pw::chain_envelope(
            1,
            &[
                part(c.root()),
                LinkParts {
                    body,
                    signature: sig.as_bytes(),
                    seal: None,
                },
            ],
        )
    };
    // A link below the small-order holder, signed by somebody (nobody can sign for it).
    let d3 = depth3(Opts::default());
    let (mid, mid_sig) = with_holder_bytes(&d3.links()[1], &SMALL_ORDER, PLANNER);
    let mut below_body = d3.links()[2].body().clone();
    below_body.position = Position::Child {
        parent: link_digest(&mid, &mid_sig),
        depth: 2,
    };
    let below = Link::sign(below_body, &key(WORKER_A));
    let mid_chain = pw::chain_envelope(
        1,
        &[
            part(&d3.links()[0]),
            LinkParts {
                body: &mid,
                signature: mid_sig.as_bytes(),
                seal: None,
            },
            part(&below),
        ],
    );
    // Four links: link 1's holder is unusable, so link 2 cannot verify; link 3 is signed
    // by link 2's (usable) holder, and the proof by a stranger. Link 2 is named, not the
    // proof at the leaf: nothing after an unusable key is checked.
    let r4 = root(Opts::default());
    let l1 = raw_child(r4.root(), PLANNER, WORKER_A, 2, |b| b.max_depth = 2);
    let (l1_body, l1_sig) = with_holder_bytes(&l1, &SMALL_ORDER, PLANNER);
    let mut l2_body = raw_child(&l1, WORKER_A, WORKER_B, 3, |b| b.max_depth = 1)
        .body()
        .clone();
    l2_body.position = Position::Child {
        parent: link_digest(&l1_body, &l1_sig),
        depth: 2,
    };
    let l2 = Link::sign(l2_body, &key(WORKER_A));
    let l3 = raw_child(&l2, WORKER_B, SUB_WORKER, 4, |b| b.max_depth = 0);
    let four = pw::chain_envelope(
        1,
        &[
            part(r4.root()),
            LinkParts {
                body: &l1_body,
                signature: l1_sig.as_bytes(),
                seal: None,
            },
            part(&l2),
            part(&l3),
        ],
    );
    let strangers_proof = Invocation::sign_body(
        &key(MALLORY),
        InvocationBody {
            chain_digest: *l3.digest(),
            audience: AUDIENCE.into(),
            call: read_call(),
            issued_at_ms: NOW,
            nonce: [47; NONCE_LEN],
        },
    );
    let wrong_audience = Invocation::sign_body(
        &key(WORKER_A),
        InvocationBody {
            chain_digest: link_digest(&leaf_small, &leaf_small_sig),
            audience: "db".into(),
            call: read_call(),
            issued_at_ms: NOW,
            nonce: [40; NONCE_LEN],
        },
    );
    vec![
        Case::chain(
            "leaf_holder_key_small_order",
            "the leaf's holder key is the identity point: it can sign nothing, so the chain is \
             refused with BAD_SIGNATURE at the leaf, after every link signature (step 7)",
            leaf_chain(&leaf_small, &leaf_small_sig),
            deny(Reason::BadSignature, Some(1)),
        ),
        Case::chain(
            "leaf_holder_key_not_a_point",
            "the leaf's holder key is not a curve point: BAD_SIGNATURE at the leaf",
            leaf_chain(&leaf_bad, &leaf_bad_sig),
            deny(Reason::BadSignature, Some(1)),
        ),
        Case::chain(
            "holder_key_small_order_mid_chain",
            "link 1's holder key is the identity point: link 2, which that key must have \
             signed, is BAD_SIGNATURE",
            mid_chain,
            deny(Reason::BadSignature, Some(2)),
        ),
        Case::chain(
            "unusable_key_stops_signature_checks",
            "link 1's holder key is the identity point, below it two more links and a proof \
             signed by a stranger: link 2 is BAD_SIGNATURE, and nothing after it in chain \
             order (link 3, the proof) is checked or named",
            four,
            deny(Reason::BadSignature, Some(2)),
        )
        .with_invocation(&strangers_proof, read_call()),
        Case::chain(
            "unusable_leaf_key_after_invocation_checks",
            "an unusable leaf holder key is a step 7 failure: a proof for the wrong audience is \
             reported first (step 6)",
            leaf_chain(&leaf_small, &leaf_small_sig),
            deny(Reason::WrongAudience, None),
        )
        .with_invocation(&wrong_audience, read_call()),
    ]
}

// ---- Malformed proofs and how a proof's call is compared ----

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

/// An invocation body encoded by hand; `args` are written in the order given.
fn proof_body(chain: &Chain, nonce: &[u8], args: &[Msg]) -> Vec<u8> {
    let mut m = Msg::default()
        .bytes(1, chain.leaf_digest().as_bytes())
        .bytes(2, AUDIENCE.as_bytes())
        .bytes(3, b"read")
        .bytes(4, b"files/reports/q3.pdf");
    for a in args {
        m = m.message(5, a);
    }
    m.uint(6, NOW).bytes(7, nonce).0
}

fn signed_proof(body: &[u8]) -> Vec<u8> {
    let sig = key(SUB_WORKER).sign(SigningDomain::Invocation, body);
    Msg::default().bytes(1, body).bytes(2, sig.as_bytes()).0
}

fn int_arg(name: &str, v: i64) -> Msg {
    Msg::default()
        .bytes(1, name.as_bytes())
        .message(2, &Msg::default().uint(2, zigzag(v)))
}

fn text_arg(name: &str, v: &str) -> Msg {
    Msg::default()
        .bytes(1, name.as_bytes())
        .message(2, &Msg::default().bytes(1, v.as_bytes()))
}

fn raw_proof_case(
    name: &'static str,
    description: &'static str,
    proof: Vec<u8>,
    call: Call,
    expect: Expect,
) -> Case {
    let mut case = Case::chain(name, description, depth3(Opts::default()).encode(), expect);
    case.invocation = Some(proof);
    case.call = Some(call);
    case
}

fn proofs() -> Vec<Case> {
    let c = depth3(Opts::default());
    let size = || int_arg("size", 1024);
    let big_call = (0..20).fold(read_call(), |call, i| {
        call.with_arg(format!("pad{i:02}"), "p".repeat(1000))
    });
    let big = invocation(SUB_WORKER, &c, big_call.clone(), NOW, 41);
    let typed = Call::new("read", "files/reports/q3.pdf").with_arg("size", "1024");
    let extra = read_call().with_arg("mode", "fast");
    vec![
        raw_proof_case(
            "invocation_too_large",
            "a proof above the 16 KiB invocation limit is refused before parsing",
            big.encode(),
            big_call,
            deny(Reason::TokenTooLarge, None),
        ),
        raw_proof_case(
            "invocation_nonce_short",
            "a proof whose nonce is 15 bytes is malformed (no link index: proofs are not links)",
            signed_proof(&proof_body(&c, &[7; 15], &[size()])),
            read_call(),
            deny(Reason::Malformed, None),
        ),
        raw_proof_case(
            "argument_without_value",
            "a proof argument with a name and no value is malformed",
            signed_proof(&proof_body(
                &c,
                &[42; 16],
                &[Msg::default().bytes(1, b"size")],
            )),
            read_call(),
            deny(Reason::Malformed, None),
        ),
        raw_proof_case(
            "argument_value_without_kind",
            "a proof argument whose value has no kind (or a kind from a newer version)",
            signed_proof(&proof_body(
                &c,
                &[43; 16],
                &[Msg::default().bytes(1, b"size").message(2, &Msg::default())],
            )),
            read_call(),
            deny(Reason::UnknownConstraint, None),
        ),
        raw_proof_case(
            "proof_args_in_any_order",
            "the proof lists `size` before `mode`: arguments are a set keyed by name, in any \
             wire order",
            signed_proof(&proof_body(
                &c,
                &[44; 16],
                &[size(), text_arg("mode", "fast")],
            )),
            extra.clone(),
            Expect::Valid,
        ),
        Case::chain(
            "proof_argument_type_differs",
            "the proof says `size` is the text \"1024\", the tool's call the integer 1024: values \
             compare by type and content",
            c.encode(),
            deny(Reason::InvocationMismatch, None),
        )
        .with_invocation(&invocation(SUB_WORKER, &c, typed, NOW, 45), read_call()),
        Case::chain(
            "proof_extra_argument",
            "the proof has an argument the tool's call lacks",
            c.encode(),
            deny(Reason::InvocationMismatch, None),
        )
        .with_invocation(&invocation(SUB_WORKER, &c, extra, NOW, 46), read_call()),
    ]
}

// ---- Text forms, the size limit, duplicate ids, trust windows ----

fn text_case(name: &'static str, description: &'static str, text: String, expect: Expect) -> Case {
    let mut case = Case::chain(name, description, Vec::new(), expect);
    case.text = Some(text);
    case
}

fn forms() -> Vec<Case> {
    let c = depth3(Opts::default());
    let t = c.to_text();
    let (head, tail) = t.split_at(40);
    let len = c.encode().len();
    let mut at_limit = Case::chain(
        "token_at_size_limit",
        "a token exactly at the size limit (the limit applies to the decoded bytes)",
        c.encode(),
        Expect::Valid,
    );
    at_limit.config.max_token_bytes = Some(len);
    let mut text_at_limit = text_case(
        "text_token_at_size_limit",
        "the same in text form: the text is longer than the limit, its decoded bytes are not",
        t.clone(),
        Expect::Valid,
    );
    text_at_limit.config.max_token_bytes = Some(len);
    let mut over = text_case(
        "text_token_one_byte_over",
        "a text form that decodes to one byte more than the limit",
        t.clone(),
        deny(Reason::TokenTooLarge, None),
    );
    over.config.max_token_bytes = Some(len - 1);

    let r = plain_root();
    let same_id = raw_child(r.root(), PLANNER, WORKER_A, 1, |b| {
        b.max_depth = 1;
    });

    let day = 24 * 60 * MINUTE;
    let retired_at = |now: u64| {
        let s = spec(
            1,
            PLANNER,
            vec![Capability::new("files/*", ["read"]).unwrap()],
            (now - MINUTE, now + 10 * MINUTE),
            1,
        );
        Chain::issue_root(&key(RETIRED_COORDINATOR), task(), LinkKind::Grant, s)
            .unwrap()
            .encode()
    };
    let mut last_ms = Case::chain(
        "root_key_window_last_ms",
        "verified 1 ms before the key's trust window closes (windows are [not_before, \
         not_after), on the verifier's clock, with no skew allowance)",
        retired_at(NOW - day - 1),
        Expect::Valid,
    );
    last_ms.now_ms = NOW - day - 1;
    let mut end = Case::chain(
        "root_key_window_end_exclusive",
        "verified at the instant the key's trust window closes",
        retired_at(NOW - day),
        deny(Reason::RootKeyInactive, Some(0)),
    );
    end.now_ms = NOW - day;

    vec![
        text_case(
            "text_trailing_newline",
            "the text form followed by a newline, as read from a file",
            format!("{t}\n"),
            Expect::Valid,
        ),
        text_case(
            "text_surrounding_ascii_whitespace",
            "spaces and a tab before, CR LF after: surrounding space, tab, CR and LF are ignored",
            format!(" \t{t}\r\n"),
            Expect::Valid,
        ),
        text_case(
            "text_no_break_space",
            "a trailing U+00A0: only ASCII space, tab, CR and LF may surround the text",
            format!("{t}\u{a0}"),
            deny(Reason::Malformed, None),
        ),
        text_case(
            "text_inner_newline",
            "a line break inside the text",
            format!("{head}\n{tail}"),
            deny(Reason::Malformed, None),
        ),
        text_case(
            "text_padded",
            "base64 padding is not allowed",
            format!("{t}=="),
            deny(Reason::Malformed, None),
        ),
        at_limit,
        text_at_limit,
        over,
        Case::chain(
            "duplicate_link_id",
            "a delegation that reuses its parent's link id: ids name one link each",
            envelope(&[r.root().clone(), same_id]),
            deny(Reason::Malformed, Some(1)),
        ),
        last_ms,
        end,
    ]
}

/// Every precision vector, in a stable order.
pub fn all() -> Vec<Case> {
    [
        root_shape(),
        attenuation(),
        order(),
        holder_keys(),
        proofs(),
        forms(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
