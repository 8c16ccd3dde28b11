//! The adversarial suite: every scenario as its own test, each asserting its verdict and
//! reason code (see `scenarios.rs` for what each one does).

use std::collections::BTreeSet;

use mandate_core::Reason;

use crate::fixture::Expect;
use crate::scenarios;

macro_rules! scenario_tests {
    ($($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                scenarios::$name().check();
            }
        )*

        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenario_tests! {
    valid_root,
    valid_depth3,
    valid_depth3_sealed,
    valid_invocation,
    valid_invocation_at_window_edge,
    valid_break_glass,
    valid_online_chain_online_verifier,
    oversized_token,
    too_many_links,
    too_many_capabilities,
    unknown_version,
    garbage,
    signature_stripped,
    unknown_link_kind,
    unknown_constraint_kind,
    unknown_body_field,
    untrusted_root,
    root_key_outside_window,
    links_reordered,
    root_dropped,
    link_spliced,
    depth_mismatch,
    depth_overflow,
    depth_not_lowered,
    expiry_after_parent,
    widened_resource,
    widened_action,
    widened_constraint,
    dropped_constraint,
    break_glass_delegated,
    unsealed_under_sealing_root,
    seal_by_untrusted_key,
    seal_forged,
    online_required,
    break_glass_refused,
    not_yet_valid,
    leaf_expired,
    revoked_ancestor,
    signature_replaced,
    leaf_body_tampered,
    link_signed_by_non_holder,
    wrong_audience,
    chain_mismatch,
    stale_invocation,
    future_invocation,
    replayed_nonce,
    replay_cache_full,
    invocation_mismatch,
    action_not_permitted,
    argument_not_permitted,
    missing_argument,
    invocation_by_non_holder,
    stolen_chain,
}

#[test]
fn every_scenario_is_listed_once_and_tested() {
    let all = scenarios::all();
    let names: BTreeSet<_> = all.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), all.len(), "duplicate scenario names");
    let precision: Vec<_> = crate::precision::all().iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        TESTED
            .iter()
            .copied()
            .chain(precision)
            .collect::<BTreeSet<_>>()
    );
}

/// The precision vectors (docs/TOKEN.md's rules, one per reading a second implementation
/// could take), each checked for its verdict, reason and link index.
#[test]
fn precision_vectors() {
    for case in crate::precision::all() {
        case.check();
    }
}

#[test]
fn every_reason_code_has_a_scenario() {
    let covered: BTreeSet<Reason> = scenarios::all()
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Deny(r, _) => Some(r),
            Expect::Valid => None,
        })
        .collect();
    let missing: Vec<_> = Reason::ALL
        .iter()
        .filter(|r| !covered.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons without a scenario: {missing:?}"
    );
}
