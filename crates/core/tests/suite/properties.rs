//! Properties: attenuation is sound against a brute-force model, random delegation never
//! yields a verifying chain that permits more than its root, encodings round-trip, and
//! flipping any bit of a valid token makes it fail.

use std::sync::Arc;

use mandate_core::*;
use proptest::prelude::*;

use crate::fixture::*;

// ---- A small universe of capabilities and calls, enumerable by brute force ----

const RESOURCES: &[&str] = &["a", "a/b", "a/bc", "a/c", "b", "c"];
const ACTIONS: &[&str] = &["r", "w", "d"];
const TEXTS: &[&str] = &["", "p", "pq", "pqr", "z"];
const INTS: std::ops::RangeInclusive<i64> = -4..=4;

fn values() -> Vec<Option<Value>> {
    let mut v: Vec<Option<Value>> = vec![None];
    v.extend(TEXTS.iter().map(|t| Some(Value::Text((*t).into()))));
    v.extend(INTS.map(|i| Some(Value::Int(i))));
    v
}

/// Every call in the universe.
fn universe() -> Vec<Call> {
    let vals = values();
    let mut calls = Vec::new();
    for r in RESOURCES {
        for a in ACTIONS {
            for x in &vals {
                for n in &vals {
                    let mut call = Call::new(*a, *r);
                    if let Some(x) = x {
                        call = call.with_arg("x", x.clone());
                    }
                    if let Some(n) = n {
                        call = call.with_arg("n", n.clone());
                    }
                    calls.push(call);
                }
            }
        }
    }
    calls
}

fn pattern() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "a/b", "a/c", "b", "a/*", "a/b*", "*", "b*", "a*"])
        .prop_map(String::from)
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(TEXTS.to_vec()).prop_map(|t| Value::Text(t.into())),
        INTS.prop_map(Value::Int),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        value().prop_map(Condition::Exact),
        prop::collection::vec(value(), 1..4).prop_map(|v| Condition::one_of(v).unwrap()),
        prop::sample::select(vec!["", "p", "pq"]).prop_map(|p| Condition::Prefix(p.into())),
        (INTS, INTS).prop_map(|(a, b)| Condition::range(a.min(b), a.max(b)).unwrap()),
    ]
}

fn capability() -> impl Strategy<Value = Capability> {
    (
        pattern(),
        prop::collection::vec(prop::sample::select(vec!["r", "w", "d", "*"]), 1..3),
        // One constraint per argument (two on one argument are malformed).
        prop::collection::btree_map(prop::sample::select(vec!["x", "n"]), condition(), 0..3),
    )
        .prop_map(|(resource, actions, constraints)| {
            let mut c = Capability::new(&resource, actions).unwrap();
            for (arg, cond) in constraints {
                c = c.with_constraint(arg, cond);
            }
            c
        })
}

fn capabilities() -> impl Strategy<Value = Vec<Capability>> {
    prop::collection::vec(capability(), 1..3)
}

fn permits(caps: &[Capability], call: &Call) -> bool {
    caps.iter().any(|c| c.permits(call))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The subset check is sound: whatever it accepts permits no call the parent refuses.
    #[test]
    fn is_within_is_sound(child in capability(), parent in capability()) {
        if child.is_within(&parent) {
            for call in universe() {
                prop_assert!(
                    !child.permits(&call) || parent.permits(&call),
                    "{child:?} within {parent:?} but permits {call:?}"
                );
            }
        }
    }
}

/// One random delegation step, not necessarily narrower than its parent.
#[derive(Debug, Clone)]
struct Step {
    caps: Vec<Capability>,
    start_shift: i64,
    end_shift: i64,
    max_depth: u32,
    wrong_signer: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        capabilities(),
        -2i64..3,
        -2i64..3,
        0u32..6,
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(caps, start_shift, end_shift, max_depth, wrong_signer)| Step {
                caps,
                start_shift,
                end_shift,
                max_depth,
                wrong_signer,
            },
        )
}

fn verifier() -> Verifier {
    Verifier::new(
        trust(),
        VerifierConfig::default(),
        Arc::new(ManualClock::new(NOW)),
    )
}

fn shift(t: u64, by: i64) -> u64 {
    t.saturating_add_signed(by * 1000)
}

/// Builds a chain from a root with `root_caps` and the raw `steps`.
fn random_chain(root_caps: Vec<Capability>, root_depth: u32, steps: &[Step]) -> Chain {
    let root = spec(
        1,
        PLANNER,
        root_caps,
        (NOW - MINUTE, NOW + MINUTE),
        root_depth,
    );
    let mut links = Chain::issue_root(&key(COORDINATOR), task(), LinkKind::Grant, root)
        .unwrap()
        .links()
        .to_vec();
    for (i, s) in steps.iter().enumerate() {
        let parent = links.last().unwrap().clone();
        let holder = 10 + i as u8;
        let issuer = if s.wrong_signer { MALLORY } else { 9 + i as u8 };
        let issuer = if i == 0 && !s.wrong_signer {
            PLANNER
        } else {
            issuer
        };
        let link = raw_child(&parent, issuer, holder, 30 + i as u8, |b| {
            b.capabilities = s.caps.clone();
            b.not_before_ms = shift(b.not_before_ms, s.start_shift);
            b.expires_at_ms = shift(b.expires_at_ms, s.end_shift);
            b.max_depth = s.max_depth;
        });
        links.push(link);
    }
    chain_of(links)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random delegation sequences never yield a verifying chain that permits anything the
    /// root does not (nor any link anything its parent does not).
    #[test]
    fn delegation_never_widens(root_caps in capabilities(), root_depth in 0u32..6, steps in prop::collection::vec(step(), 1..5)) {
        let chain = random_chain(root_caps.clone(), root_depth, &steps);
        if verifier().verify_chain(&chain, &NoRevocations).is_ok() {
            let leaf = &chain.leaf().body().capabilities;
            for call in universe() {
                if permits(leaf, &call) {
                    prop_assert!(permits(&root_caps, &call), "leaf permits {call:?}, root does not");
                    for pair in chain.links().windows(2) {
                        prop_assert!(permits(&pair[0].body().capabilities, &call));
                    }
                }
            }
        }
    }

    /// decode(encode(x)) == x, for chains and their text form.
    #[test]
    fn chains_round_trip(root_caps in capabilities(), steps in prop::collection::vec(step(), 0..4), sealed in any::<bool>()) {
        let mut chain = random_chain(root_caps, 5, &steps);
        if sealed {
            chain.seal_leaf(&key(COORDINATOR));
        }
        let bytes = chain.encode();
        let back = Chain::decode(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(&back, &chain);
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(Chain::from_text(&chain.to_text(), &Limits::default()).unwrap(), chain);
    }

    /// decode(encode(x)) == x, for invocation proofs.
    #[test]
    fn invocations_round_trip(
        action in "[a-z]{1,8}",
        resource in "[a-z/]{1,20}",
        args in prop::collection::btree_map("[a-z]{1,4}", value(), 0..4),
        issued in 0u64..u64::MAX,
        nonce in any::<[u8; 16]>(),
    ) {
        let chain = depth3(Opts::default());
        let mut call = Call::new(action, resource);
        call.args = args;
        let inv = Invocation::sign_body(&key(SUB_WORKER), InvocationBody {
            chain_digest: *chain.leaf_digest(),
            audience: AUDIENCE.into(),
            call,
            issued_at_ms: issued,
            nonce,
        });
        let back = Invocation::decode(&inv.encode(), &Limits::default()).unwrap();
        prop_assert_eq!(&back, &inv);
        prop_assert_eq!(Invocation::from_text(&inv.to_text(), &Limits::default()).unwrap(), inv);
    }

    /// Flipping any single bit of a valid encoded chain makes verification fail.
    #[test]
    fn any_bit_flip_in_a_random_chain_fails(depth in 1usize..4, sealed in any::<bool>(), bit in any::<prop::sample::Index>()) {
        let chain = chain_of_depth(depth, sealed);
        let v = verifier();
        prop_assert!(v.verify_chain(&chain, &NoRevocations).is_ok());
        let mut bytes = chain.encode();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        prop_assert!(v.decode_chain(&bytes).and_then(|c| v.verify_chain(&c, &NoRevocations).map(|_| ())).is_err());
    }
}

fn chain_of_depth(depth: usize, sealed: bool) -> Chain {
    let opts = Opts {
        sealed,
        ..Opts::default()
    };
    match depth {
        1 => root(opts),
        2 => {
            let mut c = root(opts)
                .delegate(&key(PLANNER), worker_a_spec(opts))
                .unwrap();
            if sealed {
                c.seal_leaf(&key(COORDINATOR));
            }
            c
        }
        _ => depth3(opts),
    }
}

/// Every single-bit flip of a sealed depth-3 chain and of an invocation proof, exhaustively.
#[test]
fn every_bit_flip_fails() {
    let chain = depth3(Opts {
        sealed: true,
        ..Opts::default()
    });
    let inv = invocation(SUB_WORKER, &chain, read_call(), NOW, 42);
    let chain_bytes = chain.encode();
    let inv_bytes = inv.encode();
    // One verifier with a warm link cache: a flip must never ride on a cached link.
    let v = verifier();
    assert!(v.verify_chain(&chain, &NoRevocations).is_ok());
    let check = |c: &[u8], i: &[u8]| -> bool {
        let Ok(chain) = v.decode_chain(c) else {
            return false;
        };
        let Ok(inv) = v.decode_invocation(i) else {
            return false;
        };
        v.verify_invocation(&chain, &inv, AUDIENCE, &read_call(), &NoRevocations)
            .is_ok()
    };
    for bit in 0..chain_bytes.len() * 8 {
        let mut b = chain_bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(
            !check(&b, &inv_bytes),
            "chain bit {bit} flipped and still accepted"
        );
    }
    for bit in 0..inv_bytes.len() * 8 {
        let mut b = inv_bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(
            !check(&chain_bytes, &b),
            "invocation bit {bit} flipped and still accepted"
        );
    }
    // And the untouched pair is accepted (once).
    assert!(check(&chain_bytes, &inv_bytes));
}
