//! Health, reflection, the trust bundle, listing and renewal.

use mandate_proto::v1 as pb;
use tokio_stream::StreamExt as _;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_signatures() {
    let h = Harness::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "mandate.v1.TaskService".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut reflection = ServerReflectionClient::new(h.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "mandate.v1.AgentService",
        "mandate.v1.TaskService",
        "mandate.v1.AuthorizationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    // The older v1alpha reflection service answers too.
    let mut old =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            h.channel.clone(),
        );
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = old
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_bundle_listing_and_renewal() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let bundle = admin
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(bundle.keys.len(), 1);
    assert_eq!(
        bundle.keys[0].public_key,
        h.server().coordinator_key.as_bytes().to_vec()
    );

    let (_, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/p", "planner", "")
        .await;
    for i in 0..3 {
        h.register(
            &mut admin,
            &format!("spiffe://mandate.local/w{i}"),
            "worker",
            "",
        )
        .await;
    }
    let page = admin
        .list_agents(pb::ListAgentsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(page.agents.len(), 2);
    let rest = admin
        .list_agents(pb::ListAgentsRequest {
            page_size: 100,
            page_token: page.next_page_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        page.agents.len() + rest.agents.len(),
        5,
        "admin, planner and three workers"
    );
    assert!(rest.next_page_token.is_empty());

    // The policy caps the TTL: 15 minutes at most.
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 24 * 3_600_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let task = started.task.unwrap();
    assert_eq!(task.deadline_ms - task.create_time_ms, 15 * 60_000);
    let listed = planner
        .list_tasks(pb::ListTasksRequest {
            requester_agent_id: "spiffe://mandate.local/p".into(),
            state: pb::TaskState::Active as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.tasks.len(), 1);
    // Another agent neither reads nor lists the planner's task.
    let (_, mut other) = h
        .register(&mut admin, "spiffe://mandate.local/other", "planner", "")
        .await;
    let e = other
        .get_task(pb::GetTaskRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    let e = other
        .list_tasks(pb::ListTasksRequest {
            requester_agent_id: "spiffe://mandate.local/p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    assert!(
        other
            .list_tasks(pb::ListTasksRequest::default())
            .await
            .unwrap()
            .tasks
            .is_empty(),
        "only its own"
    );

    // Renewal issues a new root link, never past the deadline.
    h.clock.advance(60_000);
    let renewed = planner
        .renew_grant(pb::RenewGrantRequest {
            signals: Default::default(),
            task_id: task.task_id.clone(),
            ttl_ms: 60 * 60_000,
        })
        .await
        .unwrap();
    let chain = decode(&renewed.chain);
    assert_ne!(chain.root().id(), decode(&started.chain).root().id());
    assert_eq!(chain.root().body().expires_at_ms, task.deadline_ms);
    let task2 = planner
        .get_task(pb::GetTaskRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(task2.root_link_id, chain.root().id().to_string());
    // Revoking the new root ends the task and kills the old root too.
    let old_root = decode(&started.chain);
    let (_tool_key, mut tool) = {
        let key = mandate_core::SigningKey::generate().unwrap();
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: "spiffe://mandate.local/tool".into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: "tool".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let c = h.client("spiffe://mandate.local/tool", &key);
        (key, c)
    };
    let planner_key = planner.signer().key().clone();
    let authorize_old = |tool: &mut mandate_sdk::Client| {
        let inv = mandate_core::Invocation::sign(
            &planner_key,
            &old_root,
            "spiffe://mandate.local/tool",
            mandate_core::Call::new("read", "files/x"),
            h.now(),
        )
        .unwrap();
        let req = pb::AuthorizeRequest {
            refuse_break_glass: false,
            chain: old_root.encode(),
            invocation: inv.encode(),
            action: "read".into(),
            resource: "files/x".into(),
            ..Default::default()
        };
        let mut tool = tool.clone();
        async move { tool.authorize(req).await.unwrap() }
    };
    assert!(
        authorize_old(&mut tool).await.allowed,
        "the old root still works after renewal"
    );
    let revoked = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: chain.root().id().to_string(),
            reason: "stop".into(),
        })
        .await
        .unwrap();
    assert!(
        revoked
            .revoked_link_ids
            .contains(&old_root.root().id().to_string())
    );
    let r = authorize_old(&mut tool).await;
    assert_eq!((r.allowed, r.reason.as_str()), (false, "REVOKED"));
    let revoked_task = planner
        .get_task(pb::GetTaskRequest {
            task_id: task.task_id.clone(),
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(revoked_task.state, pb::TaskState::Revoked as i32);
    // Someone else cannot renew it.
    let e = admin
        .renew_grant(pb::RenewGrantRequest {
            signals: Default::default(),
            task_id: task.task_id.clone(),
            ttl_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    // Past the deadline the task shows as expired and cannot be renewed.
    h.clock.advance(15 * 60_000);
    let e = planner
        .renew_grant(pb::RenewGrantRequest {
            signals: Default::default(),
            task_id: task.task_id.clone(),
            ttl_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "TASK_NOT_ACTIVE");
    let shown = admin
        .get_task(pb::GetTaskRequest {
            task_id: task.task_id,
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(
        shown.state,
        pb::TaskState::Revoked as i32,
        "a revoked task stays revoked past its deadline"
    );
}

/// Steady churn of short-lived tasks: after garbage collection the store holds nothing of
/// tasks past their deadline plus the history retention (links, indexes, tasks), round
/// after round, while the audit log keeps every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_stays_bounded_under_a_churn_of_short_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let h = Harness::start_configured(dir, clock, |c| c.retain_history_ms = 60_000).await;
    let mut admin = h.admin.clone();
    let planner_id = "spiffe://mandate.local/churn/planner";
    let worker_id = "spiffe://mandate.local/churn/worker";
    let (pkey, mut planner) = h.register(&mut admin, planner_id, "planner", "").await;
    let (wkey, _) = h.register(&mut admin, worker_id, "worker", "").await;
    let _ = pkey;
    let store = std::sync::Arc::clone(h.server().store());
    let mut audit_records = 0;
    for round in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let r = planner
                .start_task(pb::StartTaskRequest {
                    capabilities: vec![cap_pb("files/*", &["read"])],
                    ttl_ms: 30_000,
                    max_depth: 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            let root = decode(&r.chain);
            let now = h.now();
            let spec = mandate_core::LinkSpec::new(
                wkey.public_key(),
                worker_id.parse().unwrap(),
                vec![cap("files/a/*", &["read"])],
                now,
                now + 10_000,
            )
            .unwrap()
            .require_seal(true);
            planner.delegate(&root, spec).await.unwrap();
            let id = r.task.unwrap().task_id;
            planner
                .complete_task(pb::CompleteTaskRequest {
                    task_id: id.clone(),
                    summary: "done".into(),
                })
                .await
                .unwrap();
            tasks.push(id);
        }
        // The planner holds the roots; the worker holds the delegations (the planner
        // issued them: they are the roots' children).
        assert_eq!(
            store.agent_links(planner_id).unwrap().len(),
            20,
            "round {round}"
        );
        assert_eq!(
            store.agent_links(worker_id).unwrap().len(),
            20,
            "round {round}"
        );
        // Past every deadline, the skew and the retention.
        h.clock.advance(30_000 + 30_000 + 60_000 + 1);
        let stats = h.server().collect_garbage().await.unwrap();
        assert_eq!((stats.tasks, stats.links), (20, 40), "round {round}");
        assert!(store.agent_links(planner_id).unwrap().is_empty());
        assert!(store.agent_links(worker_id).unwrap().is_empty());
        assert!(store.tasks(None, 1000).unwrap().is_empty());
        assert!(store.revocations_after(0).unwrap().is_empty());
        let err = planner
            .get_task(pb::GetTaskRequest {
                task_id: tasks[0].clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::NotFound));
        // The history stays in the audit log: 3 records per task, none removed.
        let now_records = store.audit_head().unwrap().0;
        assert!(now_records >= audit_records + 60, "round {round}");
        audit_records = now_records;
    }
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{v:?}");
}

/// `rotate_coordinator_key` on a stopped coordinator: the new key is the server's from the
/// next start and the old one stays in the trust bundle for its window. (A verifier
/// following the rotation is tested over TLS in `tls.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_coordinator_key_is_published_with_the_old_one_in_its_window() {
    a_rotated_coordinator_key_is_published_with_the_old_one_in_its_window_body().await;
}

/// The body of [`a_rotated_coordinator_key_is_published_with_the_old_one_in_its_window`],
/// also run on etcd (`on_etcd`), where the data directory's lock, not the store's, tells
/// the rotation that a coordinator runs.
pub async fn a_rotated_coordinator_key_is_published_with_the_old_one_in_its_window_body() {
    use mandate_core::Clock as _;
    let h = Harness::start().await;
    let old_key = h.server().coordinator_key;
    let data = h.dir.path().join("data");
    let err = mandate_server::keys::rotate_coordinator_key(&data, 90_000_000, h.now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("stop the coordinator"), "{err}");
    let (dir, clock) = (h.dir, h.clock);
    let mut server = h.server;
    server.take().unwrap().shutdown().await.unwrap();
    let r = crate::harness::rotate_stopped(&data, 90_000_000, clock.now_ms()).await;
    assert_eq!(r.retired.public_key, old_key.to_string());
    let h = Harness::start_in(dir, clock).await;
    assert_eq!(h.server().coordinator_key, r.new_key);
    let bundle = h
        .admin
        .clone()
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(bundle.keys.len(), 2);
    let old = bundle
        .keys
        .iter()
        .find(|k| k.public_key == old_key.as_bytes())
        .unwrap();
    assert_eq!(old.not_after_ms, r.retired.trusted_until_ms);
    assert_ne!(old.retired_ms, 0);
    // Recorded in the store's coordinator keys, each change audited.
    assert_eq!(bundle.version, 2);
    let records = h
        .admin
        .clone()
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                action_prefix: "coordinator_key.".into(),
                ..Default::default()
            }),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .records;
    let seen: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.action.as_str(), r.detail["public_key"].as_str()))
        .collect();
    let (old_text, new_text) = (old_key.to_string(), r.new_key.to_string());
    assert_eq!(
        seen,
        [
            ("coordinator_key.added", old_text.as_str()),
            ("coordinator_key.added", new_text.as_str()),
            ("coordinator_key.retired", old_text.as_str()),
        ]
    );
    // Past its window the old key is no longer published.
    let (dir, clock) = (h.dir, h.clock);
    let mut server = h.server;
    server.take().unwrap().shutdown().await.unwrap();
    clock.advance(90_000_001);
    let h = Harness::start_in(dir, clock).await;
    let bundle = h
        .admin
        .clone()
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(bundle.keys.len(), 1);
}
