//! The coordinator's request authentication on hostile headers and bodies: parsing the
//! four `x-mandate-*` headers never panics, and nothing verifies that the agent's key did
//! not sign for exactly this method and message. One valid request (signed here) is
//! mutated by the fuzzer's bytes; only the untouched one may verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::*;

const METHOD: &str = "/mandate.v1.TaskService/StartTask";
const AGENT: &str = "spiffe://acme.example/agent/planner";

fuzz_target!(|input: (String, String, String, String, Vec<u8>, bool)| {
    let (agent, timestamp, nonce, signature, message, use_valid) = input;
    let key = SigningKey::from_seed(&[1; 32]);
    let prepared = key.public_key().prepare().expect("key");
    // Arbitrary header values: parse, then verify against the real key.
    if let Some(auth) =
        RequestAuth::from_header_values(Some(&agent), Some(&timestamp), Some(&nonce), Some(&signature))
    {
        assert!(
            !auth.verify_prepared(&prepared, METHOD, &message),
            "a forged request verified"
        );
    }
    // A valid signature, then the fuzzer's message: verifies only for the signed bytes.
    if use_valid {
        let signed = b"signed message";
        let auth = RequestAuth::sign(&key, AGENT, METHOD, signed, 1_800_000_000_000).expect("sign");
        let values = auth.header_values();
        let back = RequestAuth::from_header_values(
            Some(&values[0].1),
            Some(&values[1].1),
            Some(&values[2].1),
            Some(&values[3].1),
        )
        .expect("round trip");
        assert_eq!(back, auth);
        assert_eq!(
            back.verify_prepared(&prepared, METHOD, &message),
            message == signed,
            "verification must hold exactly for the signed bytes"
        );
    }
});
