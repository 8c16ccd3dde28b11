//! Decoding arbitrary bytes as a chain or an invocation never panics, and whatever decodes
//! re-encodes to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::{Chain, Invocation, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(chain) = Chain::decode(data, &limits) {
        let again = Chain::decode(&chain.encode(), &limits).expect("re-encoded chain decodes");
        assert_eq!(again, chain);
        let _ = Chain::from_text(&chain.to_text(), &limits).expect("text form decodes");
    }
    if let Ok(inv) = Invocation::decode(data, &limits) {
        let again = Invocation::decode(&inv.encode(), &limits).expect("re-encoded proof decodes");
        assert_eq!(again, inv);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Chain::from_text(text, &limits);
        let _ = Invocation::from_text(text, &limits);
    }
});
