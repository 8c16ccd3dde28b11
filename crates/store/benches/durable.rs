//! The cost of a durable write: one delegation-sized change (a link record with its
//! indexes, a nonce and an audit record) committed and flushed, alone and in groups that
//! share one flush (what the server's group commit does under concurrency).
//!
//! Run with `cargo bench -p mandate-store --bench durable`.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mandate_core::{Digest, LinkId, TaskId};
use mandate_store::{AuditEvent, Change, LinkRecord, Severity, SledStore, Store};

static NEXT: AtomicU64 = AtomicU64::new(1);

fn change() -> Change {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    let link = LinkId::from_bytes(id);
    Change {
        links: vec![LinkRecord {
            id: link,
            task: TaskId::from_bytes([7; 16]),
            parent: Some(LinkId::from_bytes([1; 16])),
            digest: Digest::of(&[&id]),
            holder: "spiffe://acme.example/agent/worker-a".into(),
            issuer: "spiffe://acme.example/agent/planner".into(),
            encoded: vec![0x5a; 340],
            expires_at_ms: 1_900_000_000_000,
            created_ms: 1_800_000_000_000,
            max_uses: 0,
        }],
        nonces: vec![(id, 1_900_000_000_000)],
        audit: vec![AuditEvent {
            time_ms: 1_800_000_000_000,
            actor: "spiffe://acme.example/agent/planner".into(),
            action: "delegation.sealed".into(),
            task: Some(TaskId::from_bytes([7; 16])),
            links: vec![link.to_string()],
            decision: "allow".into(),
            reason: "delegation narrows its parent".into(),
            policies: vec!["builtin.delegation-bounded".into()],
            policy_hash: "builtin-v1".into(),
            severity: Severity::Info,
            detail: BTreeMap::new(),
        }],
        ..Change::default()
    }
}

fn durable(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    c.bench_function("commit_only", |b| {
        b.iter(|| store.commit(change()).unwrap())
    });
    let mut group = c.benchmark_group("commit_then_flush");
    for n in [1u64, 8, 32, 128] {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    store.commit(change()).unwrap();
                }
                store.flush().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = durable
}
criterion_main!(benches);
