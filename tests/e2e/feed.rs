//! The revocation feed (`WatchRevocations`): resuming from an epoch, heartbeats, and
//! publishing a revocation only once it is durable.

use std::sync::atomic::Ordering;

use mandate_proto::v1 as pb;
use tokio_stream::StreamExt as _;

use crate::audit::setup;
use crate::failing_store::on_a_failing_store;
use crate::harness::*;

/// The next batch on a revocation feed, as (epoch, link id) pairs.
async fn next_batch(
    feed: &mut tonic::Streaming<pb::WatchRevocationsResponse>,
) -> Vec<(u64, String)> {
    loop {
        let m = feed.next().await.unwrap().unwrap();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = m.event {
            return b.links.into_iter().map(|l| (l.epoch, l.link_id)).collect();
        }
    }
}

/// A revocation reaches followers only once durable: a follower that learnt of an epoch a
/// crash then lost would skip the different revocation given that number after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_publishes_a_revocation_only_once_it_is_durable() {
    let (h, store) = on_a_failing_store().await;
    let (mut planner, root, _wkey, chain) = setup(&h).await;
    let mut admin = h.admin.clone();
    let mut feed = admin
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = feed.next().await.unwrap().unwrap();
    let Some(pb::watch_revocations_response::Event::Snapshot(s)) = first.event else {
        panic!("expected a snapshot, got {first:?}");
    };
    let start = s.epoch;

    store.fail_flush.store(true, Ordering::SeqCst);
    let e = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: chain.leaf().id().to_string(),
            reason: "not durable".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "STORE_UNAVAILABLE");
    // Committed, so online checks refuse the link at once, but not published: no batch
    // reaches the follower and a new follower's snapshot is at the old epoch.
    let fresh = admin
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(pb::watch_revocations_response::Event::Snapshot(s)) = fresh.event else {
        panic!("expected a snapshot, got {fresh:?}");
    };
    assert_eq!(s.epoch, start);
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(300), next_batch(&mut feed)).await;
    assert!(quiet.is_err(), "published before durable: {quiet:?}");

    // Once a flush succeeds, the revocation is published, with no other change needed to
    // trigger it (the collector asks for a flush now and then).
    store.fail_flush.store(false, Ordering::SeqCst);
    h.server().collect_garbage().await.unwrap();
    assert_eq!(
        next_batch(&mut feed).await,
        vec![(start + 1, chain.leaf().id().to_string())]
    );
    planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: root.root().id().to_string(),
            reason: "durable".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        next_batch(&mut feed).await,
        vec![(start + 2, root.root().id().to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_resumes_from_an_epoch_and_sends_heartbeats() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/p", "planner", "")
        .await;
    let mut roots = Vec::new();
    for _ in 0..3 {
        let started = planner
            .start_task(pb::StartTaskRequest {
                signals: Default::default(),
                capabilities: vec![cap_pb("files/*", &["read"])],
                ttl_ms: 60_000,
                ..Default::default()
            })
            .await
            .unwrap();
        roots.push(decode(&started.chain).root().id().to_string());
    }
    let mut epochs = Vec::new();
    for id in &roots {
        let r = planner
            .revoke_link(pb::RevokeLinkRequest {
                link_id: id.clone(),
                reason: "test".into(),
            })
            .await
            .unwrap();
        epochs.push(r.revocation_epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs increase: {epochs:?}"
    );

    // From scratch: a snapshot of all three.
    let mut feed = admin
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = feed.next().await.unwrap().unwrap().event.unwrap();
    let pb::watch_revocations_response::Event::Snapshot(s) = first else {
        panic!("expected a snapshot, got {first:?}");
    };
    assert_eq!(s.epoch, epochs[2]);
    assert_eq!(s.links.len(), 3);
    // Then heartbeats at the current epoch.
    let next = feed.next().await.unwrap().unwrap().event.unwrap();
    let pb::watch_revocations_response::Event::Heartbeat(hb) = next else {
        panic!("expected a heartbeat, got {next:?}");
    };
    assert_eq!(hb.epoch, epochs[2]);

    // Resuming after the first epoch: only the two later revocations, as one batch.
    let mut feed = admin
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: epochs[0],
            ..Default::default()
        })
        .await
        .unwrap();
    let first = feed.next().await.unwrap().unwrap().event.unwrap();
    let pb::watch_revocations_response::Event::Batch(b) = first else {
        panic!("expected a batch, got {first:?}");
    };
    let mut got: Vec<String> = b.links.into_iter().map(|l| l.link_id).collect();
    got.sort();
    let mut want = roots[1..].to_vec();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(b.epoch, epochs[2]);
}

/// One agent may hold at most 16 server streams open: the 17th feed is refused with
/// `QUOTA_EXCEEDED`, and closing one frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_holds_a_bounded_number_of_open_streams() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let mut open = Vec::new();
    for _ in 0..16 {
        let mut feed = admin
            .watch_revocations(pb::WatchRevocationsRequest {
                after_epoch: 0,
                ..Default::default()
            })
            .await
            .unwrap();
        feed.next().await.unwrap().unwrap();
        open.push(feed);
    }
    let refused = admin
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code(), refused.reason()),
        (Some(tonic::Code::ResourceExhausted), "QUOTA_EXCEEDED"),
        "{refused:?}"
    );
    // Another agent is not affected.
    let (_, mut planner) = h
        .register(
            &mut admin,
            "spiffe://mandate.local/streams/planner",
            "planner",
            "",
        )
        .await;
    planner
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    // Closing a feed frees its slot (the server notices the client went).
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..500 {
        match admin
            .watch_revocations(pb::WatchRevocationsRequest {
                after_epoch: 0,
                ..Default::default()
            })
            .await
        {
            Ok(feed) => {
                reopened = Some(feed);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    assert!(reopened.is_some(), "the closed feed's slot was never freed");
}
