use std::collections::HashSet;

use prost::Message as _;

use crate::testkit::*;
use crate::wire::pb;
use crate::*;

fn reason(r: Result<VerifiedChain<'_>, Denial>) -> (Reason, Option<usize>) {
    let d = r.unwrap_err();
    (d.reason(), d.link_index())
}

fn decode_reason(bytes: &[u8]) -> Reason {
    Chain::decode(bytes, &Limits::default())
        .unwrap_err()
        .reason()
}

#[test]
fn valid_chains_verify_and_expose_the_leaf() {
    let (v, _) = verifier();
    for depth in [1, 2, 4, 8, 16] {
        let c = chain(depth);
        let ok = v.verify_chain(&c, &NoRevocations).unwrap();
        assert_eq!(ok.task(), TaskId::from_bytes([7; 16]));
        assert_eq!(ok.holder(), &key(u8::try_from(depth).unwrap()).public_key());
        assert_eq!(ok.link_ids().count(), depth);
        assert_eq!(ok.expires_at_ms(), NOW + 10 * MINUTE);
        assert!(!ok.is_break_glass());
        // Round trip through bytes and text.
        let back = Chain::decode(&c.encode(), &Limits::default()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            Chain::from_text(&c.to_text(), &Limits::default()).unwrap(),
            c
        );
        assert!(c.to_text().starts_with("mandate1."));
    }
}

// ---- Step 2: the root ----

#[test]
fn untrusted_root_is_rejected() {
    let (v, _) = verifier();
    let c = Chain::issue_root(
        &key(50),
        TaskId::from_bytes([7; 16]),
        LinkKind::Grant,
        spec(1, vec![cap("x", &["r"])], 0),
    )
    .unwrap();
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::UntrustedRoot, Some(0))
    );
}

#[test]
fn root_key_outside_its_window_is_rejected_and_rotation_works() {
    let clock = std::sync::Arc::new(ManualClock::new(NOW));
    let old = coordinator();
    let new = key(201);
    let trust = TrustBundle::new()
        .with_key(old.public_key(), 0, NOW + MINUTE)
        .unwrap()
        .with_key(new.public_key(), NOW, u64::MAX)
        .unwrap();
    let v = Verifier::new(trust, VerifierConfig::default(), clock.clone());
    let by_old = chain(2);
    let by_new = Chain::issue_root(
        &new,
        TaskId::from_bytes([7; 16]),
        LinkKind::Grant,
        spec(1, vec![cap("x", &["r"])], 0),
    )
    .unwrap();
    assert!(v.verify_chain(&by_old, &NoRevocations).is_ok());
    assert!(v.verify_chain(&by_new, &NoRevocations).is_ok());
    clock.set(NOW + MINUTE);
    assert_eq!(
        reason(v.verify_chain(&by_old, &NoRevocations)),
        (Reason::RootKeyInactive, Some(0))
    );
    assert!(v.verify_chain(&by_new, &NoRevocations).is_ok());
    clock.set(NOW - 1);
    assert_eq!(
        reason(v.verify_chain(&by_new, &NoRevocations)),
        (Reason::RootKeyInactive, Some(0))
    );
}

#[test]
fn replacing_the_trust_bundle_takes_effect_even_for_cached_links() {
    let (v, _) = verifier();
    let c = chain(3);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    v.set_trust_bundle(
        TrustBundle::new()
            .with_key(key(201).public_key(), 0, u64::MAX)
            .unwrap(),
    );
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::UntrustedRoot, Some(0))
    );
}

// ---- Step 3: each link against its parent ----

#[test]
fn parent_digest_must_match() {
    let c = chain(2);
    let other = root_with(spec(1, vec![cap("files/*", &["read"])], 3), LinkKind::Grant);
    // A child of `other` signed by the right holder, appended under `c`'s root.
    let child = raw_child(other.root(), &key(1), |_| {});
    let spliced = extend(&chain(1), child).unwrap();
    let (v, _) = verifier();
    assert_eq!(
        reason(v.verify_chain(&spliced, &NoRevocations)),
        (Reason::ParentMismatch, Some(1))
    );
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
}

#[test]
fn break_glass_cannot_be_delegated() {
    let root = root_with(spec(1, vec![cap("x", &["r"])], 3), LinkKind::BreakGlass);
    let child = raw_child(root.root(), &key(1), |_| {});
    let c = extend(&root, child).unwrap();
    let (v, _) = verifier();
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::BreakGlassDelegated, Some(1))
    );
    assert!(matches!(
        root.delegate(&key(1), spec(2, vec![cap("x", &["r"])], 0)),
        Err(Error::Rejected(d)) if d.reason() == Reason::BreakGlassDelegated
    ));
    // The break-glass root itself verifies, unless the verifier refuses break-glass.
    assert!(
        v.verify_chain(&root, &NoRevocations)
            .unwrap()
            .is_break_glass()
    );
    let (strict, _) = verifier_with(VerifierConfig {
        accept_break_glass: false,
        ..VerifierConfig::default()
    });
    assert_eq!(
        reason(strict.verify_chain(&root, &NoRevocations)),
        (Reason::BreakGlassRefused, Some(0))
    );
}

#[test]
fn depth_must_be_parent_plus_one() {
    let c = chain(2);
    let child = raw_child(c.leaf(), &key(2), |b| {
        b.position = Position::Child {
            parent: *c.leaf().digest(),
            depth: 5,
        };
    });
    let (v, _) = verifier();
    assert_eq!(
        reason(v.verify_chain(&extend(&c, child).unwrap(), &NoRevocations)),
        (Reason::DepthMismatch, Some(2))
    );
}

#[test]
fn remaining_depth_must_shrink_and_be_available() {
    let (v, _) = verifier();
    let root = root_with(spec(1, vec![cap("x", &["r"])], 0), LinkKind::Grant);
    let under_zero = raw_child(root.root(), &key(1), |b| b.max_depth = 0);
    assert_eq!(
        reason(v.verify_chain(&extend(&root, under_zero).unwrap(), &NoRevocations)),
        (Reason::DepthExceeded, Some(1))
    );
    let root = root_with(spec(1, vec![cap("x", &["r"])], 2), LinkKind::Grant);
    let same = raw_child(root.root(), &key(1), |b| b.max_depth = 2);
    assert_eq!(
        reason(v.verify_chain(&extend(&root, same).unwrap(), &NoRevocations)),
        (Reason::DepthExceeded, Some(1))
    );
}

#[test]
fn window_must_stay_inside_the_parent() {
    let (v, _) = verifier();
    let c = chain(1);
    let later = raw_child(c.root(), &key(1), |b| b.expires_at_ms += 1);
    assert_eq!(
        reason(v.verify_chain(&extend(&c, later).unwrap(), &NoRevocations)),
        (Reason::WindowWidened, Some(1))
    );
    let earlier = raw_child(c.root(), &key(1), |b| b.not_before_ms -= 1);
    assert_eq!(
        reason(v.verify_chain(&extend(&c, earlier).unwrap(), &NoRevocations)),
        (Reason::WindowWidened, Some(1))
    );
}

#[test]
fn capabilities_must_narrow() {
    let (v, _) = verifier();
    let c = chain(1);
    for caps in [
        vec![cap("*", &["read"])],
        vec![cap("files/*", &["read", "delete"])],
        vec![cap("files/*", &["*"])],
        vec![cap("files/a", &["read"]), cap("other", &["read"])],
    ] {
        let wide = raw_child(c.root(), &key(1), |b| b.capabilities = caps);
        assert_eq!(
            reason(v.verify_chain(&extend(&c, wide).unwrap(), &NoRevocations)),
            (Reason::ScopeWidened, Some(1))
        );
    }
}

#[test]
fn restrictions_cannot_be_dropped() {
    let (v, _) = verifier_with(VerifierConfig {
        online: true,
        ..VerifierConfig::default()
    });
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_online(true),
        LinkKind::Grant,
    );
    let dropped = raw_child(root.root(), &key(1), |b| b.require_online = false);
    assert_eq!(
        reason(v.verify_chain(&extend(&root, dropped).unwrap(), &NoRevocations)),
        (Reason::ScopeWidened, Some(1))
    );
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_seal(true),
        LinkKind::Grant,
    );
    let mut dropped = raw_child(root.root(), &key(1), |b| b.require_seal = false);
    dropped.seal_with(&coordinator());
    assert_eq!(
        reason(v.verify_chain(&extend(&root, dropped).unwrap(), &NoRevocations)),
        (Reason::ScopeWidened, Some(1))
    );
}

#[test]
fn seals_are_required_when_the_parent_says_so() {
    let (v, _) = verifier();
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_seal(true),
        LinkKind::Grant,
    );
    let c = root
        .delegate(
            &key(1),
            spec(2, vec![cap("x", &["r"])], 1).require_seal(true),
        )
        .unwrap();
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::SealMissing, Some(1))
    );
    // The coordinator may check it before sealing.
    assert!(v.verify_for_sealing(&c, &NoRevocations).is_ok());
    let mut sealed = c.clone();
    sealed.seal_leaf(&coordinator());
    assert!(v.verify_chain(&sealed, &NoRevocations).is_ok());
    // Only the leaf may be unsealed when checking for sealing.
    let deeper = sealed
        .delegate(
            &key(2),
            spec(3, vec![cap("x", &["r"])], 0).require_seal(true),
        )
        .unwrap();
    assert!(v.verify_for_sealing(&deeper, &NoRevocations).is_ok());
    let unsealed_middle = c
        .delegate(
            &key(2),
            spec(3, vec![cap("x", &["r"])], 0).require_seal(true),
        )
        .unwrap();
    assert_eq!(
        reason(v.verify_for_sealing(&unsealed_middle, &NoRevocations)),
        (Reason::SealMissing, Some(1))
    );
}

#[test]
fn seals_must_be_by_a_trusted_key_and_verify() {
    let (v, _) = verifier();
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_seal(true),
        LinkKind::Grant,
    );
    let c = root
        .delegate(
            &key(1),
            spec(2, vec![cap("x", &["r"])], 1).require_seal(true),
        )
        .unwrap();
    let mut by_stranger = c.clone();
    by_stranger.seal_leaf(&key(66));
    assert_eq!(
        reason(v.verify_chain(&by_stranger, &NoRevocations)),
        (Reason::BadSeal, Some(1))
    );
    let mut links = c.links().to_vec();
    let mut seal = Seal::sign(&coordinator(), links[1].digest());
    seal.signature = Signature::from_bytes({
        let mut b = *seal.signature.as_bytes();
        b[5] ^= 0x10;
        b
    });
    links[1].set_seal(seal);
    let forged = Chain::from_links(links).unwrap();
    assert_eq!(
        reason(v.verify_chain(&forged, &NoRevocations)),
        (Reason::BadSeal, Some(1))
    );
    // A seal over another link's digest does not verify either.
    let mut links = c.links().to_vec();
    links[1].set_seal(Seal::sign(&coordinator(), root.root().digest()));
    let moved = Chain::from_links(links).unwrap();
    assert_eq!(
        reason(v.verify_chain(&moved, &NoRevocations)),
        (Reason::BadSeal, Some(1))
    );
}

#[test]
fn offline_verifiers_refuse_online_only_chains() {
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_online(true),
        LinkKind::Grant,
    );
    let (offline, _) = verifier();
    assert_eq!(
        reason(offline.verify_chain(&root, &NoRevocations)),
        (Reason::OnlineRequired, Some(0))
    );
    let (online, _) = verifier_with(VerifierConfig {
        online: true,
        ..VerifierConfig::default()
    });
    assert!(
        online
            .verify_chain(&root, &NoRevocations)
            .unwrap()
            .requires_online()
    );
}

// ---- Step 4: time ----

#[test]
fn time_window_with_skew() {
    let (v, clock) = verifier();
    let c = chain(3);
    let skew = v.config().clock_skew_ms;
    clock.set(NOW - MINUTE - skew);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    clock.set(NOW - MINUTE - skew - 1);
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::NotYetValid, Some(0))
    );
    clock.set(NOW + 10 * MINUTE + skew - 1);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    clock.set(NOW + 10 * MINUTE + skew);
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::LinkExpired, Some(0))
    );
}

#[test]
fn a_short_lived_leaf_expires_first() {
    let (v, clock) = verifier();
    let mut s = spec(3, vec![cap("files/a", &["read"])], 0);
    s.expires_at_ms = NOW + MINUTE;
    let c = chain(2).delegate(&key(2), s).unwrap();
    clock.set(NOW + MINUTE + v.config().clock_skew_ms);
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::LinkExpired, Some(2))
    );
}

// ---- Step 5: revocation ----

#[test]
fn revoking_any_link_rejects_the_chain_even_when_cached() {
    let (v, _) = verifier();
    let c = chain(4);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    for (i, link) in c.links().iter().enumerate() {
        let revoked: HashSet<LinkId> = [link.id()].into();
        assert_eq!(
            reason(v.verify_chain(&c, &revoked)),
            (Reason::Revoked, Some(i))
        );
    }
}

// ---- Step 7: signatures ----

#[test]
fn any_bad_link_signature_is_found_and_named() {
    let (v, _) = verifier_with(VerifierConfig {
        link_cache_capacity: 0,
        ..VerifierConfig::default()
    });
    let c = chain(4);
    for i in 0..4 {
        let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
        encoded.links[i].signature[10] ^= 1;
        let bad = Chain::decode(&encoded.encode_to_vec(), &Limits::default()).unwrap();
        // The digest changed, so the child's parent digest no longer matches... unless this
        // is the leaf. Either way the chain is rejected at the right link.
        let (r, at) = reason(v.verify_chain(&bad, &NoRevocations));
        if i == 3 {
            assert_eq!((r, at), (Reason::BadSignature, Some(3)));
        } else {
            assert_eq!((r, at), (Reason::ParentMismatch, Some(i + 1)));
        }
    }
}

#[test]
fn a_link_signed_by_someone_other_than_the_parent_holder_fails() {
    let (v, _) = verifier();
    let c = chain(2);
    let forged = raw_child(c.leaf(), &key(77), |b| {
        b.capabilities = vec![cap("files/a", &["read"])]
    });
    assert_eq!(
        reason(v.verify_chain(&extend(&c, forged).unwrap(), &NoRevocations)),
        (Reason::BadSignature, Some(2))
    );
}

#[test]
fn the_cache_skips_only_signature_work() {
    let (v, clock) = verifier();
    let c = chain(4);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    assert_eq!(v.links.len(), 4);
    // Cached, and still every other rule applies.
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    clock.set(NOW + 11 * MINUTE);
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)).0,
        Reason::LinkExpired
    );
    clock.set(NOW);
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
}

#[test]
fn cache_is_bounded() {
    let (v, _) = verifier_with(VerifierConfig {
        link_cache_capacity: 3,
        ..VerifierConfig::default()
    });
    assert!(v.verify_chain(&chain(8), &NoRevocations).is_ok());
    assert_eq!(v.links.len(), 3);
}

// ---- Invocations ----

fn invoke(c: &Chain, signer: u8, audience: &str, call: &Call, at: u64) -> Invocation {
    Invocation::sign(&key(signer), c, audience, call.clone(), at).unwrap()
}

#[test]
fn invocation_happy_path_and_text_round_trip() {
    let (v, _) = verifier();
    let c = chain(3);
    let call = Call::new("read", "files/a.txt").with_arg("n", 3);
    let inv = invoke(&c, 3, "files", &call, NOW);
    let back = Invocation::from_text(&inv.to_text(), &Limits::default()).unwrap();
    assert_eq!(back, inv);
    assert!(inv.to_text().starts_with("mandate-inv1."));
    let ok = v
        .verify_invocation(&c, &back, "files", &call, &NoRevocations)
        .unwrap();
    assert_eq!(ok.holder_agent(), &agent(3));
}

#[test]
fn invocation_rules_each_have_their_reason() {
    let (v, clock) = verifier();
    let c = chain(3);
    let call = Call::new("read", "files/a.txt");
    let check = |inv: &Invocation, audience: &str, call: &Call| {
        v.verify_invocation(&c, inv, audience, call, &NoRevocations)
            .unwrap_err()
            .reason()
    };
    assert_eq!(
        check(&invoke(&c, 3, "files", &call, NOW), "db", &call),
        Reason::WrongAudience
    );
    assert_eq!(
        check(&invoke(&chain(2), 2, "files", &call, NOW), "files", &call),
        Reason::ChainMismatch
    );
    let window = v.config().invocation_window_ms + v.config().clock_skew_ms;
    assert_eq!(
        check(
            &invoke(&c, 3, "files", &call, NOW - window - 1),
            "files",
            &call
        ),
        Reason::InvocationStale
    );
    assert_eq!(
        check(
            &invoke(&c, 3, "files", &call, NOW + v.config().clock_skew_ms + 1),
            "files",
            &call
        ),
        Reason::InvocationStale
    );
    let other = Call::new("read", "files/b.txt");
    assert_eq!(
        check(&invoke(&c, 3, "files", &call, NOW), "files", &other),
        Reason::InvocationMismatch
    );
    let write = Call::new("write", "files/a.txt");
    let d = v
        .verify_invocation(
            &c,
            &invoke(&c, 3, "files", &write, NOW),
            "files",
            &write,
            &NoRevocations,
        )
        .unwrap_err();
    assert_eq!(
        (d.reason(), d.link_index()),
        (Reason::NotPermitted, Some(1))
    );
    assert_eq!(
        check(&invoke(&c, 2, "files", &call, NOW), "files", &call),
        Reason::BadSignature
    );
    // Nonces are spent only by accepted proofs.
    let inv = invoke(&c, 3, "files", &call, NOW);
    assert!(
        v.verify_invocation(&c, &inv, "files", &call, &NoRevocations)
            .is_ok()
    );
    assert_eq!(check(&inv, "files", &call), Reason::Replayed);
    clock.advance(window + 1);
    assert_eq!(check(&inv, "files", &call), Reason::InvocationStale);
}

#[test]
fn a_forged_invocation_under_a_cached_chain_still_fails() {
    let (v, _) = verifier();
    let c = chain(4);
    let call = Call::new("read", "files/a");
    assert!(
        v.verify_invocation(
            &c,
            &invoke(&c, 4, "t", &call, NOW),
            "t",
            &call,
            &NoRevocations
        )
        .is_ok()
    );
    let d = v
        .verify_invocation(
            &c,
            &invoke(&c, 3, "t", &call, NOW),
            "t",
            &call,
            &NoRevocations,
        )
        .unwrap_err();
    assert_eq!(
        (d.reason(), d.link_index()),
        (Reason::BadSignature, Some(3))
    );
}

#[test]
fn a_full_replay_cache_fails_closed() {
    let (v, _) = verifier_with(VerifierConfig {
        replay_cache_capacity: 1,
        ..VerifierConfig::default()
    });
    let c = chain(1);
    let call = Call::new("read", "files/a");
    assert!(
        v.verify_invocation(
            &c,
            &invoke(&c, 1, "t", &call, NOW),
            "t",
            &call,
            &NoRevocations
        )
        .is_ok()
    );
    let d = v
        .verify_invocation(
            &c,
            &invoke(&c, 1, "t", &call, NOW),
            "t",
            &call,
            &NoRevocations,
        )
        .unwrap_err();
    assert_eq!(d.reason(), Reason::ReplayCacheFull);
}

#[test]
fn concurrent_replays_admit_exactly_one() {
    let (v, _) = verifier();
    let c = chain(2);
    let call = Call::new("read", "files/a");
    let inv = invoke(&c, 2, "t", &call, NOW);
    let accepted = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    v.verify_invocation(&c, &inv, "t", &call, &NoRevocations)
                        .is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(accepted, 1);
}

// ---- Decoding and shape (step 1) ----

fn body_of(c: &Chain, i: usize) -> pb::LinkBody {
    pb::LinkBody::decode(c.links()[i].body_bytes()).unwrap()
}

/// Re-signs an edited body of the root and encodes a one-link chain.
fn root_from_pb(body: &pb::LinkBody) -> Vec<u8> {
    let bytes = body.encode_to_vec();
    let sig = coordinator().sign(SigningDomain::Link, &bytes);
    pb::Chain {
        version: 1,
        links: vec![pb::Link {
            body: bytes,
            signature: sig.as_bytes().to_vec(),
            seal: None,
        }],
    }
    .encode_to_vec()
}

#[test]
fn unknown_enum_values_and_constraint_kinds_are_rejected() {
    let c = chain(1);
    let mut b = body_of(&c, 0);
    b.kind = 9;
    assert_eq!(decode_reason(&root_from_pb(&b)), Reason::UnknownValue);
    let mut b = body_of(&c, 0);
    b.kind = 0;
    assert_eq!(decode_reason(&root_from_pb(&b)), Reason::Malformed);

    // A constraint with no kind.
    let mut b = body_of(&c, 0);
    b.capabilities[0].constraints.push(pb::Constraint {
        arg: "x".into(),
        kind: None,
    });
    assert_eq!(decode_reason(&root_from_pb(&b)), Reason::UnknownConstraint);
    // A constraint with a kind from a future version (field 9): prost drops it, we notice.
    let mut b = body_of(&c, 0);
    b.capabilities[0].constraints.push(pb::Constraint {
        arg: "x".into(),
        kind: None,
    });
    let mut bytes = b.encode_to_vec();
    // The constraint is the last thing in the capability, which is field 7 of the body:
    // append field 9 (varint 1) inside it by rebuilding the nesting by hand.
    let constraint = [0x0a, 0x01, b'x', 0x48, 0x01]; // arg = "x", field 9 = 1
    let mut cap = pb::Capability {
        resource: "files/*".into(),
        actions: vec!["read".into(), "write".into()],
        constraints: vec![],
    }
    .encode_to_vec();
    cap.extend_from_slice(&[0x1a, u8::try_from(constraint.len()).unwrap()]);
    cap.extend_from_slice(&constraint);
    b.capabilities.clear();
    bytes.clear();
    bytes.extend(b.encode_to_vec());
    bytes.push(0x3a); // field 7, length-delimited
    bytes.push(u8::try_from(cap.len()).unwrap());
    bytes.extend_from_slice(&cap);
    let sig = coordinator().sign(SigningDomain::Link, &bytes);
    let chain_bytes = pb::Chain {
        version: 1,
        links: vec![pb::Link {
            body: bytes,
            signature: sig.as_bytes().to_vec(),
            seal: None,
        }],
    }
    .encode_to_vec();
    assert_eq!(decode_reason(&chain_bytes), Reason::UnknownConstraint);
}

#[test]
fn non_canonical_or_extended_bodies_are_malformed() {
    let c = chain(1);
    let mut bytes = body_of(&c, 0).encode_to_vec();
    bytes.extend_from_slice(&[0x78, 0x01]); // unknown field 15 = 1
    let sig = coordinator().sign(SigningDomain::Link, &bytes);
    let chain_bytes = pb::Chain {
        version: 1,
        links: vec![pb::Link {
            body: bytes,
            signature: sig.as_bytes().to_vec(),
            seal: None,
        }],
    }
    .encode_to_vec();
    assert_eq!(decode_reason(&chain_bytes), Reason::Malformed);
    // An explicitly written default (require_seal = false) is not canonical either.
    let mut bytes = body_of(&c, 0).encode_to_vec();
    bytes.extend_from_slice(&[0x68, 0x00]);
    let sig = coordinator().sign(SigningDomain::Link, &bytes);
    let chain_bytes = pb::Chain {
        version: 1,
        links: vec![pb::Link {
            body: bytes,
            signature: sig.as_bytes().to_vec(),
            seal: None,
        }],
    }
    .encode_to_vec();
    assert_eq!(decode_reason(&chain_bytes), Reason::Malformed);
}

#[test]
fn shape_rules_are_malformed() {
    let c = chain(1);
    type Edit = fn(&mut pb::LinkBody);
    let edits: &[(&str, Edit)] = &[
        ("short id", |b| b.id.truncate(8)),
        ("short holder key", |b| b.holder_key.truncate(31)),
        ("no issuer key", |b| b.issuer_key.clear()),
        ("no task id", |b| b.task_id.clear()),
        ("bad agent id", |b| b.holder_agent = "planner".into()),
        ("no capabilities", |b| b.capabilities.clear()),
        ("empty window", |b| b.expires_at_ms = b.not_before_ms),
        ("root depth", |b| b.depth = 1),
        ("delegation root", |b| {
            b.kind = pb::LinkKind::Delegation.into()
        }),
        ("bad resource", |b| {
            b.capabilities[0].resource = "a*b".into()
        }),
        ("no actions", |b| b.capabilities[0].actions.clear()),
        ("empty range", |b| {
            b.capabilities[0].constraints.push(pb::Constraint {
                arg: "n".into(),
                kind: Some(pb::constraint::Kind::Range(pb::IntRange { min: 2, max: 1 })),
            })
        }),
        ("empty one-of", |b| {
            b.capabilities[0].constraints.push(pb::Constraint {
                arg: "n".into(),
                kind: Some(pb::constraint::Kind::OneOf(pb::ValueSet { values: vec![] })),
            })
        }),
        ("empty arg name", |b| {
            b.capabilities[0].constraints.push(pb::Constraint {
                arg: String::new(),
                kind: Some(pb::constraint::Kind::Prefix("a".into())),
            })
        }),
    ];
    for (name, edit) in edits {
        let mut b = body_of(&c, 0);
        edit(&mut b);
        assert_eq!(
            decode_reason(&root_from_pb(&b)),
            Reason::Malformed,
            "{name}"
        );
    }
}

#[test]
fn position_rules() {
    let c = chain(2);
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    // A child carrying the root-only task id.
    let mut child = body_of(&c, 1);
    child.task_id = vec![7; 16];
    encoded.links[1].body = child.encode_to_vec();
    assert_eq!(decode_reason(&encoded.encode_to_vec()), Reason::Malformed);
    // A child that claims to be a grant.
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    let mut child = body_of(&c, 1);
    child.kind = pb::LinkKind::Grant.into();
    encoded.links[1].body = child.encode_to_vec();
    assert_eq!(decode_reason(&encoded.encode_to_vec()), Reason::Malformed);
    // A sealed root.
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    encoded.links[0].seal = Some(pb::Seal {
        key: vec![1; 32],
        signature: vec![2; 64],
    });
    assert_eq!(decode_reason(&encoded.encode_to_vec()), Reason::Malformed);
    // A chain that starts below the root, and one with a second root.
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    encoded.links.remove(0);
    assert_eq!(
        decode_reason(&encoded.encode_to_vec()),
        Reason::ParentMismatch
    );
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    encoded.links.swap(0, 1);
    assert_eq!(
        decode_reason(&encoded.encode_to_vec()),
        Reason::ParentMismatch
    );
    // Empty chain; wrong signature length.
    assert_eq!(
        decode_reason(
            &pb::Chain {
                version: 1,
                links: vec![]
            }
            .encode_to_vec()
        ),
        Reason::Malformed
    );
    let mut encoded = pb::Chain::decode(c.encode().as_slice()).unwrap();
    encoded.links[0].signature.pop();
    assert_eq!(decode_reason(&encoded.encode_to_vec()), Reason::Malformed);
}

#[test]
fn size_and_count_limits() {
    let c = chain(3);
    let bytes = c.encode();
    let tight = Limits {
        max_token_bytes: bytes.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        Chain::decode(&bytes, &tight).unwrap_err().reason(),
        Reason::TokenTooLarge
    );
    let two = Limits {
        max_links: 2,
        ..Limits::default()
    };
    assert_eq!(
        Chain::decode(&bytes, &two).unwrap_err().reason(),
        Reason::TooManyLinks
    );
    let one_cap = Limits {
        max_capabilities: 0,
        ..Limits::default()
    };
    assert_eq!(
        Chain::decode(&bytes, &one_cap).unwrap_err().reason(),
        Reason::LimitExceeded
    );
    let short = Limits {
        max_string_bytes: 3,
        ..Limits::default()
    };
    assert_eq!(
        Chain::decode(&bytes, &short).unwrap_err().reason(),
        Reason::LimitExceeded
    );
    let mut encoded = pb::Chain::decode(bytes.as_slice()).unwrap();
    encoded.version = 2;
    assert_eq!(
        decode_reason(&encoded.encode_to_vec()),
        Reason::UnsupportedVersion
    );
    assert_eq!(decode_reason(b"\xff\xff\xff"), Reason::Malformed);
    // The text form refuses oversized input before decoding base64.
    let huge = format!("mandate1.{}", "A".repeat(100_000));
    assert_eq!(
        Chain::from_text(&huge, &Limits::default())
            .unwrap_err()
            .reason(),
        Reason::TokenTooLarge
    );
    assert_eq!(
        Chain::from_text("mandate2.AAAA", &Limits::default())
            .unwrap_err()
            .reason(),
        Reason::Malformed
    );
}

#[test]
fn invocation_shape_rules() {
    let c = chain(1);
    let call = Call::new("read", "files/a").with_arg("n", 1);
    let inv = invoke(&c, 1, "t", &call, NOW);
    let limits = Limits::default();
    let reencode = |edit: &dyn Fn(&mut pb::InvocationBody)| {
        let mut b = pb::InvocationBody::decode(inv.body_bytes()).unwrap();
        edit(&mut b);
        let body = b.encode_to_vec();
        let sig = key(1).sign(SigningDomain::Invocation, &body);
        pb::Invocation {
            body,
            signature: sig.as_bytes().to_vec(),
        }
        .encode_to_vec()
    };
    type Edit<'a> = &'a dyn Fn(&mut pb::InvocationBody);
    let cases: &[(&str, Edit<'_>)] = &[
        ("short nonce", &|b| b.nonce.truncate(8)),
        ("short digest", &|b| b.chain_digest.truncate(8)),
        ("no audience", &|b| b.audience.clear()),
        ("wildcard resource", &|b| b.resource = "files/*".into()),
        ("wildcard action", &|b| b.action = "*".into()),
        ("duplicate arg", &|b| {
            let a = b.args[0].clone();
            b.args.push(a);
        }),
        ("arg without value", &|b| b.args[0].value = None),
    ];
    for (name, edit) in cases {
        let d = Invocation::decode(&reencode(edit), &limits).unwrap_err();
        assert_eq!(d.reason(), Reason::Malformed, "{name}");
    }
    let many = Limits {
        max_args: 0,
        ..Limits::default()
    };
    assert_eq!(
        Invocation::decode(&inv.encode(), &many)
            .unwrap_err()
            .reason(),
        Reason::LimitExceeded
    );
    let small = Limits {
        max_invocation_bytes: 10,
        ..Limits::default()
    };
    assert_eq!(
        Invocation::decode(&inv.encode(), &small)
            .unwrap_err()
            .reason(),
        Reason::TokenTooLarge
    );
}

#[test]
fn a_small_order_holder_key_can_never_sign() {
    let (v, _) = verifier();
    // A delegation to the identity point: anyone could "sign" as it without a key check.
    let c = small_order_leaf();
    // Refused even without an invocation: the coordinator must never seal such a link.
    assert_eq!(
        reason(v.verify_chain(&c, &NoRevocations)),
        (Reason::BadSignature, Some(1))
    );
    assert_eq!(
        reason(v.verify_for_sealing(&c, &NoRevocations)),
        (Reason::BadSignature, Some(1))
    );
    let call = Call::new("read", "files/a");
    let inv = Invocation::sign(&key(5), &c, "t", call.clone(), NOW).unwrap();
    let d = v
        .verify_invocation(&c, &inv, "t", &call, &NoRevocations)
        .unwrap_err();
    assert_eq!(
        (d.reason(), d.link_index()),
        (Reason::BadSignature, Some(1))
    );
}

#[test]
fn a_seal_relabelled_with_another_trusted_key_is_not_a_cache_hit() {
    let clock = std::sync::Arc::new(ManualClock::new(NOW));
    let other = key(201);
    let trust = TrustBundle::new()
        .with_key(coordinator().public_key(), 0, u64::MAX)
        .unwrap()
        .with_key(other.public_key(), 0, u64::MAX)
        .unwrap();
    let v = Verifier::new(trust, VerifierConfig::default(), clock);
    let root = root_with(
        spec(1, vec![cap("x", &["r"])], 3).require_seal(true),
        LinkKind::Grant,
    );
    let mut c = root
        .delegate(
            &key(1),
            spec(2, vec![cap("x", &["r"])], 1).require_seal(true),
        )
        .unwrap();
    c.seal_leaf(&coordinator());
    assert!(v.verify_chain(&c, &NoRevocations).is_ok());
    // The same seal signature, now claiming to be by the other trusted key.
    let mut links = c.links().to_vec();
    let mut seal = *links[1].seal().unwrap();
    seal.key = other.public_key();
    links[1].set_seal(seal);
    let relabelled = Chain::from_links(links).unwrap();
    assert_eq!(
        reason(v.verify_chain(&relabelled, &NoRevocations)),
        (Reason::BadSeal, Some(1))
    );
}

#[test]
fn break_glass_longer_than_the_cap_is_refused() {
    let mut s = spec(1, vec![cap("x", &["r"])], 0);
    s.not_before_ms = NOW - MINUTE;
    s.expires_at_ms = NOW + 61 * MINUTE;
    let long = root_with(s, LinkKind::BreakGlass);
    let (v, _) = verifier();
    assert_eq!(
        reason(v.verify_chain(&long, &NoRevocations)),
        (Reason::BreakGlassRefused, Some(0))
    );
}

#[test]
fn two_constraints_on_one_argument_are_malformed() {
    let c = chain(1);
    let mut b = body_of(&c, 0);
    for _ in 0..2 {
        b.capabilities[0].constraints.push(pb::Constraint {
            arg: "n".into(),
            kind: Some(pb::constraint::Kind::Prefix("a".into())),
        });
    }
    assert_eq!(decode_reason(&root_from_pb(&b)), Reason::Malformed);
}

#[test]
fn single_links_round_trip() {
    let mut c = chain(2);
    c.seal_leaf(&coordinator());
    for l in c.links() {
        assert_eq!(&Link::decode(&l.encode(), &Limits::default()).unwrap(), l);
    }
    assert_eq!(
        Link::decode(b"junk", &Limits::default())
            .unwrap_err()
            .reason(),
        Reason::Malformed
    );
}
