//! Verifying an arbitrary invocation proof against a valid chain never panics and never
//! accepts a proof not signed by the leaf holder for the exact call.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mandate_core::*;

const NOW: u64 = 1_800_000_000_000;

struct World {
    verifier: Verifier,
    chain: Chain,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let coordinator = SigningKey::from_seed(&[200; 32]);
        let planner = SigningKey::from_seed(&[1; 32]);
        let spec = LinkSpec::new(
            planner.public_key(),
            "spiffe://acme.example/agent/planner".parse().expect("agent id"),
            vec![Capability::new("files/*", ["read"]).expect("capability")],
            NOW - 60_000,
            NOW + 600_000,
        )
        .expect("spec");
        let chain = Chain::issue_root(&coordinator, TaskId::from_bytes([7; 16]), LinkKind::Grant, spec)
            .expect("root");
        let trust = TrustBundle::new()
            .with_key(coordinator.public_key(), 0, u64::MAX)
            .expect("valid key");
        let verifier = Verifier::new(trust, VerifierConfig::default(), Arc::new(ManualClock::new(NOW)));
        World { verifier, chain }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    if let Ok(inv) = w.verifier.decode_invocation(data) {
        let call = inv.body().call.clone();
        let accepted = w
            .verifier
            .verify_invocation(&w.chain, &inv, "files", &call, &NoRevocations)
            .is_ok();
        if accepted {
            // Only the holder (seed 1) can have produced an accepted proof.
            let holder = SigningKey::from_seed(&[1; 32]).public_key();
            assert!(holder.verify(SigningDomain::Invocation, inv.body_bytes(), inv.signature()));
        }
    }
});
