//! One policy decision against a realistic set of 50 policies: nine teams, each with a
//! grant permit (by team label and resource prefix, with obligations), a delegation
//! permit, an approval requirement for production, a forbid on writes outside working
//! hours and a forbid on secrets, and five policies for everyone; plus the cost of loading and validating the set.
//!
//! Run with `cargo bench -p mandate-policy --bench decide`. BENCHMARKS.md records results.

#![expect(clippy::unwrap_used, reason = "benchmark setup")]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mandate_core::Capability;
use mandate_policy::{Action, AgentInfo, PolicySet, Request, Target, TaskInfo};

const TEAMS: [&str; 9] = [
    "payments", "search", "billing", "support", "growth", "infra", "data", "mobile", "web",
];

/// Five policies for everyone.
const GLOBAL: &str = r#"
@id("invoke") permit (principal, action == Mandate::Action::"Invoke", resource);
@id("high-risk") forbid (principal, action, resource) when { context.risk_score >= 80 };
@id("break-glass") @max_ttl("1h")
permit (principal is Mandate::Human, action == Mandate::Action::"BreakGlass", resource)
when { context.ticket like "INC-*" };
@id("approve") permit (principal is Mandate::Human, action == Mandate::Action::"Approve", resource);
@id("register") permit (principal is Mandate::Agent, action == Mandate::Action::"RegisterAgent", resource is Mandate::Agent)
when { resource has parent && resource.parent == principal };
"#;

fn fifty_policies() -> String {
    let mut out = GLOBAL.to_owned();
    for t in TEAMS {
        out.push_str(&format!(
            r#"
@id("{t}.grant") @max_ttl("30m") @max_depth("2")
permit (principal is Mandate::Agent, action in [Mandate::Action::"RequestGrant", Mandate::Action::"Renew"], resource)
when {{ principal.hasTag("team") && principal.getTag("team") == "{t}" && resource.name like "{t}/*"
        && ["read", "list", "write"].contains(context.operation) && context.ttl_ms <= 3600000 }};
@id("{t}.delegate") @max_ttl("10m")
permit (principal is Mandate::Agent, action == Mandate::Action::"Delegate", resource)
when {{ principal.hasTag("team") && principal.getTag("team") == "{t}" && context.holder has parent && context.holder.parent == principal }};
@id("{t}.prod-approval") @require_approval
permit (principal is Mandate::Agent, action == Mandate::Action::"RequestGrant", resource)
when {{ principal.hasTag("team") && principal.getTag("team") == "{t}" && resource.name like "{t}/prod/*" }};
@id("{t}.office-hours")
forbid (principal is Mandate::Agent, action, resource)
when {{ principal.hasTag("team") && principal.getTag("team") == "{t}" && context has operation
        && context.operation == "write" && (context.hour_utc < 6 || context.hour_utc > 20) }};
@id("{t}.no-secrets") @reason("secrets are handed out by break-glass only")
forbid (principal is Mandate::Agent, action in [Mandate::Action::"RequestGrant", Mandate::Action::"Delegate"], resource)
when {{ resource.name like "{t}/secrets*" }};
"#
        ));
    }
    out
}

fn bench(c: &mut Criterion) {
    let text = fifty_policies();
    let sources = [("teams.cedar".to_owned(), text)];
    let set = PolicySet::from_sources(&sources).unwrap();
    assert_eq!(set.policies().len(), 50);

    let planner = AgentInfo {
        id: "spiffe://acme.example/planner/payments".into(),
        role: "planner".into(),
        owner: "payments-oncall".into(),
        labels: BTreeMap::from([("team".into(), "payments".into())]),
        parent: None,
    };
    let fields = BTreeMap::from([("ticket".to_owned(), "CHG-1234".to_owned())]);
    let task = TaskInfo {
        id: "00112233445566778899aabbccddeeff",
        requester: &planner.id,
        intent: "reconcile yesterday's ledger",
        fields: &fields,
    };
    let one = vec![Capability::new("payments/ledger/*", ["read"]).unwrap()];
    let four = vec![
        Capability::new("payments/ledger/*", ["read", "list"]).unwrap(),
        Capability::new("payments/reports/*", ["read", "write"]).unwrap(),
    ];
    let grant = |caps| {
        let mut r = Request::new(
            Action::RequestGrant,
            &planner,
            Target::Capabilities(caps),
            1_800_000_000_000,
        );
        r.task = Some(task);
        r.ttl_ms = 600_000;
        r.max_depth = 2;
        r
    };
    let r1 = grant(&one);
    let d = set.decide(&r1);
    assert!(d.allowed, "{}", d.reason);
    let r4 = grant(&four);
    assert!(set.decide(&r4).allowed);

    let tool = AgentInfo {
        id: "spiffe://acme.example/tool/ledger".into(),
        role: "tool".into(),
        ..AgentInfo::default()
    };
    let agents = [tool.clone()];
    let mut invoke = Request::new(
        Action::Invoke,
        &planner,
        Target::Call {
            operation: "read",
            resource: "payments/ledger/2026-11-28.csv",
        },
        1_800_000_000_000,
    );
    invoke.task = Some(task);
    invoke.tool = Some(&tool.id);
    invoke.agents = &agents;
    assert!(set.decide(&invoke).allowed);

    let mut g = c.benchmark_group("policy");
    g.bench_function("grant_1_pair_50_policies", |b| {
        b.iter(|| black_box(set.decide(black_box(&r1))))
    });
    g.bench_function("grant_4_pairs_50_policies", |b| {
        b.iter(|| black_box(set.decide(black_box(&r4))))
    });
    g.bench_function("invoke_50_policies", |b| {
        b.iter(|| black_box(set.decide(black_box(&invoke))))
    });
    // The fixed cost of a decision: the shipped default set (a handful of policies).
    let default = PolicySet::default_set().unwrap();
    assert!(default.decide(&invoke).allowed);
    g.bench_function("invoke_default_set", |b| {
        b.iter(|| black_box(default.decide(black_box(&invoke))))
    });
    g.sample_size(10);
    g.bench_function("load_and_validate_50_policies", |b| {
        b.iter(|| black_box(PolicySet::from_sources(black_box(&sources)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
