//! Benchmarks for the token core: chain verification cold and cached, invocation checks,
//! attenuation, encoding and decoding, beside the Ed25519 floor measured in the same run.
//!
//! Run with `cargo bench -p mandate-core --bench verify`. BENCHMARKS.md records results.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mandate_core::*;

const NOW: u64 = 1_800_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn agent(n: usize) -> AgentId {
    AgentId::new(format!("spiffe://acme.example/agent/worker-{n}")).unwrap()
}

/// A chain of `depth` links, each with one capability; sealed when `sealed`.
fn chain(depth: usize, sealed: bool) -> Chain {
    let coordinator = key(200);
    let root = LinkSpec::new(
        key(1).public_key(),
        agent(1),
        vec![Capability::new("files/*", ["read", "write"]).unwrap()],
        NOW - 60_000,
        NOW + 600_000,
    )
    .unwrap()
    .max_depth(15)
    .require_seal(sealed);
    let mut c = Chain::issue_root(
        &coordinator,
        TaskId::from_bytes([7; 16]),
        LinkKind::Grant,
        root,
    )
    .unwrap();
    for i in 1..depth {
        let holder = u8::try_from(i + 1).unwrap();
        let spec = LinkSpec::new(
            key(holder).public_key(),
            agent(i + 1),
            vec![Capability::new("files/reports/*", ["read"]).unwrap()],
            NOW - 60_000,
            NOW + 600_000,
        )
        .unwrap()
        .max_depth(15 - u32::try_from(i).unwrap())
        .require_seal(sealed);
        c = c.delegate(&key(holder - 1), spec).unwrap();
        if sealed {
            c.seal_leaf(&coordinator);
        }
    }
    c
}

/// A verifier with the verified-link cache on or off (`cache`) and the cache of holder keys
/// on or off (`keys`; a cold chain of agents seen before has its keys there).
fn verifier_with(cache: bool, keys: bool) -> Verifier {
    let trust = TrustBundle::new()
        .with_key(key(200).public_key(), 0, u64::MAX)
        .unwrap();
    let config = VerifierConfig {
        link_cache_capacity: if cache { 1024 } else { 0 },
        key_cache_capacity: if keys { 1024 } else { 0 },
        replay_cache_capacity: 1 << 24,
        ..VerifierConfig::default()
    };
    Verifier::new(trust, config, Arc::new(ManualClock::new(NOW)))
}

fn verifier(cache: bool) -> Verifier {
    verifier_with(cache, true)
}

fn floor(c: &mut Criterion) {
    let k = key(1);
    let pk = k.public_key();
    let msg = [7u8; 200];
    let sig = k.sign(SigningDomain::Link, &msg);
    c.bench_function("ed25519/verify_strict", |b| {
        b.iter(|| assert!(pk.verify(SigningDomain::Link, black_box(&msg), black_box(&sig))))
    });
    let pk_bytes = *pk.as_bytes();
    c.bench_function("ed25519/decompress_public_key", |b| {
        b.iter(|| ed25519_dalek::VerifyingKey::from_bytes(black_box(&pk_bytes)).unwrap())
    });
    // The batch floor: four signatures by four keys in one multiscalar multiplication.
    let keys: Vec<ed25519_dalek::SigningKey> = (0..4u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
        .collect();
    let msgs: Vec<[u8; 200]> = (0..4u8).map(|i| [i; 200]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = keys
        .iter()
        .zip(&msgs)
        .map(|(k, m)| ed25519_dalek::Signer::sign(k, m))
        .collect();
    let vks: Vec<ed25519_dalek::VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    c.bench_function("ed25519/verify_batch4", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &vks).unwrap())
    });
    // Two signatures (a request signature and an invocation proof, say) in one batch.
    c.bench_function("ed25519/verify_batch2", |b| {
        b.iter(|| {
            ed25519_dalek::verify_batch(black_box(&refs[..2]), &sigs[..2], &vks[..2]).unwrap()
        })
    });
}

fn chains(c: &mut Criterion) {
    for depth in [1, 4, 8] {
        let ch = chain(depth, false);
        let cold = verifier(false);
        c.bench_function(&format!("verify_chain/depth{depth}/cold"), |b| {
            b.iter(|| cold.verify_chain(black_box(&ch), &NoRevocations).unwrap())
        });
        let first = verifier_with(false, false);
        c.bench_function(&format!("verify_chain/depth{depth}/cold_new_keys"), |b| {
            b.iter(|| first.verify_chain(black_box(&ch), &NoRevocations).unwrap())
        });
        let warm = verifier(true);
        warm.verify_chain(&ch, &NoRevocations).unwrap();
        c.bench_function(&format!("verify_chain/depth{depth}/cached"), |b| {
            b.iter(|| warm.verify_chain(black_box(&ch), &NoRevocations).unwrap())
        });
    }
    let sealed = chain(4, true);
    let cold = verifier(false);
    c.bench_function("verify_chain/depth4_sealed/cold", |b| {
        b.iter(|| {
            cold.verify_chain(black_box(&sealed), &NoRevocations)
                .unwrap()
        })
    });
}

fn invocations(c: &mut Criterion) {
    let call = Call::new("read", "files/reports/q3.pdf").with_arg("format", "pdf");
    for (depth, sealed) in [(1, false), (4, false), (8, false), (4, true)] {
        let ch = chain(depth, sealed);
        let holder = key(u8::try_from(depth).unwrap());
        let fresh = || {
            let inv = Invocation::sign(&holder, &ch, "files", call.clone(), NOW).unwrap();
            inv.encode()
        };
        let label = if sealed {
            format!("depth{depth}_sealed")
        } else {
            format!("depth{depth}")
        };
        for (cached, keys, kind) in [
            (false, true, "cold"),
            (false, false, "cold_new_keys"),
            (true, true, "cached"),
        ] {
            let v = verifier_with(cached, keys);
            v.verify_chain(&ch, &NoRevocations).unwrap();
            let bytes = ch.encode();
            let name = format!("chain_and_invocation/{label}/{kind}");
            // Decode both from bytes, verify the chain and the proof: what a tool does.
            c.bench_function(&name, |b| {
                b.iter_batched(
                    fresh,
                    |inv| {
                        let chain = v.decode_chain(&bytes).unwrap();
                        let inv = v.decode_invocation(&inv).unwrap();
                        v.verify_invocation(&chain, &inv, "files", &call, &NoRevocations)
                            .unwrap();
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
}

fn attenuation(c: &mut Criterion) {
    let parent = vec![
        Capability::new("files/*", ["read", "write"])
            .unwrap()
            .with_constraint("size", Condition::range(0, 1 << 20).unwrap()),
    ];
    let child = vec![
        Capability::new("files/reports/*", ["read"])
            .unwrap()
            .with_constraint("size", Condition::range(0, 1024).unwrap())
            .with_constraint(
                "format",
                Condition::one_of(["pdf".into(), "csv".into()]).unwrap(),
            ),
    ];
    c.bench_function("attenuate/is_attenuation", |b| {
        b.iter(|| assert!(is_attenuation(black_box(&child), black_box(&parent))))
    });
    let base = chain(3, false);
    let spec = LinkSpec::new(
        key(9).public_key(),
        agent(9),
        vec![Capability::new("files/reports/q3.pdf", ["read"]).unwrap()],
        NOW,
        NOW + 60_000,
    )
    .unwrap();
    c.bench_function("attenuate/delegate_depth3_to_4", |b| {
        b.iter(|| base.delegate(&key(3), black_box(spec.clone())).unwrap())
    });
}

fn codec(c: &mut Criterion) {
    for depth in [1, 4, 8] {
        let ch = chain(depth, false);
        let bytes = ch.encode();
        c.bench_function(&format!("codec/encode/depth{depth}"), |b| {
            b.iter(|| black_box(&ch).encode())
        });
        c.bench_function(&format!("codec/decode/depth{depth}"), |b| {
            b.iter(|| Chain::decode(black_box(&bytes), &Limits::default()).unwrap())
        });
    }
}

/// A replay window at steady state, as a coordinator at 6,000 requests/s holds one: 90 s
/// of nonces in generations of 11.25 s (540,000 held). Each iteration checks a fresh
/// nonce against every generation and records it, a millisecond later than the last.
fn replay_window(c: &mut Criterion) {
    const SPAN_MS: u64 = 11_250;
    const HORIZON_MS: u64 = 8 * SPAN_MS;
    let mut w = NonceWindow::<()>::new(SPAN_MS);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut now = 0u64;
    for _ in 0..540_000 {
        now += 1;
        let f = next();
        if !w.seen(f, now) {
            w.insert(f, now / 6 + HORIZON_MS, now / 6);
        }
    }
    let mut now = now / 6;
    let mut tick = 0u32;
    c.bench_function("replay/window_540k/check_and_insert", |b| {
        b.iter(|| {
            tick += 1;
            if tick.is_multiple_of(6) {
                now += 1;
            }
            w.expire(now);
            let f = next();
            let seen = w.seen(black_box(f), now);
            if !seen {
                w.insert(f, now + HORIZON_MS, now);
            }
            seen
        })
    });
}

criterion_group!(
    benches,
    floor,
    chains,
    invocations,
    attenuation,
    codec,
    replay_window
);
criterion_main!(benches);
