//! The verifier's cache of decoded chains.

use std::sync::Arc;

use crate::testkit::*;
use crate::*;

#[test]
fn the_chain_cache_decodes_as_decoding_does_and_stays_bounded() {
    let (v, _) = verifier_with(VerifierConfig {
        chain_cache_capacity: 2,
        ..VerifierConfig::default()
    });
    let chains: Vec<Vec<u8>> = (1..=3).map(|d| chain(d).encode()).collect();
    let first = v.decode_chain_shared(&chains[0]).unwrap();
    assert_eq!(*first, v.decode_chain(&chains[0]).unwrap());
    // A hit is the chain decoded before.
    assert!(Arc::ptr_eq(
        &first,
        &v.decode_chain_shared(&chains[0]).unwrap()
    ));
    assert_eq!(v.chain_cache_size(), 1);
    // A refusal is returned, not kept.
    let mut bad = chains[1].clone();
    bad.truncate(bad.len() - 1);
    assert_eq!(
        v.decode_chain_shared(&bad).unwrap_err().reason(),
        Chain::decode(&bad, &Limits::default())
            .unwrap_err()
            .reason()
    );
    assert_eq!(v.chain_cache_size(), 1);
    // Bounded, first in first out: the third chain pushes the first out.
    for c in &chains {
        assert_eq!(
            *v.decode_chain_shared(c).unwrap(),
            v.decode_chain(c).unwrap()
        );
    }
    assert_eq!(v.chain_cache_size(), 2);
    assert!(!Arc::ptr_eq(
        &first,
        &v.decode_chain_shared(&chains[0]).unwrap()
    ));
    // A chain larger than the cache keeps is decoded every time.
    let many: Vec<Capability> = (0..16)
        .map(|i| cap(&format!("files/{}-{i:02}/*", "x".repeat(300)), &["read"]))
        .collect();
    let big = root_with(spec(1, many, 0), LinkKind::Grant).encode();
    assert!(big.len() > 4096, "{}", big.len());
    let a = v.decode_chain_shared(&big).unwrap();
    assert!(!Arc::ptr_eq(&a, &v.decode_chain_shared(&big).unwrap()));
}
