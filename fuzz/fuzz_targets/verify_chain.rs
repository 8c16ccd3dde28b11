//! Verifying arbitrary bytes never panics. The input is mutated from a valid sealed chain
//! (see `seed_corpus`), so the fuzzer reaches the signature and attenuation checks.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mandate_core::*;

const NOW: u64 = 1_800_000_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let coordinator = SigningKey::from_seed(&[200; 32]);
        let trust = TrustBundle::new()
            .with_key(coordinator.public_key(), 0, u64::MAX)
            .expect("valid key");
        Verifier::new(trust, VerifierConfig::default(), Arc::new(ManualClock::new(NOW)))
    })
}

fuzz_target!(|data: &[u8]| {
    let v = verifier();
    if let Ok(chain) = v.decode_chain(data) {
        let _ = v.verify_chain(&chain, &NoRevocations);
        let _ = v.verify_for_sealing(&chain, &NoRevocations);
    }
});
