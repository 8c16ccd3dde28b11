//! Cedar policy end to end, with the sets in `examples/policies/`: forbids, obligations,
//! approvals, drift on reload, break-glass, online re-checks and invalid sets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mandate_core::{
    Call, Chain, Clock, Invocation, LinkKind, LinkSpec, ManualClock, SigningKey, SystemClock,
};
use mandate_proto::v1 as pb;
use mandate_sdk::Client;

use crate::harness::{Harness, cap, cap_pb, decode};

const DOMAIN: &str = "spiffe://mandate.local";
const TOOL: &str = "spiffe://mandate.local/tool/files";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

/// Copies every file of `examples/policies/<set>` into `dir`.
pub(crate) fn copy_set(set: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(examples().join(set)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
}

struct Team {
    h: Harness,
    policy_dir: PathBuf,
    planner: Client,
    planner_key: SigningKey,
    human: Client,
    human_key: SigningKey,
    tool: Client,
}

/// A coordinator running `examples/policies/team`, with a planner, a person and a tool.
async fn team() -> Team {
    team_configured(|_| {}).await
}

/// [`team`] with `edit` applied to the configuration.
async fn team_configured(edit: impl FnOnce(&mut mandate_server::Config)) -> Team {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    copy_set("team", &policy_dir);
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let pd = policy_dir.clone();
    let h = Harness::start_configured(dir, clock, move |c| {
        c.policy_dir = Some(pd);
        edit(c);
    })
    .await;
    let mut admin = h.admin.clone();
    let (planner_key, planner) = h
        .register(&mut admin, &format!("{DOMAIN}/planner"), "planner", "")
        .await;
    let (human_key, human) = h
        .register(&mut admin, &format!("{DOMAIN}/human/alice"), "human", "")
        .await;
    let (_, tool) = h.register(&mut admin, TOOL, "tool", "").await;
    Team {
        h,
        policy_dir,
        planner,
        planner_key,
        human,
        human_key,
        tool,
    }
}

fn start(caps: Vec<mandate_proto::token::Capability>, ttl_ms: u64) -> pb::StartTaskRequest {
    pb::StartTaskRequest {
        intent: Some(pb::Intent {
            text: "policy test".into(),
            ..Default::default()
        }),
        capabilities: caps,
        ttl_ms,
        max_depth: 2,
        ..Default::default()
    }
}

async fn audit(h: &Harness, action: &str) -> Vec<pb::AuditRecord> {
    let mut admin = h.admin.clone();
    admin
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                action_prefix: action.into(),
                ..Default::default()
            }),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .records
}

#[expect(clippy::too_many_arguments, reason = "one online check, spelt out")]
async fn invoke(
    tool: &mut Client,
    holder: &SigningKey,
    chain: &Chain,
    action: &str,
    resource: &str,
    now: u64,
    risk: Option<&str>,
    refuse_break_glass: bool,
) -> pb::AuthorizeResponse {
    let inv = Invocation::sign(holder, chain, TOOL, Call::new(action, resource), now).unwrap();
    let mut context = std::collections::BTreeMap::new();
    if let Some(r) = risk {
        context.insert("risk_score".to_owned(), r.to_owned());
    }
    tool.authorize(pb::AuthorizeRequest {
        chain: chain.encode(),
        invocation: inv.encode(),
        action: action.into(),
        resource: resource.into(),
        context,
        refuse_break_glass,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_forbid_denies_and_an_obligation_caps_the_ttl() {
    let mut t = team().await;
    let hash = t.h.policy_hash().await;
    let err = t
        .planner
        .start_task(start(vec![cap_pb("secrets/db", &["read"])], 60_000))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "POLICY_DENIED");
    assert!(err.to_string().contains("break-glass only"), "{err}");
    for wide in ["*", "s*", "secret*", "secrets/db/*"] {
        let err = t
            .planner
            .start_task(start(vec![cap_pb(wide, &["read"])], 60_000))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "POLICY_DENIED", "{wide}");
        // Refused by the guardrail itself, not only for lack of a permit.
        assert!(
            err.to_string().contains("break-glass only"),
            "{wide}: {err}"
        );
    }
    let denied = audit(&t.h, "grant.denied").await;
    assert_eq!(denied.len(), 5);
    assert_eq!(
        denied[0].policy_ids,
        vec!["guardrails.no-secrets".to_owned()]
    );
    assert_eq!(denied[0].policy_hash, hash);

    // Asking for two hours and five hops gets the 30 minutes and two hops of `team.grant`.
    let r = t
        .planner
        .start_task(pb::StartTaskRequest {
            max_depth: 5,
            ..start(vec![cap_pb("docs/*", &["read", "write"])], 2 * 3_600_000)
        })
        .await
        .unwrap();
    let task = r.task.unwrap();
    assert_eq!(task.deadline_ms - task.create_time_ms, 30 * 60_000);
    let d = r.decision.unwrap();
    assert_eq!(d.policy_ids, vec!["team.grant".to_owned()]);
    assert_eq!(d.policy_hash, hash);
    let root = decode(&r.chain);
    assert_eq!(root.root().body().max_depth, 2, "max_depth obligation");
    let issued = audit(&t.h, "grant.issued").await;
    assert_eq!(issued[0].policy_ids, vec!["team.grant".to_owned()]);

    // Tools get no grants: no policy permits them.
    let err = t
        .tool
        .start_task(start(vec![cap_pb("docs/*", &["read"])], 60_000))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "POLICY_DENIED");
}

#[tokio::test]
async fn approval_round_trip_with_self_approval_refused() {
    let mut t = team().await;
    let mut admin = t.h.admin.clone();
    let r = t
        .planner
        .start_task(start(vec![cap_pb("prod/db", &["read"])], 3_600_000))
        .await
        .unwrap();
    let task = r.task.unwrap();
    assert_eq!(task.state, pb::TaskState::PendingApproval as i32);
    assert!(r.chain.is_empty());
    let hash = r.approval_request_hash;
    assert_eq!(hash.len(), 64);
    assert_eq!(
        r.decision.unwrap().policy_ids,
        vec!["production.approval".to_owned()]
    );

    // The requester waits on a stream.
    let mut wait = t
        .planner
        .wait_approval(pb::WaitApprovalRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap();
    let first = wait.message().await.unwrap().unwrap();
    assert_eq!(
        first.approval.unwrap().state,
        pb::ApprovalState::Pending as i32
    );

    // A person sees it in the list.
    let listed = t
        .human
        .list_approvals(pb::ListApprovalsRequest {
            state: pb::ApprovalState::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.approvals.len(), 1);
    assert_eq!(listed.approvals[0].request_hash, hash);

    let approve = |hash: &str| pb::ApproveRequest {
        task_id: task.task_id.clone(),
        request_hash: hash.to_owned(),
        comment: "looks right".into(),
    };
    // Never the requester, nor one of its workers (even a `human` one would be refused).
    let err = t.planner.approve(approve(&hash)).await.unwrap_err();
    assert_eq!(err.reason(), "SELF_APPROVAL");
    let (_, mut worker) =
        t.h.register(
            &mut t.planner,
            &format!("{DOMAIN}/planner/w1"),
            "worker",
            &format!("{DOMAIN}/planner"),
        )
        .await;
    let err = worker.approve(approve(&hash)).await.unwrap_err();
    assert_eq!(err.reason(), "SELF_APPROVAL");
    // Policy decides who approves: a tool may not.
    let err = t.tool.approve(approve(&hash)).await.unwrap_err();
    assert_eq!(err.reason(), "POLICY_DENIED");
    // The approval is bound to the exact request.
    let err = t.human.approve(approve(&"0".repeat(64))).await.unwrap_err();
    assert_eq!(err.reason(), "REQUEST_HASH_MISMATCH");

    let done = t.human.approve(approve(&hash)).await.unwrap();
    assert_eq!(
        done.approval.unwrap().state,
        pb::ApprovalState::Approved as i32
    );
    let active = done.task.unwrap();
    assert_eq!(active.state, pb::TaskState::Active as i32);
    // The grant's own obligation (15 minutes) applies from the approval on.
    assert_eq!(active.deadline_ms - t.h.now(), 15 * 60_000);

    // The waiting requester receives the chain, which it holds.
    let last = loop {
        let m = wait.message().await.unwrap().unwrap();
        if m.approval.as_ref().unwrap().state != pb::ApprovalState::Pending as i32 {
            break m;
        }
    };
    assert!(wait.message().await.unwrap().is_none(), "the stream ends");
    let chain = decode(&last.chain);
    assert_eq!(chain.root().body().holder, t.planner_key.public_key());
    let polled = t
        .planner
        .get_approval(pb::GetApprovalRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(polled.chain, last.chain);
    // Decided once.
    let err = t.human.approve(approve(&hash)).await.unwrap_err();
    assert_eq!(err.reason(), "APPROVAL_DECIDED");
    let approved = audit(&t.h, "approval.approved").await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].actor, format!("{DOMAIN}/human/alice"));

    // A denial ends the task.
    let r = t
        .planner
        .start_task(start(vec![cap_pb("prod/db", &["write"])], 60_000))
        .await
        .unwrap();
    let denied = t
        .human
        .deny(pb::DenyRequest {
            task_id: r.task.unwrap().task_id,
            request_hash: r.approval_request_hash,
            comment: "not during the freeze".into(),
        })
        .await
        .unwrap();
    assert_eq!(denied.task.unwrap().state, pb::TaskState::Denied as i32);

    // A task ended while it waits takes its request with it: no approval revives it.
    let r = t
        .planner
        .start_task(start(vec![cap_pb("prod/db", &["read"])], 60_000))
        .await
        .unwrap();
    let id = r.task.unwrap().task_id;
    t.planner
        .fail_task(pb::FailTaskRequest {
            task_id: id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let err = t
        .human
        .approve(pb::ApproveRequest {
            task_id: id.clone(),
            request_hash: r.approval_request_hash,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "APPROVAL_DECIDED");
    let got = t
        .planner
        .get_approval(pb::GetApprovalRequest { task_id: id })
        .await
        .unwrap();
    assert_eq!(
        got.approval.unwrap().state,
        pb::ApprovalState::Denied as i32
    );
    assert_eq!(got.task.unwrap().state, pb::TaskState::Failed as i32);

    // A worker carries no label or owner its parent does not have (policy may rest on
    // them).
    let err = t
        .planner
        .register_agent(pb::RegisterAgentRequest {
            agent_id: format!("{DOMAIN}/planner/w-labelled"),
            public_key: SigningKey::generate()
                .unwrap()
                .public_key()
                .as_bytes()
                .to_vec(),
            role: "worker".into(),
            parent_agent_id: format!("{DOMAIN}/planner"),
            labels: [("team".to_owned(), "payments".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NOT_AUTHORIZED");
    // The owner is inherited: another owner is refused; none (or the parent's) is the
    // parent's.
    let worker = |name: &str, owner: &str| pb::RegisterAgentRequest {
        agent_id: format!("{DOMAIN}/planner/{name}"),
        public_key: SigningKey::generate()
            .unwrap()
            .public_key()
            .as_bytes()
            .to_vec(),
        role: "worker".into(),
        owner: owner.into(),
        parent_agent_id: format!("{DOMAIN}/planner"),
        ..Default::default()
    };
    let err = t
        .planner
        .register_agent(worker("w-other-owner", "someone-else"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NOT_AUTHORIZED");
    let parent_owner = admin
        .get_agent(pb::GetAgentRequest {
            agent_id: format!("{DOMAIN}/planner"),
        })
        .await
        .unwrap()
        .agent
        .unwrap()
        .owner;
    for (name, owner) in [
        ("w-no-owner", ""),
        ("w-parent-owner", parent_owner.as_str()),
    ] {
        let got = t
            .planner
            .register_agent(worker(name, owner))
            .await
            .unwrap()
            .agent
            .unwrap();
        assert_eq!(got.owner, parent_owner, "worker `{name}`");
    }
    let _ = admin
        .list_approvals(pb::ListApprovalsRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn pending_approvals_expire() {
    let mut t = team().await;
    let r = t
        .planner
        .start_task(start(vec![cap_pb("prod/db", &["read"])], 60_000))
        .await
        .unwrap();
    let id = r.task.unwrap().task_id;
    t.h.clock.advance(3_600_000);
    let err = t
        .human
        .approve(pb::ApproveRequest {
            task_id: id.clone(),
            request_hash: r.approval_request_hash,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "APPROVAL_EXPIRED");
    let got = t
        .planner
        .get_approval(pb::GetApprovalRequest { task_id: id })
        .await
        .unwrap();
    assert_eq!(
        got.approval.unwrap().state,
        pb::ApprovalState::Expired as i32
    );
    assert_eq!(got.task.unwrap().state, pb::TaskState::Expired as i32);
    assert!(got.chain.is_empty());
}

/// At most `pending_approvals_per_agent` requests wait per requester; a decision or an
/// expiry (found through the expiry index by the collection pass) frees a place.
#[tokio::test]
async fn pending_approvals_have_a_quota_per_requester_and_expire_by_index() {
    let mut t = team_configured(|c| c.quotas.pending_approvals_per_agent = 2).await;
    let ask = async |t: &mut Team| {
        t.planner
            .start_task(start(vec![cap_pb("prod/db", &["read"])], 60_000))
            .await
    };
    let first = ask(&mut t).await.unwrap();
    let second = ask(&mut t).await.unwrap();
    let err = ask(&mut t).await.unwrap_err();
    assert_eq!(err.reason(), "QUOTA_EXCEEDED");
    assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted));
    // Another requester is not affected.
    t.human
        .start_task(start(vec![cap_pb("prod/db", &["read"])], 60_000))
        .await
        .map(|_| ())
        .or_else(|e| {
            if e.reason() == "QUOTA_EXCEEDED" {
                Err(e)
            } else {
                Ok(())
            }
        })
        .unwrap();
    // A denial frees a place.
    t.human
        .deny(pb::DenyRequest {
            task_id: first.task.unwrap().task_id,
            request_hash: first.approval_request_hash,
            comment: "no".into(),
        })
        .await
        .unwrap();
    let third = ask(&mut t).await.unwrap();
    assert_eq!(ask(&mut t).await.unwrap_err().reason(), "QUOTA_EXCEEDED");
    // Past their expiry they no longer count, and collection expires them.
    t.h.clock.advance(3_600_000 + 1);
    ask(&mut t).await.unwrap();
    t.h.server().collect_garbage().await.unwrap();
    for r in [&second, &third] {
        let got = t
            .planner
            .get_approval(pb::GetApprovalRequest {
                task_id: r.task.clone().unwrap().task_id,
            })
            .await
            .unwrap();
        assert_eq!(got.task.unwrap().state, pb::TaskState::Expired as i32);
    }
    let expired = audit(&t.h, "approval.expired").await;
    assert_eq!(expired.len(), 2);
}

#[tokio::test]
async fn drift_revokes_the_now_forbidden_subtree_and_keeps_its_siblings() {
    drift_revokes_the_now_forbidden_subtree_and_keeps_its_siblings_body().await;
}

/// The body of [`drift_revokes_the_now_forbidden_subtree_and_keeps_its_siblings`], also run on etcd (`on_etcd`).
pub async fn drift_revokes_the_now_forbidden_subtree_and_keeps_its_siblings_body() {
    let mut t = team().await;
    let planner_id = format!("{DOMAIN}/planner");
    let (a_key, mut a) =
        t.h.register(
            &mut t.planner,
            &format!("{DOMAIN}/planner/a"),
            "worker",
            &planner_id,
        )
        .await;
    let (b_key, _) =
        t.h.register(
            &mut t.planner,
            &format!("{DOMAIN}/planner/b"),
            "worker",
            &planner_id,
        )
        .await;
    let (c_key, _) =
        t.h.register(
            &mut a,
            &format!("{DOMAIN}/planner/a/c"),
            "worker",
            &format!("{DOMAIN}/planner/a"),
        )
        .await;
    let r = t
        .planner
        .start_task(start(vec![cap_pb("docs/*", &["read", "write"])], 600_000))
        .await
        .unwrap();
    let root = decode(&r.chain);
    let now = t.h.now();
    let spec = |key: &SigningKey, id: &str, actions: &[&str], depth: u32| {
        LinkSpec::new(
            key.public_key(),
            id.parse().unwrap(),
            vec![cap("docs/*", actions)],
            now,
            now + 300_000,
        )
        .unwrap()
        .max_depth(depth)
        .require_seal(true)
    };
    // A may write (and delegates reading to C); B only reads.
    let chain_a = t
        .planner
        .delegate(
            &root,
            spec(
                &a_key,
                &format!("{DOMAIN}/planner/a"),
                &["read", "write"],
                1,
            ),
        )
        .await
        .unwrap();
    let chain_c = a
        .delegate(
            &chain_a,
            spec(&c_key, &format!("{DOMAIN}/planner/a/c"), &["read"], 0),
        )
        .await
        .unwrap();
    let chain_b = t
        .planner
        .delegate(
            &root,
            spec(&b_key, &format!("{DOMAIN}/planner/b"), &["read"], 0),
        )
        .await
        .unwrap();
    let before = t.h.policy_hash().await;

    copy_set("tighten", &t.policy_dir);
    let mut admin = t.h.admin.clone();
    let reloaded = admin
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap();
    assert_eq!(reloaded.previous_policy_hash, before);
    let after = reloaded.policy.unwrap().policy_hash;
    assert_ne!(after, before);
    // The root, A and B; C goes with A without a decision of its own.
    assert_eq!(reloaded.reevaluated_links, 3);
    let mut revoked = reloaded.revoked_link_ids.clone();
    revoked.sort();
    let mut expected = vec![
        chain_a.leaf().id().to_string(),
        chain_c.leaf().id().to_string(),
    ];
    expected.sort();
    assert_eq!(revoked, expected, "A and everything below it, nothing else");

    // The tool agrees online: A and C are refused, B and the root still work.
    let t0 = t.h.now();
    let r = invoke(
        &mut t.tool,
        &a_key,
        &chain_a,
        "read",
        "docs/x",
        t0,
        None,
        false,
    )
    .await;
    assert_eq!(r.reason, "REVOKED");
    let r = invoke(
        &mut t.tool,
        &c_key,
        &chain_c,
        "read",
        "docs/x",
        t0,
        None,
        false,
    )
    .await;
    assert_eq!(r.reason, "REVOKED");
    let r = invoke(
        &mut t.tool,
        &b_key,
        &chain_b,
        "read",
        "docs/x",
        t0,
        None,
        false,
    )
    .await;
    assert!(r.allowed, "{} {}", r.reason, r.detail);
    let r = invoke(
        &mut t.tool,
        &t.planner_key,
        &root,
        "write",
        "docs/x",
        t0,
        None,
        false,
    )
    .await;
    assert!(r.allowed, "{} {}", r.reason, r.detail);
    assert_eq!(r.policy_hash, after);

    // The audit log names the policy change.
    let drift = audit(&t.h, "policy.drift_revoked").await;
    assert_eq!(drift.len(), 1);
    assert!(
        drift[0].reason.contains("policy drift"),
        "{}",
        drift[0].reason
    );
    assert!(drift[0].reason.contains(&before) && drift[0].reason.contains(&after));
    assert_eq!(
        drift[0].policy_ids,
        vec!["tighten.no-delegated-writes".to_owned()]
    );
    assert_eq!(drift[0].link_ids.len(), 2);
    // The first start noted its set; the reload is a change, at high severity.
    let loaded = audit(&t.h, "policy.loaded").await;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].actor, "startup");
    assert_eq!(loaded[0].policy_hash, before);
    let reload = audit(&t.h, "policy.reloaded").await;
    assert_eq!(reload.len(), 1);
    assert_eq!(reload[0].severity, pb::AuditSeverity::High as i32);
    assert_eq!(reload[0].policy_hash, after);

    // And the new set holds for new delegations.
    let err = t
        .planner
        .delegate(
            &root,
            spec(&b_key, &format!("{DOMAIN}/planner/b"), &["write"], 0),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "POLICY_DENIED");
}

#[tokio::test]
async fn break_glass_is_for_people_never_delegated_and_tools_may_refuse_it() {
    let mut t = team().await;
    let req = |ticket: &str| pb::BreakGlassRequest {
        capabilities: vec![cap_pb("secrets/db", &["read"])],
        ttl_ms: 4 * 3_600_000,
        reason: "primary database is down".into(),
        ticket: ticket.into(),
        ..Default::default()
    };
    // Security teams follow high-severity records live: break-glass is announced there.
    let mut admin = t.h.admin.clone();
    let mut alerts = admin
        .watch_audit_log(pb::WatchAuditLogRequest {
            filter: Some(pb::AuditFilter {
                min_severity: pb::AuditSeverity::High as i32,
                action_prefix: "breakglass.".into(),
                ..Default::default()
            }),
            after_seq: 0,
        })
        .await
        .unwrap();
    let r = t.human.break_glass(req("INC-42")).await.unwrap();
    let alert = alerts.message().await.unwrap().unwrap().record.unwrap();
    assert_eq!(alert.action, "breakglass.granted");
    assert_eq!(alert.actor, format!("{DOMAIN}/human/alice"));
    assert_eq!(
        alert.detail.get("ticket").map(String::as_str),
        Some("INC-42")
    );
    let chain = decode(&r.chain);
    let root = chain.root().body();
    assert_eq!(root.kind, LinkKind::BreakGlass);
    assert_eq!(root.max_depth, 0);
    assert_eq!(
        root.expires_at_ms - root.not_before_ms,
        3_600_000,
        "capped at 1 h"
    );
    let granted = audit(&t.h, "breakglass.granted").await;
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].severity, pb::AuditSeverity::High as i32);
    assert_eq!(granted[0].policy_ids, vec!["team.break-glass".to_owned()]);

    // Policy wants an incident ticket.
    let err = t.human.break_glass(req("whatever")).await.unwrap_err();
    assert_eq!(err.reason(), "POLICY_DENIED");
    // Agents never get it.
    let err = t.planner.break_glass(req("INC-42")).await.unwrap_err();
    assert_eq!(err.reason(), "HUMANS_ONLY");
    assert_eq!(audit(&t.h, "breakglass.denied").await.len(), 2);

    // Never delegable.
    let now = t.h.now();
    let (w_key, _) =
        t.h.register(&mut t.h.admin.clone(), &format!("{DOMAIN}/w"), "worker", "")
            .await;
    let spec = LinkSpec::new(
        w_key.public_key(),
        format!("{DOMAIN}/w").parse().unwrap(),
        vec![cap("secrets/db", &["read"])],
        now,
        now + 60_000,
    )
    .unwrap()
    .require_seal(true);
    match chain.delegate(&t.human_key, spec) {
        Err(e) => assert!(e.to_string().contains("break-glass"), "{e}"),
        Ok(child) => {
            let err = t
                .human
                .delegate_raw(pb::DelegateRequest {
                    chain: child.encode(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "BREAK_GLASS_DELEGATED");
        }
    }

    // Tools decide whether they accept it.
    let r = invoke(
        &mut t.tool,
        &t.human_key,
        &chain,
        "read",
        "secrets/db",
        now,
        None,
        false,
    )
    .await;
    assert!(r.allowed, "{} {}", r.reason, r.detail);
    let r = invoke(
        &mut t.tool,
        &t.human_key,
        &chain,
        "read",
        "secrets/db",
        now,
        None,
        true,
    )
    .await;
    assert_eq!(r.reason, "BREAK_GLASS_REFUSED");
}

#[tokio::test]
async fn every_online_check_runs_the_invoke_policy() {
    let mut t = team().await;
    let r = t
        .planner
        .start_task(start(vec![cap_pb("docs/*", &["read"])], 60_000))
        .await
        .unwrap();
    let chain = decode(&r.chain);
    let now = t.h.now();
    let ok = invoke(
        &mut t.tool,
        &t.planner_key,
        &chain,
        "read",
        "docs/a",
        now,
        Some("10"),
        false,
    )
    .await;
    assert!(ok.allowed, "{} {}", ok.reason, ok.detail);
    assert_eq!(ok.policy_ids, vec!["team.invoke".to_owned()]);
    let risky = invoke(
        &mut t.tool,
        &t.planner_key,
        &chain,
        "read",
        "docs/a",
        now,
        Some("70"),
        false,
    )
    .await;
    assert!(!risky.allowed);
    assert_eq!(risky.reason, "POLICY_DENIED");
    assert!(
        risky.detail.contains("risk score of 50"),
        "{}",
        risky.detail
    );
    assert_eq!(risky.policy_ids, vec!["guardrails.risky-call".to_owned()]);
    let denied = audit(&t.h, "invocation.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0].policy_ids,
        vec!["guardrails.risky-call".to_owned()]
    );
    // Bad signals are bad input, not a silent zero.
    let bad = invoke(
        &mut t.tool,
        &t.planner_key,
        &chain,
        "read",
        "docs/a",
        now,
        Some("high"),
        false,
    )
    .await;
    assert_eq!(bad.reason, "POLICY_DENIED");
}

#[tokio::test]
async fn an_invalid_set_is_refused_and_the_old_one_keeps_working() {
    let mut t = team().await;
    let before = t.h.policy_hash().await;
    copy_set("invalid", &t.policy_dir);
    let mut admin = t.h.admin.clone();
    let err = admin
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "POLICY_INVALID");
    assert!(err.to_string().contains("typo.cedar:8:"), "{err}");
    assert_eq!(t.h.policy_hash().await, before);
    let refused = audit(&t.h, "policy.reload_refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].policy_hash, before);
    // The old set still decides.
    let r = t
        .planner
        .start_task(start(vec![cap_pb("docs/*", &["read"])], 60_000))
        .await
        .unwrap();
    assert_eq!(r.decision.unwrap().policy_hash, before);
    // Only admins reload.
    let err = t
        .planner
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NOT_AUTHORIZED");

    // A server does not start on an invalid set.
    let dir = tempfile::tempdir().unwrap();
    let bad = examples().join("invalid");
    let cfg = {
        let mut c = crate::harness::config(dir.path(), Arc::new(ManualClock::new(0)));
        c.policy_dir = Some(bad);
        c
    };
    let err = mandate_server::start(cfg).await.unwrap_err();
    assert!(err.to_string().contains("typo.cedar:8:"), "{err}");
}

#[tokio::test]
async fn a_policy_change_by_restart_is_checked_like_a_reload() {
    let mut t = team().await;
    let planner_id = format!("{DOMAIN}/planner");
    let (a_key, _) =
        t.h.register(
            &mut t.planner,
            &format!("{DOMAIN}/planner/a"),
            "worker",
            &planner_id,
        )
        .await;
    let r = t
        .planner
        .start_task(start(vec![cap_pb("docs/*", &["read", "write"])], 600_000))
        .await
        .unwrap();
    let root = decode(&r.chain);
    let now = t.h.now();
    let spec = LinkSpec::new(
        a_key.public_key(),
        format!("{DOMAIN}/planner/a").parse().unwrap(),
        vec![cap("docs/*", &["write"])],
        now,
        now + 300_000,
    )
    .unwrap()
    .require_seal(true);
    let chain_a = t.planner.delegate(&root, spec).await.unwrap();
    let before = t.h.policy_hash().await;

    // The directory changes while the coordinator is down.
    let Team {
        mut h, policy_dir, ..
    } = t;
    h.server.take().unwrap().shutdown().await.unwrap();
    copy_set("tighten", &policy_dir);
    let pd = policy_dir.clone();
    let h = Harness::start_configured(h.dir, h.clock, move |c| c.policy_dir = Some(pd)).await;
    let after = h.policy_hash().await;
    assert_ne!(after, before);
    let reload = audit(&h, "policy.reloaded").await;
    assert_eq!(reload.len(), 1);
    assert_eq!(reload[0].actor, "startup");
    assert_eq!(reload[0].severity, pb::AuditSeverity::High as i32);
    assert_eq!(reload[0].detail.get("previous_policy_hash"), Some(&before));
    let drift = audit(&h, "policy.drift_revoked").await;
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].link_ids, vec![chain_a.leaf().id().to_string()]);
    // A start with the same set changes nothing.
    let dir_clock = (h.dir, h.clock);
    let mut h2 = h.server;
    h2.take().unwrap().shutdown().await.unwrap();
    let pd = policy_dir.clone();
    let h =
        Harness::start_configured(dir_clock.0, dir_clock.1, move |c| c.policy_dir = Some(pd)).await;
    assert_eq!(audit(&h, "policy.reloaded").await.len(), 1);
    assert_eq!(audit(&h, "policy.loaded").await.len(), 1);
}

/// A reload decides again the registrations policy admitted: a worker the new set would not
/// let its parent register is disabled, with the workers below it and its links; agents an
/// admin registered, and the other workers, are untouched.
#[tokio::test]
async fn a_reload_disables_agents_whose_registration_the_new_set_refuses() {
    let mut t = team().await;
    let planner_id = format!("{DOMAIN}/planner");
    let b_id = format!("{DOMAIN}/planner/b");
    let c_id = format!("{DOMAIN}/planner/b/c");
    let (_, mut a) =
        t.h.register(
            &mut t.planner,
            &format!("{DOMAIN}/planner/a"),
            "worker",
            &planner_id,
        )
        .await;
    let (b_key, mut b) =
        t.h.register(&mut t.planner, &b_id, "worker", &planner_id)
            .await;
    let (_, mut c) = t.h.register(&mut b, &c_id, "worker", &b_id).await;
    let r = t
        .planner
        .start_task(start(vec![cap_pb("docs/*", &["read"])], 600_000))
        .await
        .unwrap();
    let root = decode(&r.chain);
    let now = t.h.now();
    let chain_b = t
        .planner
        .delegate(
            &root,
            LinkSpec::new(
                b_key.public_key(),
                b_id.parse().unwrap(),
                vec![cap("docs/*", &["read"])],
                now,
                now + 300_000,
            )
            .unwrap()
            .require_seal(true),
        )
        .await
        .unwrap();

    std::fs::write(
        t.policy_dir.join("no-b.cedar"),
        format!(
            "@id(\"test.no-b\")\nforbid (principal, action == Mandate::Action::\"RegisterAgent\", resource == Mandate::Agent::\"{b_id}\");\n"
        ),
    )
    .unwrap();
    let mut admin = t.h.admin.clone();
    let reloaded = admin
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap();
    assert_eq!(
        reloaded.revoked_link_ids,
        vec![chain_b.leaf().id().to_string()],
        "B's link, nothing else"
    );

    let status = |id: &str| {
        let mut admin = t.h.admin.clone();
        let id = id.to_owned();
        async move {
            admin
                .get_agent(pb::GetAgentRequest { agent_id: id })
                .await
                .unwrap()
                .agent
                .unwrap()
                .status
        }
    };
    assert_eq!(status(&b_id).await, pb::AgentStatus::Disabled as i32);
    assert_eq!(
        status(&c_id).await,
        pb::AgentStatus::Disabled as i32,
        "the worker below B"
    );
    assert_eq!(
        status(&format!("{DOMAIN}/planner/a")).await,
        pb::AgentStatus::Active as i32
    );
    assert_eq!(status(&planner_id).await, pb::AgentStatus::Active as i32);
    for client in [&mut b, &mut c] {
        let err = client
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "AGENT_DISABLED");
    }
    a.list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap();

    let disabled = audit(&t.h, "agent.disabled").await;
    assert_eq!(disabled.len(), 1, "one record for the refused registration");
    assert_eq!(disabled[0].detail["agent"], b_id);
    assert_eq!(disabled[0].policy_ids, vec!["test.no-b".to_owned()]);
    assert!(
        disabled[0].reason.contains("no longer allowed"),
        "{}",
        disabled[0].reason
    );
    let reload = audit(&t.h, "policy.reloaded").await;
    assert_eq!(
        reload[0].detail["disabled_agents"],
        format!("{b_id},{c_id}")
    );
}
