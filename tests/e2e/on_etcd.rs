//! The end-to-end flows again with the coordinator's state on a 3-member etcd cluster on
//! loopback (`mandate_server::StoreChoice::Etcd`): delegation and authorization, a
//! cascade that survives a restart, a thousand-descendant cascade, drift, and audit
//! verification (which catches a record edited in etcd).

use std::future::Future;

use mandate_etcd::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};
use mandate_etcd::test_cluster::EtcdCluster;
use mandate_proto::v1 as pb;
use mandate_server::StoreChoice;

use crate::harness::*;

/// Runs `body` with every harness it starts on a fresh 3-member etcd cluster.
async fn on_etcd<F: Future<Output = ()>>(body: impl FnOnce() -> F) {
    let cluster = EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = mandate_store::EtcdConfig::new(cluster.endpoints());
    STORE
        .scope(StoreChoice::Etcd(Box::new(config)), body())
        .await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_on_etcd() {
    on_etcd(
        crate::flow::authorize_allows_what_each_link_allows_and_denies_the_rest_with_its_reason_body,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cascade_and_restart_on_etcd() {
    on_etcd(
        crate::flow::revocation_cascades_online_and_through_the_feed_and_records_survive_a_restart_body,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_descendant_cascade_on_etcd() {
    on_etcd(crate::audit::a_cascade_of_a_thousand_descendants_names_every_one_body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_etcd() {
    on_etcd(crate::policy::drift_revokes_the_now_forbidden_subtree_and_keeps_its_siblings_body)
        .await;
}

/// `mandate rotate-key` refuses while a coordinator on etcd runs on the data directory and
/// works once it stopped, without leaving a sled store behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_on_etcd() {
    on_etcd(|| async {
        crate::operations::a_rotated_coordinator_key_is_published_with_the_old_one_in_its_window_body()
            .await;
        let mut h = Harness::start().await;
        let data = h.dir.path().join("data");
        h.server.take().unwrap().shutdown().await.unwrap();
        crate::harness::rotate_stopped(&data, 1_000, h.now()).await;
        assert!(!data.join("store").exists(), "rotate-key opened a sled store");
    })
    .await;
}

/// The log verifies on etcd, across a restart; a record edited in etcd (by someone with
/// write access to it) is named by verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verification_on_etcd_names_a_record_edited_in_etcd() {
    let cluster = EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = mandate_store::EtcdConfig::new(cluster.endpoints());
    let prefix = config.prefix.clone();
    STORE
        .scope(StoreChoice::Etcd(Box::new(config)), async move {
            let h = Harness::start().await;
            crate::audit::setup(&h).await;
            let verify = |h: &Harness| {
                let mut admin = h.admin.clone();
                async move {
                    admin
                        .verify_audit_log(pb::VerifyAuditLogRequest::default())
                        .await
                        .unwrap()
                }
            };
            let v = verify(&h).await;
            assert!(v.intact, "{}", v.problem);
            assert!(v.head_seq >= 4);
            let h = h.restart().await;
            let v = verify(&h).await;
            assert!(v.intact, "{}", v.problem);

            // Record 3 rewritten in etcd, as someone with access to etcd could.
            let mut kv = KvClient::connect(cluster.endpoints()[0].clone())
                .await
                .unwrap();
            let key = [prefix.as_bytes(), b"q", &3u64.to_be_bytes()].concat();
            let stored = kv
                .range(RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .kvs
                .remove(0)
                .value;
            let mut record: mandate_store::AuditRecord = serde_json::from_slice(&stored).unwrap();
            record.event.actor = "spiffe://mandate.local/someone-else".into();
            kv.put(PutRequest {
                key,
                value: serde_json::to_vec(&record).unwrap(),
                ..Default::default()
            })
            .await
            .unwrap();
            let v = verify(&h).await;
            assert!(!v.intact);
            assert_eq!(v.first_broken_seq, 3, "{}", v.problem);
        })
        .await;
}
