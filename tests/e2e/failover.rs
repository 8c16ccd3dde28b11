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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_past_coordinators_it_cannot_reach() {
    let a = Harness::start().await;
    let b = Harness::start().await;
    // One agent, the same key, registered on both (independent) coordinators.
    let key = SigningKey::generate().unwrap();
    let id = "spiffe://mandate.local/failover/agent";
    for h in [&a, &b] {
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
    let signer = Signer::with_clock(AgentId::new(id).unwrap(), key, a.clock.clone());
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
        .reload_policy(pb::ReloadPolicyRequest {})
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
