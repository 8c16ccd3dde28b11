//! Clients given several coordinators (`a,b,c`): they use the first that answers and move
//! a call that cannot reach its coordinator to the next, as the same signed request.

use mandate_core::{AgentId, SigningKey};
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, ClientTls, Signer};

use crate::harness::*;

/// A loopback address nothing listens on.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// One auditor, the same key, registered on each of `on` (independent coordinators), and
/// its signer (on the first one's clock).
async fn one_auditor_on(on: &[&Harness]) -> Signer {
    let key = SigningKey::generate().unwrap();
    let id = "spiffe://mandate.local/failover/agent";
    for h in on {
        h.admin
            .clone()
            .register_agent(pb::RegisterAgentRequest {
                agent_id: id.into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: "auditor".into(),
                owner: "tests".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    Signer::with_clock(AgentId::new(id).unwrap(), key, on[0].clock.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_past_coordinators_it_cannot_reach() {
    let a = Harness::start().await;
    let b = Harness::start().await;
    let signer = one_auditor_on(&[&a, &b]).await;
    let servers = format!(
        "{}, {},{}",
        dead_address(),
        a.server().local_addr,
        b.server().local_addr
    );
    let mut client = Client::connect_tls(&servers, signer.clone(), &ClientTls::default())
        .await
        .unwrap();
    let bundle = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get_trust_bundle(pb::GetTrustBundleRequest {})
                .await
                .map(|r| r.keys[0].public_key.clone())
        }
    };
    let key_a = a.server().coordinator_key.as_bytes().to_vec();
    let key_b = b.server().coordinator_key.as_bytes().to_vec();
    assert_eq!(
        bundle(&mut client).await.unwrap(),
        key_a,
        "the first that answers"
    );
    // A stream opens through the same failover.
    let mut stream = client
        .watch_audit_log(pb::WatchAuditLogRequest::default())
        .await
        .unwrap();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    // The coordinator in use goes away: the next call (unary or stream) reaches the next.
    let mut a = a;
    a.server.take().unwrap().shutdown().await.unwrap();
    assert_eq!(bundle(&mut client).await.unwrap(), key_b);
    let mut stream = client
        .watch_audit_log(pb::WatchAuditLogRequest::default())
        .await
        .unwrap();
    assert!(stream.message().await.unwrap().is_some());
    // A refusal from a coordinator that answered is not a reason to move on.
    let refused = client
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.reason(), "NOT_AUTHORIZED", "{refused}");
    // None reachable: connecting fails; a list without an address is refused.
    let none = format!("{},{}", dead_address(), dead_address());
    assert!(
        Client::connect_tls(&none, signer.clone(), &ClientTls::default())
            .await
            .is_err()
    );
    let empty = Client::connect_tls(" ,", signer, &ClientTls::default())
        .await
        .unwrap_err();
    assert!(
        empty.to_string().contains("no coordinator address"),
        "{empty}"
    );
    drop(b);
}

/// A forwarding coordinator (one that does not lead) passes every call, streams included,
/// to the one it names, as it came: the caller is authenticated there, the state changes
/// there, refusals come back with their reason, a replayed request is refused there; with
/// no target it answers UNAVAILABLE with no reason, which moves a client on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_coordinator_passes_calls_to_the_leader_as_they_came() {
    use mandate_server::{ForwardTarget, Forwarding};
    let a = Harness::start().await;
    let target = ForwardTarget::default();
    let forwarding = Forwarding::start(([127, 0, 0, 1], 0).into(), target.clone(), None)
        .await
        .unwrap();
    let through = forwarding.local_addr.to_string();
    let mut admin = Client::connect_tls(&through, a.admin.signer().clone(), &ClientTls::default())
        .await
        .unwrap();
    let none = admin
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (none.reason(), format!("{none}").contains("Unavailable")),
        ("", true),
        "{none}"
    );

    target.set(&a.server().local_addr.to_string()).unwrap();
    let bundle = admin
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(
        bundle.keys[0].public_key,
        a.server().coordinator_key.as_bytes().to_vec()
    );
    // A planner registered and working through the forwarder: the task lives on A.
    let planner_id = "spiffe://mandate.local/forwarded/planner";
    let (planner_key, _) = a.register(&mut admin, planner_id, "planner", "").await;
    let planner_signer = Signer::with_clock(
        AgentId::new(planner_id).unwrap(),
        planner_key,
        a.clock.clone(),
    );
    let mut planner = Client::connect_tls(&through, planner_signer.clone(), &ClientTls::default())
        .await
        .unwrap();
    let started = planner
        .start_task(pb::StartTaskRequest {
            intent: Some(pb::Intent::default()),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let task = started.task.unwrap().task_id;
    let on_a = a
        .admin
        .clone()
        .get_task(pb::GetTaskRequest {
            task_id: task.clone(),
        })
        .await
        .unwrap();
    assert_eq!(on_a.task.unwrap().requester_agent_id, planner_id);
    // A refusal comes back with its reason.
    let refused = planner
        .reload_policy(pb::ReloadPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.reason(), "NOT_AUTHORIZED", "{refused}");
    // A stream flows through.
    let mut records = admin
        .watch_audit_log(pb::WatchAuditLogRequest::default())
        .await
        .unwrap();
    assert!(records.message().await.unwrap().is_some());
    drop(records);
    // The same signed request twice, through the forwarder: the leader refuses the second.
    let complete = planner_signer
        .request(
            "/mandate.v1.TaskService/CompleteTask",
            pb::CompleteTaskRequest {
                task_id: task,
                ..Default::default()
            },
        )
        .unwrap();
    let (metadata, _, message) = complete.into_parts();
    let channel = tonic::transport::Channel::from_shared(format!("http://{through}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut tasks = pb::task_service_client::TaskServiceClient::new(channel);
    let again = || {
        tonic::Request::from_parts(
            metadata.clone(),
            tonic::Extensions::default(),
            message.clone(),
        )
    };
    tasks.complete_task(again()).await.unwrap();
    let replayed = mandate_sdk::Error::from(tasks.complete_task(again()).await.unwrap_err());
    assert_eq!(replayed.reason(), "REQUEST_REPLAYED", "{replayed}");

    // The leader gone: UNAVAILABLE without a reason again.
    let mut a = a;
    a.server.take().unwrap().shutdown().await.unwrap();
    let gone = admin
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap_err();
    assert_eq!(gone.reason(), "", "{gone}");
    forwarding.shutdown().await;
}

/// A coordinator told it no longer leads (`Config::leading`) refuses every call with
/// `NOT_LEADER`, withholds an answer it computed while the lease ran out, and a client
/// given several coordinators moves to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_no_longer_leads_serves_nothing_and_clients_move_on() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    // How many more checks say "leads" (-1: all of them).
    let leads = Arc::new(AtomicI64::new(-1));
    let check = Arc::clone(&leads);
    let clock = Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let a = Harness::start_configured(tempfile::tempdir().unwrap(), clock.clone(), |c| {
        c.leading = Some(Arc::new(move || {
            check
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > 0).then(|| n - 1)
                })
                .map_or_else(|n| n < 0, |_| true)
        }));
    })
    .await;
    let b = Harness::start_in(tempfile::tempdir().unwrap(), clock).await;
    let signer = one_auditor_on(&[&a, &b]).await;
    let servers = format!("{},{}", a.server().local_addr, b.server().local_addr);
    let mut client = Client::connect_tls(&servers, signer, &ClientTls::default())
        .await
        .unwrap();
    let key_of = |r: pb::GetTrustBundleResponse| r.keys[0].public_key.clone();
    let bundle = client
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(
        key_of(bundle),
        a.server().coordinator_key.as_bytes().to_vec()
    );

    // The lease runs out while a call is handled: its answer is withheld.
    leads.store(1, Ordering::SeqCst);
    let withheld = a
        .admin
        .clone()
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap_err();
    assert_eq!(withheld.reason(), "NOT_LEADER", "{withheld}");
    assert_eq!(
        leads.load(Ordering::SeqCst),
        0,
        "the call passed the first check"
    );
    let refused = a
        .admin
        .clone()
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.reason(), "NOT_LEADER", "{refused}");
    let bundle = client
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await
        .unwrap();
    assert_eq!(
        key_of(bundle),
        b.server().coordinator_key.as_bytes().to_vec()
    );
}
