//! Reaching a real etcd that asks for TLS with client certificates, or for a user and
//! password (with tokens that expire while the store runs).

use std::time::Duration;

use mandate_etcd::etcdserverpb::auth_client::AuthClient;
use mandate_etcd::etcdserverpb::{AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest};
use mandate_etcd::test_cluster::{ClusterOptions, ClusterTls, EtcdCluster};

use crate::conformance::{event, task};
use crate::{Change, EtcdConfig, EtcdStore, Store};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn a_change(id: u8) -> Change {
    Change {
        tasks: vec![task(id)],
        audit: vec![event("task")],
        ..Change::default()
    }
}

#[test]
fn tls_with_a_client_certificate_works_and_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mandate_tls::test_pki::TestPki::new(dir.path(), "etcd").unwrap();
    let member = pki.issue("member", None).unwrap();
    let client = pki.issue("client", None).unwrap();
    let cluster = runtime()
        .block_on(EtcdCluster::start_with(
            1,
            ClusterOptions {
                tls: Some(ClusterTls {
                    cert: member.cert,
                    key: member.key,
                    client_ca: pki.ca_path(),
                }),
                ..ClusterOptions::default()
            },
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.tls_endpoints()[0].replace("https://", "etcds://") + "/tls";
    let mut config = EtcdConfig::parse(&url).unwrap();
    config.timeout = Duration::from_secs(2);
    config.ca_pem = Some(std::fs::read(pki.ca_path()).unwrap());

    // No client certificate: the member refuses the handshake.
    assert!(EtcdStore::open(config.clone()).is_err());
    config.client_cert_pem = Some((
        std::fs::read(&client.cert).unwrap(),
        std::fs::read(&client.key).unwrap(),
    ));
    let s = EtcdStore::open(config.clone()).unwrap();
    s.commit(a_change(1)).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = EtcdStore::open(config.clone()).unwrap();
    assert!(s.task(&task(1).id).unwrap().is_some());
    drop(s);

    // A CA that did not sign the members: refused.
    let other = mandate_tls::test_pki::TestPki::new(dir.path(), "other").unwrap();
    config.ca_pem = Some(std::fs::read(other.ca_path()).unwrap());
    assert!(EtcdStore::open(config).is_err());
}

#[test]
fn a_user_and_password_work_and_an_expired_token_is_renewed() {
    let cluster = runtime()
        .block_on(EtcdCluster::start_with(
            1,
            ClusterOptions {
                // Tokens expire a second after their last use.
                extra_args: vec!["--auth-token-ttl=1".into()],
                ..ClusterOptions::default()
            },
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let endpoint = cluster.endpoints()[0].clone();
    runtime().block_on(async {
        let mut auth = AuthClient::connect(endpoint.clone()).await.unwrap();
        auth.user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "s3cret-pass".into(),
            options: None,
        })
        .await
        .unwrap();
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .unwrap();
        auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    });
    let url = endpoint.replace("http://", "etcd://");
    let mut config = EtcdConfig::parse(&url).unwrap();
    config.timeout = Duration::from_secs(2);

    assert!(EtcdStore::open(config.clone()).is_err(), "no credentials");
    config.credentials = Some(("root".into(), "wrong".into()));
    let refused = EtcdStore::open(config.clone()).unwrap_err();
    assert!(
        !refused.to_string().contains("wrong"),
        "the password stays out of errors: {refused}"
    );
    config.credentials = Some(("root".into(), "s3cret-pass".into()));
    let s = EtcdStore::open(config).unwrap();
    s.commit(a_change(1)).unwrap();
    s.flush().unwrap();
    // The token expires; the next calls authenticate again.
    std::thread::sleep(Duration::from_millis(2_500));
    s.commit(a_change(2)).unwrap();
    s.flush().unwrap();
    assert!(s.reauthentications() >= 1, "the expired token was replaced");
    assert!(s.task(&task(1).id).unwrap().is_some());
    assert!(s.task(&task(2).id).unwrap().is_some());
}
