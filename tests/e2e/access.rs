//! The access review (`AccessService`) against figures worked out by hand: tasks that
//! follow each other, a renewal overlapping its root, a revocation and a completion mid
//! window, break-glass counted apart, and who sees what.

use mandate_core::{Capability, LinkSpec};
use mandate_proto::v1 as pb;
use mandate_sdk::Client;

use crate::harness::{Harness, cap_pb, decode};

const MIN: u64 = 60_000;
const DOMAIN: &str = "spiffe://mandate.local";

async fn start(planner: &mut Client, resource: &str, ttl_ms: u64) -> pb::StartTaskResponse {
    planner
        .start_task(pb::StartTaskRequest {
            capabilities: vec![cap_pb(resource, &["read", "write"])],
            ttl_ms,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn row<'a>(rows: &'a [pb::Exposure], key: &str) -> &'a pb::Exposure {
    rows.iter()
        .find(|r| r.agent_id == key || r.resource == key)
        .unwrap_or_else(|| panic!("no row for {key} in {rows:?}"))
}

/// (privilege, grants, longest span, standing, break-glass, break-glass grants), minutes.
fn figures(r: &pb::Exposure) -> (u64, u32, u64, bool, u64, u32) {
    (
        r.privilege_ms / MIN,
        r.grants,
        r.longest_span_ms / MIN,
        r.standing,
        r.break_glass_ms / MIN,
        r.break_glass_grants,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_review_counts_live_authority_and_standing_privilege() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h
        .register(&mut admin, &format!("{DOMAIN}/planner"), "planner", "")
        .await;
    let (worker_key, _) = h
        .register(&mut admin, &format!("{DOMAIN}/worker"), "worker", "")
        .await;
    let (_, mut other) = h
        .register(&mut admin, &format!("{DOMAIN}/other"), "planner", "")
        .await;
    let (_, mut human) = h
        .register(&mut admin, &format!("{DOMAIN}/human/alice"), "human", "")
        .await;
    let (_, mut auditor) = h
        .register(&mut admin, &format!("{DOMAIN}/auditor"), "auditor", "")
        .await;
    let t0 = h.now();
    let at = |m: u64| {
        let target = t0 + m * MIN;
        h.clock.advance(target - h.now());
    };

    // Grants last at most 15' (the default policy). 0': the first task, and a delegation
    // to the worker for 10'.
    let t1 = start(&mut planner, "files/*", 15 * MIN).await;
    let root1 = decode(&t1.chain);
    let delegated = planner
        .delegate(
            &root1,
            LinkSpec::new(
                worker_key.public_key(),
                format!("{DOMAIN}/worker").parse().unwrap(),
                vec![Capability::new("files/reports", ["read"]).unwrap()],
                root1.root().body().not_before_ms,
                t0 + 10 * MIN,
            )
            .unwrap()
            .require_seal(true),
        )
        .await
        .unwrap();
    // Live now: who can read a report is the planner (root) and the worker (through it).
    let who = planner
        .who_can(pb::WhoCanRequest {
            action: "read".into(),
            resource: "files/reports".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut holders: Vec<(String, usize, u64)> = who
        .links
        .iter()
        .map(|l| {
            (
                l.holder_agent_id.clone(),
                l.path.len(),
                l.remaining_ms / MIN,
            )
        })
        .collect();
    holders.sort();
    assert_eq!(
        holders,
        [
            (format!("{DOMAIN}/planner"), 1, 15),
            (format!("{DOMAIN}/worker"), 2, 10),
        ]
    );
    let worker_link = who.links.iter().find(|l| l.path.len() == 2).unwrap();
    assert_eq!(
        worker_link.path,
        [
            root1.root().id().to_string(),
            delegated.leaf().id().to_string()
        ]
    );
    assert_eq!(worker_link.kind, "delegation");
    assert_eq!(worker_link.requester, format!("{DOMAIN}/planner"));
    // Writing a report: only the root permits it.
    let who = planner
        .who_can(pb::WhoCanRequest {
            action: "write".into(),
            resource: "files/reports".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(who.links.len(), 1);
    assert_eq!(who.links[0].kind, "grant");

    // 3': the delegation is revoked. 6': the task completes.
    at(3);
    planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: delegated.leaf().id().to_string(),
            reason: "done with it".into(),
        })
        .await
        .unwrap();
    at(6);
    planner
        .complete_task(pb::CompleteTaskRequest {
            task_id: t1.task.as_ref().unwrap().task_id.clone(),
            summary: "done".into(),
        })
        .await
        .unwrap();
    // 8': the next task, almost back to back; 12': renewed (both roots live).
    at(8);
    let t2 = start(&mut planner, "files/*", 15 * MIN).await;
    at(12);
    planner
        .renew_grant(pb::RenewGrantRequest {
            task_id: t2.task.as_ref().unwrap().task_id.clone(),
            ttl_ms: 15 * MIN,
            ..Default::default()
        })
        .await
        .unwrap();
    // 14': break-glass for alice, for 10'; 16': another planner's task.
    at(14);
    human
        .break_glass(pb::BreakGlassRequest {
            capabilities: vec![cap_pb("secrets/db", &["read"])],
            ttl_ms: 10 * MIN,
            reason: "the database is down".into(),
            ticket: "INC-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    at(16);
    start(&mut other, "data/*", 15 * MIN).await;
    at(18);

    // The worker's link is gone; the planner's two roots of the second task are live.
    let live = auditor
        .list_live_authority(pb::ListLiveAuthorityRequest {
            agent_id: format!("{DOMAIN}/planner"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(live.links.len(), 2);
    assert!(
        live.links
            .iter()
            .all(|l| l.task_id == t2.task.as_ref().unwrap().task_id)
    );
    let by_resource = auditor
        .list_live_authority(pb::ListLiveAuthorityRequest {
            resource_prefix: "secrets/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_resource.links.len(), 1);
    assert_eq!(by_resource.links[0].kind, "break-glass");
    assert_eq!(by_resource.links[0].remaining_ms, 6 * MIN);

    // The last 20' (from -2'), standing above 15', gaps up to 5' stitched.
    let report = |mut c: Client| async move {
        c.exposure_report(pb::ExposureReportRequest {
            window_ms: 20 * MIN,
            threshold_ms: 15 * MIN,
            max_gap_ms: 5 * MIN,
        })
        .await
        .unwrap()
    };
    let all = report(auditor.clone()).await;
    assert_eq!((all.from_ms, all.to_ms), (t0 - 2 * MIN, t0 + 18 * MIN));
    // The planner: 0-6' then 8-18' (the renewal overlaps its root: counted once) = 16';
    // three roots; one span 0-18' across the 2' gap: standing.
    let planner_row = row(&all.agents, &format!("{DOMAIN}/planner"));
    assert_eq!(figures(planner_row), (16, 3, 18, true, 0, 0));
    assert_eq!(planner_row.longest_span_start_ms, t0);
    // The worker: 0-3' (revoked at 3').
    assert_eq!(
        figures(row(&all.agents, &format!("{DOMAIN}/worker"))),
        (3, 1, 3, false, 0, 0)
    );
    // Alice: break-glass only, counted apart.
    assert_eq!(
        figures(row(&all.agents, &format!("{DOMAIN}/human/alice"))),
        (0, 0, 0, false, 4, 1)
    );
    assert_eq!(
        figures(row(&all.agents, &format!("{DOMAIN}/other"))),
        (2, 1, 2, false, 0, 0)
    );
    assert_eq!(
        figures(row(&all.resources, "files/*")),
        (16, 3, 18, true, 0, 0)
    );
    assert_eq!(
        figures(row(&all.resources, "files/reports")),
        (3, 1, 3, false, 0, 0)
    );
    assert_eq!(
        figures(row(&all.resources, "secrets/db")),
        (0, 0, 0, false, 4, 1)
    );
    assert_eq!(
        figures(row(&all.resources, "data/*")),
        (2, 1, 2, false, 0, 0)
    );
    // Live authority over time, at 48 instants: at 0.5' the root and the worker's link; at
    // 3' the root alone (the revocation took effect at 3'); now the two roots of the second
    // task, alice's break-glass and the other planner's root.
    assert_eq!(all.timeline.len(), 48);
    let point = |i: usize| {
        let p = &all.timeline[i];
        (p.time_ms, p.live_links, p.agents)
    };
    assert_eq!(point(5), (t0 + MIN / 2, 2, 2));
    assert_eq!(point(11), (t0 + 3 * MIN, 1, 1));
    assert_eq!(point(47), (t0 + 18 * MIN, 4, 3));
    // Most privilege first.
    assert_eq!(all.agents[0].agent_id, format!("{DOMAIN}/planner"));
    // A smaller gap splits the planner's span: 8-18' is the longest, under the threshold.
    let mut a = auditor.clone();
    let split = a
        .exposure_report(pb::ExposureReportRequest {
            window_ms: 20 * MIN,
            threshold_ms: 15 * MIN,
            max_gap_ms: MIN,
        })
        .await
        .unwrap();
    let p = row(&split.agents, &format!("{DOMAIN}/planner"));
    assert_eq!((p.longest_span_ms / MIN, p.standing), (10, false));
    assert_eq!(p.longest_span_start_ms, t0 + 8 * MIN);
    // A window from 11' on: 11-18'.
    let late = a
        .exposure_report(pb::ExposureReportRequest {
            window_ms: 7 * MIN,
            threshold_ms: 15 * MIN,
            max_gap_ms: 5 * MIN,
        })
        .await
        .unwrap();
    assert_eq!(
        figures(row(&late.agents, &format!("{DOMAIN}/planner"))),
        (7, 1, 7, false, 0, 0),
        "one grant in the window: the renewal at 12'"
    );

    // A planner sees its own trees only (its worker's link included); so does the admin
    // everything, like the auditor.
    let own = report(planner.clone()).await;
    let agents: Vec<&str> = own.agents.iter().map(|r| r.agent_id.as_str()).collect();
    assert_eq!(
        agents,
        [format!("{DOMAIN}/planner"), format!("{DOMAIN}/worker")]
    );
    assert_eq!(report(admin.clone()).await, all);
    let theirs = other
        .who_can(pb::WhoCanRequest {
            action: "read".into(),
            resource: "files/reports".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(theirs.links.is_empty(), "not the other planner's tree");
    // Expired: after the second task's roots expire nobody can.
    h.clock.advance(3 * 60 * MIN);
    let who = auditor
        .who_can(pb::WhoCanRequest {
            action: "read".into(),
            resource: "files/reports".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(who.links.is_empty());
}
