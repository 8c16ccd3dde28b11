//! The whole product flow: an admin registers a planner and a tool; the planner starts a
//! task, registers workers and delegates two levels deep; the tool authorises online; a
//! revocation cuts off a subtree (online and through the feed) while its sibling works;
//! completing the task cuts off everything; a restart keeps every record.

use std::time::Duration;

use mandate_core::{Call, Chain, Invocation, LinkSpec, SigningKey};
use mandate_proto::v1 as pb;
use mandate_sdk::Client;
use tokio_stream::StreamExt as _;

use crate::harness::*;

const PLANNER: &str = "spiffe://mandate.local/agents/planner";
const WORKER_A: &str = "spiffe://mandate.local/agents/worker-a";
const WORKER_B: &str = "spiffe://mandate.local/agents/worker-b";
const SUB: &str = "spiffe://mandate.local/agents/worker-a-sub";
const TOOL: &str = "spiffe://mandate.local/tools/files";

/// The tool asks whether `holder` may do `action` on `resource` under `chain`.
async fn authorize(
    tool: &mut Client,
    holder: &SigningKey,
    chain: &Chain,
    action: &str,
    resource: &str,
    now: u64,
) -> pb::AuthorizeResponse {
    let call = Call::new(action, resource);
    let inv = Invocation::sign(holder, chain, TOOL, call, now).unwrap();
    authorize_with(tool, chain, &inv, action, resource).await
}

async fn authorize_with(
    tool: &mut Client,
    chain: &Chain,
    inv: &Invocation,
    action: &str,
    resource: &str,
) -> pb::AuthorizeResponse {
    tool.authorize(pb::AuthorizeRequest {
        refuse_break_glass: false,
        chain: chain.encode(),
        invocation: inv.encode(),
        action: action.into(),
        resource: resource.into(),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn allowed(r: &pb::AuthorizeResponse) {
    assert!(
        r.allowed,
        "expected allowed, got {} ({})",
        r.reason, r.detail
    );
}

fn denied(r: &pb::AuthorizeResponse, reason: &str) {
    assert!(!r.allowed, "expected {reason}, got allowed");
    assert_eq!(r.reason, reason, "{}", r.detail);
}

fn spec(
    key: &SigningKey,
    id: &str,
    caps: Vec<mandate_core::Capability>,
    now: u64,
    ttl: u64,
    max_depth: u32,
) -> LinkSpec {
    LinkSpec::new(key.public_key(), id.parse().unwrap(), caps, now, now + ttl)
        .unwrap()
        .max_depth(max_depth)
        .require_seal(true)
}

/// Reads feed messages until `pred` holds for the accumulated revoked set.
async fn feed_until(
    feed: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
    set: &mut std::collections::HashSet<String>,
    pred: impl Fn(&std::collections::HashSet<String>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred(set) {
        let msg = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("feed timed out")
            .unwrap()
            .unwrap();
        match msg.event.unwrap() {
            pb::watch_revocations_response::Event::Snapshot(s) => {
                set.clear();
                set.extend(s.links.into_iter().map(|l| l.link_id));
            }
            pb::watch_revocations_response::Event::Batch(b) => {
                set.extend(b.links.into_iter().map(|l| l.link_id))
            }
            pb::watch_revocations_response::Event::Heartbeat(_)
            | pb::watch_revocations_response::Event::Trust(_) => {}
        }
    }
}

/// A task with three delegations: the planner's root, worker A (reports, read, one more
/// hop), worker B (data, read and write) and A's sub-worker (one file, one minute).
struct Delegated {
    h: Harness,
    planner: Client,
    planner_key: SigningKey,
    tool: Client,
    tool_key: SigningKey,
    worker_a: Client,
    a_key: SigningKey,
    b_key: SigningKey,
    sub_key: SigningKey,
    task_id: String,
    root: Chain,
    chain_a: Chain,
    chain_b: Chain,
    chain_sub: Chain,
    now: u64,
}

async fn delegated() -> Delegated {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (tool_key, tool) = h.register(&mut admin, TOOL, "tool", "").await;

    // The planner starts a task and receives the root chain.
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            intent: Some(pb::Intent {
                text: "summarise Q3 reports".into(),
                fields: [("ticket".to_string(), "OPS-42".to_string())].into(),
            }),
            capabilities: vec![cap_pb("files/*", &["read", "write"])],
            ttl_ms: 10 * 60_000,
            max_depth: 2,
            require_online: false,
            max_uses: 0,
        })
        .await
        .unwrap();
    let task_id = started.task.as_ref().unwrap().task_id.clone();
    assert_eq!(
        started.task.as_ref().unwrap().state,
        pb::TaskState::Active as i32
    );
    let root = decode(&started.chain);
    assert_eq!(root.to_text(), started.chain_text);

    // The planner registers its workers, then delegates to each.
    let (a_key, mut worker_a) = h.register(&mut planner, WORKER_A, "worker", PLANNER).await;
    let (b_key, _worker_b) = h.register(&mut planner, WORKER_B, "worker", PLANNER).await;
    let (sub_key, _sub) = h.register(&mut worker_a, SUB, "worker", WORKER_A).await;
    let now = h.now();
    let chain_a = planner
        .delegate(
            &root,
            spec(
                &a_key,
                WORKER_A,
                vec![cap("files/reports/*", &["read"])],
                now,
                5 * 60_000,
                1,
            ),
        )
        .await
        .unwrap();
    let chain_b = planner
        .delegate(
            &root,
            spec(
                &b_key,
                WORKER_B,
                vec![cap("files/data/*", &["read", "write"])],
                now,
                5 * 60_000,
                0,
            ),
        )
        .await
        .unwrap();
    assert!(
        chain_a.leaf().seal().is_some(),
        "the coordinator seals delegations"
    );
    // Two levels deep: worker A delegates one file to its sub-worker for one minute.
    let chain_sub = worker_a
        .delegate(
            &chain_a,
            spec(
                &sub_key,
                SUB,
                vec![cap("files/reports/q3.pdf", &["read"])],
                now,
                60_000,
                0,
            ),
        )
        .await
        .unwrap();
    assert_eq!(chain_sub.len(), 3);
    Delegated {
        h,
        planner,
        planner_key,
        tool,
        tool_key,
        worker_a,
        a_key,
        b_key,
        sub_key,
        task_id,
        root,
        chain_a,
        chain_b,
        chain_sub,
        now,
    }
}

/// Online checks across a two-level tree: each link allows its own scope; a call outside it,
/// a proof by the wrong key, a replay and a proof for another tool are refused with their
/// reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_allows_what_each_link_allows_and_denies_the_rest_with_its_reason() {
    authorize_allows_what_each_link_allows_and_denies_the_rest_with_its_reason_body().await;
}

/// The body of [`authorize_allows_what_each_link_allows_and_denies_the_rest_with_its_reason`], also run on etcd (`on_etcd`).
pub async fn authorize_allows_what_each_link_allows_and_denies_the_rest_with_its_reason_body() {
    let Delegated {
        h,
        planner_key,
        mut tool,
        a_key,
        b_key,
        sub_key,
        root,
        chain_a,
        chain_b,
        chain_sub,
        ..
    } = delegated().await;
    // Authorize allows what each link allows.
    let t = h.now();
    allowed(&authorize(&mut tool, &planner_key, &root, "write", "files/x", t).await);
    allowed(
        &authorize(
            &mut tool,
            &a_key,
            &chain_a,
            "read",
            "files/reports/a.pdf",
            t,
        )
        .await,
    );
    allowed(&authorize(&mut tool, &b_key, &chain_b, "write", "files/data/d.csv", t).await);
    allowed(
        &authorize(
            &mut tool,
            &sub_key,
            &chain_sub,
            "read",
            "files/reports/q3.pdf",
            t,
        )
        .await,
    );
    // ... and denies the rest with the right reason.
    let r = authorize(
        &mut tool,
        &sub_key,
        &chain_sub,
        "write",
        "files/reports/q3.pdf",
        t,
    )
    .await;
    denied(&r, "NOT_PERMITTED");
    assert_eq!(r.link_index, 1);
    denied(
        &authorize(
            &mut tool,
            &sub_key,
            &chain_sub,
            "read",
            "files/reports/q4.pdf",
            t,
        )
        .await,
        "NOT_PERMITTED",
    );
    denied(
        &authorize(
            &mut tool,
            &b_key,
            &chain_sub,
            "read",
            "files/reports/q3.pdf",
            t,
        )
        .await,
        "BAD_SIGNATURE",
    );
    // Replay: the same proof twice.
    let inv = Invocation::sign(
        &a_key,
        &chain_a,
        TOOL,
        Call::new("read", "files/reports/r.pdf"),
        t,
    )
    .unwrap();
    allowed(&authorize_with(&mut tool, &chain_a, &inv, "read", "files/reports/r.pdf").await);
    denied(
        &authorize_with(&mut tool, &chain_a, &inv, "read", "files/reports/r.pdf").await,
        "REPLAYED",
    );
    // A proof for another tool.
    let other_tool = Invocation::sign(
        &a_key,
        &chain_a,
        "spiffe://mandate.local/tools/db",
        Call::new("read", "files/reports/r.pdf"),
        t,
    )
    .unwrap();
    denied(
        &authorize_with(
            &mut tool,
            &chain_a,
            &other_tool,
            "read",
            "files/reports/r.pdf",
        )
        .await,
        "WRONG_AUDIENCE",
    );
}

/// A delegation wider than its parent is refused by the SDK and, forced through, by the
/// coordinator; nobody registers a delegation below a link it does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_and_unheld_parents_are_refused_locally_and_by_the_coordinator() {
    let Delegated {
        h: _server,
        mut planner,
        mut worker_a,
        a_key,
        sub_key,
        chain_a,
        now,
        ..
    } = delegated().await;
    // Widening is refused locally by the SDK and, if forced, by the coordinator.
    let err = worker_a
        .delegate(
            &chain_a,
            spec(
                &sub_key,
                SUB,
                vec![cap("files/*", &["read"])],
                now,
                60_000,
                0,
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "SCOPE_WIDENED", "{err}");
    let parent = chain_a.leaf();
    let widened = mandate_core::Link::sign(
        mandate_core::LinkBody {
            id: mandate_core::LinkId::random().unwrap(),
            position: mandate_core::Position::Child {
                parent: *parent.digest(),
                depth: 2,
            },
            holder: sub_key.public_key(),
            holder_agent: SUB.parse().unwrap(),
            capabilities: vec![cap("files/*", &["read"])],
            not_before_ms: now,
            expires_at_ms: now + 60_000,
            max_depth: 0,
            kind: mandate_core::LinkKind::Delegation,
            require_seal: true,
            require_online: false,
        },
        &a_key,
    );
    let mut links = chain_a.links().to_vec();
    links.push(widened);
    let err = worker_a
        .delegate_raw(pb::DelegateRequest {
            signals: Default::default(),
            chain: Chain::from_links(links).unwrap().encode(),
            max_uses: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.reason()),
        (Some(tonic::Code::PermissionDenied), "SCOPE_WIDENED"),
        "{err}"
    );
    // Registering a delegation from a link the caller does not hold is refused (the planner
    // submits a link worker A signed).
    let err = planner
        .delegate_raw(pb::DelegateRequest {
            signals: Default::default(),
            chain: chain_a
                .delegate(
                    &a_key,
                    spec(
                        &sub_key,
                        SUB,
                        vec![cap("files/reports/q1.pdf", &["read"])],
                        now,
                        60_000,
                        0,
                    ),
                )
                .unwrap()
                .encode(),
            max_uses: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::PermissionDenied));
}

/// The sub-worker's one-minute link lapses (plus the skew) while worker A's lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused_while_its_parent_still_works() {
    let Delegated {
        h,
        mut tool,
        a_key,
        sub_key,
        chain_a,
        chain_sub,
        ..
    } = delegated().await;
    // Expiry: the sub-worker's one-minute link lapses (plus skew); worker A's does not.
    h.clock.advance(60_000 + 30_000);
    let t = h.now();
    denied(
        &authorize(
            &mut tool,
            &sub_key,
            &chain_sub,
            "read",
            "files/reports/q3.pdf",
            t,
        )
        .await,
        "LINK_EXPIRED",
    );
    allowed(
        &authorize(
            &mut tool,
            &a_key,
            &chain_a,
            "read",
            "files/reports/a.pdf",
            t,
        )
        .await,
    );
}

/// A proof that passed before a restart is not accepted again after it: the replay cache
/// was in memory, so proofs made before the coordinator started are refused as replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_reopen_a_used_proof() {
    let Delegated {
        h,
        mut tool,
        tool_key,
        a_key,
        chain_a,
        ..
    } = delegated().await;
    let t = h.now();
    let call = Call::new("read", "files/reports/a.pdf");
    let proof = Invocation::sign(&a_key, &chain_a, TOOL, call, t).unwrap();
    allowed(&authorize_with(&mut tool, &chain_a, &proof, "read", "files/reports/a.pdf").await);
    denied(
        &authorize_with(&mut tool, &chain_a, &proof, "read", "files/reports/a.pdf").await,
        "REPLAYED",
    );
    h.clock.advance(1);
    let h = h.restart().await;
    let mut tool = h.client(TOOL, &tool_key);
    denied(
        &authorize_with(&mut tool, &chain_a, &proof, "read", "files/reports/a.pdf").await,
        "REPLAYED",
    );
    // A fresh proof works.
    allowed(
        &authorize(
            &mut tool,
            &a_key,
            &chain_a,
            "read",
            "files/reports/a.pdf",
            h.now(),
        )
        .await,
    );
}

/// Revoking a middle link cuts its subtree off (online and on the feed) while its sibling
/// works; completing the task cuts everything; a restart keeps every record and the audit
/// chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cascades_online_and_through_the_feed_and_records_survive_a_restart() {
    revocation_cascades_online_and_through_the_feed_and_records_survive_a_restart_body().await;
}

/// The body of [`revocation_cascades_online_and_through_the_feed_and_records_survive_a_restart`], also run on etcd (`on_etcd`).
pub async fn revocation_cascades_online_and_through_the_feed_and_records_survive_a_restart_body() {
    let Delegated {
        mut h,
        mut planner,
        planner_key,
        mut tool,
        tool_key,
        a_key,
        b_key,
        task_id,
        root,
        chain_a,
        chain_b,
        ..
    } = delegated().await;
    // A follower subscribes to the revocation feed from the start.
    let mut feed = tool
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut revoked_seen = std::collections::HashSet::new();
    feed_until(&mut feed, &mut revoked_seen, |_| true).await;

    // The sub-worker's one-minute link lapses (plus skew), as in
    // `an_expired_link_is_refused_while_its_parent_still_works`.
    h.clock.advance(60_000 + 30_000);

    // Revoking the middle link cuts off its subtree online and through the feed.
    let revoked = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: chain_a.leaf().id().to_string(),
            reason: "worker A misbehaved".into(),
        })
        .await
        .unwrap();
    assert!(
        revoked
            .revoked_link_ids
            .contains(&chain_a.leaf().id().to_string())
    );
    assert!(revoked.revocation_epoch > 0);
    let t = h.now();
    denied(
        &authorize(
            &mut tool,
            &a_key,
            &chain_a,
            "read",
            "files/reports/a.pdf",
            t,
        )
        .await,
        "REVOKED",
    );
    allowed(&authorize(&mut tool, &b_key, &chain_b, "read", "files/data/d.csv", t).await);
    let a_id = chain_a.leaf().id().to_string();
    feed_until(&mut feed, &mut revoked_seen, |s| s.contains(&a_id)).await;
    // The sub-worker's link had expired, so the cascade did not need to list it; everything
    // live below worker A is in the response.
    let tree = planner
        .get_delegation_tree(pb::GetDelegationTreeRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(tree.links.len(), 4);
    let state_of = |id: &str| tree.links.iter().find(|l| l.link_id == id).unwrap().state;
    assert_eq!(state_of(&a_id), pb::LinkState::Revoked as i32);
    assert_eq!(
        state_of(&chain_b.leaf().id().to_string()),
        pb::LinkState::Live as i32
    );
    assert_eq!(tree.links[0].parent_link_id, "", "parents come first");

    // Completing the task cuts off everything.
    let done = planner
        .complete_task(pb::CompleteTaskRequest {
            task_id: task_id.clone(),
            summary: "done".into(),
        })
        .await
        .unwrap();
    assert_eq!(done.task.unwrap().state, pb::TaskState::Completed as i32);
    let b_id = chain_b.leaf().id().to_string();
    assert!(done.revoked_link_ids.contains(&b_id));
    let t = h.now();
    denied(
        &authorize(&mut tool, &b_key, &chain_b, "read", "files/data/d.csv", t).await,
        "REVOKED",
    );
    denied(
        &authorize(&mut tool, &planner_key, &root, "read", "files/x", t).await,
        "REVOKED",
    );
    // The feed names the link cut (the root), not the descendants it covers: a verifier
    // rejects every chain that contains a revoked link.
    let root_id = root.root().id().to_string();
    feed_until(&mut feed, &mut revoked_seen, |s| s.contains(&root_id)).await;
    assert!(
        !revoked_seen.contains(&b_id),
        "a descendant covered by its revoked root is not on the feed"
    );
    drop(feed);

    // Every record survives a restart on the same data directory.
    let audit_before = h.audit();
    let epoch_before = h.server().coordinator().store().epoch().unwrap();
    h = h.restart().await;
    let store = h.server().coordinator().store();
    for id in [PLANNER, WORKER_A, WORKER_B, SUB, TOOL] {
        assert!(store.agent(id).unwrap().is_some(), "agent {id} lost");
    }
    assert_eq!(store.epoch().unwrap(), epoch_before);
    assert_eq!(store.audit_after(0, 100_000).unwrap(), audit_before);
    let task = h
        .admin
        .clone()
        .get_task(pb::GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(task.state, pb::TaskState::Completed as i32);
    let tree = h
        .admin
        .clone()
        .get_delegation_tree(pb::GetDelegationTreeRequest { task_id })
        .await
        .unwrap();
    assert_eq!(tree.links.len(), 4);
    // Worker B's link was revoked with the root (an implied revocation, stored with the
    // change rather than on its own): the tree still says so, with the reason.
    let b = tree.links.iter().find(|l| l.link_id == b_id).unwrap();
    assert_eq!(b.state, pb::LinkState::Revoked as i32);
    assert!(b.revoke_reason.contains("done"), "{}", b.revoke_reason);
    assert!(b.revoke_time_ms > 0);
    let mut tool = h.client(TOOL, &tool_key);
    let t = h.now();
    denied(
        &authorize(&mut tool, &b_key, &chain_b, "read", "files/data/d.csv", t).await,
        "REVOKED",
    );
    // The audit log names every revoked link and chains its hashes.
    let audit = h.audit();
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "link.revoked" && r.event.links.contains(&a_id))
    );
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "task.completed" && r.event.links.contains(&b_id))
    );
    for pair in audit.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    h.server.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_agent_revokes_what_it_holds_and_issued() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (_tk, mut tool) = h.register(&mut admin, TOOL, "tool", "").await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            intent: Some(pb::Intent::default()),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 60_000,
            max_depth: 1,
            require_online: false,
            max_uses: 0,
        })
        .await
        .unwrap();
    let root = decode(&started.chain);
    let (a_key, _) = h.register(&mut planner, WORKER_A, "worker", PLANNER).await;
    let now = h.now();
    let chain_a = planner
        .delegate(
            &root,
            spec(
                &a_key,
                WORKER_A,
                vec![cap("files/a", &["read"])],
                now,
                30_000,
                0,
            ),
        )
        .await
        .unwrap();
    allowed(&authorize(&mut tool, &a_key, &chain_a, "read", "files/a", now).await);
    let resp = admin
        .disable_agent(pb::DisableAgentRequest {
            agent_id: PLANNER.into(),
            reason: "compromised".into(),
        })
        .await
        .unwrap();
    assert_eq!(resp.agent.unwrap().status, pb::AgentStatus::Disabled as i32);
    assert_eq!(
        resp.revoked_link_ids.len(),
        2,
        "the root it holds and the link it issued"
    );
    denied(
        &authorize(&mut tool, &a_key, &chain_a, "read", "files/a", h.now()).await,
        "REVOKED",
    );
    let task = admin
        .get_task(pb::GetTaskRequest {
            task_id: started.task.unwrap().task_id,
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(task.state, pb::TaskState::Revoked as i32);
    // A disabled agent can no longer call.
    let err = planner
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "AGENT_DISABLED");
    let _ = planner_key;
}

/// Use-limited links: a task's roots share one count (a renewal gives no fresh uses), a
/// delegation has its own; the counts are durable across a restart; a use-limited link must
/// require online checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_limited_links_are_counted_online_and_the_counts_survive_a_restart() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (a_key, _) = h.register(&mut admin, WORKER_A, "worker", "").await;
    let (tool_key, mut tool) = h.register(&mut admin, TOOL, "tool", "").await;
    let start = |max_uses: u32, require_online: bool| pb::StartTaskRequest {
        capabilities: vec![cap_pb("files/*", &["read"])],
        ttl_ms: 600_000,
        max_depth: 1,
        require_online,
        max_uses,
        ..Default::default()
    };
    let r = planner.start_task(start(2, false)).await.unwrap();
    let root = decode(&r.chain);
    assert!(
        root.root().body().require_online,
        "a use limit implies online checks"
    );
    let t = h.now();
    for _ in 0..2 {
        allowed(&authorize(&mut tool, &planner_key, &root, "read", "files/a", t).await);
    }
    let r = authorize(&mut tool, &planner_key, &root, "read", "files/a", t).await;
    denied(&r, "USES_EXHAUSTED");
    assert_eq!(r.link_index, 0);
    // A renewal is the same grant: no fresh uses.
    let renewed = planner
        .renew_grant(pb::RenewGrantRequest {
            task_id: root.task().to_string(),
            ttl_ms: 600_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let renewed = decode(&renewed.chain);
    denied(
        &authorize(&mut tool, &planner_key, &renewed, "read", "files/a", t).await,
        "USES_EXHAUSTED",
    );

    // A delegation with its own limit, below an unlimited online root.
    let r = planner.start_task(start(0, true)).await.unwrap();
    let root = decode(&r.chain);
    let child = root
        .delegate(
            &planner_key,
            spec(
                &a_key,
                WORKER_A,
                vec![cap("files/*", &["read"])],
                t,
                300_000,
                0,
            )
            .require_online(true),
        )
        .unwrap();
    let sealed = planner
        .delegate_raw(pb::DelegateRequest {
            chain: child.encode(),
            max_uses: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let chain_a = decode(&sealed.chain);
    allowed(&authorize(&mut tool, &a_key, &chain_a, "read", "files/a", t).await);
    let r = authorize(&mut tool, &a_key, &chain_a, "read", "files/a", t).await;
    denied(&r, "USES_EXHAUSTED");
    assert_eq!(r.link_index, 1);
    // The root above it is not limited.
    allowed(&authorize(&mut tool, &planner_key, &root, "read", "files/a", t).await);

    // Without online checks anywhere in the chain, a limit cannot be kept: refused.
    let r = planner.start_task(start(0, false)).await.unwrap();
    let offline_root = decode(&r.chain);
    let child = offline_root
        .delegate(
            &planner_key,
            spec(
                &a_key,
                WORKER_A,
                vec![cap("files/*", &["read"])],
                t,
                300_000,
                0,
            ),
        )
        .unwrap();
    let err = planner
        .delegate_raw(pb::DelegateRequest {
            chain: child.encode(),
            max_uses: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "INVALID_ARGUMENT");

    // The counts are durable: still used up after a restart.
    h.clock.advance(1);
    let h = h.restart().await;
    let mut tool = h.client(TOOL, &tool_key);
    let t = h.now();
    denied(
        &authorize(&mut tool, &a_key, &chain_a, "read", "files/a", t).await,
        "USES_EXHAUSTED",
    );
    let audit = h.audit();
    let exhausted = audit
        .iter()
        .filter(|r| r.event.action == "invocation.denied" && r.event.reason == "USES_EXHAUSTED")
        .count();
    assert_eq!(exhausted, 4);
}
