//! Tests of what is sled's own: its key statistics. The behaviour every backend shares is
//! in the conformance suite (`crate::conformance`).

use super::*;

/// `MANDATE_STORE_STATS=<data>/store cargo test -p mandate-store -- --ignored key_stats
/// --nocapture`: what a store holds, per record kind (for the soak, BENCHMARKS.md).
#[test]
#[ignore = "reads the store named by MANDATE_STORE_STATS"]
fn key_stats() {
    let Ok(path) = std::env::var("MANDATE_STORE_STATS") else {
        return;
    };
    let s = SledStore::open(std::path::Path::new(&path)).unwrap();
    for (prefix, (keys, bytes)) in s.key_stats().unwrap() {
        eprintln!("{prefix}: {keys} keys, {bytes} bytes");
    }
    eprintln!("on disk: {} bytes", s.size_on_disk().unwrap());
}
