//! The audit log over the API: queries and paging, a stream that resumes without gaps,
//! integrity verification that names an edited record, export that round-trips, fail
//! closed when the audit write fails, and a 1,000-descendant cascade named in full.

use std::sync::atomic::Ordering;

use mandate_core::{Call, Invocation, LinkSpec, SigningKey};
use mandate_proto::v1 as pb;
use mandate_store::Store;
use tokio_stream::StreamExt as _;

use crate::failing_store::on_a_failing_store;
use crate::harness::*;

const PLANNER: &str = "spiffe://mandate.local/p";

const WORKER: &str = "spiffe://mandate.local/w";

const TOOL: &str = "spiffe://mandate.local/tool";

/// A planner with a task and one delegation; returns (planner, planner key, root chain,
/// worker key, worker chain).
pub async fn setup(
    h: &Harness,
) -> (
    mandate_sdk::Client,
    mandate_core::Chain,
    SigningKey,
    mandate_core::Chain,
) {
    let mut admin = h.admin.clone();
    let (_, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            intent: Some(pb::Intent {
                text: "audit test".into(),
                ..Default::default()
            }),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 10 * 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = decode(&started.chain);
    let (wkey, _) = h.register(&mut planner, WORKER, "worker", PLANNER).await;
    let now = h.now();
    let spec = LinkSpec::new(
        wkey.public_key(),
        WORKER.parse().unwrap(),
        vec![cap("files/a", &["read"])],
        now,
        now + 60_000,
    )
    .unwrap()
    .require_seal(true);
    let chain = planner.delegate(&root, spec).await.unwrap();
    (planner, root, wkey, chain)
}

async fn all_records(
    admin: &mut mandate_sdk::Client,
    filter: pb::AuditFilter,
) -> Vec<pb::AuditRecord> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .query_audit_log(pb::QueryAuditLogRequest {
                filter: Some(filter.clone()),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filter_and_page_and_only_auditors_read() {
    let h = Harness::start().await;
    let (mut planner, root, _, chain) = setup(&h).await;
    let mut admin = h.admin.clone();
    let task = root.task().to_string();
    let all = all_records(&mut admin, pb::AuditFilter::default()).await;
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "paging returns each record once, in order"
    );
    let by_task = all_records(
        &mut admin,
        pb::AuditFilter {
            task_id: task.clone(),
            ..Default::default()
        },
    )
    .await;
    let actions: Vec<&str> = by_task.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["grant.issued", "delegation.sealed"]);
    let leaf = chain.leaf().id().to_string();
    let by_link = all_records(
        &mut admin,
        pb::AuditFilter {
            link_id: leaf.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_link.len(), 1);
    let sealed = &by_link[0];
    assert_eq!(sealed.actor, PLANNER);
    assert_eq!(sealed.decision, "allow");
    assert!(!sealed.policy_ids.is_empty() && !sealed.policy_hash.is_empty());
    assert_eq!(
        sealed.detail.get("holder").map(String::as_str),
        Some(WORKER)
    );
    let by_agent = all_records(
        &mut admin,
        pb::AuditFilter {
            agent_id: WORKER.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(by_agent.iter().any(|r| r.action == "agent.registered"));
    assert!(by_agent.iter().any(|r| r.action == "delegation.sealed"));
    let high = all_records(
        &mut admin,
        pb::AuditFilter {
            min_severity: pb::AuditSeverity::High as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(high.len(), 1, "only the bootstrap record is high severity");
    let since = all_records(
        &mut admin,
        pb::AuditFilter {
            since_ms: h.now() + 1,
            ..Default::default()
        },
    )
    .await;
    assert!(since.is_empty());
    // Planners are not auditors.
    let e = planner
        .query_audit_log(pb::QueryAuditLogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_after_a_disconnect_without_gaps_or_duplicates() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let mut seen: Vec<u64> = Vec::new();
    {
        let mut stream = admin
            .watch_audit_log(pb::WatchAuditLogRequest::default())
            .await
            .unwrap();
        // The bootstrap record is already there.
        seen.push(stream.next().await.unwrap().unwrap().record.unwrap().seq);
        // Live records arrive as they are written.
        h.register(&mut admin, "spiffe://mandate.local/a1", "worker", "")
            .await;
        seen.push(stream.next().await.unwrap().unwrap().record.unwrap().seq);
    } // disconnect
    for i in 0..5 {
        h.register(
            &mut admin,
            &format!("spiffe://mandate.local/b{i}"),
            "worker",
            "",
        )
        .await;
    }
    let mut stream = admin
        .watch_audit_log(pb::WatchAuditLogRequest {
            after_seq: *seen.last().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..5 {
        seen.push(stream.next().await.unwrap().unwrap().record.unwrap().seq);
    }
    h.register(&mut admin, "spiffe://mandate.local/c", "worker", "")
        .await;
    seen.push(stream.next().await.unwrap().unwrap().record.unwrap().seq);
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    // A filtered stream: only high severity (the bootstrap record, then a disabling).
    let mut high = admin
        .watch_audit_log(pb::WatchAuditLogRequest {
            filter: Some(pb::AuditFilter {
                min_severity: pb::AuditSeverity::High as i32,
                ..Default::default()
            }),
            after_seq: 0,
        })
        .await
        .unwrap();
    assert_eq!(high.next().await.unwrap().unwrap().record.unwrap().seq, 1);
    admin
        .disable_agent(pb::DisableAgentRequest {
            agent_id: "spiffe://mandate.local/c".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let r = high.next().await.unwrap().unwrap().record.unwrap();
    assert_eq!(r.action, "agent.disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_names_a_record_edited_in_the_store() {
    let h = Harness::start().await;
    setup(&h).await;
    let mut admin = h.admin.clone();
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{}", v.problem);
    let head = v.head_seq;
    assert!(head >= 4);
    // Stop the server and edit record 3 on disk, as an attacker with file access would.
    let dir = h.dir;
    let clock = h.clock;
    let mut server = h.server;
    server.take().unwrap().shutdown().await.unwrap();
    mandate_store::tamper::edit_record(&dir.path().join("data/store"), 3, false, |r| {
        r.event.actor = "spiffe://mandate.local/someone-else".into();
    })
    .unwrap();
    let h = Harness::start_in(dir, clock).await;
    let v = h
        .admin
        .clone()
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(!v.intact);
    assert_eq!(v.first_broken_seq, 3, "{}", v.problem);
    assert_eq!(v.checked, 2);
    // A range before the edit still verifies.
    let v = h
        .admin
        .clone()
        .verify_audit_log(pb::VerifyAuditLogRequest {
            from_seq: 1,
            to_seq: 2,
        })
        .await
        .unwrap();
    assert!(v.intact);
}

/// The whole log as `ExportAuditLog` streams it.
async fn export_all(admin: &mut mandate_sdk::Client) -> String {
    let mut stream = admin
        .export_audit_log(pb::ExportAuditLogRequest::default())
        .await
        .unwrap();
    let mut jsonl = Vec::new();
    while let Some(chunk) = stream.next().await {
        jsonl.extend(chunk.unwrap().jsonl);
    }
    String::from_utf8(jsonl).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_and_holds_no_secrets() {
    let h = Harness::start().await;
    let (_, root, wkey, chain) = setup(&h).await;
    let mut admin = h.admin.clone();
    let (_, mut tool) = h.register(&mut admin, TOOL, "tool", "").await;
    let inv = Invocation::sign(&wkey, &chain, TOOL, Call::new("read", "files/a"), h.now()).unwrap();
    let r = tool
        .authorize(pb::AuthorizeRequest {
            refuse_break_glass: false,
            chain: chain.encode(),
            invocation: inv.encode(),
            action: "read".into(),
            resource: "files/a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.allowed);
    let text = export_all(&mut admin).await;
    let records: Vec<mandate_store::AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let queried = all_records(&mut admin, pb::AuditFilter::default()).await;
    assert_eq!(records.len(), queried.len());
    // The chain recomputes from the export alone.
    let mut prev = mandate_store::GENESIS_HASH.to_string();
    for (r, q) in records.iter().zip(&queried) {
        assert_eq!((r.seq, &r.hash), (q.seq, &q.hash));
        assert_eq!(r.prev_hash, prev);
        assert_eq!(
            mandate_store::audit_hash(r.seq, &r.event, &r.prev_hash),
            r.hash
        );
        prev = r.hash.clone();
    }
    assert!(
        records
            .iter()
            .any(|r| r.event.action == "invocation.authorized")
    );
    // No token, proof, signature or private key in any record.
    let admin_pem = std::fs::read_to_string(&h.server().admin_key_path).unwrap();
    let pem_body = admin_pem.lines().nth(1).unwrap();
    for needle in [
        "mandate1.",
        "mandate-inv1.",
        pem_body,
        &root.to_text()[9..40],
        &chain
            .leaf()
            .signature()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ] {
        assert!(!text.contains(needle), "export contains `{needle}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_store_cannot_write_nothing_changes_and_reads_keep_working() {
    let (h, store) = on_a_failing_store().await;
    let (mut planner, _root, wkey, chain) = setup(&h).await;
    let mut admin = h.admin.clone();
    let (_, mut tool) = h.register(&mut admin, TOOL, "tool", "").await;
    let before = (
        store.epoch().unwrap(),
        store.audit_head().unwrap(),
        store.agents(None, 100).unwrap().len(),
    );

    store.fail.store(true, Ordering::SeqCst);
    let e = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: chain.leaf().id().to_string(),
            reason: "should not happen".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Some(tonic::Code::Unavailable), "STORE_UNAVAILABLE")
    );
    let e = admin
        .register_agent(pb::RegisterAgentRequest {
            agent_id: "spiffe://mandate.local/new".into(),
            public_key: SigningKey::generate()
                .unwrap()
                .public_key()
                .as_bytes()
                .to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "STORE_UNAVAILABLE");
    let e = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![cap_pb("x", &["r"])],
            ttl_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "STORE_UNAVAILABLE");
    // An online decision that cannot be audited is not given: it fails closed.
    let inv = Invocation::sign(&wkey, &chain, TOOL, Call::new("read", "files/a"), h.now()).unwrap();
    let e = tool
        .authorize(pb::AuthorizeRequest {
            chain: chain.encode(),
            invocation: inv.encode(),
            action: "read".into(),
            resource: "files/a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "STORE_UNAVAILABLE");
    // A reload whose commit fails leaves the old set in force (it was installed before its
    // drift pass: it is taken back), and nothing is revoked.
    let before_hash = h.policy_hash().await;
    let e = admin
        .reload_policy(pb::ReloadPolicyRequest {
            files: [(
                "only.cedar".to_owned(),
                "@id(\"only\") permit (principal, action == Mandate::Action::\"Invoke\", resource);"
                    .to_owned(),
            )]
            .into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "STORE_UNAVAILABLE");
    assert_eq!(h.policy_hash().await, before_hash);
    // Reads keep working while writes fail.
    let task_id = chain.task().to_string();
    let task = planner
        .get_task(pb::GetTaskRequest {
            task_id: task_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(task.task.unwrap().task_id, task_id);
    let tree = planner
        .get_delegation_tree(pb::GetDelegationTreeRequest { task_id })
        .await
        .unwrap();
    assert_eq!(tree.links.len(), 2);
    assert!(
        !admin
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .unwrap()
            .agents
            .is_empty()
    );
    assert!(
        !admin
            .query_audit_log(pb::QueryAuditLogRequest::default())
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(
        admin
            .verify_audit_log(pb::VerifyAuditLogRequest::default())
            .await
            .unwrap()
            .intact
    );
    assert!(!h.policy_hash().await.is_empty());
    assert_eq!(
        tool.get_trust_bundle(pb::GetTrustBundleRequest {})
            .await
            .unwrap()
            .keys
            .len(),
        1
    );
    store.fail.store(false, Ordering::SeqCst);

    assert_eq!(
        (
            store.epoch().unwrap(),
            store.audit_head().unwrap(),
            store.agents(None, 100).unwrap().len()
        ),
        before
    );
    // The revocation did not take effect anywhere, not even in memory.
    let inv = Invocation::sign(&wkey, &chain, TOOL, Call::new("read", "files/a"), h.now()).unwrap();
    let r = tool
        .authorize(pb::AuthorizeRequest {
            refuse_break_glass: false,
            chain: chain.encode(),
            invocation: inv.encode(),
            action: "read".into(),
            resource: "files/a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(r.allowed, "{}", r.reason);
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_of_a_thousand_descendants_names_every_one() {
    a_cascade_of_a_thousand_descendants_names_every_one_body().await;
}

/// The body of [`a_cascade_of_a_thousand_descendants_names_every_one`], also run on etcd (`on_etcd`).
pub async fn a_cascade_of_a_thousand_descendants_names_every_one_body() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 10 * 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = decode(&started.chain);
    let (wkey, _) = h.register(&mut planner, WORKER, "worker", PLANNER).await;
    let now = h.now();
    let mut tasks = tokio::task::JoinSet::new();
    for part in 0..8 {
        let mut p = planner.clone();
        let root = root.clone();
        let wkey = wkey.clone();
        tasks.spawn(async move {
            for i in 0..125 {
                let spec = LinkSpec::new(
                    wkey.public_key(),
                    WORKER.parse().unwrap(),
                    vec![cap(&format!("files/{part}/{i}"), &["read"])],
                    now,
                    now + 60_000,
                )
                .unwrap()
                .require_seal(true);
                p.delegate(&root, spec).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let revoked = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: root.root().id().to_string(),
            reason: "cascade".into(),
        })
        .await
        .unwrap();
    assert_eq!(revoked.revoked_link_ids.len(), 1001);
    let records = all_records(
        &mut admin,
        pb::AuditFilter {
            action_prefix: "link.revoked".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(records.len(), 1);
    let mut named = records[0].link_ids.clone();
    named.sort();
    let mut want = revoked.revoked_link_ids.clone();
    want.sort();
    assert_eq!(named, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_escapes_unicode_line_separators_so_any_line_splitter_keeps_records_whole() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let intent = "line\u{2028}separator and paragraph\u{2029}separator";
    planner
        .start_task(pb::StartTaskRequest {
            intent: Some(pb::Intent {
                text: intent.into(),
                ..Default::default()
            }),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let text = export_all(&mut admin).await;
    assert!(
        !text.contains(['\u{2028}', '\u{2029}']),
        "raw line separators in the export"
    );
    // Split the way Python's `str.splitlines` does: every Unicode line boundary.
    let lines: Vec<&str> = text
        .split([
            '\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
            '\u{2029}',
        ])
        .filter(|l| !l.is_empty())
        .collect();
    let records: Vec<mandate_store::AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let granted = records
        .iter()
        .find(|r| r.event.action == "grant.issued")
        .unwrap();
    assert_eq!(granted.event.detail["intent"], intent);
    // The escapes parse back to the characters the hash was computed over.
    for r in &records {
        assert_eq!(
            mandate_store::audit_hash(r.seq, &r.event, &r.prev_hash),
            r.hash
        );
    }
}

/// Rewrites record `at` and every record after it so that the chain and the head marker
/// are consistent again, as an attacker with write access to the whole store would.
fn rewrite_log_from(store_dir: &std::path::Path, at: u64) {
    mandate_store::tamper::edit_record(store_dir, at, true, |r| {
        r.event.actor = "spiffe://mandate.local/someone-else".into();
    })
    .unwrap();
}

/// A consistent rewrite of the log and its head passes the chain check; a signed checkpoint
/// kept elsewhere catches it, and an interval checkpoint lands in the log as a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_catches_a_log_rewritten_together_with_its_head() {
    let h = Harness::start().await;
    setup(&h).await;
    let mut admin = h.admin.clone();
    let r = admin
        .checkpoint_audit_log(pb::CheckpointAuditLogRequest {})
        .await
        .unwrap();
    let cp = mandate_store::AuditCheckpoint::from_parts(
        r.seq,
        r.hash.clone(),
        r.time_ms,
        &r.coordinator_key,
        &r.signature,
    );
    assert_eq!(cp.verify().unwrap(), h.server().coordinator_key);
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(cp.seq >= 4 && cp.seq <= v.head_seq);

    // The periodic form: an `audit.checkpoint` record signing the record before it; a
    // second one with nothing new in between is skipped.
    let recorded = h
        .server()
        .coordinator()
        .record_checkpoint()
        .await
        .unwrap()
        .unwrap();
    assert!(
        h.server()
            .coordinator()
            .record_checkpoint()
            .await
            .unwrap()
            .is_none()
    );
    let audit = h.audit();
    let last = audit.last().unwrap();
    assert_eq!(last.event.action, "audit.checkpoint");
    assert_eq!(last.seq, recorded.seq + 1);
    assert_eq!(last.event.detail["hash"], audit[audit.len() - 2].hash);
    assert_eq!(last.event.detail["signature"], recorded.signature);

    let dir = h.dir;
    let clock = h.clock;
    let mut server = h.server;
    server.take().unwrap().shutdown().await.unwrap();
    rewrite_log_from(&dir.path().join("data/store"), 3);
    let h = Harness::start_in(dir, clock).await;
    let mut admin = h.admin.clone();
    // The chain alone no longer tells.
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{}", v.problem);
    let page = admin
        .query_audit_log(pb::QueryAuditLogRequest {
            page_size: 1,
            page_token: (cp.seq - 1).to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records[0].seq, cp.seq);
    assert_ne!(
        page.records[0].hash, cp.hash,
        "the checkpoint no longer matches"
    );
}

/// With audit records sealed into segments as the journal fills, the audit API reads one
/// log across the segments and the journal: query, export, verify and checkpoints,
/// also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_api_reads_across_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let sealing = mandate_store::AuditSealing {
        records_per_segment: 8,
    };
    let h = Harness::start_configured(dir, clock, move |c| c.audit_sealing = sealing).await;
    let mut admin = h.admin.clone();
    for i in 0..30 {
        h.register(
            &mut admin,
            &format!("spiffe://mandate.local/seg/{i}"),
            "worker",
            "",
        )
        .await;
    }
    let cp = admin
        .checkpoint_audit_log(pb::CheckpointAuditLogRequest {})
        .await
        .unwrap();
    let before = export_all(&mut admin).await;
    // Sealed as the log grew (every 8 records here).
    let segments = std::fs::read_dir(h.server().data_dir.join("store/audit-segments"))
        .unwrap()
        .count();
    assert!(segments >= 3, "{segments} segments");
    assert_eq!(
        export_all(&mut admin).await,
        before,
        "the same log, byte for byte"
    );
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{}", v.problem);
    assert_eq!(v.checked, v.head_seq);
    // A record inside a segment, by sequence number, matches the checkpoint taken before.
    let page = admin
        .query_audit_log(pb::QueryAuditLogRequest {
            page_size: 1,
            page_token: (cp.seq - 1).to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records[0].hash, cp.hash);
    // Filters work across segments too.
    let registered = admin
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                action_prefix: "agent.registered".into(),
                ..Default::default()
            }),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(registered.records.len(), 31, "the admin and 30 workers");
    let h = h.restart().await;
    let mut admin = h.admin.clone();
    let after = export_all(&mut admin).await;
    assert!(after.starts_with(&before), "the log survives a restart");
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{}", v.problem);
}
