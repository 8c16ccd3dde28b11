//! TLS and mutual TLS on the coordinator's listener (and the gateway's): a test CA made
//! here, clients that trust it or another, client certificates whose SPIFFE id matches the
//! signing agent or not, and certificate reload without a restart.

use std::net::SocketAddr;
use std::path::Path;

use mandate_core::{AgentId, keyfile};
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, ClientTls, Signer};
use mandate_server::{Config, Server, StartError};
use mandate_tls::ServerTlsFiles;
use mandate_tls::test_pki::{Issued, TestPki};

fn tls_config(dir: &Path, files: ServerTlsFiles) -> Config {
    let mut c = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.join("data"));
    c.tls = Some(files);
    c
}

fn server_files(pki: &TestPki, client_ca: Option<&Path>) -> ServerTlsFiles {
    let issued = pki.issue("server", None).unwrap();
    ServerTlsFiles {
        cert: issued.cert,
        key: issued.key,
        client_ca: client_ca.map(Path::to_owned),
    }
}

fn admin_signer(server: &Server) -> Signer {
    Signer::new(
        AgentId::new(server.admin_id.clone()).unwrap(),
        keyfile::load_signing_key(&server.admin_key_path).unwrap(),
    )
}

fn trusting(ca: &Path, identity: Option<&Issued>) -> ClientTls {
    ClientTls {
        ca: Some(ca.to_owned()),
        cert: identity.map(|i| i.cert.clone()),
        key: identity.map(|i| i.key.clone()),
    }
}

/// A signed call that needs the admin: listing agents.
async fn list_agents(
    server: &Server,
    tls: &ClientTls,
) -> Result<pb::ListAgentsResponse, mandate_sdk::Error> {
    let addr = server.local_addr.to_string();
    let mut client = Client::connect_tls(&addr, admin_signer(server), tls).await?;
    client.list_agents(pb::ListAgentsRequest::default()).await
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "right").unwrap();
    let other = TestPki::new(dir.path(), "other").unwrap();
    let server = mandate_server::start(tls_config(dir.path(), server_files(&pki, None)))
        .await
        .unwrap();
    assert!(server.tls());

    let listed = list_agents(&server, &trusting(&pki.ca_path(), None))
        .await
        .unwrap();
    assert!(listed.agents.iter().any(|a| a.agent_id == server.admin_id));

    // Another CA: the handshake fails, no call is made.
    let err = list_agents(&server, &trusting(&other.ca_path(), None))
        .await
        .unwrap_err();
    assert!(
        err.code().is_none_or(|c| c == tonic::Code::Unavailable),
        "{err}"
    );

    // Plaintext to a TLS listener: refused as well.
    let plain = Client::connect(
        format!("http://{}", server.local_addr),
        admin_signer(&server),
    )
    .await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused);

    // TLS files with an http:// address, or https:// without a CA: refused locally.
    let err = Client::connect_tls(
        &format!("http://{}", server.local_addr),
        admin_signer(&server),
        &trusting(&pki.ca_path(), None),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, mandate_sdk::Error::Tls(_)), "{err}");
    let err = Client::connect_tls(
        &format!("https://{}", server.local_addr),
        admin_signer(&server),
        &ClientTls::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, mandate_sdk::Error::Tls(_)), "{err}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_checks_the_certificate_spiffe_id_against_the_signing_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "ca").unwrap();
    let server = mandate_server::start(tls_config(
        dir.path(),
        server_files(&pki, Some(&pki.ca_path())),
    ))
    .await
    .unwrap();
    let admin = server.admin_id.clone();

    // The certificate names the admin, the request is signed by the admin: served.
    let as_admin = pki.issue("admin-client", Some(&admin)).unwrap();
    list_agents(&server, &trusting(&pki.ca_path(), Some(&as_admin)))
        .await
        .unwrap();

    // A certificate without a SPIFFE id is not an identity claim: the signature decides.
    let anonymous = pki.issue("anonymous-client", None).unwrap();
    list_agents(&server, &trusting(&pki.ca_path(), Some(&anonymous)))
        .await
        .unwrap();

    // The certificate names another agent: the admin's signature is not enough.
    let worker = pki
        .issue("worker-client", Some("spiffe://mandate.local/worker"))
        .unwrap();
    let err = list_agents(&server, &trusting(&pki.ca_path(), Some(&worker)))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "PEER_IDENTITY_MISMATCH", "{err}");
    assert_eq!(err.code(), Some(tonic::Code::Unauthenticated));

    // Two SPIFFE ids, one of them the signer's: not a valid SVID, refused.
    let both = pki
        .issue_ids("both-client", &[&admin, "spiffe://mandate.local/worker"])
        .unwrap();
    let err = list_agents(&server, &trusting(&pki.ca_path(), Some(&both)))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "PEER_IDENTITY_MISMATCH", "{err}");

    // No client certificate: the handshake does not complete.
    assert!(
        list_agents(&server, &trusting(&pki.ca_path(), None))
            .await
            .is_err()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reload_picks_up_a_new_certificate_and_keeps_the_old_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestPki::new(dir.path(), "old").unwrap();
    let new_ca = TestPki::new(dir.path(), "new").unwrap();
    let files = server_files(&old_ca, None);
    let server = mandate_server::start(tls_config(dir.path(), files.clone()))
        .await
        .unwrap();
    list_agents(&server, &trusting(&old_ca.ca_path(), None))
        .await
        .unwrap();

    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ntruncated").unwrap();
    assert!(server.reload_tls().is_err());
    list_agents(&server, &trusting(&old_ca.ca_path(), None))
        .await
        .unwrap();

    let next = new_ca.issue("next", None).unwrap();
    std::fs::copy(&next.cert, &files.cert).unwrap();
    std::fs::copy(&next.key, &files.key).unwrap();
    assert!(server.reload_tls().unwrap());
    list_agents(&server, &trusting(&new_ca.ca_path(), None))
        .await
        .unwrap();
    assert!(
        list_agents(&server, &trusting(&old_ca.ca_path(), None))
            .await
            .is_err()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn plaintext_on_a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(SocketAddr::from(([0, 0, 0, 0], 0)), dir.path().join("data"));
    let err = mandate_server::start(config).await.unwrap_err();
    assert!(matches!(err, StartError::PlaintextOnNetwork(_)), "{err}");
    assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
    // Nothing was created: the refusal comes before the data directory.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn unusable_tls_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "ca").unwrap();
    let mut files = server_files(&pki, None);
    files.key = dir.path().join("missing.key");
    let err = mandate_server::start(tls_config(dir.path(), files))
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Tls(_)), "{err}");
    assert!(err.to_string().contains("missing.key"), "{err}");
}

/// The gateway with its own certificate serves HTTPS, and reaches a TLS coordinator
/// through `coordinator_ca`; without it, it does not start.
#[tokio::test]
async fn the_gateway_serves_https_and_reaches_a_tls_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "ca").unwrap();
    let other = TestPki::new(dir.path(), "other").unwrap();
    let server = mandate_server::start(tls_config(dir.path(), server_files(&pki, None)))
        .await
        .unwrap();
    let mut admin = Client::connect_tls(
        &server.local_addr.to_string(),
        admin_signer(&server),
        &trusting(&pki.ca_path(), None),
    )
    .await
    .unwrap();
    let key = mandate_core::SigningKey::generate().unwrap();
    keyfile::save_signing_key(&key, &dir.path().join("gateway.key")).unwrap();
    admin
        .register_agent(pb::RegisterAgentRequest {
            agent_id: "spiffe://mandate.local/gateways/tls".into(),
            public_key: key.public_key().as_bytes().to_vec(),
            role: "tool".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let cert = pki.issue("gateway-tls", None).unwrap();
    let config = |with_ca: bool| {
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nagent = \"spiffe://mandate.local/gateways/tls\"\n\
             key = \"gateway.key\"\ncoordinator = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{}",
            server.local_addr,
            cert.cert.display(),
            cert.key.display(),
            if with_ca {
                format!("coordinator_ca = \"{}\"\n", pki.ca_path().display())
            } else {
                String::new()
            }
        );
        mandate_gateway::Config::parse(&text, Path::new("gateway.toml"), dir.path()).unwrap()
    };
    assert!(mandate_gateway::start(config(false)).await.is_err());
    let gateway = mandate_gateway::start(config(true)).await.unwrap();
    let answer = mandate_tls::test_pki::https_get(gateway.local_addr, &pki.ca_path(), "/healthz")
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    assert!(
        mandate_tls::test_pki::https_get(gateway.local_addr, &other.ca_path(), "/healthz")
            .await
            .is_err()
    );
    // A gateway config naming a non-loopback listener without TLS is refused.
    let text = format!(
        "[gateway]\nlisten = \"0.0.0.0:0\"\nagent = \"spiffe://mandate.local/gateways/tls\"\nkey = \"gateway.key\"\ncoordinator = \"{}\"\n",
        server.local_addr
    );
    let err = mandate_gateway::Config::parse(&text, Path::new("gateway.toml"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("insecure_plaintext"), "{err}");
    gateway.shutdown().await;
    server.shutdown().await.unwrap();
}

/// Over TLS, a running tool verifier follows a coordinator key rotation: the feed is then
/// signed by a key it does not know, so it fetches the trust bundle again; chains the old
/// key sealed keep verifying in its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_verifier_follows_a_key_rotation_over_tls() {
    use mandate_sdk::{ToolConfig, ToolVerifier};
    const TOOL: &str = "spiffe://mandate.local/tool";
    const PLANNER: &str = "spiffe://mandate.local/planner";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "ca").unwrap();
    let mut config = tls_config(dir.path(), server_files(&pki, None));
    let server = mandate_server::start(config.clone()).await.unwrap();
    let addr = server.local_addr.to_string();
    let tls = trusting(&pki.ca_path(), None);
    let mut admin = Client::connect_tls(&addr, admin_signer(&server), &tls)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for (id, role) in [(PLANNER, "planner"), (TOOL, "tool")] {
        let key = mandate_core::SigningKey::generate().unwrap();
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: id.into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: role.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        keys.push(key);
    }
    let as_agent = |id: &str, key: &mandate_core::SigningKey| {
        Signer::new(AgentId::new(id).unwrap(), key.clone())
    };
    let task = pb::StartTaskRequest {
        capabilities: vec![mandate_proto::token::Capability {
            resource: "files/*".into(),
            actions: vec!["read".into()],
            constraints: vec![],
        }],
        ttl_ms: 600_000,
        ..Default::default()
    };
    let mut planner = Client::connect_tls(&addr, as_agent(PLANNER, &keys[0]), &tls)
        .await
        .unwrap();
    let limits = mandate_core::Limits::default();
    let old_chain = mandate_core::Chain::decode(
        &planner.start_task(task.clone()).await.unwrap().chain,
        &limits,
    )
    .unwrap();
    let tool = Client::connect_tls(&addr, as_agent(TOOL, &keys[1]), &tls)
        .await
        .unwrap();
    assert!(tool.is_tls());
    let mut tool_config = ToolConfig::new(TOOL);
    tool_config.max_staleness = std::time::Duration::from_secs(60);
    let verifier = ToolVerifier::connect(tool, tool_config).await.unwrap();
    verifier.verify_chain(&old_chain).unwrap();

    server.shutdown().await.unwrap();
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    let r = crate::harness::rotate_stopped(&config.data_dir, 90_000_000, now).await;
    config.listen = addr.parse().unwrap();
    let server = mandate_server::start(config).await.unwrap();
    assert_eq!(server.coordinator_key, r.new_key);
    let mut planner = Client::connect_tls(&addr, as_agent(PLANNER, &keys[0]), &tls)
        .await
        .unwrap();
    let new_chain =
        mandate_core::Chain::decode(&planner.start_task(task).await.unwrap().chain, &limits)
            .unwrap();
    let mut verified = false;
    for _ in 0..400 {
        if verifier.verify_chain(&new_chain).is_ok() {
            verified = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(verified, "{:?}", verifier.verify_chain(&new_chain));
    verifier.verify_chain(&old_chain).unwrap();
    drop(verifier);
    server.shutdown().await.unwrap();
}

/// With TLS, the metrics listener serves HTTPS with the same certificate (no client
/// certificate needed, even when the gRPC listener requires one).
#[tokio::test]
async fn metrics_are_served_over_https_when_the_coordinator_has_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "ca").unwrap();
    let mut config = tls_config(dir.path(), server_files(&pki, Some(&pki.ca_path())));
    config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = mandate_server::start(config).await.unwrap();
    let addr = server.metrics_addr.unwrap();
    let answer = mandate_tls::test_pki::https_get(addr, &pki.ca_path(), "/metrics")
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("mandate_links_live"), "{answer}");
    // Plain HTTP to it gets nothing.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    server.shutdown().await.unwrap();
}
