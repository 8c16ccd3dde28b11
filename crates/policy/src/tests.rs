//! Loading and decision tests.

use std::collections::BTreeMap;

use mandate_core::Capability;

use crate::{Action, AgentInfo, LoadError, PolicySet, Request, Target, TaskInfo};

fn agent(id: &str, role: &str) -> AgentInfo {
    AgentInfo {
        id: format!("spiffe://example.org/{id}"),
        role: role.to_owned(),
        owner: "team-a".to_owned(),
        labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        parent: None,
    }
}

fn caps(list: &[(&str, &[&str])]) -> Vec<Capability> {
    list.iter()
        .map(|(r, a)| Capability::new(r, a.iter().copied()).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn set(text: &str) -> PolicySet {
    PolicySet::from_sources(&[("test.cedar".to_owned(), text.to_owned())])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn problems(sources: &[(&str, &str)]) -> Vec<String> {
    let sources: Vec<(String, String)> = sources
        .iter()
        .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
        .collect();
    match PolicySet::from_sources(&sources) {
        Err(LoadError::Invalid { problems }) => problems,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

static FIELDS: BTreeMap<String, String> = BTreeMap::new();

fn task() -> TaskInfo<'static> {
    TaskInfo {
        id: "00112233445566778899aabbccddeeff",
        requester: "spiffe://example.org/planner",
        intent: "summarise reports",
        fields: &FIELDS,
    }
}

fn grant<'a>(p: &'a AgentInfo, c: &'a [Capability]) -> Request<'a> {
    let mut r = Request::new(
        Action::RequestGrant,
        p,
        Target::Capabilities(c),
        1_700_000_000_000,
    );
    r.task = Some(task());
    r.ttl_ms = 600_000;
    r.max_depth = 2;
    r
}

#[test]
fn default_set_grants_with_obligations() {
    let s = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
    assert!(s.hash().starts_with("sha256:"));
    let planner = agent("planner", "planner");
    let c = caps(&[("docs/*", &["read", "list"])]);
    let d = s.decide(&grant(&planner, &c));
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.policies, vec!["default.grant".to_owned()]);
    assert_eq!(d.obligations.max_ttl_ms, Some(900_000));
    assert_eq!(d.obligations.max_depth, Some(3));
    assert_eq!(d.policy_hash, s.hash());

    let tool = agent("tool", "tool");
    let d = s.decide(&grant(&tool, &c));
    assert!(!d.allowed);
    assert!(
        d.reason.contains("no policy permits RequestGrant"),
        "{}",
        d.reason
    );
    assert!(d.policies.is_empty());
}

#[test]
fn risk_signals_reach_policy() {
    let s = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
    let planner = agent("planner", "planner");
    let c = caps(&[("docs/*", &["read"])]);
    let high = BTreeMap::from([("risk_score".to_owned(), "85".to_owned())]);
    let mut r = grant(&planner, &c);
    r.signals = &high;
    let d = s.decide(&r);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["default.high-risk".to_owned()]);
    assert!(
        d.reason.contains("risk score of 80 or more"),
        "{}",
        d.reason
    );
    for bad in ["-1", "101", "high", ""] {
        let signals = BTreeMap::from([("risk_score".to_owned(), bad.to_owned())]);
        let mut r = grant(&planner, &c);
        r.signals = &signals;
        let d = s.decide(&r);
        assert!(!d.allowed, "{bad}");
        assert!(d.reason.contains("risk_score"), "{}", d.reason);
    }
}

#[test]
fn every_pair_must_be_permitted() {
    let s = set(r#"
        @id("read-docs") @max_ttl("10m")
        permit (principal, action == Mandate::Action::"RequestGrant", resource)
        when { resource.name like "docs/*" && context.operation == "read" };
        @id("list-all") @max_ttl("5m") @max_depth("1")
        permit (principal, action == Mandate::Action::"RequestGrant", resource)
        when { context.operation == "list" };
    "#);
    let p = agent("planner", "planner");
    let ok = caps(&[("docs/a/*", &["read"]), ("logs/*", &["list"])]);
    let d = s.decide(&grant(&p, &ok));
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(
        d.policies,
        vec!["list-all".to_owned(), "read-docs".to_owned()]
    );
    assert_eq!(d.obligations.max_ttl_ms, Some(300_000), "the tightest wins");
    assert_eq!(d.obligations.max_depth, Some(1));
    // One pair outside: the whole request is denied.
    let bad = caps(&[("docs/a/*", &["read", "write"])]);
    let d = s.decide(&grant(&p, &bad));
    assert!(!d.allowed);
    assert!(d.reason.contains("`write` on `docs/a/*`"), "{}", d.reason);
    // A wider wildcard is not matched by a narrower permit.
    for wide in ["*", "doc*", "docs*"] {
        let d = s.decide(&grant(&p, &caps(&[(wide, &["read"])])));
        assert!(!d.allowed, "{wide}");
    }
}

#[test]
fn evaluation_errors_deny_even_in_forbids() {
    // The forbid reads the principal's parent, which is not supplied: Cedar alone skips
    // the erroring forbid and the permit would allow.
    let s = set(r#"
        @id("all") permit (principal, action, resource);
        @id("no-interns-children") forbid (principal is Mandate::Agent, action, resource)
        when { principal has parent && principal.parent.role == "intern" };
    "#);
    let mut p = agent("worker", "worker");
    p.parent = Some("spiffe://example.org/planner".to_owned());
    let c = caps(&[("docs/*", &["read"])]);
    let d = s.decide(&grant(&p, &c));
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["no-interns-children".to_owned()]);
    assert!(d.reason.contains("could not be evaluated"), "{}", d.reason);
    // With the parent supplied the forbid evaluates (and does not match).
    let parent = agent("planner", "planner");
    let agents = [parent];
    let mut r = grant(&p, &c);
    r.agents = &agents;
    assert!(s.decide(&r).allowed);
}

#[test]
fn labels_and_intent_fields_are_tags() {
    let s = set(r#"
        @id("payments-with-ticket")
        permit (principal is Mandate::Agent, action == Mandate::Action::"RequestGrant", resource)
        when {
          principal.hasTag("team") && principal.getTag("team") == "payments" &&
          context.task.hasTag("ticket") && context.task.getTag("ticket") like "CHG-*"
        };
    "#);
    let p = agent("planner", "planner");
    let c = caps(&[("db/*", &["read"])]);
    assert!(!s.decide(&grant(&p, &c)).allowed, "no ticket");
    let fields = BTreeMap::from([("ticket".to_owned(), "CHG-42".to_owned())]);
    let mut r = grant(&p, &c);
    r.task = Some(TaskInfo {
        fields: &fields,
        ..task()
    });
    assert!(s.decide(&r).allowed);
}

#[test]
fn break_glass_is_for_humans() {
    let s = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
    let alice = agent("human/alice", "human");
    let c = caps(&[("db/*", &["*"])]);
    let mut r = Request::new(Action::BreakGlass, &alice, Target::Capabilities(&c), 0);
    r.task = Some(task());
    r.ttl_ms = 1_800_000;
    r.reason = "database down";
    r.ticket = "INC-7";
    let d = s.decide(&r);
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.obligations.max_ttl_ms, Some(3_600_000));
    r.ticket = "";
    assert!(!s.decide(&r).allowed, "a ticket is required");
    // An agent principal does not fit the action at all.
    let bot = agent("bot", "planner");
    r.principal = &bot;
    r.ticket = "INC-7";
    let d = s.decide(&r);
    assert!(!d.allowed);
    assert!(d.reason.contains("schema"), "{}", d.reason);
}

#[test]
fn invoke_and_approve() {
    let s = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
    let worker = agent("worker", "worker");
    let tool = agent("tool", "tool");
    let agents = [tool.clone()];
    let mut r = Request::new(
        Action::Invoke,
        &worker,
        Target::Call {
            operation: "read",
            resource: "docs/a.txt",
        },
        0,
    );
    r.task = Some(task());
    r.tool = Some(&tool.id);
    r.agents = &agents;
    assert!(s.decide(&r).allowed);

    let alice = agent("human/alice", "human");
    let requester = agent("planner", "planner");
    let agents = [requester.clone()];
    let mut r = Request::new(Action::Approve, &alice, Target::Task, 0);
    r.task = Some(task());
    r.requester = Some(&requester.id);
    r.agents = &agents;
    let d = s.decide(&r);
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.policies, vec!["default.approve".to_owned()]);
    let worker_approver = agent("w", "worker");
    r.principal = &worker_approver;
    assert!(!s.decide(&r).allowed);
}

#[test]
fn registration() {
    let s = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
    let planner = agent("planner", "planner");
    let mut w = agent("planner/w1", "worker");
    w.parent = Some(planner.id.clone());
    let r = Request::new(Action::RegisterAgent, &planner, Target::Agent(&w), 0);
    assert!(s.decide(&r).allowed);
    let other = agent("other", "planner");
    let r = Request::new(Action::RegisterAgent, &other, Target::Agent(&w), 0);
    assert!(!s.decide(&r).allowed);
}

#[test]
fn invalid_sets_are_refused_with_every_problem() {
    let p = problems(&[
        (
            "a.cedar",
            "permit (principal, action, resource)\nwhen { true }",
        ),
        (
            "b.cedar",
            "@id(\"x\") @max_tll(\"1h\") permit (principal, action, resource);\n\
             @id(\"x\") permit (principal, action, resource);\n\
             @max_ttl(\"1h\") forbid (principal, action, resource) when { context.risk_score > 5 };",
        ),
    ]);
    let all = p.join("\n");
    assert!(all.contains("a.cedar:2:"), "{all}");
    assert!(all.contains("unknown annotation `@max_tll`"), "{all}");
    assert!(all.contains("policy id `x` is already used"), "{all}");
    assert!(all.contains("only a permit can carry one"), "{all}");

    let p = problems(&[(
        "c.cedar",
        "permit (principal is Mandate::Agent, action == Mandate::Action::\"RequestGrant\", resource)\n  when { principal.rolee == \"planner\" };",
    )]);
    assert!(p[0].starts_with("c.cedar:2:"), "{p:?}");
    assert!(p[0].contains("rolee"), "{p:?}");

    // A condition that can never hold is refused (a warning in Cedar).
    let p = problems(&[(
        "d.cedar",
        "forbid (principal is Mandate::Human, action == Mandate::Action::\"Delegate\", resource);",
    )]);
    assert!(p[0].contains("d.cedar"), "{p:?}");

    let p = problems(&[("e.cedar", "// nothing here\n")]);
    assert!(p[0].contains("holds no policy"), "{p:?}");
    let p = problems(&[(
        "f.cedar",
        "permit (principal == ?principal, action, resource);",
    )]);
    assert!(p[0].contains("templates"), "{p:?}");
    let p = problems(&[(
        "g.cedar",
        "@max_depth(\"20\") permit (principal, action, resource);",
    )]);
    assert!(p[0].contains("limit of 15"), "{p:?}");
    // An obligation on a permit whose actions never apply it is a mistake.
    let p = problems(&[(
        "h.cedar",
        "@max_ttl(\"1h\") permit (principal, action == Mandate::Action::\"Invoke\", resource);",
    )]);
    assert!(p[0].contains("would have no effect"), "{p:?}");
    let p = problems(&[(
        "i.cedar",
        "@require_approval permit (principal is Mandate::Agent, action == Mandate::Action::\"Delegate\", resource);",
    )]);
    assert!(p[0].contains("RequestGrant only"), "{p:?}");
}

#[test]
fn ids_hash_and_dirs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("b.cedar"),
        "permit (principal, action == Mandate::Action::\"Invoke\", resource);\n@id(\"named\") permit (principal, action == Mandate::Action::\"Approve\", resource);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap_or_else(|e| panic!("{e}"));
    let s = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = s.policies().into_iter().map(|p| p.0).collect();
    assert_eq!(ids, vec!["b:1".to_owned(), "named".to_owned()]);
    assert_eq!(s.files(), ["b.cedar".to_owned()]);
    let again = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.hash(), again.hash());
    std::fs::write(
        dir.path().join("a.cedar"),
        "forbid (principal, action, resource) when { context.risk_score > 90 };",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let changed = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(s.hash(), changed.hash());

    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        PolicySet::load_dir(empty.path()),
        Err(LoadError::Invalid { .. })
    ));
    assert!(matches!(
        PolicySet::load_dir(&empty.path().join("missing")),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn example_sets_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let team = PolicySet::load_dir(&root.join("team")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        team.policies()
            .iter()
            .any(|p| p.0 == "production.approval" && p.2.require_approval)
    );
    match PolicySet::load_dir(&root.join("invalid")) {
        Err(LoadError::Invalid { problems }) => {
            assert!(problems[0].starts_with("typo.cedar:8:"), "{problems:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
